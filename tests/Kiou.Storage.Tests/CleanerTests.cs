using System.Text;
using Kiou.Compression;
using Kiou.Protocol.Records;
using Kiou.Storage.Cleaner;
using Kiou.Storage.Producers;
using Kiou.Storage.Tests.Support;
using Kiou.Testing;

namespace Kiou.Storage.Tests;

/// <summary>The log cleaner over real segment files: what stays, offsets, holes, tombstones, codecs, transactions, producer state, the swap's crash points.</summary>
public sealed class CleanerTests : IDisposable
{
    private readonly LogFixture _f = new();

    public void Dispose() => _f.Dispose();

    private static readonly LogConfig Compacted = new()
    {
        Compact = true,
        DeleteRetention = false,
        SegmentBytes = 1200,
        IndexIntervalBytes = 100,
        MinCleanableDirtyRatio = 0,
        DeleteRetentionMs = 60_000,
    };

    internal readonly record struct Rec(long Offset, string? Key, string? Value);

    private static byte[] Keyed(params (string Key, string? Value)[] records) =>
        BatchBuilder.Build(records.Select((r, i) => new TestRecord(i, Encoding.UTF8.GetBytes(r.Key), r.Value is null ? null : Encoding.UTF8.GetBytes(r.Value))).ToList());

    private LogCleaner NewCleaner(PartitionLog log) =>
        new(_f.DataDir, new LogCleanerSettings { IoMaxBytesPerSecond = long.MaxValue, IoBufferBytes = 4096 }, () => [log], _f.Time, _f.Lines.Enqueue, _f.Warnings.Enqueue);

    private long Now => _f.Time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>Writes <paramref name="rounds"/> overwrites of keys k0..k(keys-1), two records a batch; returns the latest (offset, value) per key.</summary>
    private static async Task<Dictionary<string, (long Offset, string? Value)>> Overwrite(PartitionLog log, int rounds, int keys, Dictionary<string, (long, string?)>? latest = null, Func<int, int, string?>? value = null)
    {
        latest ??= new();
        for (int r = 0; r < rounds; r++)
        {
            for (int k = 0; k < keys; k += 2)
            {
                var recs = new List<(string, string?)>();
                for (int j = k; j < Math.Min(k + 2, keys); j++)
                {
                    recs.Add(($"k{j}", value is null ? $"v{r}-{j}" : value(r, j)));
                }

                long b = (await log.AppendAsync(Keyed([.. recs]), false)).BaseOffset;
                for (int i = 0; i < recs.Count; i++)
                {
                    latest[recs[i].Item1] = (b + i, recs[i].Item2);
                }
            }
        }

        return latest;
    }

    /// <summary>Rolls the active segment (one filler batch past segment.bytes) and waits until sealed segments are durable and indexed.</summary>
    private static async Task Seal(PartitionLog log)
    {
        long end = log.LogEndOffset;
        while (log.SegmentBaseOffsets[^1] < end)
        {
            await log.AppendAsync(Keyed(("filler", new string('f', 400))), false);
        }

        await log.FlushAsync();
        await log.WhenBackgroundIdleAsync();
    }

    internal static List<Rec> ReadRecords(PartitionLog log)
    {
        var list = new List<Rec>();
        foreach (byte[] batch in LogFixture.ReadAll(log, log.LogStartOffset))
        {
            long b = RecordBatch.BaseOffset(batch);
            CompressionType codec = RecordBatch.CompressionCodec(batch);
            DecompressedRecords d = default;
            ReadOnlySpan<byte> area = batch.AsSpan(RecordBatch.HeaderSize);
            if (codec != CompressionType.None)
            {
                Assert.Equal(DecompressStatus.Ok, BatchDecompressor.Decompress(codec, batch.AsMemory(RecordBatch.HeaderSize), 1 << 24, out d, out _));
                area = d.Span;
            }

            var cursor = new RecordCursor(area, RecordBatch.RecordsCount(batch));
            while (cursor.MoveNext())
            {
                if (RecordBatch.IsControl(batch))
                {
                    list.Add(new Rec(b + cursor.OffsetDelta, "<control>", null));
                    continue;
                }

                list.Add(new Rec(b + cursor.OffsetDelta, cursor.KeyLength < 0 ? null : Encoding.UTF8.GetString(cursor.Key), cursor.ValueLength < 0 ? null : Encoding.UTF8.GetString(cursor.Value)));
            }

            Assert.Equal(0, cursor.Error);
            d.Dispose();
        }

        return list;
    }

