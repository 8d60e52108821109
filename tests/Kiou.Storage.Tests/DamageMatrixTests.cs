using Kiou.Protocol.Records;
using Kiou.Storage.Tests.Support;
using Kiou.Testing;

namespace Kiou.Storage.Tests;

/// <summary>
/// The file-damage matrix (issue 11, docs/design/recovery.md): each kind of file of a partition truncated, flipped or
/// deleted on real files, asserting exactly which records survive (by offset and bytes), which offsets answer
/// <see cref="ReadError.Corrupt"/>, what is kept aside in the quarantine, and what is logged at WARN.
/// Every batch holds one record, so a batch's base offset is its index in the list of stored batches.
/// </summary>
public sealed class DamageMatrixTests : IDisposable
{
    private const int Batches = 60;
    private static readonly LogConfig Config = new() { SegmentBytes = 1000, IndexIntervalBytes = 200 };
    private readonly LogFixture _f = new();

    public void Dispose() => _f.Dispose();

    private string Quarantine => Path.Combine(_f.PartitionDir, "quarantine");

    /// <summary>Warnings of recovery, without those of reads that met the damage (rate-limited, tested apart).</summary>
    private List<string> RecoveryWarnings => _f.Warnings.Where(w => !w.Contains("a read at offset")).ToList();

    /// <summary>Appends <see cref="Batches"/> one-record batches over several segments and closes cleanly.</summary>
    private async Task<(List<byte[]> Stored, IReadOnlyList<long> Bases)> WriteClean()
    {
        await using PartitionLog log = _f.Open(Config);
        List<byte[]> stored = await LogFixture.AppendMany(log, Batches, recordsPerBatch: 1, valueBytes: 40);
        IReadOnlyList<long> bases = log.SegmentBaseOffsets;
        Assert.True(bases.Count >= 6, $"only {bases.Count} segments");
        return (stored, bases);
    }

    /// <summary>Appends batches of two records into one segment and abandons the log after a flush (a crash).</summary>
    private async Task<List<byte[]>> WriteAndCrash(int batches)
    {
        PartitionLog log = _f.Open();
        List<byte[]> stored = await LogFixture.AppendMany(log, batches, recordsPerBatch: 2, valueBytes: 40);
        await log.FlushAsync();
        await log.WhenBackgroundIdleAsync();
        return stored;
    }

    /// <summary>Reads from the log start to the high watermark, stepping over offsets that answer Corrupt.</summary>
    private static SortedDictionary<long, byte[]> ReadEverything(PartitionLog log, List<long> corrupt)
    {
        var got = new SortedDictionary<long, byte[]>();
        long offset = log.LogStartOffset;
        while (offset < log.HighWatermark)
        {
            using ReadResult r = log.Read(offset, 1 << 20, minOneBatch: true);
            if (r.Error == ReadError.Corrupt)
            {
                corrupt.Add(offset);
                offset++;
                continue;
            }

            Assert.Equal(ReadError.None, r.Error);
            Assert.True(r.Records.Length > 0, $"no data at offset {offset}");
            ReadOnlySpan<byte> span = r.Records.Span;
            while (span.Length > 0)
            {
                Assert.True(RecordBatch.TryReadHeader(span, out BatchHeader h));
                Assert.True(RecordBatch.IsCrcValid(span[..h.TotalSize]));
                got[h.BaseOffset] = span[..h.TotalSize].ToArray();
                offset = h.NextOffset;
                span = span[h.TotalSize..];
            }
        }

        return got;
    }

    private static void AssertBatches(List<byte[]> stored, SortedDictionary<long, byte[]> got, IEnumerable<long> expectedBaseOffsets, Func<long, int>? indexOf = null)
    {
        Assert.Equal(expectedBaseOffsets.ToList(), got.Keys.ToList());
        foreach (var (offset, bytes) in got)
        {
            Assert.Equal(stored[indexOf?.Invoke(offset) ?? (int)offset], bytes);
        }
    }

    private static IEnumerable<long> Range(long from, long to)
    {
        for (long o = from; o < to; o++)
        {
            yield return o;
        }
    }

    private static void Flip(string path, long position)
    {
        using var fs = new FileStream(path, FileMode.Open);
        fs.Position = position;
        int b = fs.ReadByte();
        fs.Position = position;
        fs.WriteByte((byte)(b ^ 0x5A));
    }

