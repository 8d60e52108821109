using System.Collections.Concurrent;
using Kiou.IoUring.Interop;
using Microsoft.Win32.SafeHandles;

namespace Kiou.IoUring.Tests;

public class RingWorkerTests
{
    /// <summary>Counts completions per token and remembers results and the thread they ran on.</summary>
    private sealed class Recorder : IRingCallback
    {
        private readonly CountdownEvent _pending;
        public readonly int[] Calls;
        public readonly int[] Results;
        public readonly ConcurrentBag<int> ThreadIds = new();
        public Action<RingOperation, long, int>? OnEach;

        public Recorder(int count)
        {
            Calls = new int[count];
            Results = new int[count];
            _pending = new CountdownEvent(count);
        }

        public void OnRingCompletion(RingOperation operation, object? state, long token, int result)
        {
            Interlocked.Increment(ref Calls[token]);
            Results[token] = result;
            ThreadIds.Add(Environment.CurrentManagedThreadId);
            OnEach?.Invoke(operation, token, result);
            _pending.Signal();
        }

        public void Wait() => Assert.True(_pending.Wait(TimeSpan.FromSeconds(30)), "completions missing");
    }

    [UringTheory]
    [InlineData(true, false)]
    [InlineData(false, false)]
    [InlineData(true, true)]
    public void Many_submitting_threads_get_every_completion_exactly_once(bool singleIssuer, bool inlineWrites)
    {
        using var dir = new TempDirectory();
        string path = dir.File("mpsc.log");
        const int threads = 8;
        const int perThread = 2000;
        const int size = 512;
        byte[] expected = TestData.Pattern(threads * perThread * size, seed: 5);
        var recorder = new Recorder(threads * perThread);
        int workerThreadId = 0;

        using (SafeFileHandle file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write))
        {
            // A small SQ, op table and queue so that SQ-full, all-slots-in-flight and queue-full all happen.
            using var worker = new RingWorker(new RingWorkerOptions { Entries = 16, QueueCapacity = 64, SingleIssuer = singleIssuer, InlineWrites = inlineWrites });
            using var go = new Barrier(threads);
            var producers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
            {
                go.SignalAndWait();
                for (int i = 0; i < perThread; i++)
                {
                    int token = (t * perThread) + i;
                    worker.Enqueue(RingRequest.Write(file, expected.AsMemory(token * size, size), (long)token * size, recorder, null, token));
                }
            })).ToList();
            producers.ForEach(p => p.Start());
            producers.ForEach(p => p.Join());
            recorder.Wait();
            workerThreadId = recorder.ThreadIds.First();
        }

        Assert.All(recorder.Calls, calls => Assert.Equal(1, calls));
        Assert.All(recorder.Results, result => Assert.Equal(size, result));
        Assert.All(recorder.ThreadIds, id => Assert.Equal(workerThreadId, id));
        Assert.Equal(expected, File.ReadAllBytes(path));
    }

    [UringFact]
    public void Everything_queued_while_the_worker_is_busy_goes_in_one_enter()
    {
        using var dir = new TempDirectory();
        using SafeFileHandle file = File.OpenHandle(dir.File("batch.log"), FileMode.CreateNew, FileAccess.Write);
        // Not merged into WRITEVs here: this test counts SQEs per enter.
        using var worker = new RingWorker(new RingWorkerOptions { Entries = 128, CoalesceWrites = false });
        using var holdWorker = new ManualResetEventSlim();
        using var workerHeld = new ManualResetEventSlim();
        var first = new Recorder(1)
        {
            // Test only: callbacks must not block. This one parks the worker so requests pile up.
            OnEach = (_, _, _) =>
            {
                workerHeld.Set();
                holdWorker.Wait();
            },
        };
        var rest = new Recorder(100);
        byte[] data = TestData.Pattern(4096, 1);

        worker.Enqueue(RingRequest.Write(file, data, 0, first, null, 0));
        workerHeld.Wait();
        for (int i = 0; i < 100; i++)
        {
            worker.Enqueue(RingRequest.Write(file, data, 4096L * (i + 1), rest, null, i));
        }
        holdWorker.Set();
        rest.Wait();
        first.Wait();

        Assert.True(worker.LargestBatch >= 100, $"largest batch {worker.LargestBatch}");
    }

    // Parks the worker in the first write's callback, then queues `writes` while it is held.
    private static void QueueWhileHeld(RingWorker worker, SafeFileHandle file, Recorder rest, Action queue)
    {
        using var holdWorker = new ManualResetEventSlim();
        using var workerHeld = new ManualResetEventSlim();
        var first = new Recorder(1)
        {
            // Test only: callbacks must not block. This one parks the worker so requests pile up.
            OnEach = (_, _, _) =>
            {
                workerHeld.Set();
                holdWorker.Wait();
            },
        };
        worker.Enqueue(RingRequest.Write(file, new byte[1], 1L << 30, first, null, 0));
        workerHeld.Wait();
        queue();
        holdWorker.Set();
        rest.Wait();
        first.Wait();
    }

    [UringTheory]
    [InlineData(0, false)]
    [InlineData(3000, false)]
    [InlineData(0, true)]
    [InlineData(3000, true)]
    public void Adjacent_writes_queued_together_become_writevs_and_each_gets_its_own_completion(int writeBytesMax, bool inlineWrites)
    {
        using var dir = new TempDirectory();
        string path = dir.File("merged.log");
        const int count = 100;
        byte[] expected = TestData.Pattern(count * 1000, 3);
        var rest = new Recorder(count);
        long coalesced;
        using (SafeFileHandle file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write))
        using (var worker = new RingWorker(new RingWorkerOptions { Entries = 64, WriteBytesMaxForTest = writeBytesMax, InlineWrites = inlineWrites }))
        {
            QueueWhileHeld(worker, file, rest, () =>
            {
                for (int i = 0; i < count; i++)
                {
                    worker.Enqueue(RingRequest.Write(file, expected.AsMemory(i * 1000, 1000), i * 1000L, rest, null, i));
                }
            });
            coalesced = worker.CoalescedWrites;
        }

        Assert.All(rest.Calls, calls => Assert.Equal(1, calls));
        Assert.All(rest.Results, result => Assert.Equal(1000, result));
        Assert.True(coalesced >= count - 1, $"only {coalesced} of {count} adjacent writes were merged");
        Assert.Equal(expected, File.ReadAllBytes(path).AsSpan(0, expected.Length).ToArray());
    }

    [UringFact]
    public void Writes_with_a_gap_or_an_fsync_between_them_are_not_merged()
    {
        using var dir = new TempDirectory();
        string path = dir.File("gaps.log");
        var rest = new Recorder(5);
        var order = new ConcurrentQueue<long>();
        rest.OnEach = (_, token, _) => order.Enqueue(token);
        byte[] data = TestData.Pattern(100, 4);
        long coalesced;
        using (SafeFileHandle file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write))
        using (var worker = new RingWorker(new RingWorkerOptions { Entries = 64 }))
        {
            QueueWhileHeld(worker, file, rest, () =>
            {
                worker.Enqueue(RingRequest.Write(file, data, 0, rest, null, 0));
                worker.Enqueue(RingRequest.Write(file, data, 200, rest, null, 1)); // gap at 100..199
                worker.Enqueue(RingRequest.Fsync(file, dataSync: true, rest, null, 2));
                worker.Enqueue(RingRequest.Write(file, data, 300, rest, null, 3)); // adjacent to 1, but after the fsync
                worker.Enqueue(RingRequest.Write(file, data, 500, rest, null, 4));
            });
            coalesced = worker.CoalescedWrites;
        }

        Assert.Equal(0, coalesced);
        Assert.Equal([100, 100, 0, 100, 100], rest.Results);
    }

    [UringTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_merged_write_that_fails_fails_every_write_in_it(bool inlineWrites)
    {
        using var dir = new TempDirectory();
        string path = dir.File("readonly.log");
        File.WriteAllBytes(path, new byte[10]);
        var rest = new Recorder(8);
        long coalesced;
        using (SafeFileHandle file = File.OpenHandle(path, FileMode.Open, FileAccess.Read))
        using (var worker = new RingWorker(new RingWorkerOptions { Entries = 64, InlineWrites = inlineWrites }))
        {
            QueueWhileHeld(worker, file, rest, () =>
            {
                for (int i = 0; i < 8; i++)
                {
                    worker.Enqueue(RingRequest.Write(file, new byte[64], i * 64L, rest, null, i));
                }
            });
            coalesced = worker.CoalescedWrites;
        }

        Assert.True(coalesced >= 7, $"only {coalesced} merged");
        Assert.All(rest.Results, result => Assert.Equal(-Errno.EBADF, result));
    }

    [UringTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_short_write_is_resubmitted_until_the_whole_buffer_is_written(bool inlineWrites)
    {
        using var dir = new TempDirectory();
        string path = dir.File("short.log");
        byte[] data = TestData.Pattern(10_000, 9);
        var recorder = new Recorder(1);
        long sqes;

        using (SafeFileHandle file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write))
        using (var worker = new RingWorker(new RingWorkerOptions { Entries = 4, WriteBytesMaxForTest = 1000, InlineWrites = inlineWrites }))
        {
            long before = worker.SqeCount;
            worker.Enqueue(RingRequest.Write(file, data, 0, recorder, null, 0));
            recorder.Wait();
            sqes = worker.SqeCount - before;
        }

        Assert.Equal(10_000, recorder.Results[0]);
        // Inline: the first 1000 bytes by pwritev on the worker, the rest as SQEs.
        Assert.True(sqes >= (inlineWrites ? 9 : 10), $"only {sqes} SQEs for 10 clamped writes");
        Assert.Equal(data, File.ReadAllBytes(path));
    }

    [UringFact]
    public void Errors_come_back_as_negative_errno_and_fsync_as_zero()
    {
        using var dir = new TempDirectory();
        string readOnlyPath = dir.File("ro.log");
        File.WriteAllBytes(readOnlyPath, new byte[8]);
        var recorder = new Recorder(3);
        using SafeFileHandle readOnly = File.OpenHandle(readOnlyPath, FileMode.Open, FileAccess.Read);
        using SafeFileHandle writable = File.OpenHandle(dir.File("rw.log"), FileMode.CreateNew, FileAccess.ReadWrite);
        using var worker = new RingWorker();

        worker.Enqueue(RingRequest.Write(readOnly, new byte[8], 0, recorder, null, 0));
        worker.Enqueue(RingRequest.Fsync(writable, dataSync: true, recorder, null, 1));
        worker.Enqueue(RingRequest.Read(readOnly, new byte[16], 0, recorder, null, 2));
        recorder.Wait();

        Assert.Equal(-Errno.EBADF, recorder.Results[0]);
        Assert.Equal(0, recorder.Results[1]);
        Assert.Equal(8, recorder.Results[2]); // short read at end of file is not an error
    }

    [UringFact]
    public void Callbacks_may_enqueue_and_dispose_waits_for_the_chain()
    {
        using var dir = new TempDirectory();
        using SafeFileHandle file = File.OpenHandle(dir.File("chain.log"), FileMode.CreateNew, FileAccess.Write);
        var worker = new RingWorker(new RingWorkerOptions { Entries = 4 });
        var done = new ConcurrentQueue<(RingOperation, long, int)>();
        var chain = new Chain(worker, file, done);

        for (int i = 0; i < 20; i++)
        {
            worker.Enqueue(RingRequest.Write(file, new byte[100], 100L * i, chain, null, i));
        }
        worker.Dispose(); // everything enqueued, including what callbacks enqueue while draining, completes first

        Assert.Equal(40, done.Count);
        Assert.Equal(20, done.Count(d => d.Item1 == RingOperation.Fsync && d.Item3 == 0));
        Assert.Equal(20, done.Count(d => d.Item1 == RingOperation.Write && d.Item3 == 100));
        Assert.Throws<ObjectDisposedException>(() => worker.Enqueue(RingRequest.Fsync(file, true, chain, null, 99)));
    }

    private sealed class Chain(RingWorker worker, SafeFileHandle file, ConcurrentQueue<(RingOperation, long, int)> done) : IRingCallback
    {
        public void OnRingCompletion(RingOperation operation, object? state, long token, int result)
        {
            Assert.True(worker.IsWorkerThread);
            done.Enqueue((operation, token, result));
            if (operation == RingOperation.Write)
            {
                worker.Enqueue(RingRequest.Fsync(file, dataSync: true, this, null, token));
            }
        }
    }

    [UringFact]
    public void A_closed_file_handle_is_refused_at_enqueue()
    {
        using var dir = new TempDirectory();
        SafeFileHandle file = File.OpenHandle(dir.File("closed.log"), FileMode.CreateNew, FileAccess.Write);
        file.Dispose();
        using var worker = new RingWorker();

        Assert.Throws<ObjectDisposedException>(() => worker.Enqueue(RingRequest.Write(file, new byte[1], 0, new Recorder(1), null, 0)));
    }

    [UringFact]
    public void A_worker_holds_one_io_uring_fd_until_disposed()
    {
        Assert.Equal(0, TestData.CountRingFds());
        var worker = new RingWorker();
        Assert.Equal(1, TestData.CountRingFds());
        worker.Dispose();
        Assert.Equal(0, TestData.CountRingFds());
    }
}