    private static void AssertLatestOnly(List<Rec> records, Dictionary<string, (long Offset, string? Value)> latest, long cleanedBelow)
    {
        foreach (var (key, (offset, value)) in latest)
        {
            var forKey = records.Where(r => r.Key == key).ToList();
            Assert.Contains(new Rec(offset, key, value), forKey);
            Assert.DoesNotContain(forKey, r => r.Offset < offset && r.Offset < cleanedBelow); // older versions in the cleaned range are gone
        }

        Assert.True(records.Select(r => r.Offset).SequenceEqual(records.Select(r => r.Offset).Order()), "offsets out of order");
    }

    [Fact]
    public async Task Cleaning_keeps_the_log_start_that_DeleteRecords_set_inside_the_first_segment()
    {
        LogConfig config = Compacted with { DeleteRetention = true };
        long start;
        await using (PartitionLog log = _f.Open(config))
        {
            await Overwrite(log, rounds: 12, keys: 6);
            await Seal(log);
            start = log.SegmentBaseOffsets[1] - 3; // inside the first segment, which therefore stays
            Assert.Equal(start, await log.DeleteRecordsBeforeAsync(start));
            LogCleaner cleaner = NewCleaner(log);
            Assert.True(cleaner.Clean(log, Now));
            Assert.Equal(start, log.LogStartOffset);
            Assert.True(log.SegmentBaseOffsets[0] <= start);
            Assert.All(ReadRecords(log), r => Assert.True(r.Offset >= start - 2, $"offset {r.Offset} below the log start {start} served")); // the batch holding the start may begin below it
            log.CheckInvariants();
        }

        await using PartitionLog reopened = _f.Open(config);
        Assert.Equal(start, reopened.LogStartOffset);
        reopened.CheckInvariants();
    }

    [Fact]
    public async Task Keeps_the_latest_value_per_key_at_its_offset_and_serves_every_offset_of_a_hole_with_the_next_kept_batch()
    {
        Dictionary<string, (long Offset, string? Value)> latest;
        List<Rec> before;
        long cleanEnd;
        await using (PartitionLog log = _f.Open(Compacted))
        {
            latest = await Overwrite(log, rounds: 12, keys: 6);
            await Seal(log);
            before = ReadRecords(log);
            long sizeBefore = log.SizeBytes;
            using LogCleaner cleaner = NewCleaner(log);
            Assert.True(cleaner.Clean(log, Now));
            cleanEnd = cleaner.Stats["demo-0"].CleanedUpTo;
            Assert.True(cleanEnd > latest.Values.Max(v => v.Offset));
            Assert.True(log.SizeBytes < sizeBefore / 2, $"{log.SizeBytes} bytes after, {sizeBefore} before");
            Assert.True(log.SegmentBaseOffsets.Count(b => b < cleanEnd) <= 2, string.Join(",", log.SegmentBaseOffsets));
            Assert.True(cleaner.Clean(log, Now)); // nothing dirty: the small segments left by the first pass merge
            Assert.Single(log.SegmentBaseOffsets, b => b < cleanEnd);
            log.CheckInvariants();

            List<Rec> after = ReadRecords(log);
            AssertLatestOnly(after, latest, cleanEnd);
            Assert.All(after, r => Assert.Contains(r, before)); // nothing invented: every record kept is one written, at its offset

            // Every offset in a removed range reads the next kept batch.
            var kept = after.Select(r => r.Offset).ToHashSet();
            for (long o = log.LogStartOffset; o < cleanEnd; o++)
            {
                using ReadResult read = log.Read(o, 1 << 16, minOneBatch: true);
                Assert.Equal(ReadError.None, read.Error);
                Assert.True(read.Records.Length > 0, $"nothing at offset {o}");
                long nextKept = after.Where(r => r.Offset >= o).Select(r => r.Offset).DefaultIfEmpty(long.MaxValue).Min();
                long lastOffset = RecordBatch.LastOffset(read.Records.Span);
                Assert.True(lastOffset >= o, $"batch at {o} ends at {lastOffset}");
                Assert.True(nextKept == long.MaxValue || RecordBatch.BaseOffset(read.Records.Span) <= nextKept);
            }

            Assert.Empty(_f.Warnings);
        }

        // And after a restart: same records, no warning about missing offsets.
        await using (PartitionLog reopened = _f.Open(Compacted))
        {
            AssertLatestOnly(ReadRecords(reopened), latest, cleanEnd);
            reopened.CheckInvariants();
        }

        Assert.Empty(_f.Warnings);
        Assert.Contains(File.ReadAllLines(Path.Combine(_f.DataDir, CleanerCheckpoint.FileName)), l => l == $"demo 0 {cleanEnd}");
    }

