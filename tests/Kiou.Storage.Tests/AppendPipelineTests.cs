using Kiou.Protocol.Records;
using Kiou.Storage.Devices;
using Kiou.Storage.Tests.Support;
using Kiou.Testing;

namespace Kiou.Storage.Tests;

/// <summary>
/// The append pipeline's edges: a step that throws while an append is being set up leaves the tails, the in-flight
/// queue and the pool as they were; and a producer copying into the O_DIRECT write-behind never holds up the
/// completions of other appends (the ring thread publishes them all).
/// </summary>
public sealed class AppendPipelineTests : IDisposable
{
    private readonly LogFixture _f = new(direct: true);

    public void Dispose() => _f.Dispose();

    // Bounded: a log left with a stuck append would wait for it forever at close. After a failed assertion the
    // close is only attempted (its timeout would hide the assertion); at the end of a passing test it must finish.
    private static async Task CloseAsync(PartitionLog log) => await log.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));

    private static async Task TryCloseAsync(PartitionLog log) => await Task.WhenAny(log.DisposeAsync().AsTask(), Task.Delay(TimeSpan.FromSeconds(10)));

    [Fact]
    public async Task StagingThrows_TailsQueueAndPoolUnchanged_NextAppendLandsAtTheSameOffset()
    {
        PartitionLog log = _f.Open();
        try
        {
            List<byte[]> before = await LogFixture.AppendMany(log, 3, recordsPerBatch: 2);
            long end = log.LogEndOffset;
            long durable = log.DurableOffset;
            Assert.Equal(6, end);

            log.OnStaging = static () => throw new OutOfMemoryException("injected: no staging memory");
            var ex = await Assert.ThrowsAsync<StorageException>(async () => await log.AppendAsync(BatchBuilder.Simple(4), waitDurable: false));
            Assert.Contains("demo-0", ex.Message);
            Assert.Contains("not stored, retry", ex.Message);
            Assert.IsType<OutOfMemoryException>(ex.InnerException);

            Assert.Equal(end, log.LogEndOffset);
            Assert.Equal(end, log.HighWatermark);
            Assert.Equal(durable, log.DurableOffset);
            Assert.Equal(0, log.PendingCount);
            Assert.False(log.IsFailed);
            log.CheckInvariants(); // includes: no in-flight append is also in the pool

            log.OnStaging = null;
            byte[] next = BatchBuilder.Simple(3);
            AppendResult r = await log.AppendAsync(next, waitDurable: true).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(end, r.BaseOffset);
            Assert.Equal(end + 3, log.HighWatermark);
            Assert.Equal(end + 3, log.DurableOffset);
            Assert.Equal([.. before, next], LogFixture.ReadAll(log, 0));
            log.CheckInvariants();
            await CloseAsync(log);
        }
        finally
        {
            await TryCloseAsync(log);
        }
    }

    [Fact]
    public async Task StagingThrows_UnderLoad_NoAppendIsLostOrAnsweredTwice()
    {
        PartitionLog log = _f.Open(new LogConfig { SegmentBytes = 256 << 10 });
        try
        {
            int calls = 0;
            log.OnStaging = () =>
            {
                if (Interlocked.Increment(ref calls) % 3 == 0)
                {
                    throw new OutOfMemoryException("injected");
                }
            };

            var stored = new System.Collections.Concurrent.ConcurrentDictionary<long, byte[]>();
            int failed = 0;
            await Parallel.ForEachAsync(Enumerable.Range(0, 300), new ParallelOptions { MaxDegreeOfParallelism = 6 }, async (i, _) =>
            {
                byte[] batch = BatchBuilder.Simple(1 + (i % 3), valueBytes: 100 + (i * 37 % 3000));
                try
                {
                    AppendResult r = await log.AppendAsync(batch, waitDurable: false);
                    Assert.True(stored.TryAdd(r.BaseOffset, batch));
                }
                catch (StorageException ex) when (ex.InnerException is OutOfMemoryException)
                {
                    Interlocked.Increment(ref failed);
                }
            }).WaitAsync(TimeSpan.FromSeconds(30));

            Assert.True(failed > 0);
            Assert.Equal(0, log.PendingCount);
            Assert.Equal(log.LogEndOffset, log.HighWatermark);
            log.CheckInvariants();
            Assert.Equal(stored.OrderBy(kv => kv.Key).Select(kv => kv.Value).ToList(), LogFixture.ReadAll(log, 0));
            await CloseAsync(log);
        }
        finally
        {
            await TryCloseAsync(log);
        }
    }

    [Fact]
    public async Task CopyThrowsAfterTheReservation_AppendFailsThroughItsTask_PartitionResumesAtTheSameOffset()
    {
        PartitionLog log = _f.Open();
        try
        {
            List<byte[]> before = await LogFixture.AppendMany(log, 2);
            log.OnCopying = static () => throw new InvalidOperationException("injected: copy failed");
            var ex = await Assert.ThrowsAsync<StorageException>(async () => await log.AppendAsync(BatchBuilder.Simple(2), waitDurable: false));
            Assert.Contains("demo-0", ex.Message);
            Assert.True(log.IsFailed);
            Assert.Equal(2, log.HighWatermark);
            Assert.Equal(0, log.PendingCount);
            Assert.Contains(_f.Lines, l => l.Contains("injected: copy failed") && l.Contains("write-behind"));
            log.CheckInvariants();

            log.OnCopying = null;
            byte[] next = BatchBuilder.Simple(1);
            Assert.Equal(2, (await log.AppendAsync(next, waitDurable: false).AsTask().WaitAsync(TimeSpan.FromSeconds(10))).BaseOffset);
            Assert.False(log.IsFailed);
            Assert.Equal([.. before, next], LogFixture.ReadAll(log, 0));
            log.CheckInvariants();
            await CloseAsync(log);
        }
        finally
        {
            await TryCloseAsync(log);
        }
    }

    [Fact]
    public async Task CopiesLandOutOfOrder_NothingIsWrittenPastAGap_BytesOnDiskAreExact()
    {
        using var f = new LogFixture(direct: true, directMinRoundBytes: 0); // every round O_DIRECT, padded to a page
        PartitionLog log = f.Open();
        try
        {
            byte[] first = BatchBuilder.Simple(1, valueBytes: 100);
            await log.AppendAsync(first, waitDurable: false);

            // The next append blocks in its copy; the one after it copies at once, into the same page.
            int copies = 0;
            using var inCopy = new ManualResetEventSlim();
            using var release = new ManualResetEventSlim();
            log.OnCopying = () =>
            {
                if (Interlocked.Increment(ref copies) == 1)
                {
                    inCopy.Set();
                    release.Wait(TimeSpan.FromSeconds(30));
                }
            };
            byte[] slow = BatchBuilder.Simple(2, valueBytes: 5000);
            byte[] fast = BatchBuilder.Simple(1, valueBytes: 3000);
            Task<AppendResult> slowTask = Task.Run(async () => await log.AppendAsync(slow, waitDurable: false));
            Assert.True(inCopy.Wait(TimeSpan.FromSeconds(10)));
            Task<AppendResult> fastTask = log.AppendAsync(fast, waitDurable: false).AsTask();

            await Task.Delay(50);
            Assert.False(fastTask.IsCompleted); // copied, but behind a copy still under way: no round may carry it
            Assert.Equal(1, log.HighWatermark);
            Assert.Equal(4, log.LogEndOffset);

            release.Set();
            Assert.Equal(1, (await slowTask.WaitAsync(TimeSpan.FromSeconds(10))).BaseOffset);
            Assert.Equal(3, (await fastTask.WaitAsync(TimeSpan.FromSeconds(10))).BaseOffset);
            Assert.Equal([first, slow, fast], LogFixture.ReadAll(log, 0));
            log.CheckInvariants();
            await CloseAsync(log);

            await using PartitionLog reopened = f.Open();
            Assert.Equal(4, reopened.HighWatermark);
            Assert.Equal([first, slow, fast], LogFixture.ReadAll(reopened, 0));
        }
        finally
        {
            await TryCloseAsync(log);
        }
    }

    [UringTheory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task RealRing_ManyProducersAndPartitions_CopiesOutsideTheLock_ReadBackExactly(bool waitDurable)
    {
        UringLogDevice? device = UringLogDevice.TryCreate(UringWriteMode.Direct, out string? whyNot);
        Assert.True(device is not null, whyNot);
        using UringLogDevice ring = device;
        var config = new LogConfig { SegmentBytes = 2 << 20 };
        var logs = new PartitionLog[3];
        for (int p = 0; p < logs.Length; p++)
        {
            logs[p] = PartitionLog.Open(_f.DataDir, "ring", p, config, ring, _f.Time, _f.Lines.Enqueue);
        }

        var stored = new System.Collections.Concurrent.ConcurrentDictionary<(int, long), byte[]>();
        int[] sizes = [10, 700, 4096, 5000, 70_000, 150_000];
        await Parallel.ForEachAsync(Enumerable.Range(0, 120), new ParallelOptions { MaxDegreeOfParallelism = 6 }, async (i, _) =>
        {
            int p = i % logs.Length;
            byte[] batch = BatchBuilder.Simple(1 + (i % 2), valueBytes: sizes[i * 7 % sizes.Length]);
            AppendResult r = await logs[p].AppendAsync(batch, waitDurable);
            Assert.True(stored.TryAdd((p, r.BaseOffset), batch));
        }).WaitAsync(TimeSpan.FromSeconds(60));

        for (int p = 0; p < logs.Length; p++)
        {
            var expected = stored.Where(kv => kv.Key.Item1 == p).OrderBy(kv => kv.Key.Item2).Select(kv => kv.Value).ToList();
            Assert.Equal(expected, LogFixture.ReadAll(logs[p], 0));
            Assert.Equal(logs[p].LogEndOffset, logs[p].HighWatermark);
            logs[p].CheckInvariants();
            await CloseAsync(logs[p]);

            await using PartitionLog reopened = PartitionLog.Open(_f.DataDir, "ring", p, config, _f.Device, _f.Time, _f.Lines.Enqueue);
            Assert.Equal(expected, LogFixture.ReadAll(reopened, 0));
        }
    }

    [UringFact]
    public async Task RealRing_AnIdlePartitionsSmallAppendIsAnsweredBeforeAppendAsyncReturns_AndBytesReachTheFile()
    {
        // Light load: an append that finds its partition idle writes its small round itself, so the produce handler
        // never waits for a hop to the ring thread and back (docs/design/io_uring.md, "Idle partitions").
        UringLogDevice? device = UringLogDevice.TryCreate(UringWriteMode.Direct, out string? whyNot);
        Assert.True(device is not null, whyNot);
        using UringLogDevice ring = device;
        var expected = new List<byte[]>();
        await using (PartitionLog log = PartitionLog.Open(_f.DataDir, "idle", 0, new LogConfig(), ring, _f.Time, _f.Lines.Enqueue))
        {
            for (int i = 0; i < 20; i++)
            {
                byte[] batch = BatchBuilder.Simple(2, valueBytes: 100 + i);
                ValueTask<AppendResult> append = log.AppendAsync(batch, waitDurable: false);
                Assert.True(append.IsCompleted, $"append {i} of an idle partition was not answered on the appender's thread");
                Assert.Equal(2L * i, (await append).BaseOffset);
                expected.Add(batch);
            }

            Assert.Equal(40, log.HighWatermark);
            log.CheckInvariants();
        }

        await using PartitionLog reopened = PartitionLog.Open(_f.DataDir, "idle", 0, new LogConfig(), _f.Device, _f.Time, _f.Lines.Enqueue);
        Assert.Equal(expected, LogFixture.ReadAll(reopened, 0));
    }

    [Fact]
    public async Task ProducerBlockedInItsCopy_DoesNotHoldUpCompletionsOfItsOwnOrOtherPartitions()
    {
        using var device = new SerialCompletionDevice(new SyncLogDevice()) { DirectWrites = true, DirectMinRoundBytes = 0 };
        PartitionLog a = PartitionLog.Open(_f.DataDir, "a", 0, new LogConfig(), device, _f.Time, _f.Lines.Enqueue);
        PartitionLog b = PartitionLog.Open(_f.DataDir, "b", 0, new LogConfig(), device, _f.Time, _f.Lines.Enqueue);
        try
        {

            // A's first append is written by the "ring" thread only once it resumes.
            device.Pause();
            byte[] first = BatchBuilder.Simple(2);
            Task<AppendResult> a1 = a.AppendAsync(first, waitDurable: false).AsTask();

            // A's second append blocks in its copy.
            using var inCopy = new ManualResetEventSlim();
            using var release = new ManualResetEventSlim();
            a.OnCopying = () =>
            {
                inCopy.Set();
                release.Wait(TimeSpan.FromSeconds(30));
            };
            byte[] second = BatchBuilder.Simple(1, valueBytes: 300_000);
            Task<AppendResult> a2 = Task.Run(async () => await a.AppendAsync(second, waitDurable: false));
            Assert.True(inCopy.Wait(TimeSpan.FromSeconds(10)), "the second append never reached its copy");

            byte[] other = BatchBuilder.Simple(1);
            Task<AppendResult> b1 = b.AppendAsync(other, waitDurable: false).AsTask();
            device.Resume();
            try
            {
                // The ring thread completes A's first write, then B's: neither waits for A's copy.
                Task both = Task.WhenAll(a1, b1);
                Task done = await Task.WhenAny(both, Task.Delay(TimeSpan.FromSeconds(5)));
                Assert.True(done == both, "completions waited for a producer's copy of another append");
                Assert.Equal(0, (await a1).BaseOffset);
                Assert.Equal(0, (await b1).BaseOffset);
                Assert.Equal(2, a.HighWatermark);
                Assert.False(a2.IsCompleted);
            }
            finally
            {
                release.Set();
            }

            Assert.Equal(2, (await a2.WaitAsync(TimeSpan.FromSeconds(10))).BaseOffset);
            Assert.Equal([first, second], LogFixture.ReadAll(a, 0));
            Assert.Equal([other], LogFixture.ReadAll(b, 0));
            a.CheckInvariants();
            b.CheckInvariants();
            await CloseAsync(a);
            await CloseAsync(b);
        }
        finally
        {
            device.Resume();
            await TryCloseAsync(a);
            await TryCloseAsync(b);
        }
    }
}
