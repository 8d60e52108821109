using Kiou.Protocol.Records;
using Kiou.Storage.Cleaner;
using Kiou.Storage.Tests.Support;
using Kiou.Testing;

namespace Kiou.Storage.Tests;

/// <summary>
/// The read cache of recently written data (<see cref="ReadCache"/>): the O_DIRECT write-behind's written chunks stay in
/// memory for fetches. What must hold: every read returns exactly the log's bytes, whole batches from the one holding the
/// offset, whether they come from memory or the file; the cache never holds more than its budget; a consumer behind the
/// producer reads from memory; after truncation, retention, compaction and close nothing of the old bytes is held or
/// served; with buffered writes (no write-behind) it stays empty.
/// </summary>
public sealed class ReadCacheTests : IDisposable
{
    private const int ENOSPC = -28;
    private readonly LogFixture _f = new(direct: true);

    public void Dispose() => _f.Dispose();

    private ReadCache UseCache(long bytes)
    {
        var reads = new ReadCache(bytes);
        _f.Files = new SegmentFileCache(reads: reads);
        return reads;
    }

    private static byte[] Batch(Random rng, int valueBytes, int count = 1)
    {
        var records = new TestRecord[count];
        for (int i = 0; i < count; i++)
        {
            var value = new byte[valueBytes];
            rng.NextBytes(value);
            records[i] = new TestRecord(i, null, value);
        }

        return BatchBuilder.Build(records);
    }

    /// <summary>A read, as a consumer's fetch: the write-behind keeps a partition's chunks in the cache only while it is read.</summary>
    private static PartitionLog Reading(PartitionLog log)
    {
        log.Read(log.HighWatermark, 1, minOneBatch: true).Dispose();
        return log;
    }

    /// <summary>Appends <paramref name="groups"/> groups of up to six concurrent appends (large rounds, O_DIRECT); returns the batches by offset.</summary>
    private static async Task<List<byte[]>> AppendGroups(PartitionLog log, Random rng, int groups, int[] sizes, Action? afterGroup = null)
    {
        var all = new List<(long BaseOffset, byte[] Batch)>();
        for (int g = 0; g < groups; g++)
        {
            byte[][] batches = Enumerable.Range(0, rng.Next(1, 7)).Select(_ => Batch(rng, sizes[rng.Next(sizes.Length)], rng.Next(1, 4))).ToArray();
            AppendResult[] results = await Task.WhenAll(batches.Select(b => log.AppendAsync(b, waitDurable: false).AsTask()));
            for (int i = 0; i < batches.Length; i++)
            {
                all.Add((results[i].BaseOffset, batches[i]));
            }

            afterGroup?.Invoke();
        }

        return all.OrderBy(x => x.BaseOffset).Select(x => x.Batch).ToList();
    }

    /// <summary>
    /// Reads at <paramref name="offset"/> and checks the result is exactly whole batches of <paramref name="stored"/>
    /// from the one holding the offset, within the budget (or the first batch alone). Returns whether it came from memory.
    /// </summary>
    private static bool AssertRead(PartitionLog log, List<byte[]> stored, long offset, int maxBytes, bool zeroCopy)
    {
        using ReadResult r = log.Read(offset, maxBytes, minOneBatch: true, zeroCopy);
        Assert.Equal(ReadError.None, r.Error);
        byte[] got = r.Records.ToArray(); // a file region is read here with pread: the file's bytes
        int i = stored.FindIndex(b => RecordBatch.LastOffset(b) >= offset);
        Assert.True(got.Length > 0, $"nothing at offset {offset}");
        int at = 0;
        while (at < got.Length)
        {
            Assert.True(i < stored.Count, $"read at {offset} returned {got.Length} bytes, past the log's end");
            byte[] expected = stored[i];
            Assert.True(got.Length - at >= expected.Length, $"read at {offset}: a batch cut at byte {at} of {got.Length}");
            Assert.True(expected.AsSpan().SequenceEqual(got.AsSpan(at, expected.Length)), $"read at {offset} (max {maxBytes}, zero-copy {zeroCopy}): batch {RecordBatch.BaseOffset(expected)} differs at byte {at}");
            at += expected.Length;
            i++;
        }

        Assert.True(got.Length <= maxBytes || got.Length == RecordBatch.TotalSize(got), "over the budget with more than one batch");
        return r.FileRecords is null;
    }