    [Fact]
    public async Task A_tombstone_is_kept_until_delete_retention_has_passed_since_its_first_cleaning_then_removed()
    {
        await using PartitionLog log = _f.Open(Compacted);
        var latest = await Overwrite(log, rounds: 3, keys: 4);
        long tombstone = (await log.AppendAsync(Keyed(("k1", null)), false)).BaseOffset;
        await Seal(log);
        using LogCleaner cleaner = NewCleaner(log);
        Assert.True(cleaner.Clean(log, Now));
        List<Rec> first = ReadRecords(log);
        Assert.Contains(new Rec(tombstone, "k1", null), first);
        Assert.DoesNotContain(first, r => r.Key == "k1" && r.Value is not null);

        // Just before the horizon: still there.
        _f.Time.Advance(Compacted.DeleteRetentionMs - 1000);
        await log.AppendAsync(Keyed(("z", "z")), false); // another key: the tombstone stays the latest for k1
        await Seal(log);
        Assert.True(cleaner.Clean(log, Now));
        Assert.Contains(new Rec(tombstone, "k1", null), ReadRecords(log));

        _f.Time.Advance(2000);
        await log.AppendAsync(Keyed(("z", "z")), false); // another key: the tombstone stays the latest for k1
        await Seal(log);
        Assert.True(cleaner.Clean(log, Now));
        List<Rec> after = ReadRecords(log);
        Assert.DoesNotContain(after, r => r.Key == "k1");
        Assert.Contains(after, r => r.Key == "k3" && r.Offset == latest["k3"].Offset);
    }

    [Theory]
    [InlineData("gzip")]
    [InlineData("snappy")]
    [InlineData("lz4")]
    [InlineData("zstd")]
    [InlineData("none")]
    public async Task Compressed_batches_are_filtered_and_recompressed_with_their_codec_unchanged_ones_copied(string codec)
    {
        await using PartitionLog log = _f.Open(Compacted);
        var written = new Dictionary<byte[], byte[]>();
        var latest = new Dictionary<string, (long Offset, string? Value)>();
        for (int r = 0; r < 6; r++)
        {
            byte[] plain = Keyed(("a", $"a{r}"), ("b", $"b{r}"), (r == 5 ? "c" : "a", $"x{r}"));
            byte[] batch = codec == "none" ? plain : CompressedBatches.Compressed(codec, plain);
            long b = (await log.AppendAsync(batch, false)).BaseOffset;
            latest["a"] = r == 5 ? (b, "a5") : (b + 2, $"x{r}");
            latest["b"] = (b + 1, $"b{r}");
            if (r == 5)
            {
                latest["c"] = (b + 2, "x5");
            }
        }

        await Seal(log);
        using LogCleaner cleaner = NewCleaner(log);
        Assert.True(cleaner.Clean(log, Now));
        List<byte[]> batches = LogFixture.ReadAll(log, 0);
        foreach (byte[] batch in batches.Where(b => RecordBatch.RecordsCount(b) > 0 && RecordBatch.BaseOffset(b) < 18))
        {
            Assert.Equal(codec == "none" ? CompressionType.None : CompressedBatches.Codec(codec), RecordBatch.CompressionCodec(batch));
        }

        var records = ReadRecords(log);
        AssertLatestOnly(records, latest, 18);
        Assert.Equal(3, records.Count(r => r.Offset < 18));
    }

