using System.Runtime.InteropServices;
using Kiou.IoUring.Interop;
using Microsoft.Win32.SafeHandles;

namespace Kiou.IoUring;

/// <summary>Opens files with O_DIRECT, which <see cref="File.OpenHandle"/> cannot ask for on Linux.</summary>
public static class DirectFile
{
    /// <summary>
    /// Opens (creating, and truncating when <paramref name="truncate"/>) <paramref name="path"/> for reading and
    /// writing with O_DIRECT | O_CLOEXEC. Buffers, file positions and lengths used on it must be multiples of
    /// the logical block size (see <see cref="AlignedBuffer"/>).
    /// </summary>
    /// <exception cref="IOException">open(2) failed (EINVAL: the file system does not support O_DIRECT).</exception>
    public static SafeFileHandle OpenReadWrite(string path, bool truncate)
    {
        ArgumentNullException.ThrowIfNull(path);
        int flags = LibC.O_RDWR | LibC.O_CREAT | LibC.O_CLOEXEC | LibC.O_DIRECT | (truncate ? LibC.O_TRUNC : 0);
        int fd = LibC.open(path, flags, 420 /* 0644 */);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new IOException($"open(\"{path}\", O_DIRECT) failed: errno {errno}" + (errno == Errno.EINVAL ? " (the file system does not support O_DIRECT)" : ""));
        }
        return new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>
    /// Opens an existing file for writing with O_DIRECT | O_CLOEXEC (never creating it), or returns null with
    /// the errno when it cannot: EINVAL means the file system does not support O_DIRECT.
    /// </summary>
    public static SafeFileHandle? TryOpenExistingForWrite(string path, out int errno)
    {
        ArgumentNullException.ThrowIfNull(path);
        int fd = LibC.open(path, LibC.O_WRONLY | LibC.O_CLOEXEC | LibC.O_DIRECT, 0);
        if (fd < 0)
        {
            errno = Marshal.GetLastPInvokeError();
            return null;
        }
        errno = 0;
        return new SafeFileHandle(fd, ownsHandle: true);
    }
}
