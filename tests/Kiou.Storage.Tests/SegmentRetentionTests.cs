using Kiou.Protocol.Records;
using Kiou.Storage.Tests.Support;
using Kiou.Testing;

namespace Kiou.Storage.Tests;

/// <summary>Rolling by size and time, and deleting old segments by retention.ms / retention.bytes.</summary>
public sealed class SegmentRetentionTests : IDisposable
{
    private readonly LogFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Fact]
    public async Task Roll_BySegmentBytes()
    {
        byte[] sample = BatchBuilder.Simple(2, valueBytes: 50);
        int perSegment = 1000 / sample.Length;
        await using PartitionLog log = _f.Open(new LogConfig { SegmentBytes = 1000 });
        await LogFixture.AppendMany(log, perSegment * 3 + 1, recordsPerBatch: 2, valueBytes: 50);
        Assert.Equal(new long[] { 0, perSegment * 2, perSegment * 4, perSegment * 6 }, log.SegmentBaseOffsets);
        foreach (long b in log.SegmentBaseOffsets)
        {
            Assert.True(File.Exists(_f.SegmentPath(b)));
            Assert.True(new FileInfo(_f.SegmentPath(b)).Length <= 1000);
        }

        Assert.True(File.Exists(Path.Combine(_f.PartitionDir, "00000000000000000000.log")));
        Assert.Equal(LogFixture.ReadAll(log, 0).Count, perSegment * 3 + 1);
        log.CheckInvariants();
    }

    [Fact]
    public async Task Roll_ExactFit_DoesNotRoll()
    {
        byte[] sample = BatchBuilder.Simple(1);
        await using PartitionLog log = _f.Open(new LogConfig { SegmentBytes = sample.Length * 2 });
        await LogFixture.AppendMany(log, 2);
        Assert.Equal(1, log.SegmentCount);
        await LogFixture.AppendMany(log, 1);
        Assert.Equal(2, log.SegmentCount);
    }

    [Fact]
    public async Task Roll_BatchAsLargeAsSegment_GoesAloneInNewSegment()
    {
        byte[] big = BatchBuilder.Simple(1, valueBytes: 400);
        await using PartitionLog log = _f.Open(new LogConfig { SegmentBytes = big.Length });
        await LogFixture.AppendMany(log, 1);
        await log.AppendAsync(big, false);
        await log.AppendAsync(BatchBuilder.Simple(1, valueBytes: 400), false);
        Assert.Equal(new long[] { 0, 1, 2 }, log.SegmentBaseOffsets);
    }

    [Fact]
    public async Task Roll_BySegmentMs_WithManualClock()
    {
        await using PartitionLog log = _f.Open(new LogConfig { SegmentMs = 60_000 });
        await LogFixture.AppendMany(log, 3);
        _f.Time.Advance(59_999);
        await LogFixture.AppendMany(log, 1);
        Assert.Equal(1, log.SegmentCount);
        _f.Time.Advance(1);
        await LogFixture.AppendMany(log, 1);
        Assert.Equal(new long[] { 0, 4 }, log.SegmentBaseOffsets);
        _f.Time.Advance(59_999);
        await LogFixture.AppendMany(log, 1);
        Assert.Equal(2, log.SegmentCount);
        _f.Time.Advance(10);
        await LogFixture.AppendMany(log, 1);
        Assert.Equal(new long[] { 0, 4, 6 }, log.SegmentBaseOffsets);
    }

    [Fact]
    public async Task Roll_BySegmentMs_EmptySegmentNeverRolls()
    {
        await using PartitionLog log = _f.Open(new LogConfig { SegmentMs = 1000 });
        _f.Time.Advance(10_000);
        await LogFixture.AppendMany(log, 1);
        Assert.Equal(1, log.SegmentCount);
    }

    [Fact]
    public async Task Retention_DeletesNothing_WhenTheCleanupPolicyHasNoDelete()
    {
        // Kafka: retention.ms and retention.bytes apply only with cleanup.policy delete (or compact,delete); a
        // compact-only topic keeps its segments for the cleaner, so "latest value per key" tables are never lost to age.
        var config = new LogConfig { SegmentBytes = 1000, RetentionBytes = 1, RetentionMs = 1, DeleteRetention = false };
        await using PartitionLog log = _f.Open(config);
        await LogFixture.AppendMany(log, 40, valueBytes: 50);
        await log.FlushAsync();
        int segments = log.SegmentCount;
        Assert.True(segments > 2, $"{segments} segments");
        _f.Time.Advance(10_000_000);
        log.EnforceRetention(_f.Time.NowMs);
        Assert.Equal(segments, log.SegmentCount);
        Assert.Equal(0, log.LogStartOffset);
        Assert.Equal(40, LogFixture.ReadAll(log, 0).Count);
    }

    [Fact]
    public async Task Retention_ByBytes_DeletesOldestWholeSegments()
    {
        byte[] sample = BatchBuilder.Simple(1, valueBytes: 50);
        int perSegment = 1000 / sample.Length;
        var config = new LogConfig { SegmentBytes = 1000, RetentionBytes = 2500 };
        await using PartitionLog log = _f.Open(config);
        await LogFixture.AppendMany(log, perSegment * 5, valueBytes: 50);
        await log.FlushAsync();
        Assert.Equal(5, log.SegmentCount);
        long size = log.SizeBytes;

        log.EnforceRetention(_f.Time.NowMs);
        int segmentBytes = perSegment * sample.Length;
        Assert.True(log.SizeBytes <= 2500 + segmentBytes && log.SizeBytes >= 2500 - segmentBytes, $"{log.SizeBytes}");
        Assert.Equal(size - (5 - log.SegmentCount) * segmentBytes, log.SizeBytes);
        long start = log.LogStartOffset;
        Assert.Equal(log.SegmentBaseOffsets[0], start);
        Assert.True(start > 0);
        // Deleted at once, or by the index writer if it was still writing that segment's index files.
        await TailsTests.WaitUntil(() => !File.Exists(_f.SegmentPath(0)) && !File.Exists(_f.SegmentPath(0, ".index")));
        Assert.Contains(_f.Lines, l => l.Contains("retention deleted 00000000000000000000.log"));

        using (ReadResult r = log.Read(start - 1, 1000, true))
        {
            Assert.Equal(ReadError.OffsetOutOfRange, r.Error);
            Assert.Equal(start, r.LogStartOffset);
        }

        Assert.Equal(perSegment * 5 - start, LogFixture.ReadAll(log, start).Count);
        AppendResult next = await log.AppendAsync(BatchBuilder.Simple(1), false);
        Assert.Equal(start, next.LogStartOffset);
        log.CheckInvariants();
    }

    [Fact]
    public async Task Retention_ByTime_UsesNewestTimestamp_NeverActive()
    {
        var config = new LogConfig { SegmentBytes = 800, RetentionMs = 60_000 };
        await using PartitionLog log = _f.Open(config);
        long t0 = _f.Time.NowMs;
        for (int i = 0; i < 30; i++)
        {
            await log.AppendAsync(BatchBuilder.Simple(1, t0 + i * 1000, valueBytes: 50), false);
        }

        await log.FlushAsync();
        IReadOnlyList<long> bases = log.SegmentBaseOffsets;
        Assert.True(bases.Count >= 4);

        // Newest record of the first segment: its last batch's timestamp.
        long firstNewest = t0 + (bases[1] - 1) * 1000;
        log.EnforceRetention(firstNewest + 60_000);
        Assert.Equal(bases.Count, log.SegmentCount);
        log.EnforceRetention(firstNewest + 60_001);
        Assert.Equal(bases[1], log.LogStartOffset);

        log.EnforceRetention(t0 + 10_000_000);
        Assert.Equal(1, log.SegmentCount); // the active segment stays
        Assert.Equal(bases[^1], log.LogStartOffset);
        Assert.Equal(30, log.HighWatermark);
        log.CheckInvariants();

        config = config with { RetentionMs = -1 };
        log.Config = config;
        await LogFixture.AppendMany(log, 30, valueBytes: 50);
        await log.FlushAsync();
        log.EnforceRetention(long.MaxValue / 2);
        Assert.Equal(bases[^1], log.LogStartOffset);
    }

    [Fact]
    public async Task Retention_SkipsSegmentsNotYetDurable()
    {
        var config = new LogConfig { SegmentBytes = 500, RetentionBytes = 0 };
        await using PartitionLog log = _f.Open(config);
        _f.Device.HoldFlushes = true;
        await LogFixture.AppendMany(log, 10, valueBytes: 80);
        Assert.True(log.SegmentCount > 2);
        log.EnforceRetention(_f.Time.NowMs);
        Assert.Equal(0, log.LogStartOffset);
        _f.Device.ReleaseAllFlushes();
        await log.FlushAsync();
        await log.WhenBackgroundIdleAsync(); // index files of sealed segments are written in the background
        log.EnforceRetention(_f.Time.NowMs);
        Assert.Equal(1, log.SegmentCount);
        Assert.Equal(log.SegmentBaseOffsets[0], log.LogStartOffset);
        log.CheckInvariants();
    }

    [Fact]
    public async Task Retention_SurvivesRestart()
    {
        var config = new LogConfig { SegmentBytes = 600, RetentionBytes = 1000 };
        long start;
        List<byte[]> kept;
        await using (PartitionLog log = _f.Open(config))
        {
            await LogFixture.AppendMany(log, 20, valueBytes: 60);
            await log.FlushAsync();
            await log.WhenBackgroundIdleAsync();
            log.EnforceRetention(_f.Time.NowMs);
            start = log.LogStartOffset;
            kept = LogFixture.ReadAll(log, start);
        }

        await using (PartitionLog log = _f.Open(config))
        {
            Assert.Equal(start, log.LogStartOffset);
            Assert.Equal(20, log.HighWatermark);
            Assert.Equal(kept, LogFixture.ReadAll(log, start));
        }
    }
}
