using System.Runtime.InteropServices;

namespace Kiou.IoUring.Interop;

#pragma warning disable IDE1006 // libc spelling, not .NET naming

/// <summary>
/// posix_fadvise(2) for the read path: asks the kernel to start reading a file range into the page cache now
/// (POSIX_FADV_WILLNEED), so that a consumer catching up finds the next bytes there instead of waiting for one
/// synchronous readahead window at a time; and to drop a range from the page cache (POSIX_FADV_DONTNEED: tests and
/// measurements of cold reads). The marshaller holds a reference on the handle for the call.
/// </summary>
public static partial class FileAdvice
{
    public const int POSIX_FADV_SEQUENTIAL = 2;
    public const int POSIX_FADV_WILLNEED = 3;
    public const int POSIX_FADV_DONTNEED = 4;

    /// <summary>Starts reading [offset, offset + length) into the page cache without waiting: 0, or a positive errno.</summary>
    public static int WillNeed(SafeHandle file, long offset, long length) => Advise(file, offset, length, POSIX_FADV_WILLNEED);

    /// <summary>Drops the clean pages of [offset, offset + length) (length 0: to the end) from the page cache: 0, or a positive errno.</summary>
    public static int DontNeed(SafeHandle file, long offset, long length) => Advise(file, offset, length, POSIX_FADV_DONTNEED);

    private static int Advise(SafeHandle file, long offset, long length, int advice)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        return posix_fadvise(file, offset, length, advice); // returns the error number itself, not -1 and errno
    }

    [LibraryImport("libc")]
    private static partial int posix_fadvise(SafeHandle fd, long offset, long len, int advice);
}