    [Fact]
    public async Task RandomReads_ReturnExactlyTheLogsBytes_FromMemoryOrFile_WithinTheBudget()
    {
        ReadCache reads = UseCache(1 << 20); // sixteen chunks: older data comes from the file
        var config = new LogConfig { SegmentBytes = 1_500_000, IndexIntervalBytes = 4096 };
        var rng = new Random(42);
        int[] sizes = [100, 3000, 20_000, 70_000, 200_000, 400_000];
        PartitionLog log = Reading(_f.Open(config));
        try
        {
            // A reader that runs while appends land: every region it gets is whole, CRC-valid batches from the offset's on.
            using var stop = new CancellationTokenSource();
            long checkedReads = 0;
            Task reader = Task.Run(() =>
            {
                var r = new Random(1);
                while (!stop.IsCancellationRequested)
                {
                    long hw = log.HighWatermark;
                    if (hw == 0)
                    {
                        continue;
                    }

                    long offset = r.NextInt64(hw);
                    using ReadResult result = log.Read(offset, r.Next(1, 2_000_000), minOneBatch: true, zeroCopy: r.Next(2) == 0);
                    if (result.Error == ReadError.OffsetOutOfRange)
                    {
                        continue;
                    }

                    Assert.Equal(ReadError.None, result.Error);
                    ReadOnlySpan<byte> span = result.Records.Span;
                    Assert.True(span.Length > 0);
                    bool first = true;
                    while (span.Length > 0)
                    {
                        Assert.True(RecordBatch.TryReadHeader(span, out BatchHeader h));
                        Assert.True(RecordBatch.IsCrcValid(span[..h.TotalSize]), "a served batch fails its CRC");
                        Assert.True(!first || (h.BaseOffset <= offset && h.NextOffset > offset), "the first batch does not hold the offset");
                        first = false;
                        span = span[h.TotalSize..];
                    }

                    checkedReads++;
                }
            });

            List<byte[]> stored = await AppendGroups(log, rng, 40, sizes, () =>
            {
                Assert.InRange(reads.SizeBytes, 0, reads.CapacityBytes);
                reads.CheckInvariants((ok, what) => Assert.True(ok, what));
            });
            await stop.CancelAsync();
            await reader;
            Assert.True(checkedReads > 0);
            Assert.True(log.SegmentCount > 3, $"{log.SegmentCount} segments: the test wants rolls");
            Assert.Equal(reads.CapacityBytes, reads.SizeBytes); // full, not over

            int fromMemory = 0;
            long hw = log.HighWatermark;
            for (int i = 0; i < 400; i++)
            {
                // Half the reads near the end (held), half anywhere (mostly not).
                long offset = i % 2 == 0 ? hw - 1 - rng.NextInt64(Math.Min(hw, 40)) : rng.NextInt64(hw);
                int max = rng.Next(3) == 0 ? 1 : rng.Next(1, 1_500_000);
                fromMemory += AssertRead(log, stored, offset, max, zeroCopy: rng.Next(2) == 0) ? 1 : 0;
            }

            Assert.True(fromMemory > 50, $"{fromMemory} of 400 reads from memory");
            Assert.True(reads.HitBytes > 0 && reads.MissBytes > 0);

            // The same log read with the cache off, and after a reopen: the same bytes.
            await log.DisposeAsync();
            Assert.Equal(0, reads.SizeBytes); // closing the segments dropped their chunks
            UseCache(0);
            log = _f.Open(config);
            Assert.Equal(stored, LogFixture.ReadAll(log, 0));
        }
        finally
        {
            await log.DisposeAsync();
        }
    }

