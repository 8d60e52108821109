using Kiou.Protocol.Records;
using Kiou.Storage.Tests.Support;
using Kiou.Testing;

namespace Kiou.Storage.Tests;

/// <summary>
/// The O_DIRECT write-behind (<see cref="DirectTail"/>): appends staged in page-aligned chunks and written a page-aligned
/// round at a time through an O_DIRECT descriptor of the segment (here by the synchronous device, through the fault
/// injector). What must hold: the bytes read back are the bytes appended, across chunk, page and segment boundaries;
/// the file ends exactly at the log once a segment is sealed or the log is closed, and after a crash only zero padding
/// is cut; a round in flight holds back the high watermark and later appends share the next round; a failed round fails
/// its appends, damages nothing, and the partition resumes.
/// </summary>
public sealed class DirectTailTests : IDisposable
{
    private const int ENOSPC = -28;
    private readonly LogFixture _f = new(direct: true);

    public void Dispose() => _f.Dispose();

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

    [Fact]
    public async Task ConcurrentAppendsOfEverySize_ReadBackExactly_SealedFilesEndAtTheLog()
    {
        var config = new LogConfig { SegmentBytes = 1_500_000, IndexIntervalBytes = 4096 };
        PartitionLog log = _f.Open(config);
        var rng = new Random(7);
        int[] sizes = [1, 10, 100, 1000, 4000, 4096, 5000, 70_000, 262_144, 300_000, 600_000];
        var batches = new List<byte[]>();
        for (int i = 0; i < 60; i++)
        {
            batches.Add(Batch(rng, sizes[rng.Next(sizes.Length)], rng.Next(1, 3)));
        }

        // Eight appenders at once: the copies into the tail happen in reservation order under the partition lock.
        var results = new AppendResult[batches.Count];
        await Parallel.ForEachAsync(Enumerable.Range(0, batches.Count), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (i, _) =>
            results[i] = await log.AppendAsync(batches[i], waitDurable: false));

        var byOffset = results.Select((r, i) => (r.BaseOffset, Batch: batches[i])).OrderBy(x => x.BaseOffset).ToList();
        long expected = 0;
        foreach (var (baseOffset, batch) in byOffset)
        {
            Assert.Equal(expected, baseOffset);
            expected += RecordBatch.LastOffsetDelta(batch) + 1;
        }

        Assert.Equal(expected, log.HighWatermark);
        Assert.Equal(byOffset.Select(x => x.Batch).ToList(), LogFixture.ReadAll(log, 0));
        Assert.True(log.SegmentCount > 3, $"{log.SegmentCount} segments: the test wants rolls");
        log.CheckInvariants();

        IReadOnlyList<long> bases = log.SegmentBaseOffsets;
        for (int i = 0; i < bases.Count - 1; i++)
        {
            long logical = byOffset.Where(x => x.BaseOffset >= bases[i] && x.BaseOffset < bases[i + 1]).Sum(x => (long)x.Batch.Length);
            Assert.Equal(logical, new FileInfo(_f.SegmentPath(bases[i])).Length); // padding cut at seal
        }

        long activeLogical = byOffset.Where(x => x.BaseOffset >= bases[^1]).Sum(x => (long)x.Batch.Length);
        long activeFile = new FileInfo(_f.SegmentPath(bases[^1])).Length;
        Assert.InRange(activeFile, activeLogical, DirectTail.AlignUp(activeLogical));

        await log.DisposeAsync();
        Assert.Equal(activeLogical, new FileInfo(_f.SegmentPath(bases[^1])).Length); // and at close

        await using PartitionLog reopened = _f.Open(config);
        Assert.DoesNotContain(_f.Lines, l => l.Contains("truncated") || l.Contains("padding") || l.Contains("rebuilding"));
        Assert.Equal(byOffset.Select(x => x.Batch).ToList(), LogFixture.ReadAll(reopened, 0));
    }

