using System.Collections.Concurrent;
using Kiou.Protocol.Records;
using Kiou.Storage.Tests.Support;
using Kiou.Testing;

namespace Kiou.Storage.Tests;

/// <summary>The three tails: out-of-order completions, concurrency, group commit, flush policies.</summary>
public sealed class TailsTests : IDisposable
{
    private readonly LogFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Fact]
    public async Task OutOfOrderCompletions_PublishedInOffsetOrder()
    {
        await using PartitionLog log = _f.Open();
        _f.Device.HoldWrites = true;
        var batches = new byte[5][];
        var tasks = new Task<AppendResult>[5];
        for (int i = 0; i < 5; i++)
        {
            batches[i] = BatchBuilder.Simple(2);
            tasks[i] = log.AppendAsync(batches[i], false).AsTask();
        }

        Assert.Equal(10, log.LogEndOffset);
        Assert.Equal(0, log.HighWatermark);

        // Complete 4, 3, 2, 1: none may publish while write 0 is outstanding.
        for (int i = 4; i >= 1; i--)
        {
            _f.Device.ReleaseWrite(i);
            Assert.Equal(0, log.HighWatermark);
            log.CheckInvariants();
        }

        await Task.Delay(20);
        Assert.All(tasks, t => Assert.False(t.IsCompleted));
        using (ReadResult r = log.Read(0, 1 << 20, true))
        {
            Assert.Equal(0, r.Records.Length);
        }

        _f.Device.ReleaseWrite(0);
        Assert.Equal(10, log.HighWatermark);
        for (int i = 0; i < 5; i++)
        {
            Assert.Equal(i * 2, (await tasks[i]).BaseOffset);
        }

        Assert.Equal(batches, LogFixture.ReadAll(log, 0));
        log.CheckInvariants();
    }

    [Fact]
    public async Task PartialCompletions_HighWatermarkStopsAtFirstGap()
    {
        await using PartitionLog log = _f.Open();
        _f.Device.HoldWrites = true;
        var tasks = new List<Task<AppendResult>>();
        for (int i = 0; i < 6; i++)
        {
            tasks.Add(log.AppendAsync(BatchBuilder.Simple(1), false).AsTask());
        }

        // Held list order is write order; release 0, 1, then 3, 4 (indexes shift as we remove).
        _f.Device.ReleaseWrite(0); // offset 0
        _f.Device.ReleaseWrite(0); // offset 1
        Assert.Equal(2, log.HighWatermark);
        _f.Device.ReleaseWrite(1); // offset 3
        _f.Device.ReleaseWrite(1); // offset 4
        Assert.Equal(2, log.HighWatermark);
        Assert.Equal(6, log.LogEndOffset);
        Assert.Equal(2, LogFixture.ReadAll(log, 0).Count);
        _f.Device.ReleaseAllWrites();
        await Task.WhenAll(tasks);
        Assert.Equal(6, log.HighWatermark);
        log.CheckInvariants();
    }

    [Fact]
    public async Task ConcurrentAppenders_DenseOffsets_TailsOrdered()
    {
        var config = new LogConfig { SegmentBytes = 64 * 1024, Flush = new FlushPolicy(FlushMode.Always, long.MaxValue, long.MaxValue), IndexIntervalBytes = 512 };
        await using PartitionLog log = _f.Open(config);
        const int Writers = 8;
        const int PerWriter = 150;
        var results = new ConcurrentBag<(long Base, int Count, byte[] Batch)>();
        using var stop = new CancellationTokenSource();
        var violations = new ConcurrentQueue<string>();
        Task checker = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                long start = log.LogStartOffset;
                long durable = log.DurableOffset;
                long hw = log.HighWatermark;
                long leo = log.LogEndOffset;
                if (!(start <= durable && durable <= hw && hw <= leo))
                {
                    violations.Enqueue($"{start} {durable} {hw} {leo}");
                }

                try
                {
                    log.CheckInvariants();
                }
                catch (InvalidOperationException ex)
                {
                    violations.Enqueue(ex.Message);
                }
            }
        });

        var writers = new Task[Writers];
        for (int w = 0; w < Writers; w++)
        {
            int writer = w;
            writers[w] = Task.Run(async () =>
            {
                var rng = new Random(writer);
                for (int i = 0; i < PerWriter; i++)
                {
                    int count = rng.Next(1, 6);
                    byte[] batch = BatchBuilder.Simple(count, valueBytes: rng.Next(1, 200));
                    bool durable = rng.Next(3) == 0;
                    AppendResult r = await log.AppendAsync(batch, durable);
                    if (durable)
                    {
                        Assert.True(log.DurableOffset >= r.BaseOffset + count);
                    }

                    Assert.True(log.HighWatermark >= r.BaseOffset + count);
                    results.Add((r.BaseOffset, count, batch));
                }
            });
        }

        await Task.WhenAll(writers);
        stop.Cancel();
        await checker;
        Assert.Empty(violations);

        var sorted = results.OrderBy(r => r.Base).ToList();
        long expected = 0;
        foreach (var (b, count, _) in sorted)
        {
            Assert.Equal(expected, b);
            expected += count;
        }

        Assert.Equal(expected, log.HighWatermark);
        Assert.Equal(expected, log.LogEndOffset);
        await log.FlushAsync();
        Assert.Equal(expected, log.DurableOffset);
        Assert.True(log.SegmentCount > 1);
        Assert.Equal(sorted.Select(r => r.Batch).ToList(), LogFixture.ReadAll(log, 0));
        log.CheckInvariants();
    }

    [Fact]
    public async Task GroupCommit_ManyDurableAppends_FewFlushes()
    {
        await using PartitionLog log = _f.Open(new LogConfig { Flush = new FlushPolicy(FlushMode.Always, long.MaxValue, long.MaxValue) });
        _f.Device.HoldFlushes = true;
        const int N = 100;
        var tasks = new List<Task<AppendResult>>();
        for (int i = 0; i < N; i++)
        {
            tasks.Add(log.AppendAsync(BatchBuilder.Simple(1), waitDurable: true).AsTask());
        }

        Assert.Equal(N, log.HighWatermark);
        Assert.Equal(0, log.DurableOffset);
        Assert.Equal(1, _f.Device.FlushesIssued); // one in flight, the rest wait for it
        Assert.All(tasks, t => Assert.False(t.IsCompleted));
        _f.Device.ReleaseAllFlushes();
        await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(N, log.DurableOffset);
        Assert.InRange(_f.Device.FlushesIssued, 1, 3);
        log.CheckInvariants();
    }

    [Fact]
    public async Task GroupCommit_ConcurrentDurableAppenders_ShareFlushes()
    {
        await using PartitionLog log = _f.Open(new LogConfig { Flush = new FlushPolicy(FlushMode.Always, long.MaxValue, long.MaxValue) });
        const int Writers = 16;
        const int PerWriter = 50;
        var writers = Enumerable.Range(0, Writers).Select(_ => Task.Run(async () =>
        {
            for (int i = 0; i < PerWriter; i++)
            {
                AppendResult r = await log.AppendAsync(BatchBuilder.Simple(1), waitDurable: true);
                Assert.True(log.DurableOffset > r.BaseOffset);
            }
        })).ToArray();
        await Task.WhenAll(writers);
        Assert.Equal(Writers * PerWriter, log.DurableOffset);
        Assert.True(_f.Device.FlushesIssued < Writers * PerWriter, $"{_f.Device.FlushesIssued} flushes for {Writers * PerWriter} appends");
    }

    [Fact]
    public async Task FlushRoll_NoFlushPerAppend_FlushOnRoll()
    {
        await using PartitionLog log = _f.Open(new LogConfig { SegmentBytes = 1000 });
        byte[] sample = BatchBuilder.Simple(1, valueBytes: 100);
        int perSegment = 1000 / sample.Length;
        await LogFixture.AppendMany(log, perSegment, valueBytes: 100);
        Assert.Equal(0, _f.Device.FlushesIssued);
        Assert.Equal(perSegment, log.HighWatermark);
        await log.AppendAsync(BatchBuilder.Simple(1, valueBytes: 100), false); // rolls
        Assert.Equal(2, log.SegmentCount);
        await WaitUntil(() => log.DurableOffset >= perSegment);
        Assert.True(_f.Device.FlushesIssued >= 1);
        await WaitUntil(() => File.Exists(_f.SegmentPath(0, ".index")) && File.Exists(_f.SegmentPath(0, ".timeindex")));
        log.CheckInvariants();
    }

    [Fact]
    public async Task FlushAsync_MakesCompletedDurable()
    {
        await using PartitionLog log = _f.Open();
        await LogFixture.AppendMany(log, 5);
        Assert.Equal(0, log.DurableOffset);
        await log.FlushAsync();
        Assert.Equal(5, log.DurableOffset);
        int flushes = _f.Device.FlushesIssued;
        await log.FlushAsync(); // nothing new: no flush
        Assert.Equal(flushes, _f.Device.FlushesIssued);
    }

    [Fact]
    public async Task FlushMessages_FlushesAfterThatManyMessages()
    {
        await using PartitionLog log = _f.Open(new LogConfig { Flush = new FlushPolicy(FlushMode.Roll, long.MaxValue, 10) });
        await LogFixture.AppendMany(log, 3, recordsPerBatch: 3);
        Assert.Equal(0, _f.Device.FlushesIssued);
        await log.AppendAsync(BatchBuilder.Simple(1), false);
        await WaitUntil(() => log.DurableOffset == 10);
        Assert.Equal(1, _f.Device.FlushesIssued);
    }

    [Fact]
    public async Task FlushAlways_WithoutWaitDurable_StillFlushes()
    {
        await using PartitionLog log = _f.Open(new LogConfig { Flush = new FlushPolicy(FlushMode.Always, long.MaxValue, long.MaxValue) });
        await LogFixture.AppendMany(log, 3);
        await WaitUntil(() => log.DurableOffset == 3);
    }

    [Fact]
    public async Task WaitDurable_InRollMode_RequestsAFlush()
    {
        await using PartitionLog log = _f.Open();
        AppendResult r = await log.AppendAsync(BatchBuilder.Simple(2), waitDurable: true);
        Assert.Equal(0, r.BaseOffset);
        Assert.Equal(2, log.DurableOffset);
    }

    internal static async Task WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not reached in 10 s");
            await Task.Delay(5);
        }
    }
}
