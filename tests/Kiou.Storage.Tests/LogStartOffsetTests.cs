using Kiou.Storage.Producers;
using Kiou.Storage.Tests.Support;
using Kiou.Testing;

namespace Kiou.Storage.Tests;

/// <summary>DeleteRecords' durable log start offset: reads, retention, restart, and a damaged checkpoint.</summary>
public sealed class LogStartOffsetTests : IDisposable
{
    private readonly LogFixture _f = new();

    public void Dispose() => _f.Dispose();

    private string CheckpointPath => Path.Combine(_f.PartitionDir, "log-start-offset-checkpoint");

    private static async Task<PartitionLog> Filled(LogFixture f, int batches)
    {
        PartitionLog log = f.Open(new LogConfig { SegmentBytes = 600 });
        await LogFixture.AppendMany(log, batches, valueBytes: 60);
        return log;
    }

    [Fact]
    public async Task DeleteRecords_MovesStartInsideSegment_DeletesWholeSegmentsBelow_AndSurvivesRestart()
    {
        long target;
        List<long> basesBefore;
        await using (PartitionLog log = await Filled(_f, 30))
        {
            basesBefore = log.SegmentBaseOffsets.ToList();
            Assert.True(basesBefore.Count >= 4);
            target = basesBefore[2] + 1; // inside the third segment
            Assert.Equal(target, await log.DeleteRecordsBeforeAsync(target));
            await log.WhenBackgroundIdleAsync();
            Assert.Equal(target, log.LogStartOffset);
            Assert.Equal(basesBefore[2], log.SegmentBaseOffsets[0]);
            Assert.False(File.Exists(_f.SegmentPath(basesBefore[0])));
            Assert.False(File.Exists(_f.SegmentPath(basesBefore[1])));
            Assert.True(File.Exists(_f.SegmentPath(basesBefore[2])));
            using (ReadResult below = log.Read(target - 1, 1 << 20, minOneBatch: true))
            {
                Assert.Equal(ReadError.OffsetOutOfRange, below.Error);
            }

            using (ReadResult at = log.Read(target, 1 << 20, minOneBatch: true))
            {
                Assert.Equal(ReadError.None, at.Error);
                Assert.False(at.Records.IsEmpty);
            }

            Assert.Equal($"0\n1\n{LogFixture.Topic} 0 {target}\n", File.ReadAllText(CheckpointPath));
            log.CheckInvariants();
        }

        await using (PartitionLog reopened = _f.Open(new LogConfig { SegmentBytes = 600 }))
        {
            Assert.Equal(target, reopened.LogStartOffset);
            Assert.Equal(30, reopened.HighWatermark);
            reopened.CheckInvariants();
        }

        Assert.Empty(_f.Warnings);
    }

    [Fact]
    public async Task DeleteRecords_IsOnDiskBeforeItCompletes_SoACrashImageKeepsIt()
    {
        await using PartitionLog log = await Filled(_f, 12);
        Assert.Equal(7, await log.DeleteRecordsBeforeAsync(7));

        // The directory as a crash right after the answer leaves it: no clean close, nothing written later.
        using var crash = new LogFixture();
        Directory.CreateDirectory(crash.PartitionDir);
        foreach (string file in Directory.GetFiles(_f.PartitionDir))
        {
            File.Copy(file, Path.Combine(crash.PartitionDir, Path.GetFileName(file)));
        }

        await using PartitionLog recovered = crash.Open(new LogConfig { SegmentBytes = 600 });
        Assert.Equal(7, recovered.LogStartOffset);
    }

