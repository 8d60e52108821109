using Kiou.Protocol.Records;
using Kiou.Storage.Tests.Support;
using Kiou.Testing;

namespace Kiou.Storage.Tests;

public sealed class AppendReadTests : IDisposable
{
    private readonly LogFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Fact]
    public void BatchBuilder_MatchesWorkedExample()
    {
        Assert.Equal(Convert.ToHexString(BatchBuilder.WorkedExampleBytes), Convert.ToHexString(BatchBuilder.WorkedExample()));
        Assert.Equal(0, RecordBatch.ValidateForProduce(BatchBuilder.WorkedExample(), 1 << 20, out _));
    }

    [Fact]
    public async Task Open_Empty_CreatesFirstSegment()
    {
        await using PartitionLog log = _f.Open();
        Assert.Equal("demo", log.Topic);
        Assert.Equal(0, log.Partition);
        Assert.Equal(0, log.LogStartOffset);
        Assert.Equal(0, log.HighWatermark);
        Assert.Equal(0, log.LogEndOffset);
        Assert.Equal(0, log.DurableOffset);
        Assert.True(File.Exists(_f.SegmentPath(0)));
        using ReadResult r = log.Read(0, 1000, true);
        Assert.Equal(ReadError.None, r.Error);
        Assert.Equal(0, r.Records.Length);
        log.CheckInvariants();
    }

    [Fact]
    public async Task Append_AssignsDenseOffsets_StampsCallerMemory()
    {
        await using PartitionLog log = _f.Open();
        byte[] a = BatchBuilder.WorkedExample();
        RecordBatch.SetPartitionLeaderEpoch(a, -1);
        byte[] b = BatchBuilder.Simple(5);
        byte[] c = BatchBuilder.Simple(1);
        AppendResult ra = await log.AppendAsync(a, false);
        AppendResult rb = await log.AppendAsync(b, false);
        AppendResult rc = await log.AppendAsync(c, false);
        Assert.Equal(new AppendResult(0, -1, 0), ra);
        Assert.Equal(2, rb.BaseOffset);
        Assert.Equal(7, rc.BaseOffset);
        Assert.Equal(7, RecordBatch.BaseOffset(c));
        Assert.Equal(0, RecordBatch.PartitionLeaderEpoch(a));
        Assert.True(RecordBatch.IsCrcValid(a));
        Assert.Equal(8, log.HighWatermark);
        Assert.Equal(8, log.LogEndOffset);
        Assert.Equal(90 + b.Length + c.Length, log.SizeBytes);
        log.CheckInvariants();

        List<byte[]> read = LogFixture.ReadAll(log, 0);
        Assert.Equal(3, read.Count);
        Assert.Equal(a, read[0]);
        Assert.Equal(b, read[1]);
        Assert.Equal(c, read[2]);
    }

    [Fact]
    public async Task Append_LogAppendTime_StampsTimeAndCrc()
    {
        await using PartitionLog log = _f.Open(new LogConfig { LogAppendTime = true });
        byte[] batch = BatchBuilder.WorkedExample();
        AppendResult r = await log.AppendAsync(batch, false);
        Assert.Equal(_f.Time.NowMs, r.LogAppendTimeMs);
        Assert.Equal(TimestampType.LogAppendTime, RecordBatch.TimestampType(batch));
        Assert.Equal(_f.Time.NowMs, RecordBatch.MaxTimestamp(batch));
        Assert.True(RecordBatch.IsCrcValid(batch));
        Assert.Equal(batch, LogFixture.ReadAll(log, 0)[0]);
    }

    [Fact]
    public async Task Append_RejectsMalformedAndTooLarge()
    {
        await using PartitionLog log = _f.Open(new LogConfig { SegmentBytes = 200 });
        Assert.Throws<ArgumentException>(() => { _ = log.AppendAsync(new byte[10], false); });
        byte[] twoBatches = [.. BatchBuilder.Simple(1), .. BatchBuilder.Simple(1)];
        Assert.Throws<ArgumentException>(() => { _ = log.AppendAsync(twoBatches, false); });
        await Assert.ThrowsAsync<RecordListTooLargeException>(async () => await log.AppendAsync(BatchBuilder.Simple(1, valueBytes: 300), false));
        Assert.Equal(0, log.LogEndOffset);
        log.CheckInvariants();
    }

    [Fact]
    public async Task Read_ReturnsWholeBatchContainingOffset()
    {
        await using PartitionLog log = _f.Open();
        byte[] first = BatchBuilder.Simple(10);
        byte[] second = BatchBuilder.Simple(10);
        await log.AppendAsync(first, false);
        await log.AppendAsync(second, false);
        for (long offset = 0; offset < 20; offset++)
        {
            using ReadResult r = log.Read(offset, first.Length, minOneBatch: true);
            Assert.Equal(ReadError.None, r.Error);
            Assert.Equal(offset < 10 ? first : second, r.Records.ToArray());
            Assert.Equal(20, r.HighWatermark);
            Assert.Equal(0, r.LogStartOffset);
        }
    }

    [Fact]
    public async Task Read_MaxBytes_StopsAtWholeBatches()
    {
        await using PartitionLog log = _f.Open();
        List<byte[]> batches = await LogFixture.AppendMany(log, 10, recordsPerBatch: 1, valueBytes: 30);
        int size = batches[0].Length;
        using (ReadResult r = log.Read(0, size * 3 + size / 2, minOneBatch: true))
        {
            Assert.Equal(size * 3, r.Records.Length);
        }

        using (ReadResult r = log.Read(4, size * 100, minOneBatch: false))
        {
            Assert.Equal(size * 6, r.Records.Length);
            Assert.Equal(4, RecordBatch.BaseOffset(r.Records.Span));
        }
    }

    [Fact]
    public async Task Read_FirstBatchRule()
    {
        await using PartitionLog log = _f.Open();
        byte[] big = BatchBuilder.Simple(3, valueBytes: 500);
        await log.AppendAsync(big, false);
        await LogFixture.AppendMany(log, 2);
        using (ReadResult r = log.Read(1, 100, minOneBatch: true))
        {
            Assert.Equal(big, r.Records.ToArray());
        }

        using (ReadResult r = log.Read(1, 100, minOneBatch: false))
        {
            Assert.Equal(ReadError.None, r.Error);
            Assert.Equal(0, r.Records.Length);
        }

        using (ReadResult r = log.Read(0, 0, minOneBatch: true))
        {
            Assert.Equal(big.Length, r.Records.Length);
        }
    }

    [Fact]
    public async Task Read_OutOfRangeAndAtHighWatermark()
    {
        await using PartitionLog log = _f.Open();
        await LogFixture.AppendMany(log, 3);
        using (ReadResult r = log.Read(3, 1000, true))
        {
            Assert.Equal(ReadError.None, r.Error);
            Assert.Equal(0, r.Records.Length);
            Assert.Equal(3, r.HighWatermark);
        }

        using (ReadResult r = log.Read(4, 1000, true))
        {
            Assert.Equal(ReadError.OffsetOutOfRange, r.Error);
        }

        using (ReadResult r = log.Read(-1, 1000, true))
        {
            Assert.Equal(ReadError.OffsetOutOfRange, r.Error);
        }
    }

    [Fact]
    public async Task Read_NeverPastHighWatermark_WhileWriteInFlight()
    {
        await using PartitionLog log = _f.Open();
        await LogFixture.AppendMany(log, 2);
        _f.Device.HoldWrites = true;
        ValueTask<AppendResult> pending = log.AppendAsync(BatchBuilder.Simple(2), false);
        Assert.Equal(4, log.LogEndOffset);
        Assert.Equal(2, log.HighWatermark);
        using (ReadResult r = log.Read(0, 1 << 20, true))
        {
            Assert.Equal(2, r.HighWatermark);
            Assert.Equal(2, CountBatches(r.Records.Span));
        }

        using (ReadResult r = log.Read(2, 1 << 20, true))
        {
            Assert.Equal(ReadError.None, r.Error); // in flight: empty, as Kafka answers between HW and LEO
            Assert.Equal(0, r.Records.Length);
        }

        Assert.Equal(0, log.BytesAvailable(2));
        Assert.False(pending.IsCompleted);
        _f.Device.ReleaseAllWrites();
        Assert.Equal(2, (await pending).BaseOffset);
        Assert.Equal(4, log.HighWatermark);
        log.CheckInvariants();
    }

    [Fact]
    public async Task Read_ManyBatches_EveryOffsetThroughTheSparseIndex()
    {
        await using PartitionLog log = _f.Open(new LogConfig { IndexIntervalBytes = 256 });
        var batches = new List<byte[]>();
        for (int i = 0; i < 200; i++)
        {
            byte[] b = BatchBuilder.Simple(1 + (i % 4), BatchBuilder.DefaultBaseTimestamp + i, valueBytes: 20 + (i % 7) * 10);
            await log.AppendAsync(b, false);
            batches.Add(b);
        }

        long offset = 0;
        foreach (byte[] b in batches)
        {
            int count = RecordBatch.RecordsCount(b);
            for (int k = 0; k < count; k++)
            {
                using ReadResult r = log.Read(offset + k, b.Length, minOneBatch: true);
                Assert.Equal(b, r.Records.ToArray());
            }

            offset += count;
        }

        Assert.Equal(log.HighWatermark, offset);
        Assert.Equal(batches, LogFixture.ReadAll(log, 0));
    }

    [Fact]
    public async Task BytesAvailable_FromBatchStartToHighWatermark()
    {
        await using PartitionLog log = _f.Open(new LogConfig { IndexIntervalBytes = 100 });
        List<byte[]> batches = await LogFixture.AppendMany(log, 20, recordsPerBatch: 2);
        int size = batches[0].Length;
        Assert.Equal(20 * size, log.BytesAvailable(0));
        Assert.Equal(20 * size, log.BytesAvailable(1));
        Assert.Equal(15 * size, log.BytesAvailable(11));
        Assert.Equal(size, log.BytesAvailable(39));
        Assert.Equal(0, log.BytesAvailable(40));
        Assert.Equal(0, log.BytesAvailable(-5));
    }

    [Fact]
    public async Task WaitForAppend_WokenByPublish()
    {
        await using PartitionLog log = _f.Open();
        Assert.True(log.WaitForAppendAsync(-1, default).IsCompleted);
        Task waiter = log.WaitForAppendAsync(0, default);
        Task waiter2 = log.WaitForAppendAsync(0, default);
        Assert.False(waiter.IsCompleted);
        _f.Device.HoldWrites = true;
        ValueTask<AppendResult> append = log.AppendAsync(BatchBuilder.Simple(1), false);
        await Task.Delay(20);
        Assert.False(waiter.IsCompleted); // reserved is not enough
        _f.Device.ReleaseAllWrites();
        await waiter.WaitAsync(TimeSpan.FromSeconds(10));
        await waiter2.WaitAsync(TimeSpan.FromSeconds(10));
        await append;
        Assert.True(log.WaitForAppendAsync(0, default).IsCompleted);
    }

    [Fact]
    public async Task WaitForAppend_Cancellable()
    {
        await using PartitionLog log = _f.Open();
        using var cts = new CancellationTokenSource();
        Task waiter = log.WaitForAppendAsync(0, cts.Token);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiter);
    }

    [Fact]
    public async Task Read_AfterDispose_Throws()
    {
        PartitionLog log = _f.Open();
        await log.DisposeAsync();
        Assert.Throws<ObjectDisposedException>(() => log.Read(0, 10, true));
        await Assert.ThrowsAsync<StorageException>(async () => await log.AppendAsync(BatchBuilder.Simple(1), false));
    }

    [Fact]
    public async Task DeleteAsync_RemovesDirectory()
    {
        PartitionLog log = _f.Open(new LogConfig { SegmentBytes = 300 });
        await LogFixture.AppendMany(log, 10, valueBytes: 50);
        Assert.True(Directory.Exists(_f.PartitionDir));
        await log.DeleteAsync();
        Assert.False(Directory.Exists(_f.PartitionDir));
    }

    [Fact]
    public async Task DeleteAsync_FailsAppendsStillWaitingForDurability()
    {
        PartitionLog log = _f.Open();
        _f.Device.HoldFlushes = true;
        Task<AppendResult> durable = log.AppendAsync(BatchBuilder.Simple(1), waitDurable: true).AsTask();
        Assert.Equal(1, log.HighWatermark);
        Task delete = log.DeleteAsync();
        await Task.Delay(20);
        Assert.False(delete.IsCompleted); // waits for the flush in flight before closing the files
        _f.Device.HoldFlushes = false;
        _f.Device.ReleaseAllFlushes();
        await delete.WaitAsync(TimeSpan.FromSeconds(10));
        AppendResult r = await durable.WaitAsync(TimeSpan.FromSeconds(10)); // that flush covered it
        Assert.Equal(0, r.BaseOffset);
    }

    private static int CountBatches(ReadOnlySpan<byte> records)
    {
        int n = 0;
        while (records.Length > 0)
        {
            records = records[RecordBatch.TotalSize(records)..];
            n++;
        }

        return n;
    }
}
