using Kiou.IoUring.Interop;
using Microsoft.Win32.SafeHandles;

namespace Kiou.Storage;

/// <summary>
/// The small state files beside the logs (recovery point, clean marker, index files' temporaries, partition and
/// cluster metadata): written whole and atomically, read whole only up to a bound, since a file on disk is untrusted.
/// </summary>
public static class SmallFiles
{
    /// <summary>The file's bytes, or null when it is larger than <paramref name="maxBytes"/>.</summary>
    public static byte[]? ReadAllBytes(string path, int maxBytes)
    {
        using SafeFileHandle handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        long length = RandomAccess.GetLength(handle);
        if (length > maxBytes)
        {
            return null;
        }

        byte[] bytes = new byte[length];
        int read = 0;
        while (read < bytes.Length)
        {
            int n = RandomAccess.Read(handle, bytes.AsSpan(read), read);
            if (n == 0)
            {
                return bytes[..read];
            }

            read += n;
        }

        return bytes;
    }

    /// <summary>The file's text (UTF-8), or null when it is larger than <paramref name="maxBytes"/>.</summary>
    public static string? ReadAllText(string path, int maxBytes) =>
        ReadAllBytes(path, maxBytes) is { } bytes ? System.Text.Encoding.UTF8.GetString(bytes) : null;

    /// <summary>Writes a temporary file, fdatasyncs it and renames it over <paramref name="path"/> (the caller syncs the directory).</summary>
    public static void WriteAtomically(string path, ReadOnlySpan<byte> bytes)
    {
        string temp = path + ".tmp";
        using (SafeFileHandle handle = File.OpenHandle(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            RandomAccess.Write(handle, bytes, 0);
            int rc = FileSync.DataSync(handle);
            if (rc < 0)
            {
                throw new IOException($"fdatasync of {temp} failed: {ErrnoNames.Describe(rc)}", -rc);
            }
        }

        File.Move(temp, path, overwrite: true);
    }
}