    [Fact]
    public async Task SealedMiddleSegment_CutInHalf_IsQuarantined_AndEveryLaterSegmentServed()
    {
        (List<byte[]> stored, IReadOnlyList<long> bases) = await WriteClean();
        long victim = bases[2];
        long next = bases[3];
        string path = _f.SegmentPath(victim);
        byte[] original = File.ReadAllBytes(path);
        int half = original.Length / 2;
        using (var fs = new FileStream(path, FileMode.Open))
        {
            fs.SetLength(half);
        }

        long keptEnd = victim;
        int keptBytes = 0;
        while (keptBytes + stored[(int)keptEnd].Length <= half)
        {
            keptBytes += stored[(int)keptEnd++].Length;
        }

        await using (PartitionLog log = _f.Open(Config))
        {
            var corrupt = new List<long>();
            AssertBatches(stored, ReadEverything(log, corrupt), Range(0, keptEnd).Concat(Range(next, Batches)));
            Assert.Equal(Range(keptEnd, next), corrupt);
            Assert.Equal(Batches, log.HighWatermark);
            Assert.Equal(0, log.LogStartOffset);
            foreach (long b in bases.Skip(3))
            {
                Assert.True(File.Exists(_f.SegmentPath(b)));
            }

            string aside = Assert.Single(Directory.GetFiles(Quarantine));
            Assert.StartsWith(Path.GetFileName(path) + ".damaged-", Path.GetFileName(aside));
            Assert.Equal(original.AsSpan(0, half).ToArray(), File.ReadAllBytes(aside));
            Assert.Equal(keptBytes, new FileInfo(path).Length);

            string warn = Assert.Single(RecoveryWarnings);
            Assert.Contains("partition demo-0", warn);
            Assert.Contains(Path.GetFileName(path), warn);
            Assert.Contains($"offsets {keptEnd}..{next - 1} are lost", warn);
            Assert.Contains($"({half} bytes)", warn);
            Assert.Contains(aside, warn);
            Assert.DoesNotContain(_f.Lines, l => l.Contains("deleted"));

            AppendResult appended = await log.AppendAsync(BatchBuilder.Simple(1), false);
            Assert.Equal(Batches, appended.BaseOffset);
            log.CheckInvariants();
        }

        // The hole stays a hole across restarts, reported each time; nothing more is lost or set aside.
        _f.Warnings.Clear();
        await using (PartitionLog log = _f.Open(Config))
        {
            var corrupt = new List<long>();
            SortedDictionary<long, byte[]> got = ReadEverything(log, corrupt);
            Assert.Equal(Range(0, keptEnd).Concat(Range(next, Batches + 1)), got.Keys);
            Assert.Equal(Range(keptEnd, next), corrupt);
            Assert.Single(Directory.GetFiles(Quarantine));
            string warn = Assert.Single(RecoveryWarnings);
            Assert.Contains($"offsets {keptEnd}..{next - 1} are missing", warn);
            log.CheckInvariants();
        }
    }

    [Fact]
    public async Task SealedMiddleSegment_Deleted_LeavesAHole_AndEveryLaterSegmentServed()
    {
        (List<byte[]> stored, IReadOnlyList<long> bases) = await WriteClean();
        File.Delete(_f.SegmentPath(bases[2]));
        await using PartitionLog log = _f.Open(Config);
        var corrupt = new List<long>();
        AssertBatches(stored, ReadEverything(log, corrupt), Range(0, bases[2]).Concat(Range(bases[3], Batches)));
        Assert.Equal(Range(bases[2], bases[3]), corrupt);
        string warn = Assert.Single(RecoveryWarnings);
        Assert.Contains($"partition demo-0: offsets {bases[2]}..{bases[3] - 1} are missing", warn);
        Assert.Contains($"seek to offset {bases[3]}", warn);
        Assert.Equal(bases.Count - 1, log.SegmentCount);
        AppendResult appended = await log.AppendAsync(BatchBuilder.Simple(1), false);
        Assert.Equal(Batches, appended.BaseOffset);
        log.CheckInvariants();
    }