    [Fact]
    public async Task Crash_RecoveryCutsOnlyTheZeroPadding_AndAppendsContinueOnThePartialPage()
    {
        var rng = new Random(11);
        PartitionLog log = _f.Open();
        var stored = new List<byte[]>();
        for (int i = 0; i < 7; i++)
        {
            byte[] b = Batch(rng, DirectTail.DirectMinRoundBytes + 333 + (i * 1111)); // large: O_DIRECT rounds, padded
            await log.AppendAsync(b, waitDurable: false);
            stored.Add(b);
        }

        long logical = stored.Sum(b => (long)b.Length);
        Assert.NotEqual(0, logical % DirectTail.PageSize);
        Assert.Equal(DirectTail.AlignUp(logical), new FileInfo(_f.SegmentPath(0)).Length);
        await log.FlushAsync();
        await log.WhenBackgroundIdleAsync();

        // A crash: the log is abandoned without closing; a new one opens the same directory.
        PartitionLog recovered = _f.Open();
        try
        {
            string line = Assert.Single(_f.Lines, l => l.Contains("zero padding"));
            Assert.Contains($"cut {DirectTail.AlignUp(logical) - logical} bytes", line);
            Assert.Equal(logical, new FileInfo(_f.SegmentPath(0)).Length);
            Assert.Equal(stored, LogFixture.ReadAll(recovered, 0));

            // The first append after opening re-reads the partial page from the file: the page's old bytes stay.
            byte[] more = Batch(rng, 2500);
            AppendResult r = await recovered.AppendAsync(more, waitDurable: false);
            Assert.Equal(7, r.BaseOffset);
            stored.Add(more);
            Assert.Equal(stored, LogFixture.ReadAll(recovered, 0));
        }
        finally
        {
            await recovered.DisposeAsync();
        }

        await using PartitionLog again = _f.Open();
        Assert.Equal(stored, LogFixture.ReadAll(again, 0));
    }

    [Fact]
    public async Task AppendsBehindARoundInFlight_ShareTheNextRound_AndStayUnpublishedUntilItCompletes()
    {
        var rng = new Random(3);
        await using PartitionLog log = _f.Open();
        _f.Device.HoldWrites = true;
        var first = log.AppendAsync(Batch(rng, 1000), waitDurable: false).AsTask();
        Assert.Equal(1, _f.Device.WritesIssued); // one round, one piece
        var later = new List<Task<AppendResult>>();
        for (int i = 0; i < 40; i++)
        {
            later.Add(log.AppendAsync(Batch(rng, 4000), waitDurable: false).AsTask());
        }

        Assert.Equal(1, _f.Device.WritesIssued); // the later appends only staged
        Assert.Equal(0, log.HighWatermark);
        using (ReadResult r = log.Read(0, 1 << 20, minOneBatch: true))
        {
            Assert.Equal(0, r.Records.Length); // a fetch never passes the completed tail
        }

        Assert.False(first.IsCompleted);
        _f.Device.ReleaseAllWrites();
        await first;
        await Task.WhenAll(later);
        Assert.Equal(41, log.HighWatermark);

        // 40 x ~4 KiB staged behind the first round: the second round is one write of pieces (one per chunk). The
        // first (1 KiB) went buffered, the second (160 KiB) through O_DIRECT, and the bytes read back across the switch.
        Assert.InRange(_f.Device.WritesIssued, 2, 2 + (40 * 4100 / DirectTail.ChunkSize) + 1);
        DirectTail tail = log.ActiveTail!;
        Assert.Equal((1, 1), (tail.BufferedRounds, tail.DirectRounds));
        Assert.Equal(0, tail.ChunkCount); // idle: only the partial page is kept
        Assert.Equal(41, LogFixture.ReadAll(log, 0).Count);
        log.CheckInvariants();
    }

