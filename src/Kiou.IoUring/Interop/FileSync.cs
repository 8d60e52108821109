using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Kiou.IoUring.Interop;

/// <summary>
/// fdatasync(2) and a directory fsync for the synchronous log device and for segment rolls, as a safe
/// surface: callers pass handles and paths, never fds. Results are 0 or a negative errno, like io_uring CQEs.
/// </summary>
/// <remarks>
/// The fd comes out of the <see cref="SafeFileHandle"/> only here, between DangerousAddRef and DangerousRelease,
/// so a handle closed by another thread cannot be reused as a different file during the call.
/// </remarks>
public static partial class FileSync
{
    private const int EBADF = 9;
    private const int O_RDONLY = 0;

    /// <summary>fdatasync(fd) on the handle: 0, or -errno (-EIO, -ENOSPC, ..., -EBADF once the handle is closed).</summary>
    public static int DataSync(SafeFileHandle handle)
    {
        ArgumentNullException.ThrowIfNull(handle);
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
        }
        catch (ObjectDisposedException)
        {
            return -EBADF;
        }

        try
        {
            int fd = (int)handle.DangerousGetHandle();
            int rc;
            do
            {
                rc = fdatasync(fd);
            }
            while (rc != 0 && Marshal.GetLastPInvokeError() == 4); // EINTR: retry

            return rc == 0 ? 0 : -Marshal.GetLastPInvokeError();
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    /// <summary>
    /// fsync of a directory, making file creations, renames and deletions in it durable: 0 or -errno.
    /// Opened read-only (O_DIRECTORY's value differs between x86-64 and aarch64, and Linux opens directories
    /// read-only without it).
    /// </summary>
    public static int SyncDirectory(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        int fd = open(path, O_RDONLY);
        if (fd < 0)
        {
            return -Marshal.GetLastPInvokeError();
        }

        int rc = fsync(fd);
        int result = rc == 0 ? 0 : -Marshal.GetLastPInvokeError();
        close(fd);
        return result;
    }

    /// <summary>
    /// Replaces <paramref name="path"/> with <paramref name="bytes"/> so that a crash leaves the old file or the new one,
    /// never a mix: a temporary file beside it, written and fdatasync'ed, renamed over it, then the directory synced.
    /// <paramref name="mode"/>: the temporary file's permissions before anything is written (secrets). On failure the
    /// temporary file is removed and the exception (IOException or UnauthorizedAccessException) goes to the caller.
    /// </summary>
    public static void ReplaceDurably(string path, ReadOnlySpan<byte> bytes, UnixFileMode? mode = null)
    {
        string tmp = path + ".tmp";
        try
        {
            using (var handle = File.OpenHandle(tmp, FileMode.Create, FileAccess.Write))
            {
                if (mode is { } m && !OperatingSystem.IsWindows())
                {
                    File.SetUnixFileMode(handle, m);
                }

                RandomAccess.Write(handle, bytes, 0);
                int rc = DataSync(handle);
                if (rc < 0)
                {
                    throw new IOException($"fdatasync of {tmp} failed (errno {-rc})", -rc);
                }
            }

            File.Move(tmp, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try
            {
                File.Delete(tmp);
            }
            catch (Exception e2) when (e2 is IOException or UnauthorizedAccessException)
            {
            }

            throw;
        }

        SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fdatasync(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fsync(int fd);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);
}