    [Fact]
    public async Task Aborted_transaction_data_goes_and_its_marker_stays_until_no_data_of_it_is_left_and_the_horizon_passed()
    {
        await using PartitionLog log = _f.Open(Compacted);
        await log.AppendAsync(Keyed(("k", "committed-1")), false); // 0
        byte[] txn = BatchBuilder.Build([new TestRecord(0, "k"u8.ToArray(), "aborted"u8.ToArray())], attributes: 0x10, producerId: 9, producerEpoch: 0, baseSequence: 0);
        Assert.Equal(1, (await log.AppendAsync(txn, false)).BaseOffset);
        long abort = (await log.AppendAsync(TransactionTests.Marker(9, 0, commit: false), true, AppendOrigin.Coordinator)).BaseOffset;
        await log.AppendAsync(Keyed(("other", "x")), false);
        await Seal(log);

        using LogCleaner cleaner = NewCleaner(log);
        Assert.True(cleaner.Clean(log, Now));
        var records = ReadRecords(log);
        Assert.DoesNotContain(records, r => r.Value == "aborted");
        Assert.Contains(records, r => r.Key == "k" && r.Value == "committed-1"); // the aborted write did not hide the committed one
        Assert.Contains(records, r => r.Offset == abort && r.Key == "<control>"); // data was met in this pass: marker kept

        // The producer's last batch was aborted data: kept empty so its state survives a reload.
        Assert.Contains(LogFixture.ReadAll(log, 0), b => RecordBatch.BaseOffset(b) == 1 && RecordBatch.RecordsCount(b) == 0 && RecordBatch.ProducerId(b) == 9);

        // Later passes: the marker gets a delete horizon, then goes once it passed (the empty batch keeps nothing of the transaction).
        _f.Time.Advance(Compacted.DeleteRetentionMs + 1000);
        await log.AppendAsync(Keyed(("other", "y")), false);
        await Seal(log);
        Assert.True(cleaner.Clean(log, Now));
        Assert.Contains(ReadRecords(log), r => r.Offset == abort); // the empty producer batch is met each pass: the marker stays with it
        Assert.Contains(log.CollectAbortedTransactions(0, log.HighWatermark) ?? [], t => t.ProducerId == 9);
    }

    [Fact]
    public async Task Producer_state_survives_cleaning_and_reopen_so_a_retry_is_still_a_duplicate()
    {
        byte[] Idem(string key, string value, int seq) =>
            BatchBuilder.Build([new TestRecord(0, Encoding.UTF8.GetBytes(key), Encoding.UTF8.GetBytes(value))], producerId: 5, producerEpoch: 0, baseSequence: seq);

        long lastOffset = -1;
        long end;
        await using (PartitionLog log = _f.Open(Compacted))
        {
            for (int i = 0; i < 20; i++)
            {
                lastOffset = (await log.AppendAsync(Idem("same", $"v{i}", i), false)).BaseOffset;
            }

            await Seal(log);
            using LogCleaner cleaner = NewCleaner(log);
            Assert.True(cleaner.Clean(log, Now));
            Assert.Single(ReadRecords(log), r => r.Key == "same");
            end = log.LogEndOffset;
            AppendResult retry = await log.AppendAsync(Idem("same", "v19", 19), false);
            Assert.Equal(lastOffset, retry.BaseOffset); // recognised: answered with the original offset, nothing appended
            Assert.Equal(end, log.LogEndOffset);
        }

        await using (PartitionLog reopened = _f.Open(Compacted))
        {
            AppendResult retry = await reopened.AppendAsync(Idem("same", "v19", 19), false);
            Assert.Equal(lastOffset, retry.BaseOffset);
            Assert.Equal(end, reopened.LogEndOffset);
            Assert.Equal(end, (await reopened.AppendAsync(Idem("same", "v20", 20), false)).BaseOffset);
        }
    }