    [Fact]
    public async Task SealedSegment_BadCrc_ReadAnswersCorrupt_RateLimited_ThenRescanKeepsAllButThatBatch()
    {
        (List<byte[]> stored, IReadOnlyList<long> bases) = await WriteClean();
        long bad = bases[1] + 2;
        string path = _f.SegmentPath(bases[1]);
        byte[] original = File.ReadAllBytes(path);
        long position = stored.Skip((int)bases[1]).Take(2).Sum(b => b.Length) + stored[(int)bad].Length - 5;
        Flip(path, position);

        await using (PartitionLog log = _f.Open(Config))
        {
            Assert.Empty(RecoveryWarnings); // below the recovery point with consistent indexes: not re-read at start
            for (int i = 0; i < 4; i++)
            {
                using ReadResult r = log.Read(bad, 1 << 20, minOneBatch: true);
                Assert.Equal(ReadError.Corrupt, r.Error);
                Assert.Equal(0, r.Records.Length);
            }

            string warn = Assert.Single(_f.Warnings);
            Assert.Contains($"partition demo-0: a read at offset {bad} met damaged data", warn);
            Assert.Contains("CRC", warn);

            // Batches before the bad one are served, the read stops in front of it.
            using (ReadResult before = log.Read(bad - 2, 1 << 20, minOneBatch: true))
            {
                Assert.Equal(ReadError.None, before.Error);
                Assert.Equal(stored[(int)bad - 2].Concat(stored[(int)bad - 1]).ToArray(), before.Records.ToArray());
            }

            _f.Time.Advance(11_000);
            using (ReadResult again = log.Read(bad, 1 << 20, minOneBatch: true))
            {
                Assert.Equal(ReadError.Corrupt, again.Error);
            }

            Assert.Equal(2, _f.Warnings.Count);
            Assert.Contains("(3 more such reads since the last report)", _f.Warnings.Last());
        }

        // Without its index the segment is rescanned: only the bad batch is lost, the rest of its segment becomes a
        // segment of its own, and the damaged file is kept aside whole.
        File.Delete(_f.SegmentPath(bases[1], ".index"));
        _f.Warnings.Clear();
        await using (PartitionLog log = _f.Open(Config))
        {
            var corrupt = new List<long>();
            AssertBatches(stored, ReadEverything(log, corrupt), Range(0, bad).Concat(Range(bad + 1, Batches)));
            Assert.Equal([bad], corrupt);
            Assert.True(File.Exists(_f.SegmentPath(bad + 1)));
            string aside = Assert.Single(Directory.GetFiles(Quarantine));
            byte[] damaged = original.ToArray();
            damaged[position] ^= 0x5A;
            Assert.Equal(damaged, File.ReadAllBytes(aside));
            string warn = Assert.Single(RecoveryWarnings);
            Assert.Contains($"offsets {bad}..{bad} are lost", warn);
            Assert.Contains($"offsets from {bad + 1}", warn);
            Assert.Contains(aside, warn);
            log.CheckInvariants();
        }
    }