    [Fact]
    public async Task DeleteRecords_NeverMovesBack_AndRefusesPastTheHighWatermark()
    {
        await using PartitionLog log = await Filled(_f, 10);
        Assert.Equal(5, await log.DeleteRecordsBeforeAsync(5));
        Assert.Equal(5, await log.DeleteRecordsBeforeAsync(3));
        Assert.Equal(5, log.LogStartOffset);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => log.DeleteRecordsBeforeAsync(11));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => log.DeleteRecordsBeforeAsync(-2));
        Assert.Equal(10, await log.DeleteRecordsBeforeAsync(10)); // the high watermark: an empty log from here
        Assert.Equal(10, log.LogStartOffset);
        await LogFixture.AppendMany(log, 2, valueBytes: 60);
        Assert.Equal(2, LogFixture.ReadAll(log, 10).Count);
        log.CheckInvariants();
    }

    [Fact]
    public async Task DeleteRecords_FlushesFirst_WhenTheRecordsBelowAreNotDurable()
    {
        await using PartitionLog log = _f.Open(new LogConfig { SegmentBytes = 600 });
        _f.Device.HoldFlushes = true;
        await LogFixture.AppendMany(log, 6, valueBytes: 60);
        Assert.True(log.DurableOffset < 4);
        Task<long> delete = log.DeleteRecordsBeforeAsync(4);
        await Task.Delay(50);
        Assert.False(delete.IsCompleted); // no answer before the records below are durable
        Assert.Equal(0, log.LogStartOffset);
        _f.Device.ReleaseAllFlushes();
        _f.Device.HoldFlushes = false;
        Assert.Equal(4, await delete);
        Assert.True(log.DurableOffset >= 4);
    }

    [Fact]
    public async Task DamagedCheckpoint_IsSetAside_WithAWarning_AndNothingIsDeleted()
    {
        List<long> bases;
        await using (PartitionLog log = await Filled(_f, 20))
        {
            bases = log.SegmentBaseOffsets.ToList();
        }

        File.WriteAllText(CheckpointPath, "0\n1\ndemo 0 garbage\n");
        await using (PartitionLog reopened = _f.Open(new LogConfig { SegmentBytes = 600 }))
        {
            Assert.Equal(0, reopened.LogStartOffset);
            reopened.EnforceRetention(_f.Time.NowMs);
            Assert.Equal(bases, reopened.SegmentBaseOffsets);
            Assert.Equal(20, LogFixture.ReadAll(reopened, 0).Count);
        }

        Assert.False(File.Exists(CheckpointPath));
        string aside = Assert.Single(Directory.GetFiles(_f.PartitionDir, "log-start-offset-checkpoint.damaged-*"));
        Assert.Equal("0\n1\ndemo 0 garbage\n", File.ReadAllText(aside));
        string warning = Assert.Single(_f.Warnings);
        Assert.Contains("demo-0", warning);
        Assert.Contains(aside, warning);
    }

    [Fact]
    public async Task CheckpointOfAnotherPartition_IsSetAside()
    {
        await using (PartitionLog log = await Filled(_f, 5))
        {
        }

        File.WriteAllText(CheckpointPath, "0\n1\nother 0 3\n");
        await using PartitionLog reopened = _f.Open(new LogConfig { SegmentBytes = 600 });
        Assert.Equal(0, reopened.LogStartOffset);
        Assert.Single(_f.Warnings);
    }

    [Fact]
    public async Task CheckpointPastTheRecoveredEnd_StartsAtTheEnd_WithAWarning()
    {
        await using (PartitionLog log = await Filled(_f, 5))
        {
        }

        File.WriteAllText(CheckpointPath, "0\n1\ndemo 0 40\n");
        await using PartitionLog reopened = _f.Open(new LogConfig { SegmentBytes = 600 });
        Assert.Equal(5, reopened.LogStartOffset);
        Assert.Equal(5, reopened.HighWatermark);
        Assert.Contains("past its recovered end", Assert.Single(_f.Warnings));
        Assert.True(File.Exists(_f.SegmentPath(0)));
    }

    [Fact]
    public async Task RetentionByTime_AfterDeleteRecords_KeepsTheLargerStart()
    {
        await using PartitionLog log = await Filled(_f, 30);
        List<long> bases = log.SegmentBaseOffsets.ToList();
        long target = bases[1] + 2;
        await log.DeleteRecordsBeforeAsync(target);
        await log.WhenBackgroundIdleAsync();
        Assert.Equal(target, log.LogStartOffset);
        log.Config = log.Config with { RetentionMs = 1 };
        log.EnforceRetention(long.MaxValue / 2);
        Assert.Equal(bases[^1], log.LogStartOffset);
        log.CheckInvariants();
    }

    [Fact]
    public async Task ProducerState_OutlivesDeleteRecords_AcrossARestart_AsInKafka()
    {
        static byte[] Idempotent(int count, int baseSequence) =>
            BatchBuilder.Build(Enumerable.Range(0, count).Select(i => new TestRecord(i, null, [(byte)i])).ToList(), producerId: 9, producerEpoch: 0, baseSequence: baseSequence);

        var config = new LogConfig { SegmentBytes = 600 };
        await using (PartitionLog log = _f.Open(config))
        {
            for (int i = 0; i < 20; i++)
            {
                await log.AppendAsync(Idempotent(1, i), false);
            }

            Assert.Equal(20, await log.DeleteRecordsBeforeAsync(20));
            await log.WhenBackgroundIdleAsync();
            Assert.Equal(20, (await log.AppendAsync(Idempotent(1, 20), false)).BaseOffset);
        }

        await using (PartitionLog reopened = _f.Open(config))
        {
            Assert.Equal(20, reopened.LogStartOffset);
            var gap = await Assert.ThrowsAsync<ProducerStateException>(async () => await reopened.AppendAsync(Idempotent(1, 30), false));
            Assert.Equal(45, gap.ErrorCode); // the producer is still known: a gap in its sequence is refused
            Assert.Equal(21, (await reopened.AppendAsync(Idempotent(1, 21), false)).BaseOffset);
        }
    }
}