    [Fact]
    public async Task ConsumerBehindTheProducer_ReadsFromMemory_NotTheFile()
    {
        ReadCache reads = UseCache(64 << 20);
        var rng = new Random(7);
        await using PartitionLog log = Reading(_f.Open(new LogConfig { IndexIntervalBytes = 4096 }));
        List<byte[]> stored = await AppendGroups(log, rng, 20, [100_000, 150_000]);
        Assert.True(stored.Sum(b => b.Length) > 4 << 20);

        // Zero the file behind the log's back: what still reads correctly came from memory.
        long length = new FileInfo(_f.SegmentPath(0)).Length;
        using (var fs = new FileStream(_f.SegmentPath(0), FileMode.Open, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete))
        {
            fs.Write(new byte[length]);
        }

        long behind = RecordBatch.BaseOffset(stored[stored.Count / 4]); // megabytes behind the end
        long offset = behind;
        while (offset < log.HighWatermark)
        {
            foreach (bool zeroCopy in new[] { true, false })
            {
                Assert.True(AssertRead(log, stored, offset, 1 << 20, zeroCopy), $"offset {offset} not served from memory");
            }

            using ReadResult r = log.Read(offset, 1 << 20, minOneBatch: true, zeroCopy: true);
            offset = RecordBatch.LastOffset(r.Records.Span[^RecordBatch.TotalSize(LastBatch(r.Records.Span))..]) + 1;
        }

        Assert.Equal(0, reads.MissBytes);
    }

    private static ReadOnlySpan<byte> LastBatch(ReadOnlySpan<byte> batches)
    {
        while (true)
        {
            int size = RecordBatch.TotalSize(batches);
            if (size == batches.Length)
            {
                return batches;
            }

            batches = batches[size..];
        }
    }

