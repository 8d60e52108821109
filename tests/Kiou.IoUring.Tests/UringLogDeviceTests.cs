using Kiou.IoUring.Interop;
using Kiou.Storage.Devices;
using Microsoft.Win32.SafeHandles;

namespace Kiou.IoUring.Tests;

public class UringLogDeviceTests
{
    private sealed class Callback : ILogDeviceCallback
    {
        private readonly CountdownEvent _pending;
        public readonly int[] WriteCalls;
        public readonly int[] WriteResults;
        public readonly int[] FlushCalls;
        public readonly int[] FlushResults;
        public int ThreadId;

        public Callback(int tokens, int expectedCallbacks)
        {
            WriteCalls = new int[tokens];
            WriteResults = new int[tokens];
            FlushCalls = new int[tokens];
            FlushResults = new int[tokens];
            _pending = new CountdownEvent(expectedCallbacks);
        }

        public void OnWriteDone(long token, int result)
        {
            Interlocked.Increment(ref WriteCalls[token]);
            WriteResults[token] = result;
            ThreadId = Environment.CurrentManagedThreadId;
            _pending.Signal();
        }

        public void OnFlushDone(long token, int result)
        {
            Interlocked.Increment(ref FlushCalls[token]);
            FlushResults[token] = result;
            _pending.Signal();
        }

        public void Wait() => Assert.True(_pending.Wait(TimeSpan.FromSeconds(30)), "callbacks missing");
    }

    private static UringLogDevice Create()
    {
        UringLogDevice? device = UringLogDevice.TryCreate(out string? whyNot);
        Assert.True(device is not null, whyNot);
        Assert.Null(whyNot);
        return device;
    }

    [UringFact]
    public void TryCreate_succeeds_here_and_reports_io_uring_mode()
    {
        using UringLogDevice device = Create();
        Assert.Equal("io_uring", device.Mode);
        Assert.Equal(1, TestData.CountRingFds());
    }

    [UringFact]
    public void Writes_report_the_whole_buffer_and_land_at_their_positions()
    {
        using var dir = new TempDirectory();
        string path = dir.File("00000000000000000000.log");
        int[] sizes = [1, 100, 4096, 65_536, 1 << 20];
        byte[][] chunks = sizes.Select((s, i) => TestData.Pattern(s, i)).ToArray();
        var callback = new Callback(sizes.Length, sizes.Length);

        using (SafeFileHandle file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write))
        using (UringLogDevice device = Create())
        {
            long position = 0;
            for (int i = 0; i < chunks.Length; i++)
            {
                device.Write(file, position, chunks[i], callback, i);
                position += chunks[i].Length;
            }
            callback.Wait();
        }

        Assert.Equal(sizes, callback.WriteResults);
        Assert.All(callback.WriteCalls, c => Assert.Equal(1, c));
        Assert.Equal(chunks.SelectMany(c => c).ToArray(), File.ReadAllBytes(path));
    }

    [UringFact]
    public void A_short_write_is_resubmitted_and_reported_as_whole()
    {
        using var dir = new TempDirectory();
        string path = dir.File("short.log");
        byte[] data = TestData.Pattern(100_000, 4);
        var callback = new Callback(1, 1);

        using (SafeFileHandle file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write))
        using (var device = new UringLogDevice(new RingWorker(new RingWorkerOptions { WriteBytesMaxForTest = 4096 })))
        {
            device.Write(file, 0, data, callback, 0);
            callback.Wait();
        }

        Assert.Equal(100_000, callback.WriteResults[0]);
        Assert.Equal(data, File.ReadAllBytes(path));
    }

    [UringFact]
    public void Flush_after_completed_writes_reports_zero()
    {
        using var dir = new TempDirectory();
        using SafeFileHandle file = File.OpenHandle(dir.File("flush.log"), FileMode.CreateNew, FileAccess.Write);
        using UringLogDevice device = Create();
        var writes = new Callback(1, 1);
        device.Write(file, 0, new byte[8192], writes, 0);
        writes.Wait();

        var flush = new Callback(1, 1);
        device.Flush(file, flush, 0);
        flush.Wait();

        Assert.Equal(1, flush.FlushCalls[0]);
        Assert.Equal(0, flush.FlushResults[0]);
    }

    [UringFact]
    public void A_failing_write_reports_negative_errno()
    {
        using var dir = new TempDirectory();
        string path = dir.File("ro.log");
        File.WriteAllBytes(path, new byte[4]);
        using SafeFileHandle file = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        using UringLogDevice device = Create();
        var callback = new Callback(1, 1);

        device.Write(file, 0, new byte[4], callback, 0);
        callback.Wait();

        Assert.Equal(-Errno.EBADF, callback.WriteResults[0]);
    }

    [UringFact]
    public void Concurrent_writers_and_flushes_each_get_exactly_one_callback_on_the_device_thread()
    {
        using var dir = new TempDirectory();
        string path = dir.File("concurrent.log");
        const int threads = 4;
        const int perThread = 500;
        const int size = 1000;
        byte[] expected = TestData.Pattern(threads * perThread * size, 11);
        int tokens = threads * perThread;
        var callback = new Callback(tokens, tokens + threads);

        using (SafeFileHandle file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write))
        using (UringLogDevice device = Create())
        {
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
            {
                for (int i = 0; i < perThread; i++)
                {
                    int token = (t * perThread) + i;
                    device.Write(file, (long)token * size, expected.AsMemory(token * size, size), callback, token);
                }
                device.Flush(file, callback, t);
            });
            callback.Wait();
            Assert.NotEqual(Environment.CurrentManagedThreadId, callback.ThreadId);
        }

        Assert.All(callback.WriteCalls, c => Assert.Equal(1, c));
        Assert.All(callback.WriteResults, r => Assert.Equal(size, r));
        Assert.Equal(threads, callback.FlushCalls.Sum());
        Assert.Equal(expected, File.ReadAllBytes(path));
    }

    [UringFact]
    public void Dispose_closes_the_ring_fd()
    {
        UringLogDevice device = Create();
        Assert.Equal(1, TestData.CountRingFds());
        device.Dispose();
        Assert.Equal(0, TestData.CountRingFds());
    }
}

public class UringLogDeviceFallbackTests
{
    // A plain fact: where io_uring is refused (run the suite under a seccomp filter to see it) this checks the
    // fallback path; where it works, the success path.
    [Fact]
    public void TryCreate_gives_a_device_or_null_with_a_one_line_reason()
    {
        bool usable = IoUringSupport.TryProbeSetup(out string? probeWhyNot);
        using UringLogDevice? device = UringLogDevice.TryCreate(out string? whyNot);

        if (usable)
        {
            Assert.NotNull(device);
            Assert.Null(whyNot);
        }
        else
        {
            Assert.Null(device);
            Assert.False(string.IsNullOrWhiteSpace(whyNot));
            Assert.DoesNotContain('\n', whyNot);
            Assert.Contains(probeWhyNot!, whyNot, StringComparison.Ordinal);
        }
    }
}
