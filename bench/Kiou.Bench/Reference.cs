using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Kiou.Bench;

/// <summary>The machine's own limits, measured in the same run as the broker so that ratios mean something.</summary>
static class Reference
{
    /// <summary>Loopback TCP throughput of a plain socket pump (one sender, one receiver), MB/s.</summary>
    public static double LoopbackMBps(TimeSpan duration, int chunkBytes = 1 << 20)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        client.Connect(listener.LocalEndPoint!);
        using var server = listener.Accept();
        long received = 0;
        var reader = new Thread(() =>
        {
            var buf = new byte[chunkBytes];
            int n;
            while ((n = server.Receive(buf)) > 0)
                received += n;
        });
        reader.Start();
        var chunk = new byte[chunkBytes];
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < duration)
            client.Send(chunk);
        client.Shutdown(SocketShutdown.Send);
        reader.Join();
        return received / sw.Elapsed.TotalSeconds / 1e6;
    }

    /// <summary>Sequential buffered writes of <paramref name="writeBytes"/> appended to a new file, with an fdatasync after
    /// every <paramref name="syncEveryBytes"/> (0: never), MB/s.</summary>
    /// <remarks>Appending, like the broker: every write allocates new page-cache pages and (delayed) blocks. On the
    /// 2-core VM of BENCHMARKS.md that, not the disk, is the limit (a few hundred MB/s, varying with what else runs),
    /// while overwriting pages already cached runs at several GB/s; so "buffered" can come out below "fdatasync each"
    /// (dd shows the same). See docs/design/io_uring.md.</remarks>
    public static double DiskWriteMBps(string dir, int writeBytes, long syncEveryBytes, TimeSpan duration)
    {
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, "kiou-bench-disk-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var chunk = new byte[writeBytes];
            Random.Shared.NextBytes(chunk);
            using var fs = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1, FileOptions.None);
            long written = 0, sinceSync = 0;
            var sw = Stopwatch.StartNew();
            while (sw.Elapsed < duration)
            {
                fs.Write(chunk);
                written += chunk.Length;
                sinceSync += chunk.Length;
                if (syncEveryBytes > 0 && sinceSync >= syncEveryBytes)
                {
                    fs.Flush(flushToDisk: true);
                    sinceSync = 0;
                }
            }
            if (syncEveryBytes > 0)
                fs.Flush(flushToDisk: true);
            return written / sw.Elapsed.TotalSeconds / 1e6;
        }
        finally
        {
            File.Delete(path);
        }
    }
}
