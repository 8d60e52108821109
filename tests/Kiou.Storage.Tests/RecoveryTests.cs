using Kiou.Protocol.Records;
using Kiou.Storage.Tests.Support;
using Kiou.Testing;

namespace Kiou.Storage.Tests;

/// <summary>Restart round trips and recovery from torn tails, corrupt batches and missing indexes.</summary>
public sealed class RecoveryTests : IDisposable
{
    private readonly LogFixture _f = new();

    public void Dispose() => _f.Dispose();

    /// <summary>Appends batches without a clean close (the log object is abandoned after a flush), like a crash.</summary>
    private async Task<List<byte[]>> WriteAndCrash(LogConfig config, int batches, int recordsPerBatch = 2)
    {
        PartitionLog log = _f.Open(config);
        List<byte[]> stored = await LogFixture.AppendMany(log, batches, recordsPerBatch, valueBytes: 40);
        await log.FlushAsync();
        await LogFixture_WaitIndexWrites(log);
        return stored;
    }

    private static async Task LogFixture_WaitIndexWrites(PartitionLog log)
    {
        // Sealed segments write their index files in the background once durable; a real crash would stop
        // them, here they would race the reopen.
        await log.WhenBackgroundIdleAsync();
        log.CheckInvariants();
    }

    [Fact]
    public async Task CleanRestart_RoundTrip()
    {
        var config = new LogConfig { SegmentBytes = 2000, IndexIntervalBytes = 300 };
        List<byte[]> stored;
        await using (PartitionLog log = _f.Open(config))
        {
            stored = await LogFixture.AppendMany(log, 60, recordsPerBatch: 3, valueBytes: 30);
            Assert.True(log.SegmentCount > 3);
        }

        Assert.True(File.Exists(Path.Combine(_f.PartitionDir, ".kiou-clean-shutdown")));
        foreach (string log in Directory.GetFiles(_f.PartitionDir, "*.log"))
        {
            Assert.True(File.Exists(Path.ChangeExtension(log, ".index")));
            Assert.True(File.Exists(Path.ChangeExtension(log, ".timeindex")));
        }

        await using (PartitionLog log = _f.Open(config))
        {
            Assert.False(File.Exists(Path.Combine(_f.PartitionDir, ".kiou-clean-shutdown")));
            Assert.Equal(180, log.HighWatermark);
            Assert.Equal(180, log.LogEndOffset);
            Assert.Equal(180, log.DurableOffset);
            Assert.Equal(stored, LogFixture.ReadAll(log, 0));
            Assert.Empty(_f.Lines);
            for (long o = 0; o < 180; o += 7)
            {
                using ReadResult r = log.Read(o, 1, true);
                Assert.Equal(stored[(int)(o / 3)], r.Records.ToArray());
            }

            AppendResult next = await log.AppendAsync(BatchBuilder.Simple(1), false);
            Assert.Equal(180, next.BaseOffset);
            log.CheckInvariants();
        }
    }

    [Fact]
    public async Task UncleanRestart_KeepsEverything()
    {
        List<byte[]> stored = await WriteAndCrash(new LogConfig { SegmentBytes = 1500 }, 30);
        await using PartitionLog log = _f.Open(new LogConfig { SegmentBytes = 1500 });
        Assert.Equal(60, log.HighWatermark);
        Assert.Equal(stored, LogFixture.ReadAll(log, 0));
        Assert.DoesNotContain(_f.Lines, l => l.Contains("truncated"));
    }

    [Fact]
    public async Task TornTail_TruncatedMidBatch()
    {
        List<byte[]> stored = await WriteAndCrash(new LogConfig(), 10);
        string path = _f.SegmentPath(0);
        long length = new FileInfo(path).Length;
        int lastSize = stored[^1].Length;
        using (var fs = new FileStream(path, FileMode.Open))
        {
            fs.SetLength(length - 25);
        }

        await using PartitionLog log = _f.Open();
        Assert.Equal(18, log.HighWatermark);
        Assert.Equal(18, log.LogEndOffset);
        Assert.Equal(stored.Take(9).ToList(), LogFixture.ReadAll(log, 0));
        Assert.Equal(length - lastSize, new FileInfo(path).Length);
        string line = Assert.Single(_f.Lines);
        Assert.Contains("partition demo-0", line);
        Assert.Contains("torn tail of 00000000000000000000.log", line);
        Assert.Contains($"position {length - lastSize}", line);
        Assert.Contains($"dropped {lastSize - 25} bytes", line);

        // The torn batch is never served, and its offsets are handed out again.
        using (ReadResult r = log.Read(18, 1 << 20, true))
        {
            Assert.Equal(0, r.Records.Length);
        }

        AppendResult next = await log.AppendAsync(BatchBuilder.Simple(1), false);
        Assert.Equal(18, next.BaseOffset);
        log.CheckInvariants();
    }

