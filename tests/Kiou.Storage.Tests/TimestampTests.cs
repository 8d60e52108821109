using Kiou.Protocol.Records;
using Kiou.Storage.Tests.Support;
using Kiou.Testing;

namespace Kiou.Storage.Tests;

/// <summary>ListOffsets by timestamp and max timestamp through the time index.</summary>
public sealed class TimestampTests : IDisposable
{
    private const long T0 = BatchBuilder.DefaultBaseTimestamp;
    private readonly LogFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Fact]
    public async Task Empty_ReturnsMinusOne()
    {
        await using PartitionLog log = _f.Open();
        Assert.Equal((-1L, -1L), log.LookupByTimestamp(0));
        Assert.Equal((-1L, -1L), log.MaxTimestampEntry());
    }

    [Fact]
    public async Task Uncompressed_ExactRecordInsideBatch()
    {
        await using PartitionLog log = _f.Open();
        // Batch 0: offsets 0..4 at T0+0,10,20,30,40. Batch 1: offsets 5..9 at T0+100..140.
        await log.AppendAsync(BatchBuilder.Simple(5, T0, timestampStepMs: 10), false);
        await log.AppendAsync(BatchBuilder.Simple(5, T0 + 100, timestampStepMs: 10), false);
        Assert.Equal((0L, T0), log.LookupByTimestamp(0));
        Assert.Equal((0L, T0), log.LookupByTimestamp(T0));
        Assert.Equal((1L, T0 + 10), log.LookupByTimestamp(T0 + 1));
        Assert.Equal((4L, T0 + 40), log.LookupByTimestamp(T0 + 40));
        Assert.Equal((5L, T0 + 100), log.LookupByTimestamp(T0 + 41));
        Assert.Equal((8L, T0 + 130), log.LookupByTimestamp(T0 + 125));
        Assert.Equal((9L, T0 + 140), log.LookupByTimestamp(T0 + 140));
        Assert.Equal((-1L, -1L), log.LookupByTimestamp(T0 + 141));
        Assert.Equal((9L, T0 + 140), log.MaxTimestampEntry());
    }

    [Fact]
    public async Task OutOfOrderTimestamps_FirstOffsetReachingTarget()
    {
        await using PartitionLog log = _f.Open();
        await log.AppendAsync(BatchBuilder.Build([new TestRecord(50, null, [1]), new TestRecord(0, null, [2])], T0), false);
        await log.AppendAsync(BatchBuilder.Build([new TestRecord(20, null, [3])], T0), false);
        Assert.Equal((0L, T0 + 50), log.LookupByTimestamp(T0 + 30));
        Assert.Equal((0L, T0 + 50), log.LookupByTimestamp(T0 + 1));
        Assert.Equal((0L, T0 + 50), log.MaxTimestampEntry());
    }

    [Fact]
    public async Task MaxTimestamp_ExactRecordAndFirstOfTies()
    {
        await using PartitionLog log = _f.Open();
        await log.AppendAsync(BatchBuilder.Simple(3, T0), false);
        await log.AppendAsync(BatchBuilder.Build([new TestRecord(0, null, [1]), new TestRecord(500, null, [2]), new TestRecord(100, null, [3])], T0), false);
        await log.AppendAsync(BatchBuilder.Build([new TestRecord(500, null, [1])], T0), false);
        Assert.Equal((4L, T0 + 500), log.MaxTimestampEntry());
    }

    [Fact]
    public async Task ManyBatchesAcrossSegments_MatchesLinearScan()
    {
        var config = new LogConfig { SegmentBytes = 2000, IndexIntervalBytes = 120 };
        await using PartitionLog log = _f.Open(config);
        var rng = new Random(7);
        var records = new List<(long Offset, long Timestamp)>();
        long offset = 0;
        long ts = T0;
        for (int b = 0; b < 120; b++)
        {
            int count = rng.Next(1, 4);
            var recs = new TestRecord[count];
            for (int r = 0; r < count; r++)
            {
                // As producers do: baseTimestamp is the first record's; later records may go back in time.
                long recordTs = r == 0 ? ts : ts + rng.Next(-30, 60);
                recs[r] = new TestRecord(recordTs - ts, null, new byte[rng.Next(1, 30)]);
                records.Add((offset + r, recordTs));
            }

            await log.AppendAsync(BatchBuilder.Build(recs, ts), false);
            offset += count;
            ts += 20;
        }

        Assert.True(log.SegmentCount > 2);
        for (long target = T0 - 50; target < ts + 100; target += 7)
        {
            var expected = records.FirstOrDefault(r => r.Timestamp >= target);
            var want = expected == default ? (-1L, -1L) : (expected.Offset, expected.Timestamp);
            Assert.Equal(want, log.LookupByTimestamp(target));
        }

        long max = records.Max(r => r.Timestamp);
        Assert.Equal((records.First(r => r.Timestamp == max).Offset, max), log.MaxTimestampEntry());
    }

    [Fact]
    public async Task LogAppendTime_EveryRecordHasBatchTime()
    {
        await using PartitionLog log = _f.Open(new LogConfig { LogAppendTime = true });
        long t1 = _f.Time.NowMs;
        await log.AppendAsync(BatchBuilder.Simple(3, 5), false);
        _f.Time.Advance(1000);
        await log.AppendAsync(BatchBuilder.Simple(3, 5), false);
        Assert.Equal((0L, t1), log.LookupByTimestamp(0));
        Assert.Equal((0L, t1), log.LookupByTimestamp(t1));
        Assert.Equal((3L, t1 + 1000), log.LookupByTimestamp(t1 + 1));
        Assert.Equal((-1L, -1L), log.LookupByTimestamp(t1 + 1001));
        Assert.Equal((3L, t1 + 1000), log.MaxTimestampEntry());
    }

    [Fact]
    public async Task Compressed_AnswersBatchBaseOffset()
    {
        await using PartitionLog log = _f.Open();
        await log.AppendAsync(BatchBuilder.Simple(2, T0), false);
        // A "gzip" batch: its records are opaque to the log.
        await log.AppendAsync(BatchBuilder.Build([new TestRecord(0, null, [1]), new TestRecord(30, null, [2])], T0 + 100, attributes: 1), false);
        Assert.Equal((2L, T0 + 100), log.LookupByTimestamp(T0 + 2));
        Assert.Equal((2L, T0 + 130), log.LookupByTimestamp(T0 + 110));
        Assert.Equal((2L, T0 + 130), log.MaxTimestampEntry());
    }

    [Fact]
    public async Task NeverAnswersAboveHighWatermark()
    {
        await using PartitionLog log = _f.Open();
        await log.AppendAsync(BatchBuilder.Simple(1, T0), false);
        _f.Device.HoldWrites = true;
        ValueTask<AppendResult> pending = log.AppendAsync(BatchBuilder.Simple(1, T0 + 100), false);
        Assert.Equal((-1L, -1L), log.LookupByTimestamp(T0 + 50));
        Assert.Equal((0L, T0), log.MaxTimestampEntry());
        _f.Device.ReleaseAllWrites();
        await pending;
        Assert.Equal((1L, T0 + 100), log.LookupByTimestamp(T0 + 50));
    }
}
