namespace Kiou.Storage;

/// <summary>
/// An I/O failure of one partition's log (the broker answers KAFKA_STORAGE_ERROR, 56). The message names the
/// topic-partition, the errno and what to do; <see cref="Errno"/> is positive (28 = ENOSPC) or 0 when no
/// errno applies (a closed or corrupt log).
/// </summary>
public sealed class StorageException : IOException
{
    public StorageException(string message, int errno = 0, Exception? inner = null)
        : base(message, inner)
    {
        Errno = errno;
    }

    public int Errno { get; }
}

/// <summary>A batch larger than segment.bytes (the broker answers RECORD_LIST_TOO_LARGE, 18).</summary>
public sealed class RecordListTooLargeException : Exception
{
    public RecordListTooLargeException(string message)
        : base(message)
    {
    }
}

/// <summary>Names for the errno values a log device reports.</summary>
public static class ErrnoNames
{
    public const int EINTR = 4;
    public const int EIO = 5;
    public const int EBADF = 9;
    public const int ENOMEM = 12;
    public const int EINVAL = 22;
    public const int ENOSPC = 28;

    /// <summary>"ENOSPC (no space left on device)" for 28 or -28.</summary>
    public static string Describe(int errno)
    {
        int e = Math.Abs(errno);
        return e switch
        {
            1 => "EPERM (operation not permitted)",
            4 => "EINTR (interrupted system call)",
            5 => "EIO (input/output error)",
            9 => "EBADF (bad file descriptor)",
            11 => "EAGAIN (resource temporarily unavailable)",
            12 => "ENOMEM (out of memory)",
            13 => "EACCES (permission denied)",
            22 => "EINVAL (invalid argument)",
            23 => "ENFILE (too many open files in the system)",
            24 => "EMFILE (too many open files)",
            27 => "EFBIG (file too large)",
            28 => "ENOSPC (no space left on device)",
            30 => "EROFS (read-only file system)",
            122 => "EDQUOT (disk quota exceeded)",
            125 => "ECANCELED (operation canceled)",
            _ => $"errno {e}",
        };
    }

    /// <summary>What an operator should do about it, as a sentence fragment.</summary>
    internal static string Advice(int errno) => Math.Abs(errno) switch
    {
        28 or 122 => "free disk space or raise the quota",
        30 => "remount the data directory read-write",
        13 or 1 => "check the data directory's permissions",
        23 or 24 => "raise the open file limit (LimitNOFILE, ulimit -n) or lower KIOU_MAX_OPEN_SEGMENT_FILES",
        _ => "check the disk and the kernel log (dmesg)",
    };

    /// <summary>The errno behind an exception from .NET file APIs (IOException.HResult carries it on Unix), else EIO.</summary>
    internal static int FromException(Exception ex) => ex switch
    {
        UnauthorizedAccessException => 13,
        IOException io when io.HResult is > 0 and < 4096 => io.HResult,
        _ => EIO,
    };
}