    [Fact]
    public async Task A_read_that_would_return_only_batches_without_records_to_a_sealed_segments_end_goes_on_at_the_next_segment()
    {
        byte[] Idem(string key, string value, int seq) =>
            BatchBuilder.Build([new TestRecord(0, Encoding.UTF8.GetBytes(key), Encoding.UTF8.GetBytes(value))], producerId: 7, producerEpoch: 0, baseSequence: seq);

        await using PartitionLog log = _f.Open(Compacted);
        await Overwrite(log, rounds: 6, keys: 6);
        for (int i = 0; i < 4; i++)
        {
            await log.AppendAsync(Idem("idem", $"i{i}", i), false); // producer 7's last sequence, overwritten below
        }

        await Seal(log);
        var latest = await Overwrite(log, rounds: 6, keys: 6);
        await log.AppendAsync(Keyed(("idem", "plain")), false);
        await Seal(log);
        using LogCleaner cleaner = NewCleaner(log);
        Assert.True(cleaner.Clean(log, Now));
        log.CheckInvariants();

        // The cleaned log holds what the rule is for: sealed segments that end in batches without records, one of
        // them a producer's last sequence, with a later segment.
        var segments = Directory.GetFiles(_f.PartitionDir, "*.log").Order().ToList();
        int endsEmpty = 0;
        bool producerState = false;
        foreach (string path in segments.SkipLast(1))
        {
            byte[] bytes = File.ReadAllBytes(path);
            var headers = new List<BatchHeader>();
            for (int p = 0; p < bytes.Length;)
            {
                Assert.True(RecordBatch.TryReadHeader(bytes.AsSpan(p), out BatchHeader h));
                headers.Add(h);
                producerState |= h.RecordsCount == 0 && RecordBatch.ProducerId(bytes.AsSpan(p)) == 7;
                p += h.TotalSize;
            }

            if (headers.Count > 0 && headers[^1].RecordsCount == 0)
            {
                endsEmpty++;
            }
        }

        Assert.True(endsEmpty > 0, "no sealed segment ends in a batch without records: " + string.Join(",", log.SegmentBaseOffsets));
        Assert.True(producerState, "no batch without records keeps producer 7's state");

        // From every offset, copied and zero-copy: batches with records, the first of them starting at or before the
        // next kept record (nothing skipped), or nothing when no record is left below the high watermark; never only
        // batches without records. A fetch wait wakes for records only.
        List<Rec> kept = ReadRecords(log);
        Assert.Contains(new Rec(latest["k0"].Offset, "k0", latest["k0"].Value), kept);
        for (long o = log.LogStartOffset; o <= log.HighWatermark; o++)
        {
            Rec? next = kept.Where(r => r.Offset >= o).Select(r => (Rec?)r).FirstOrDefault();
            foreach (bool zeroCopy in new[] { false, true })
            {
                using ReadResult read = log.Read(o, 1 << 16, minOneBatch: true, zeroCopy: zeroCopy);
                Assert.Equal(ReadError.None, read.Error);
                byte[] records = read.Records.ToArray();
                if (next is null)
                {
                    Assert.Empty(records);
                    continue;
                }

                Assert.True(records.Length > 0, $"nothing at offset {o} (zeroCopy {zeroCopy}) before the kept record at {next.Value.Offset}");
                long firstRecord = -1;
                for (int p = 0; p < records.Length && firstRecord < 0;)
                {
                    Assert.True(RecordBatch.TryReadHeader(records.AsSpan(p), out BatchHeader h));
                    if (h.RecordsCount > 0)
                    {
                        firstRecord = h.BaseOffset;
                    }

                    p += h.TotalSize;
                }

                Assert.True(firstRecord >= 0, $"only batches without records at offset {o} (zeroCopy {zeroCopy})");
                Assert.True(firstRecord <= next.Value.Offset, $"offset {o} (zeroCopy {zeroCopy}) skipped the kept record at {next.Value.Offset} to {firstRecord}");
            }

            Assert.True(log.BytesAvailable(o) > 0 == (next is not null), $"BytesAvailable({o}) = {log.BytesAvailable(o)}, next kept record {next?.Offset}");
        }

        Assert.Empty(_f.Warnings);
    }