    [Fact]
    public async Task TornTail_OnlyPartOfAHeader()
    {
        List<byte[]> stored = await WriteAndCrash(new LogConfig(), 3);
        string path = _f.SegmentPath(0);
        await File.AppendAllBytesAsync(path, stored[0].AsSpan(0, 30).ToArray());
        await using PartitionLog log = _f.Open();
        Assert.Equal(6, log.HighWatermark);
        Assert.Equal(stored, LogFixture.ReadAll(log, 0));
        Assert.Contains(_f.Lines, l => l.Contains("dropped 30 bytes"));
    }

    [Fact]
    public async Task CorruptCrc_InLastBatch_Truncated()
    {
        List<byte[]> stored = await WriteAndCrash(new LogConfig(), 10);
        string path = _f.SegmentPath(0);
        long length = new FileInfo(path).Length;
        int lastSize = stored[^1].Length;
        using (var fs = new FileStream(path, FileMode.Open))
        {
            fs.Position = length - 5;
            int b = fs.ReadByte();
            fs.Position = length - 5;
            fs.WriteByte((byte)(b ^ 0x10));
        }

        await using PartitionLog log = _f.Open();
        Assert.Equal(18, log.HighWatermark);
        Assert.Equal(stored.Take(9).ToList(), LogFixture.ReadAll(log, 0));
        string line = Assert.Single(_f.Lines);
        Assert.Contains("CRC", line);
        Assert.Contains($"position {length - lastSize}", line);
        Assert.Contains($"dropped {lastSize} bytes", line);
    }

    [Fact]
    public async Task CorruptCrc_InMiddleOfActiveSegment_DropsFromThere()
    {
        List<byte[]> stored = await WriteAndCrash(new LogConfig(), 10);
        int position = stored.Take(4).Sum(b => b.Length) + 70;
        using (var fs = new FileStream(_f.SegmentPath(0), FileMode.Open))
        {
            fs.Position = position;
            fs.WriteByte(0xFF);
        }

        await using PartitionLog log = _f.Open();
        Assert.Equal(8, log.HighWatermark);
        Assert.Equal(stored.Take(4).ToList(), LogFixture.ReadAll(log, 0));
    }

    [Fact]
    public async Task MissingIndexes_Rebuilt_ReadsExact()
    {
        var config = new LogConfig { SegmentBytes = 1200, IndexIntervalBytes = 200 };
        List<byte[]> stored;
        await using (PartitionLog log = _f.Open(config))
        {
            stored = await LogFixture.AppendMany(log, 50, recordsPerBatch: 2, valueBytes: 40);
        }

        string[] indexes = Directory.GetFiles(_f.PartitionDir, "*.index");
        Assert.True(indexes.Length > 3);
        foreach (string index in indexes)
        {
            File.Delete(index);
        }

        await using (PartitionLog log = _f.Open(config))
        {
            Assert.Equal(100, log.HighWatermark);
            Assert.Equal(stored, LogFixture.ReadAll(log, 0));
            for (long o = 0; o < 100; o++)
            {
                using ReadResult r = log.Read(o, 1, true);
                Assert.Equal(stored[(int)(o / 2)], r.Records.ToArray());
            }

            Assert.Contains(_f.Lines, l => l.Contains("rebuilding the indexes") && l.Contains("index file missing"));
        }

        // Rebuilt files were written back: the next open is quiet.
        _f.Lines.Clear();
        await using (PartitionLog log = _f.Open(config))
        {
            Assert.Empty(_f.Lines);
            Assert.Equal(stored, LogFixture.ReadAll(log, 0));
        }
    }

    [Fact]
    public async Task GarbageIndex_Rebuilt()
    {
        var config = new LogConfig { SegmentBytes = 1200, IndexIntervalBytes = 200 };
        List<byte[]> stored;
        await using (PartitionLog log = _f.Open(config))
        {
            stored = await LogFixture.AppendMany(log, 30, recordsPerBatch: 2, valueBytes: 40);
        }

        File.WriteAllBytes(_f.SegmentPath(0, ".index"), [0, 0, 0, 5, 0, 0, 0, 7]); // points mid-batch
        File.WriteAllBytes(_f.SegmentPath(0, ".timeindex"), [1, 2, 3]);
        await using (PartitionLog log = _f.Open(config))
        {
            Assert.Equal(stored, LogFixture.ReadAll(log, 0));
            Assert.Contains(_f.Lines, l => l.Contains("rebuilding the indexes of 00000000000000000000.log"));
        }
    }

