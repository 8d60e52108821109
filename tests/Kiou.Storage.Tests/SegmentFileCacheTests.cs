using Kiou.Protocol.Records;
using Kiou.Storage.Tests.Support;

namespace Kiou.Storage.Tests;

/// <summary>
/// Sealed segments hold no descriptor of their own: reads lease one from a bounded <see cref="SegmentFileCache"/>.
/// Descriptors are counted in /proc/self/fd (those pointing into the partition's directory), so other tests running
/// in the same process do not disturb the count.
/// </summary>
public sealed class SegmentFileCacheTests : IDisposable
{
    private const int Capacity = 4;
    private readonly LogFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Fact]
    public async Task ManySealedSegments_ReadConcurrently_KeepDescriptorsBounded_AndReadBackExactly()
    {
        var files = new SegmentFileCache(Capacity);
        var config = new LogConfig { SegmentBytes = 2_000, IndexIntervalBytes = 300 };
        List<byte[]> stored;
        await using (PartitionLog first = PartitionLog.Open(_f.DataDir, LogFixture.Topic, 0, config, _f.Device, _f.Time, _f.Lines.Enqueue, files))
        {
            stored = await LogFixture.AppendMany(first, 600, recordsPerBatch: 2, valueBytes: 40);
            await first.FlushAsync();
            await first.WhenBackgroundIdleAsync();
            await first.WhenRollSnapshotsWrittenAsync().WaitAsync(TimeSpan.FromSeconds(10)); // no snapshot file open while descriptors are counted
            Assert.True(first.SegmentCount >= 40, $"{first.SegmentCount} segments");

            // Rolled at run time: each sealed segment gave its descriptor up once durable.
            Assert.True(OpenDescriptorsIn(_f.PartitionDir) <= 1 + Capacity, $"{OpenDescriptorsIn(_f.PartitionDir)} descriptors open after rolling");
        }

        // Reopened (recovery opens each segment): the sealed ones close again at the end of the load.
        await using PartitionLog log = PartitionLog.Open(_f.DataDir, LogFixture.Topic, 0, config, _f.Device, _f.Time, _f.Lines.Enqueue, files);
        Assert.True(OpenDescriptorsIn(_f.PartitionDir) <= 1 + Capacity, $"{OpenDescriptorsIn(_f.PartitionDir)} descriptors open after opening");

        const int readers = 8;
        int maxSeen = 0;
        using var stop = new CancellationTokenSource();
        Task sampler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                int n = OpenDescriptorsIn(_f.PartitionDir);
                InterlockedMax(ref maxSeen, n);
                await Task.Delay(1);
            }
        });

        IReadOnlyList<long> bases = log.SegmentBaseOffsets;
        var tasks = new Task[readers];
        for (int r = 0; r < readers; r++)
        {
            int seed = r;
            tasks[r] = Task.Run(() =>
            {
                var random = new Random(seed);
                for (int round = 0; round < 3; round++)
                {
                    // Every segment, in a different order per reader: the cache turns over all the time.
                    foreach (long b in bases.OrderBy(_ => random.Next()))
                    {
                        bool zeroCopy = random.Next(2) == 0;
                        using ReadResult result = log.Read(b, 1 << 20, minOneBatch: true, zeroCopy);
                        Assert.Equal(ReadError.None, result.Error);
                        ReadOnlySpan<byte> span = zeroCopy ? result.FileRecords!.GetSpan() : result.Records.Span;
                        InterlockedMax(ref maxSeen, OpenDescriptorsIn(_f.PartitionDir));
                        long offset = b;
                        while (span.Length > 0)
                        {
                            Assert.True(RecordBatch.TryReadHeader(span, out BatchHeader h));
                            Assert.Equal(offset, h.BaseOffset);
                            Assert.True(span[..h.TotalSize].SequenceEqual(stored[(int)(offset / 2)]), $"batch at offset {offset} differs");
                            offset = h.NextOffset;
                            span = span[h.TotalSize..];
                        }
                    }
                }
            });
        }

        await Task.WhenAll(tasks);
        stop.Cancel();
        await sampler;

        // The active segment, the cache, and at most one evicted descriptor per reader still leased.
        Assert.True(maxSeen <= 1 + Capacity + readers, $"{maxSeen} descriptors open at once for {bases.Count} segments");
        Assert.True(files.Evictions > 0, "the cache never evicted");
        Assert.True(files.Count <= Capacity);
        Assert.True(OpenDescriptorsIn(_f.PartitionDir) <= 1 + Capacity);
        Assert.Equal(stored.Count, LogFixture.ReadAll(log, 0).Count);
    }

    [Fact]
    public async Task Eviction_WhileAZeroCopyReadIsInFlight_KeepsItsFileOpenUntilReleased()
    {
        var files = new SegmentFileCache(Capacity);
        var config = new LogConfig { SegmentBytes = 2_000 };
        await using PartitionLog log = PartitionLog.Open(_f.DataDir, LogFixture.Topic, 0, config, _f.Device, _f.Time, _f.Lines.Enqueue, files);
        List<byte[]> stored = await LogFixture.AppendMany(log, 300, recordsPerBatch: 1, valueBytes: 60);
        await log.FlushAsync();
        await log.WhenBackgroundIdleAsync();
        await log.WhenRollSnapshotsWrittenAsync().WaitAsync(TimeSpan.FromSeconds(10)); // no snapshot file open while descriptors are counted

        ReadResult held = log.Read(0, 1 << 20, minOneBatch: true, zeroCopy: true);
        FileRecords region = held.FileRecords!;

        // Read every other segment: segment 0's descriptor is evicted from the cache many times over.
        long evictionsBefore = files.Evictions;
        foreach (long b in log.SegmentBaseOffsets.Skip(1))
        {
            using ReadResult r = log.Read(b, 1 << 20, minOneBatch: true, zeroCopy: true);
        }

        Assert.True(files.Evictions - evictionsBefore > Capacity);
        Assert.False(region.File.IsClosed, "an evicted descriptor closed under a read in flight");
        byte[] bytes = new byte[region.Length];
        Assert.Equal(region.Length, RandomAccess.Read(region.File, bytes, region.Position));
        Assert.True(bytes.AsSpan(0, stored[0].Length).SequenceEqual(stored[0]));

        int before = OpenDescriptorsIn(_f.PartitionDir);
        held.Dispose();
        Assert.True(region.File.IsClosed, "the evicted descriptor stayed open after the read released it");
        Assert.Equal(before - 1, OpenDescriptorsIn(_f.PartitionDir));
    }

    [Fact]
    public async Task SealedSegmentThatCannotBeOpened_FailsThatReadWithAStorageError_AndOthersStillWork()
    {
        var files = new SegmentFileCache(Capacity);
        var config = new LogConfig { SegmentBytes = 2_000 };
        await using PartitionLog log = PartitionLog.Open(_f.DataDir, LogFixture.Topic, 0, config, _f.Device, _f.Time, _f.Lines.Enqueue, files);
        await LogFixture.AppendMany(log, 200, recordsPerBatch: 1, valueBytes: 60);
        await log.FlushAsync();
        await log.WhenBackgroundIdleAsync();
        await log.WhenRollSnapshotsWrittenAsync().WaitAsync(TimeSpan.FromSeconds(10)); // no snapshot file open while descriptors are counted
        IReadOnlyList<long> bases = log.SegmentBaseOffsets;
        Assert.True(bases.Count >= 3 + Capacity, $"{bases.Count} segments");

        // Not in the cache: reads of Capacity other sealed segments evict its descriptor if a background task (index
        // write, roll snapshot flush) left it there, so the precondition does not depend on their timing.
        string path = _f.SegmentPath(bases[1]);
        for (int i = 2; i < 2 + Capacity; i++)
        {
            using ReadResult evict = log.Read(bases[i], 1 << 20, minOneBatch: true);
            Assert.True(evict.Records.Length > 0);
        }

        Assert.False(DescriptorOpenOn(path), $"{path} is still open after {Capacity} other segments were read through the cache");

        // ...and gone from the directory (set aside by hand): the open fails.
        File.Move(path, path + ".aside");
        using (ReadResult failed = log.Read(bases[1], 1 << 20, minOneBatch: true))
        {
            Assert.Equal(ReadError.StorageError, failed.Error);
        }

        Assert.Contains(_f.Lines, l => l.Contains(Path.GetFileName(path)) && l.Contains("KAFKA_STORAGE_ERROR"));

        using ReadResult other = log.Read(bases[2], 1 << 20, minOneBatch: true, zeroCopy: true);
        Assert.True(other.Records.Length > 0);
        File.Move(path + ".aside", path);
        using ReadResult back = log.Read(bases[1], 1 << 20, minOneBatch: true);
        Assert.True(back.Records.Length > 0);
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int current = Volatile.Read(ref target);
        while (value > current)
        {
            int seen = Interlocked.CompareExchange(ref target, value, current);
            if (seen == current)
            {
                return;
            }

            current = seen;
        }
    }

    /// <summary>Whether a descriptor of this process points at <paramref name="file"/>.</summary>
    private static bool DescriptorOpenOn(string file)
    {
        string full = Path.GetFullPath(file);
        foreach (string fd in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            try
            {
                if (new FileInfo(fd).LinkTarget == full)
                {
                    return true;
                }
            }
            catch (IOException)
            {
                // Closed while enumerating.
            }
        }

        return false;
    }

    /// <summary>Descriptors of this process that point into <paramref name="directory"/>.</summary>
    internal static int OpenDescriptorsIn(string directory)
    {
        string prefix = Path.GetFullPath(directory) + "/";
        int count = 0;
        foreach (string fd in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            try
            {
                if (new FileInfo(fd).LinkTarget is { } target && target.StartsWith(prefix, StringComparison.Ordinal))
                {
                    count++;
                }
            }
            catch (IOException)
            {
                // Closed while enumerating.
            }
        }

        return count;
    }
}
