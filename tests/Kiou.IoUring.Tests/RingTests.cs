using System.IO.Pipes;
using System.Runtime.InteropServices;
using Kiou.IoUring.Interop;

namespace Kiou.IoUring.Tests;

public class RingTests
{
    private static List<Completion> Reap(Ring ring, int expected)
    {
        var all = new List<Completion>(expected);
        var buffer = new Completion[64];
        while (all.Count < expected)
        {
            ring.SubmitAndWait(1);
            int n = ring.Drain(buffer);
            all.AddRange(buffer.AsSpan(0, n).ToArray());
        }
        return all;
    }

    private static int Fd(SafeHandle handle) => (int)handle.DangerousGetHandle();

    [UringFact]
    public void Writes_N_buffers_and_reaps_N_completions_with_the_bytes_on_disk()
    {
        using var dir = new TempDirectory();
        string path = dir.File("n-writes.log");
        const int count = 32;
        const int size = 4096;
        byte[][] chunks = Enumerable.Range(0, count).Select(i => TestData.Pattern(size, i)).ToArray();

        using (var file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write))
        using (var ring = new Ring(new RingOptions { Entries = 64 }))
        {
            for (int i = 0; i < count; i++)
            {
                Assert.True(ring.TryQueueWrite(Fd(file), chunks[i], (long)i * size, userData: (ulong)(1000 + i)));
            }
            Assert.Equal(count, ring.Unsubmitted);
            Assert.Equal(count, ring.Submit());
            List<Completion> completions = Reap(ring, count);

            Assert.Equal(Enumerable.Range(1000, count).Select(i => (ulong)i), completions.Select(c => c.UserData).Order());
            Assert.All(completions, c => Assert.Equal(size, c.Result));
            Assert.Equal(0, ring.InFlight);
        }
        Assert.Equal(chunks.SelectMany(c => c).ToArray(), File.ReadAllBytes(path));
    }

    [UringFact]
    public void More_writes_than_the_SQ_holds_submit_then_retry()
    {
        using var dir = new TempDirectory();
        string path = dir.File("sq-full.log");
        const int count = 1000;
        const int size = 1024;
        byte[] expected = TestData.Pattern(count * size, seed: 3);
        var memory = new ReadOnlyMemory<byte>(expected);

        using (var file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write))
        using (var ring = new Ring(new RingOptions { Entries = 8 }))
        {
            Assert.Equal(8, ring.SqEntries);
            Assert.Equal(16, ring.Capacity);
            int sqFull = 0;
            int slotsFull = 0;
            int completed = 0;
            var buffer = new Completion[16];
            for (int i = 0; i < count; i++)
            {
                while (!ring.TryQueueWrite(Fd(file), memory.Slice(i * size, size), (long)i * size, (ulong)i))
                {
                    if (ring.Unsubmitted == ring.SqEntries)
                    {
                        sqFull++;
                        ring.Submit();
                    }
                    else
                    {
                        slotsFull++;
                        ring.SubmitAndWait(1);
                        int n = ring.Drain(buffer);
                        Assert.All(buffer.Take(n), c => Assert.Equal(size, c.Result));
                        completed += n;
                    }
                }
            }
            ring.Submit();
            List<Completion> rest = Reap(ring, count - completed);
            Assert.All(rest, c => Assert.Equal(size, c.Result));
            Assert.True(sqFull > 0, "the SQ never filled up");
            Assert.True(slotsFull > 0, "the slot table never filled up");
        }
        Assert.Equal(expected, File.ReadAllBytes(path));
    }

    [UringFact]
    public void A_write_to_a_read_only_fd_completes_with_minus_EBADF()
    {
        using var dir = new TempDirectory();
        string path = dir.File("read-only.log");
        File.WriteAllBytes(path, new byte[16]);
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        using var ring = new Ring(new RingOptions { Entries = 4 });

        Assert.True(ring.TryQueueWrite(Fd(file), new byte[16], 0, userData: 7));
        Completion completion = Reap(ring, 1).Single();

        Assert.Equal(7ul, completion.UserData);
        Assert.Equal(-Errno.EBADF, completion.Result);
    }

    [UringFact]
    public void Fsync_and_fdatasync_complete_with_zero()
    {
        using var dir = new TempDirectory();
        using var file = File.OpenHandle(dir.File("fsync.log"), FileMode.CreateNew, FileAccess.Write);
        using var ring = new Ring(new RingOptions { Entries = 4 });

        Assert.True(ring.TryQueueWrite(Fd(file), new byte[4096], 0, userData: 1));
        Assert.Equal(4096, Reap(ring, 1).Single().Result);
        Assert.True(ring.TryQueueFsync(Fd(file), dataSync: true, userData: 2));
        Assert.True(ring.TryQueueFsync(Fd(file), dataSync: false, userData: 3));
        List<Completion> syncs = Reap(ring, 2);

        Assert.Equal([2ul, 3ul], syncs.Select(c => c.UserData).Order());
        Assert.All(syncs, c => Assert.Equal(0, c.Result));
    }

    [UringFact]
    public void Writev_writes_its_buffers_back_to_back_and_read_reads_them()
    {
        using var dir = new TempDirectory();
        using var file = File.OpenHandle(dir.File("writev.log"), FileMode.CreateNew, FileAccess.ReadWrite);
        using var ring = new Ring(new RingOptions { Entries = 4 });
        byte[] a = TestData.Pattern(100, 1);
        byte[] b = TestData.Pattern(3000, 2);
        byte[] c = TestData.Pattern(1, 3);

        Assert.True(ring.TryQueueWritev(Fd(file), [a, b, c], 10, userData: 1));
        Assert.Equal(3101, Reap(ring, 1).Single().Result);
        var back = new byte[3101];
        Assert.True(ring.TryQueueRead(Fd(file), back, 10, userData: 2));
        Assert.Equal(3101, Reap(ring, 1).Single().Result);

        Assert.Equal(a.Concat(b).Concat(c).ToArray(), back);
    }

    [UringFact]
    public void Probe_lists_write_writev_and_fsync()
    {
        using var ring = new Ring(new RingOptions { Entries = 2 });
        RingProbe probe = ring.Probe();

        Assert.True(probe.IsSupported(RingOpcode.Write));
        Assert.True(probe.IsSupported(RingOpcode.Writev));
        Assert.True(probe.IsSupported(RingOpcode.Fsync));
        Assert.True(probe.IsSupported(RingOpcode.Read));
        Assert.True(probe.LastOpcode >= (int)RingOpcode.Write);
        Assert.False(probe.IsSupported(255));
    }

    [UringFact]
    public void An_open_ring_holds_an_io_uring_fd_and_dispose_closes_it()
    {
        int before = TestData.CountRingFds();
        var ring = new Ring(new RingOptions { Entries = 2 });
        int during = TestData.CountRingFds();
        ring.Dispose();
        int after = TestData.CountRingFds();

        Assert.Equal(0, before);
        Assert.Equal(1, during);
        Assert.Equal(0, after);
    }

    [UringFact]
    public void Dispose_cancels_a_read_that_would_never_complete()
    {
        using var server = new AnonymousPipeServerStream(PipeDirection.In);
        using var client = new AnonymousPipeClientStream(PipeDirection.Out, server.ClientSafePipeHandle);
        var ring = new Ring(new RingOptions { Entries = 2 });
        Assert.True(ring.TryQueueRead(Fd(server.SafePipeHandle), new byte[8], 0, userData: 1));
        ring.Submit();
        Assert.Equal(1, ring.InFlight);

        ring.Dispose(); // would hang without IORING_OP_ASYNC_CANCEL

        Assert.Equal(0, TestData.CountRingFds());
    }

    [UringFact]
    public void Ring_rejects_entry_counts_the_kernel_would_refuse()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new Ring(new RingOptions { Entries = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Ring(new RingOptions { Entries = 65536 }));
    }

    [UringFact]
    public void Waiting_for_more_completions_than_in_flight_is_refused()
    {
        using var ring = new Ring(new RingOptions { Entries = 2 });
        Assert.Throws<ArgumentOutOfRangeException>(() => ring.SubmitAndWait(1));
    }

    [UringFact]
    public void Single_issuer_ring_works_on_its_creating_thread()
    {
        using var dir = new TempDirectory();
        using var file = File.OpenHandle(dir.File("single.log"), FileMode.CreateNew, FileAccess.Write);
        using var ring = new Ring(new RingOptions { Entries = 4, SingleIssuer = true });

        Assert.True(ring.TryQueueWrite(Fd(file), new byte[512], 0, userData: 1));
        Assert.True(ring.TryQueueNop(userData: 2));
        List<Completion> completions = Reap(ring, 2);

        Assert.Equal([512, 0], completions.OrderBy(c => c.UserData).Select(c => c.Result));
    }

    [Theory]
    [InlineData(Errno.ENOSYS, "CONFIG_IO_URING")]
    [InlineData(Errno.EPERM, "seccomp")]
    [InlineData(Errno.EPERM, "io_uring_disabled")]
    [InlineData(Errno.ENOMEM, "ulimit -l")]
    public void Setup_failures_name_the_likely_cause(int errno, string expected)
    {
        Assert.Contains(expected, Ring.DescribeSetupFailure(errno, 256), StringComparison.Ordinal);
    }
}