    [Fact]
    public async Task TailFetches_AreServedFromMemory_OlderBytesFromTheFile()
    {
        _f.Files = new SegmentFileCache(reads: new ReadCache(0)); // the tail's own newest bytes alone (ReadCacheTests: the cache)
        var rng = new Random(13);
        await using PartitionLog log = _f.Open();
        var stored = new List<byte[]>();
        for (int i = 0; i < 30; i++)
        {
            byte[] b = Batch(rng, 2000);
            await log.AppendAsync(b, waitDurable: false);
            stored.Add(b);
        }

        // Overwrite the whole file on disk behind the log's back: what still reads correctly came from memory.
        long length = new FileInfo(_f.SegmentPath(0)).Length;
        using (var fs = new FileStream(_f.SegmentPath(0), FileMode.Open, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete))
        {
            fs.Write(new byte[length]);
        }

        foreach (bool zeroCopy in new[] { false, true })
        {
            using ReadResult tail = log.Read(29, 1 << 20, minOneBatch: true, zeroCopy);
            Assert.Null(tail.FileRecords); // a copy from memory, not a sendfile region
            Assert.Equal(stored[29], tail.Records.ToArray());
            using ReadResult lastFew = log.Read(27, 1 << 20, minOneBatch: true, zeroCopy);
            Assert.Equal(stored.Skip(27).SelectMany(b => b).ToArray(), lastFew.Records.ToArray());
        }

        // Offset 0 is older than the 32 KiB kept: it comes from the (now zeroed) file, and zeros are never served.
        using ReadResult zeroed = log.Read(0, 1 << 20, minOneBatch: true);
        Assert.Equal(ReadError.Corrupt, zeroed.Error);
        Assert.Equal(0, zeroed.Records.Length);
    }

    [Fact]
    public async Task FileSystemWithoutODirect_AppendsGoBuffered_WithOneLogLine()
    {
        _f.Device.DirectOpenErrno = 22; // EINVAL, what open(O_DIRECT) returns on such a file system
        var rng = new Random(9);
        var config = new LogConfig { SegmentBytes = 20_000 };
        var stored = new List<byte[]>();
        await using (PartitionLog log = _f.Open(config))
        {
            for (int i = 0; i < 12; i++)
            {
                byte[] b = Batch(rng, 3000);
                await log.AppendAsync(b, waitDurable: false);
                stored.Add(b);
            }

            Assert.Null(log.ActiveTail);
            Assert.True(log.SegmentCount > 1);
            Assert.Equal(stored, LogFixture.ReadAll(log, 0));
            Assert.Equal(stored.Sum(b => (long)b.Length), log.SegmentBaseOffsets.Sum(b => new FileInfo(_f.SegmentPath(b)).Length)); // no padding
        }

        // Once per broker (a static flag): this test may or may not be the first to log it.
        Assert.True(_f.Lines.Count(l => l.Contains("O_DIRECT")) <= 1);
        Assert.All(_f.Lines.Where(l => l.Contains("O_DIRECT")), l => Assert.Contains("does not support it", l));
    }

    [Fact]
    public async Task FailedRound_FailsItsAppends_NoDamage_ResumesOnTheSamePage()
    {
        var rng = new Random(5);
        await using PartitionLog log = _f.Open();
        var stored = new List<byte[]>();
        for (int i = 0; i < 3; i++)
        {
            byte[] b = Batch(rng, 1500);
            await log.AppendAsync(b, waitDurable: false);
            stored.Add(b);
        }

        long sizeBefore = stored.Sum(b => (long)b.Length);
        bool diskFull = true;
        _f.Device.WriteFault = _ => diskFull ? ENOSPC : null;
        var ex = await Assert.ThrowsAsync<StorageException>(async () => await log.AppendAsync(Batch(rng, 800), false));
        Assert.Equal(28, ex.Errno);
        Assert.Contains("demo-0", ex.Message);
        Assert.True(log.IsFailed);
        Assert.Equal(3, log.HighWatermark);
        Assert.Contains(_f.Lines, l => l.Contains("write-behind round") && l.Contains("ENOSPC"));

        diskFull = false;
        byte[] next = Batch(rng, 900);
        AppendResult r = await log.AppendAsync(next, false);
        Assert.Equal(3, r.BaseOffset);
        stored.Add(next);
        Assert.False(log.IsFailed);
        Assert.Contains(_f.Lines, l => l.Contains("resumed"));
        Assert.Equal(stored, LogFixture.ReadAll(log, 0));
        Assert.True(new FileInfo(_f.SegmentPath(0)).Length >= sizeBefore + next.Length);
        log.CheckInvariants();
    }
}