    [Fact]
    public async Task FailedRound_Truncation_ThenNewAppends_ReadTheNewBytes()
    {
        ReadCache reads = UseCache(4 << 20);
        var rng = new Random(5);
        await using PartitionLog log = Reading(_f.Open());
        List<byte[]> stored = await AppendGroups(log, rng, 6, [100_000, 40_000]);
        Assert.True(reads.SizeBytes > 0);

        bool diskFull = true;
        _f.Device.WriteFault = _ => diskFull ? ENOSPC : null;
        await Assert.ThrowsAsync<StorageException>(async () => await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => log.AppendAsync(Batch(rng, 90_000), false).AsTask())));
        diskFull = false;

        // The failed appends' positions are written again with other bytes.
        stored.AddRange(await AppendGroups(log, rng, 4, [70_000, 130_000]));
        Assert.Equal(stored, LogFixture.ReadAll(log, 0));
        for (int i = 0; i < stored.Count; i++)
        {
            AssertRead(log, stored, RecordBatch.BaseOffset(stored[i]), 1 << 20, zeroCopy: true);
        }

        reads.CheckInvariants((ok, what) => Assert.True(ok, what));
        log.CheckInvariants();
    }

    [Fact]
    public async Task Retention_DeletesSegments_AndTheirChunksWithThem()
    {
        ReadCache reads = UseCache(16 << 20);
        var rng = new Random(9);
        var config = new LogConfig { SegmentBytes = 700_000, RetentionBytes = 1_500_000 };
        await using PartitionLog log = Reading(_f.Open(config));
        List<byte[]> stored = await AppendGroups(log, rng, 12, [60_000, 150_000]);
        long held = reads.SizeBytes;
        Assert.True(log.SegmentCount > 3);
        await log.FlushAsync();
        await log.WhenBackgroundIdleAsync();
        log.EnforceRetention(_f.Time.NowMs);
        Assert.True(log.LogStartOffset > 0);
        Assert.True(reads.SizeBytes < held, "the deleted segments' chunks are still held");
        reads.CheckInvariants((ok, what) => Assert.True(ok, what));
        using (ReadResult gone = log.Read(0, 1 << 20, minOneBatch: true))
        {
            Assert.Equal(ReadError.OffsetOutOfRange, gone.Error);
        }

        Assert.Equal(stored.Where(b => RecordBatch.LastOffset(b) >= log.LogStartOffset).ToList(), LogFixture.ReadAll(log, log.LogStartOffset));
    }

    [Fact]
    public async Task Compaction_ReplacesSegments_ReadsServeTheCleanedBytes()
    {
        ReadCache reads = UseCache(16 << 20);
        var config = new LogConfig { Compact = true, DeleteRetention = false, SegmentBytes = 400_000, IndexIntervalBytes = 4096, MinCleanableDirtyRatio = 0 };
        var rng = new Random(3);
        await using PartitionLog log = Reading(_f.Open(config));
        for (int round = 0; round < 6; round++)
        {
            var records = Enumerable.Range(0, 4).Select(k =>
            {
                var value = new byte[30_000];
                rng.NextBytes(value);
                return new TestRecord(k, System.Text.Encoding.UTF8.GetBytes($"k{k}"), value);
            }).ToList();
            await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => log.AppendAsync(BatchBuilder.Build(records), false).AsTask()));
        }

        // Roll so that the keyed records are sealed (cleanable), then clean.
        long keyedEnd = log.LogEndOffset;
        while (log.SegmentBaseOffsets[^1] < keyedEnd)
        {
            await log.AppendAsync(Batch(rng, 100_000), false);
        }

        await log.FlushAsync();
        await log.WhenBackgroundIdleAsync();
        List<CleanerTests.Rec> before = CleanerTests.ReadRecords(log);
        Assert.True(reads.SizeBytes > 0);
        var cleaner = new LogCleaner(_f.DataDir, new LogCleanerSettings { IoMaxBytesPerSecond = long.MaxValue, IoBufferBytes = 4096 }, () => [log], _f.Time, _f.Lines.Enqueue, _f.Warnings.Enqueue);
        Assert.True(cleaner.Clean(log, _f.Time.GetUtcNow().ToUnixTimeMilliseconds()));
        reads.CheckInvariants((ok, what) => Assert.True(ok, what)); // nothing of the replaced segments held

        List<CleanerTests.Rec> after = CleanerTests.ReadRecords(log);
        Assert.True(after.Count < before.Count, "nothing was cleaned");
        var latest = before.Where(r => r.Key is not null).GroupBy(r => r.Key).ToDictionary(g => g.Key ?? string.Empty, g => g.Last().Offset);
        Assert.Equal(latest.Values.Order().ToList(), after.Where(r => r.Key is not null).Select(r => r.Offset).ToList()); // each key's last record only
        Assert.True(before.Where(r => latest.ContainsValue(r.Offset)).SequenceEqual(after.Where(r => r.Key is not null)), "a kept record's bytes differ");
    }

    [Fact]
    public async Task BufferedWrites_LeaveTheCacheEmpty()
    {
        using var f = new LogFixture(direct: false);
        var reads = new ReadCache(8 << 20);
        f.Files = new SegmentFileCache(reads: reads);
        var rng = new Random(1);
        await using PartitionLog log = Reading(f.Open());
        List<byte[]> stored = await AppendGroups(log, rng, 10, [100_000, 300_000]);
        Assert.Null(log.ActiveTail);
        Assert.Equal(0, reads.SizeBytes);
        Assert.Equal(stored, LogFixture.ReadAll(log, 0));
    }

    [Fact]
    public async Task IdleChunks_AreFreedAfterTheirAge()
    {
        ReadCache reads = UseCache(8 << 20);
        await using PartitionLog log = Reading(_f.Open());
        await AppendGroups(log, new Random(2), 4, [200_000]);
        Assert.True(reads.SizeBytes > 0);
        reads.EvictOlderThan(60_000);
        Assert.True(reads.SizeBytes > 0);
        reads.EvictOlderThan(-1); // everything is older than "a moment from now"
        Assert.Equal(0, reads.SizeBytes);
        reads.CheckInvariants((ok, what) => Assert.True(ok, what));
    }

    [Fact]
    public async Task A_partition_nobody_reads_keeps_nothing_in_the_cache()
    {
        // Filling the cache costs the producer (new memory); it is paid only for partitions with readers.
        ReadCache reads = UseCache(64 << 20);
        var rng = new Random(11);
        await using PartitionLog log = _f.Open();
        List<byte[]> stored = await AppendGroups(log, rng, 8, [150_000, 250_000]);
        Assert.True(log.ActiveTail is not null, "the write-behind is not in use");
        Assert.Equal(0, reads.SizeBytes);

        // A reader arrives: what is written from then on is kept.
        Reading(log);
        stored.AddRange(await AppendGroups(log, rng, 8, [150_000, 250_000]));
        long held = reads.SizeBytes;
        Assert.True(held > 0, "nothing kept for a partition being read");

        // Nobody has read it for longer than the window: nothing more is kept.
        _f.Time.Advance(ReadCache.ReaderWindowMs + 1);
        stored.AddRange(await AppendGroups(log, rng, 8, [150_000, 250_000]));
        Assert.True(reads.SizeBytes <= held, $"{reads.SizeBytes} bytes held, {held} before the window ended");
        Assert.Equal(stored, LogFixture.ReadAll(log, 0));
        reads.CheckInvariants((ok, what) => Assert.True(ok, what));
    }
}
