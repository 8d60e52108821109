namespace Kiou.IoUring.Tests;

/// <summary>A scratch directory under the system temp path, deleted on Dispose.</summary>
public sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "kiou-uring-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose() => Directory.Delete(Path, recursive: true);
}

internal static class TestData
{
    /// <summary>Deterministic bytes: each position holds a function of (seed, index).</summary>
    public static byte[] Pattern(int length, int seed)
    {
        var bytes = new byte[length];
        for (int i = 0; i < length; i++)
        {
            bytes[i] = (byte)((i * 31) + (seed * 7) + (i >> 8));
        }
        return bytes;
    }

    /// <summary>How many of this process's fds point at an io_uring instance.</summary>
    public static int CountRingFds()
    {
        int count = 0;
        foreach (string link in Directory.GetFiles("/proc/self/fd"))
        {
            try
            {
                if (new FileInfo(link).LinkTarget == "anon_inode:[io_uring]")
                {
                    count++;
                }
            }
            catch (IOException)
            {
                // The fd closed between listing and readlink.
            }
        }
        return count;
    }
}