    [Fact]
    public async Task CorruptSealedSegment_WithoutIndex_KeepsLaterSegments()
    {
        var config = new LogConfig { SegmentBytes = 1000 };
        List<byte[]> stored;
        IReadOnlyList<long> bases;
        await using (PartitionLog log = _f.Open(config))
        {
            stored = await LogFixture.AppendMany(log, 30, recordsPerBatch: 1, valueBytes: 40);
            bases = log.SegmentBaseOffsets;
        }

        Assert.True(bases.Count >= 3);
        long second = bases[1];
        File.Delete(_f.SegmentPath(second, ".index"));
        using (var fs = new FileStream(_f.SegmentPath(second), FileMode.Open))
        {
            fs.Position = fs.Length - 3;
            fs.WriteByte(0x55);
        }

        await using (PartitionLog log = _f.Open(config))
        {
            // The last batch of the second segment fails its CRC: only it is lost, every later segment stays.
            long lost = bases[2] - 1;
            Assert.Equal(30, log.HighWatermark);
            for (long o = 0; o < lost; o++)
            {
                using ReadResult r = log.Read(o, 1, true);
                Assert.Equal(stored[(int)o], r.Records.ToArray());
            }

            Assert.Equal(stored.Skip((int)bases[2]).ToList(), LogFixture.ReadAll(log, bases[2]));
            using (ReadResult r = log.Read(lost, 1 << 20, true))
            {
                Assert.Equal(ReadError.Corrupt, r.Error);
            }

            Assert.Equal(bases, log.SegmentBaseOffsets);
            Assert.True(File.Exists(_f.SegmentPath(bases[2])));
            Assert.DoesNotContain(_f.Lines, l => l.Contains("deleted"));
            Assert.Contains(_f.Warnings, l => l.Contains($"offsets {lost}..{lost} are lost"));
            AppendResult next = await log.AppendAsync(BatchBuilder.Simple(1), false);
            Assert.Equal(30, next.BaseOffset);
            log.CheckInvariants();
        }
    }

    [Fact]
    public async Task CleanMarker_IgnoredWhenFileLengthChanged()
    {
        List<byte[]> stored;
        await using (PartitionLog log = _f.Open())
        {
            stored = await LogFixture.AppendMany(log, 5);
        }

        // Bytes appended after the clean close (as if the marker's deletion was lost in a crash): a torn batch.
        await File.AppendAllBytesAsync(_f.SegmentPath(0), stored[0].AsSpan(0, 70).ToArray());
        await using (PartitionLog log = _f.Open())
        {
            Assert.Equal(5, log.HighWatermark);
            Assert.Equal(stored, LogFixture.ReadAll(log, 0));
            Assert.Contains(_f.Lines, l => l.Contains("torn tail"));
        }
    }

    [Fact]
    public async Task IndexesAfterRestart_TimestampLookupsStillWork()
    {
        var config = new LogConfig { SegmentBytes = 1500, IndexIntervalBytes = 150 };
        var expected = new List<(long, long)>();
        await using (PartitionLog log = _f.Open(config))
        {
            await LogFixture.AppendMany(log, 40, recordsPerBatch: 2, valueBytes: 30);
            for (long t = BatchBuilder.DefaultBaseTimestamp - 5; t < BatchBuilder.DefaultBaseTimestamp + 420; t += 3)
            {
                expected.Add(log.LookupByTimestamp(t));
            }

            expected.Add(log.MaxTimestampEntry());
        }

        await using (PartitionLog log = _f.Open(config))
        {
            var actual = new List<(long, long)>();
            for (long t = BatchBuilder.DefaultBaseTimestamp - 5; t < BatchBuilder.DefaultBaseTimestamp + 420; t += 3)
            {
                actual.Add(log.LookupByTimestamp(t));
            }

            actual.Add(log.MaxTimestampEntry());
            Assert.Equal(expected, actual);
        }
    }

    [Fact]
    public async Task StrayFiles_Cleaned()
    {
        await using (PartitionLog log = _f.Open())
        {
            await LogFixture.AppendMany(log, 2);
        }

        File.WriteAllBytes(_f.SegmentPath(999, ".index"), new byte[8]);
        File.WriteAllBytes(_f.SegmentPath(0, ".index.tmp"), new byte[3]);
        await using (PartitionLog log = _f.Open())
        {
            Assert.Equal(2, log.HighWatermark);
        }

        Assert.False(File.Exists(_f.SegmentPath(999, ".index")));
        Assert.False(File.Exists(_f.SegmentPath(0, ".index.tmp")));
    }

    [Fact]
    public async Task ValidatedBatchesSurviveRestart_CrcIntact()
    {
        await using (PartitionLog log = _f.Open(new LogConfig { LogAppendTime = true }))
        {
            await log.AppendAsync(BatchBuilder.WorkedExample(), false);
        }

        await using (PartitionLog log = _f.Open())
        {
            byte[] stored = LogFixture.ReadAll(log, 0)[0];
            Assert.True(RecordBatch.IsCrcValid(stored));
            Assert.Equal(TimestampType.LogAppendTime, RecordBatch.TimestampType(stored));
            Assert.Equal((0L, _f.Time.NowMs), log.LookupByTimestamp(0));
        }
    }
}