    [Fact]
    public async Task SealedSegment_BadHeader_ReadAnswersCorrupt_InBothReadPaths_ThenRescanKeepsPrefixAndLaterSegments()
    {
        (List<byte[]> stored, IReadOnlyList<long> bases) = await WriteClean();
        long bad = bases[1] + 2;
        long position = stored.Skip((int)bases[1]).Take(2).Sum(b => b.Length) + 16; // the magic byte
        Flip(_f.SegmentPath(bases[1]), position);

        await using (PartitionLog log = _f.Open(Config))
        {
            foreach (bool zeroCopy in new[] { false, true })
            {
                using ReadResult r = log.Read(bad, 1 << 20, minOneBatch: true, zeroCopy);
                Assert.Equal(ReadError.Corrupt, r.Error);
            }

            Assert.Single(_f.Warnings);
            using (ReadResult before = log.Read(bad - 1, 1 << 20, minOneBatch: true))
            {
                Assert.Equal(stored[(int)bad - 1], before.Records.ToArray());
            }

            using (ReadResult after = log.Read(bases[2], 1 << 20, minOneBatch: true, zeroCopy: true))
            {
                Assert.Equal(ReadError.None, after.Error);
            }

            string warn = _f.Warnings.Single();
            Assert.Contains($"delete {Path.GetFileName(_f.SegmentPath(bases[1], ".index"))}", warn);

            // The warning names where a consumer can go on, and that offset reads.
            var seek = System.Text.RegularExpressions.Regex.Match(warn, @"The next offset known to start a batch is (\d+)");
            Assert.True(seek.Success, warn);
            long resume = long.Parse(seek.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            Assert.InRange(resume, bad + 1, bases[2]);
            using (ReadResult resumed = log.Read(resume, 1, minOneBatch: true))
            {
                Assert.Equal(stored[(int)resume], resumed.Records.ToArray());
            }
        }

        File.Delete(_f.SegmentPath(bases[1], ".index"));
        _f.Warnings.Clear();
        await using (PartitionLog log = _f.Open(Config))
        {
            var corrupt = new List<long>();
            AssertBatches(stored, ReadEverything(log, corrupt), Range(0, bad).Concat(Range(bases[2], Batches)));
            Assert.Equal(Range(bad, bases[2]), corrupt);
            Assert.Single(Directory.GetFiles(Quarantine));
            Assert.Contains($"offsets {bad}..{bases[2] - 1} are lost", Assert.Single(RecoveryWarnings));
        }
    }

    [Fact]
    public async Task LastSegment_BadCrcAfterCrash_TruncatedFromTheBadBatch_BytesKeptAside()
    {
        List<byte[]> stored = await WriteAndCrash(10);
        string path = _f.SegmentPath(0);
        byte[] original = File.ReadAllBytes(path);
        int position = stored.Take(4).Sum(b => b.Length);
        Flip(path, position + 70);

        await using PartitionLog log = _f.Open();
        Assert.Equal(8, log.HighWatermark);
        Assert.Equal(stored.Take(4).ToList(), LogFixture.ReadAll(log, 0));
        string aside = Path.Combine(Quarantine, $"00000000000000000000.log.truncated-{position}");
        byte[] expected = original[position..];
        expected[70] ^= 0x5A;
        Assert.Equal(expected, File.ReadAllBytes(aside));
        string warn = Assert.Single(RecoveryWarnings);
        Assert.Contains("partition demo-0", warn);
        Assert.Contains($"position {position}, offset 8", warn);
        Assert.Contains($"dropped {original.Length - position} bytes, kept aside in {aside}", warn);
        AppendResult appended = await log.AppendAsync(BatchBuilder.Simple(1), false);
        Assert.Equal(8, appended.BaseOffset);
        log.CheckInvariants();
    }

    [Fact]
    public async Task LastSegment_BadCrcBelowTheRecoveryPoint_OnlyThatBatchIsLost()
    {
        List<byte[]> stored = await WriteAndCrash(10);
        Recovery.WriteRecoveryPoint(_f.PartitionDir, 12); // as if offsets below 12 had been flushed and recorded
        string path = _f.SegmentPath(0);
        Flip(path, stored.Take(2).Sum(b => b.Length) + 70); // the batch of offsets 4 and 5

        await using PartitionLog log = _f.Open();
        var corrupt = new List<long>();
        SortedDictionary<long, byte[]> got = ReadEverything(log, corrupt);
        AssertBatches(stored, got, [0, 2, 6, 8, 10, 12, 14, 16, 18], o => (int)(o / 2));
        Assert.Equal([4, 5], corrupt);
        Assert.Equal(20, log.HighWatermark);
        Assert.True(File.Exists(_f.SegmentPath(6)));
        Assert.Single(Directory.GetFiles(Quarantine));
        Assert.Contains("offsets 4..5 are lost", Assert.Single(RecoveryWarnings));
        AppendResult appended = await log.AppendAsync(BatchBuilder.Simple(1), false);
        Assert.Equal(20, appended.BaseOffset);
        log.CheckInvariants();
    }

    [Theory]
    [InlineData("cut to zero")]
    [InlineData("deleted")]
    public async Task LastSegment_LostAfterCleanStop_IsReportedLoudly_AndOffsetsAreNotReused(string damage)
    {
        (List<byte[]> stored, IReadOnlyList<long> bases) = await WriteClean();
        long active = bases[^1];
        string path = _f.SegmentPath(active);
        if (damage == "deleted")
        {
            File.Delete(path);
        }
        else
        {
            File.WriteAllBytes(path, []);
        }

        await using (PartitionLog log = _f.Open(Config))
        {
            var corrupt = new List<long>();
            AssertBatches(stored, ReadEverything(log, corrupt), Range(0, active));
            Assert.Equal(Range(active, Batches), corrupt);
            Assert.Equal(Batches, log.HighWatermark);
            string warn = Assert.Single(RecoveryWarnings);
            Assert.Contains($"partition demo-0: DATA LOST: offsets {active}..{Batches - 1} were durable", warn);
            if (damage == "cut to zero")
            {
                Assert.Contains("shorter than the clean-shutdown marker recorded", warn);
                string aside = Assert.Single(Directory.GetFiles(Quarantine));
                Assert.StartsWith(Path.GetFileName(path) + ".damaged-", Path.GetFileName(aside));
            }

            AppendResult appended = await log.AppendAsync(BatchBuilder.Simple(1), false);
            Assert.Equal(Batches, appended.BaseOffset);
            log.CheckInvariants();
        }

        await using (PartitionLog log = _f.Open(Config))
        {
            Assert.Equal(Batches + 1, log.HighWatermark);
            using ReadResult r = log.Read(Batches, 1 << 20, minOneBatch: true);
            Assert.Equal(ReadError.None, r.Error);
            Assert.True(r.Records.Length > 0);
        }
    }

    [Theory]
    [InlineData("*.index", "delete")]
    [InlineData("*.timeindex", "delete")]
    [InlineData("*.index", "garbage")]
    [InlineData("*.timeindex", "garbage")]
    [InlineData("*.index", "cut")]
    [InlineData("*.index", "flip")]
    [InlineData("*.timeindex", "flip")]
    public async Task IndexFilesDamaged_AreRebuilt_NothingIsLostOrSetAside(string pattern, string damage)
    {
        (List<byte[]> stored, IReadOnlyList<long> bases) = await WriteClean();
        foreach (string file in Directory.GetFiles(_f.PartitionDir, pattern))
        {
            switch (damage)
            {
                case "delete":
                    File.Delete(file);
                    break;
                case "garbage":
                    File.WriteAllBytes(file, [0, 0, 0, 5, 0, 0, 0, 7, 1, 2, 3]);
                    break;
                case "flip":
                    // The low byte of the first entry's position (offset index) or relative offset (time index).
                    if (new FileInfo(file).Length >= 12)
                    {
                        Flip(file, pattern == "*.index" ? 7 : 11);
                    }

                    break;
                default:
                    File.WriteAllBytes(file, File.ReadAllBytes(file)[..3]);
                    break;
            }
        }

        await using PartitionLog log = _f.Open(Config);
        var corrupt = new List<long>();
        AssertBatches(stored, ReadEverything(log, corrupt), Range(0, Batches));
        Assert.Empty(corrupt);
        Assert.Equal(bases, log.SegmentBaseOffsets);
        Assert.False(Directory.Exists(Quarantine));
        foreach (long o in Range(0, Batches))
        {
            Assert.Equal(o, log.LookupByTimestamp(BatchBuilder.DefaultBaseTimestamp + (o * 10)).Offset);
            using ReadResult one = log.Read(o, 1, minOneBatch: true, zeroCopy: true);
            Assert.Equal(ReadError.None, one.Error);
        }

        if (pattern == "*.index" && damage == "flip")
        {
            // A flipped entry can still look plausible: the first read it misleads rebuilds that segment's indexes.
            Assert.NotEmpty(_f.Warnings);
            Assert.All(_f.Warnings, w => Assert.Contains("contradicts its log", w));
            Assert.All(_f.Warnings, w => Assert.Contains("The records are intact", w));
        }
        else
        {
            Assert.Empty(_f.Warnings);
        }
    }

    [Theory]
    [InlineData(".kiou-clean-shutdown", "delete")]
    [InlineData(".kiou-clean-shutdown", "garbage")]
    [InlineData(".kiou-recovery-point", "delete")]
    [InlineData(".kiou-recovery-point", "garbage")]
    public async Task MarkerFilesDamaged_NothingIsLost(string name, string damage)
    {
        (List<byte[]> stored, IReadOnlyList<long> bases) = await WriteClean();
        string file = Path.Combine(_f.PartitionDir, name);
        Assert.True(File.Exists(file));
        if (damage == "delete")
        {
            File.Delete(file);
        }
        else
        {
            Flip(file, 0);
        }

        await using PartitionLog log = _f.Open(Config);
        var corrupt = new List<long>();
        AssertBatches(stored, ReadEverything(log, corrupt), Range(0, Batches));
        Assert.Empty(corrupt);
        Assert.Equal(bases, log.SegmentBaseOffsets);
        Assert.False(Directory.Exists(Quarantine));
        if (name == ".kiou-recovery-point" && damage == "garbage")
        {
            Assert.Contains(".kiou-recovery-point is damaged", Assert.Single(RecoveryWarnings));
        }
        else
        {
            Assert.Empty(_f.Warnings);
        }

        Assert.True(File.Exists(Path.Combine(_f.PartitionDir, ".kiou-recovery-point"))); // rewritten after recovery
    }

    [Fact]
    public async Task RecoveryPointMissing_SealedSegmentCut_IsStillQuarantined_NotTruncated()
    {
        (List<byte[]> stored, IReadOnlyList<long> bases) = await WriteClean();
        File.Delete(Path.Combine(_f.PartitionDir, ".kiou-recovery-point"));
        File.Delete(Path.Combine(_f.PartitionDir, ".kiou-clean-shutdown"));
        // The index files show the segment was durable (they are written only after its fdatasync), so the cut is
        // damage to set aside even without a recovery point; without them it would be an unflushed tail (PowerLossTests).
        string path = _f.SegmentPath(bases[1]);
        using (var fs = new FileStream(path, FileMode.Open))
        {
            fs.SetLength(stored[(int)bases[1]].Length + 10);
        }

        await using PartitionLog log = _f.Open(Config);
        var corrupt = new List<long>();
        AssertBatches(stored, ReadEverything(log, corrupt), Range(0, bases[1] + 1).Concat(Range(bases[2], Batches)));
        Assert.Equal(Range(bases[1] + 1, bases[2]), corrupt);
        Assert.Single(Directory.GetFiles(Quarantine));
        Assert.Single(RecoveryWarnings);
    }

    [Fact]
    public async Task NoRoomToSetAside_SealedDamage_PrefixServedInPlace_FileUntouched()
    {
        (List<byte[]> stored, IReadOnlyList<long> bases) = await WriteClean();
        File.WriteAllText(Quarantine, "in the way"); // the quarantine directory cannot be created
        File.Delete(_f.SegmentPath(bases[2], ".index"));
        string path = _f.SegmentPath(bases[2]);
        int cut = stored[(int)bases[2]].Length + 30;
        using (var fs = new FileStream(path, FileMode.Open))
        {
            fs.SetLength(cut);
        }

        await using PartitionLog log = _f.Open(Config);
        var corrupt = new List<long>();
        AssertBatches(stored, ReadEverything(log, corrupt), Range(0, bases[2] + 1).Concat(Range(bases[3], Batches)));
        Assert.Equal(Range(bases[2] + 1, bases[3]), corrupt);
        Assert.Equal(cut, new FileInfo(path).Length);
        Assert.Empty(Directory.GetFiles(_f.PartitionDir, "*.tmp"));
        Assert.Contains("could not be set aside", Assert.Single(RecoveryWarnings));
        AppendResult appended = await log.AppendAsync(BatchBuilder.Simple(1), false);
        Assert.Equal(Batches, appended.BaseOffset);
    }

    [Fact]
    public async Task NoRoomToSetAside_TailDamage_OpenRefuses_AndChangesNothing()
    {
        List<byte[]> stored = await WriteAndCrash(10);
        File.WriteAllText(Quarantine, "in the way");
        string path = _f.SegmentPath(0);
        Flip(path, stored.Take(4).Sum(b => b.Length) + 70);
        byte[] before = File.ReadAllBytes(path);

        StorageException e = Assert.Throws<StorageException>(() => _f.Open());
        Assert.Contains("could not be kept aside", e.Message);
        Assert.Contains("nothing was changed", e.Message);
        Assert.Equal(before, File.ReadAllBytes(path));
    }
}