    /// <summary>Copies the partition directory as it is at a step of the swap: what a kill -9 there leaves on disk.</summary>
    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.GetFiles(from))
        {
            File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        }
    }

    [Theory]
    [InlineData("swap", false)]
    [InlineData("deleted", false)]
    [InlineData("final", false)]
    [InlineData("swap", true)]
    [InlineData("deleted", true)]
    public async Task A_crash_at_each_step_of_the_swap_reopens_with_every_live_key(string step, bool damageSwap)
    {
        Dictionary<string, (long Offset, string? Value)> latest;
        using var crashed = new LogFixture();
        await using (PartitionLog log = _f.Open(Compacted))
        {
            latest = await Overwrite(log, rounds: 10, keys: 6);
            await Seal(log);
            bool copied = false;
            log.CleanerSwapHook = s =>
            {
                if (s == step && !copied)
                {
                    copied = true;
                    CopyDirectory(_f.PartitionDir, crashed.PartitionDir);
                }
            };
            using LogCleaner cleaner = NewCleaner(log);
            Assert.True(cleaner.Clean(log, Now));
            Assert.True(copied);
        }

        string[] swaps = Directory.GetFiles(crashed.PartitionDir, "*.log.swap");
        if (damageSwap)
        {
            Assert.NotEmpty(swaps);
            using var stream = new FileStream(swaps[0], FileMode.Open);
            stream.Position = 70;
            int b = stream.ReadByte();
            stream.Position = 70;
            stream.WriteByte((byte)(b ^ 0xff));
        }

        await using (PartitionLog reopened = crashed.Open(Compacted))
        {
            reopened.CheckInvariants();
            var records = ReadRecords(reopened);
            foreach (var (key, (offset, value)) in latest)
            {
                Assert.Contains(new Rec(offset, key, value), records);
            }

            Assert.Empty(Directory.GetFiles(crashed.PartitionDir, "*.swap"));
            Assert.Empty(Directory.GetFiles(crashed.PartitionDir, "*.deleted"));
            Assert.Empty(Directory.GetFiles(crashed.PartitionDir, "*.cleaned"));
        }

        if (damageSwap)
        {
            Assert.Contains(crashed.Warnings, w => w.Contains("is not used: no valid batch", StringComparison.Ordinal) || w.Contains("is not used: the batch", StringComparison.Ordinal));
            Assert.NotEmpty(Directory.GetFiles(Path.Combine(crashed.PartitionDir, "quarantine"), "*.swap.damaged-*"));
        }
        else
        {
            Assert.Empty(crashed.Warnings);
        }
    }

    [Fact]
    public async Task A_damaged_checkpoint_is_kept_aside_with_a_warning_and_cleaning_starts_from_the_log_start()
    {
        File.WriteAllText(Path.Combine(_f.DataDir, CleanerCheckpoint.FileName), "0\n7\ngarbage\n");
        await using PartitionLog log = _f.Open(Compacted);
        var latest = await Overwrite(log, rounds: 6, keys: 4);
        await Seal(log);
        using LogCleaner cleaner = NewCleaner(log);
        Assert.Contains(_f.Warnings, w => w.Contains("is damaged", StringComparison.Ordinal));
        Assert.Single(Directory.GetFiles(_f.DataDir, CleanerCheckpoint.FileName + ".damaged-*"));
        Assert.True(cleaner.Clean(log, Now));
        AssertLatestOnly(ReadRecords(log), latest, cleaner.Stats["demo-0"].CleanedUpTo);
    }

    [Fact]
    public async Task A_bad_crc_in_a_segment_stops_cleaning_that_partition_and_leaves_its_files_untouched()
    {
        await using PartitionLog log = _f.Open(Compacted);
        await Overwrite(log, rounds: 6, keys: 4);
        await Seal(log);
        string first = _f.SegmentPath(0);
        byte[] bytes = File.ReadAllBytes(first);
        bytes[RecordBatch.HeaderSize + 5] ^= 0xff;
        File.WriteAllBytes(first, bytes);
        // Segment files only: producer snapshots are written in the background after a roll.
        string[] SegmentFiles() => Directory.GetFiles(_f.PartitionDir).Where(p => !p.Contains(".snapshot", StringComparison.Ordinal)).Order().ToArray();
        string[] filesBefore = SegmentFiles();
        using LogCleaner cleaner = NewCleaner(log);
        Assert.False(cleaner.Clean(log, Now));
        Assert.Contains(_f.Warnings, w => w.Contains("fails its CRC check", StringComparison.Ordinal));
        Assert.Equal(filesBefore, SegmentFiles());
        Assert.Equal(bytes, File.ReadAllBytes(first));
        Assert.Equal(1, cleaner.Stats["demo-0"].Errors);
    }

    [Fact]
    public async Task A_compacted_topic_rolls_its_active_segment_after_max_compaction_lag_when_that_is_shorter_than_segment_ms()
    {
        var config = Compacted with { SegmentBytes = 1 << 20, SegmentMs = 3_600_000, MaxCompactionLagMs = 1000 };
        await using PartitionLog log = _f.Open(config);
        await log.AppendAsync(Keyed(("a", "1")), false);
        _f.Time.Advance(1001);
        await log.AppendAsync(Keyed(("a", "2")), false);
        Assert.Equal(2, log.SegmentCount);

        using var other = new LogFixture();
        await using PartitionLog plain = other.Open(config with { Compact = false });
        await plain.AppendAsync(Keyed(("a", "1")), false);
        other.Time.Advance(1001);
        await plain.AppendAsync(Keyed(("a", "2")), false);
        Assert.Equal(1, plain.SegmentCount); // without compaction max.compaction.lag.ms means nothing
    }

    [Fact]
    public async Task Data_of_a_transaction_aborted_by_a_marker_in_the_active_segment_does_not_hide_the_committed_value()
    {
        await using PartitionLog log = _f.Open(Compacted);
        await log.AppendAsync(Keyed(("k", "committed")), false); // 0
        byte[] txn = BatchBuilder.Build([new TestRecord(0, "k"u8.ToArray(), "aborted"u8.ToArray())], attributes: 0x10, producerId: 9, producerEpoch: 0, baseSequence: 0);
        await log.AppendAsync(txn, false); // 1
        await Seal(log);
        await log.AppendAsync(TransactionTests.Marker(9, 0, commit: false), true, AppendOrigin.Coordinator); // in the active segment
        Assert.Equal(log.HighWatermark, log.LastStableOffset);

        using LogCleaner cleaner = NewCleaner(log);
        Assert.True(cleaner.Clean(log, Now));
        var records = ReadRecords(log);
        Assert.Contains(records, r => r.Key == "k" && r.Value == "committed");
        Assert.DoesNotContain(records, r => r.Value == "aborted");
    }

    [Fact]
    public async Task A_swap_whose_old_segments_retention_deleted_is_set_aside_and_does_not_bring_them_back()
    {
        using var crashed = new LogFixture();
        await using (PartitionLog log = _f.Open(Compacted))
        {
            await Overwrite(log, rounds: 10, keys: 6);
            await Seal(log);
            log.CleanerSwapHook = s =>
            {
                if (s == "swap" && !Directory.Exists(crashed.PartitionDir))
                {
                    CopyDirectory(_f.PartitionDir, crashed.PartitionDir);
                }
            };
            using LogCleaner cleaner = NewCleaner(log);
            Assert.True(cleaner.Clean(log, Now));
        }

        // As retention would have done after the swap files were written: the oldest segment is gone.
        string swap = Assert.Single(Directory.GetFiles(crashed.PartitionDir, "*.log.swap"));
        string name = Path.GetFileName(swap)[..20];
        foreach (string f in Directory.GetFiles(crashed.PartitionDir, name + ".*").Where(f => !f.EndsWith(".swap", StringComparison.Ordinal)))
        {
            File.Delete(f);
        }

        long nextBase = Directory.GetFiles(crashed.PartitionDir, "*.log").Select(f => long.Parse(Path.GetFileName(f)[..20])).Min();
        await using (PartitionLog reopened = crashed.Open(Compacted))
        {
            Assert.Equal(nextBase, reopened.LogStartOffset);
            reopened.CheckInvariants();
        }

        Assert.Contains(crashed.Warnings, w => w.Contains("deleted by retention", StringComparison.Ordinal));
        Assert.Single(Directory.GetFiles(Path.Combine(crashed.PartitionDir, "quarantine"), "*.swap.damaged-*"));
    }

    [Fact]
    public async Task A_commit_marker_goes_only_once_no_batch_of_its_transaction_is_left_and_its_horizon_passed()
    {
        byte[] TxnBatch(string key, string value, int sequence) =>
            BatchBuilder.Build([new TestRecord(0, Encoding.UTF8.GetBytes(key), Encoding.UTF8.GetBytes(value))], attributes: 0x10, producerId: 9, producerEpoch: 0, baseSequence: sequence);

        await using PartitionLog log = _f.Open(Compacted);
        await log.AppendAsync(TxnBatch("a", "txn1", 0), false); // 0
        long commit1 = (await log.AppendAsync(TransactionTests.Marker(9, 0, commit: true), true, AppendOrigin.Coordinator)).BaseOffset;
        await log.AppendAsync(TxnBatch("z", "txn2", 1), false);
        long commit2 = (await log.AppendAsync(TransactionTests.Marker(9, 0, commit: true), true, AppendOrigin.Coordinator)).BaseOffset;
        await log.AppendAsync(Keyed(("a", "plain")), false); // overwrites txn1's only record
        await Seal(log);
        using LogCleaner cleaner = NewCleaner(log);

        Assert.True(cleaner.Clean(log, Now)); // txn1's batch goes; its marker stays: the batch was met in this pass
        var records = ReadRecords(log);
        Assert.DoesNotContain(records, r => r.Value == "txn1");
        Assert.Contains(records, r => r.Offset == commit1);

        Assert.True(cleaner.Clean(log, Now)); // no batch of txn1 left: the marker gets its delete horizon
        Assert.Contains(ReadRecords(log), r => r.Offset == commit1);
        Assert.Contains(LogFixture.ReadAll(log, 0), b => RecordBatch.BaseOffset(b) == commit1 && RecordBatch.HasDeleteHorizon(b));

        _f.Time.Advance(Compacted.DeleteRetentionMs + 1);
        Assert.True(cleaner.Clean(log, Now)); // past the horizon: gone
        records = ReadRecords(log);
        Assert.DoesNotContain(records, r => r.Offset == commit1);
        Assert.Contains(records, r => r.Offset == commit2); // txn2's data is still there (the producer's last batch)
        Assert.Contains(records, r => r.Value == "txn2");
    }
}
