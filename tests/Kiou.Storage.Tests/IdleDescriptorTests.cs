using Kiou.IoUring;
using Kiou.Storage.Devices;
using Kiou.Storage.Tests.Support;
using Kiou.Testing;

namespace Kiou.Storage.Tests;

/// <summary>
/// An idle active segment gives up its descriptors (the read-write one and its write-behind's O_DIRECT one) and
/// reopens them at its next append (<see cref="PartitionLog.ReleaseIdleDescriptors"/>). What must hold: many
/// partitions with data hold about one (buffered) or two (O_DIRECT) descriptors each while busy and no more than the
/// cache's capacity once idle; a partition with anything in flight keeps them; the files end exactly at the log (the
/// O_DIRECT zero padding is cut); appends after reopening land after the old bytes and read back byte for byte, on the
/// synchronous device and on io_uring (buffered and O_DIRECT); and a crash after release and reopen recovers
/// everything. Descriptors are counted in /proc/self/fd (those pointing into this test's data directory).
/// </summary>
public sealed class IdleDescriptorTests : IDisposable
{
    private const int Partitions = 24;
    private const int Capacity = 4;
    private const long IdleMs = 10_000;
    private readonly string _dataDir = Path.Combine(Path.GetTempPath(), "kiou-storage-tests", Guid.NewGuid().ToString("N"));
    private readonly ManualTimeProvider _time = new();
    private readonly List<string> _lines = new();

    public void Dispose()
    {
        try
        {
            Directory.Delete(_dataDir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    [Theory]
    [InlineData("sync", 1)]
    [InlineData("sync-direct", 2)]
    public Task SyncDevice_IdlePartitions_GiveUpDescriptors_AndAppendsAfterReopenReadBack(string mode, int perPartition)
    {
        var faulty = new FaultyLogDevice(new SyncLogDevice()) { DirectWrites = mode == "sync-direct", DirectMinRoundBytes = 0 };
        return RunCycle(faulty, perPartition, direct: faulty.DirectWrites);
    }

    [UringTheory]
    [InlineData(UringWriteMode.Ring, 1)]
    [InlineData(UringWriteMode.Direct, 2)]
    public Task Uring_IdlePartitions_GiveUpDescriptors_AndAppendsAfterReopenReadBack(UringWriteMode mode, int perPartition)
    {
        UringLogDevice? device = UringLogDevice.TryCreate(mode, out string? whyNot);
        Assert.True(device is not null, whyNot);
        return RunCycle(device, perPartition, direct: mode == UringWriteMode.Direct);
    }

    [Fact]
    public async Task APartitionWithAWriteOrFlushInFlight_KeepsItsDescriptors()
    {
        using var device = new FaultyLogDevice(new SyncLogDevice()) { DirectWrites = true, DirectMinRoundBytes = 0 };
        var files = new SegmentFileCache(Capacity);
        await using PartitionLog log = Open(device, "busy", files);
        var rng = new Random(5);
        var stored = new List<byte[]> { Batch(rng, 3000) };
        await log.AppendAsync(stored[0], waitDurable: false);

        device.HoldWrites = true;
        byte[] held = Batch(rng, 5000);
        Task<AppendResult> pending = log.AppendAsync(held, waitDurable: false).AsTask();
        _time.Advance(IdleMs);
        Assert.False(log.ReleaseIdleDescriptors(IdleMs), "released under a write in flight");
        Assert.Equal(2, OpenDescriptors());
        device.HoldWrites = false;
        device.ReleaseAllWrites();
        await pending;
        stored.Add(held);

        // Not yet durable: the first call starts a flush and keeps the descriptors until it is done.
        device.HoldFlushes = true;
        _time.Advance(IdleMs);
        Assert.False(log.ReleaseIdleDescriptors(IdleMs), "released before the data was flushed");
        Assert.Equal(1, device.HeldFlushCount);
        Assert.False(log.ReleaseIdleDescriptors(IdleMs), "released under a flush in flight");
        Assert.Equal(2, OpenDescriptors());
        device.HoldFlushes = false;
        device.ReleaseAllFlushes();
        await log.FlushAsync();
        Assert.Equal(log.HighWatermark, log.DurableOffset);

        // Not idle long enough: kept.
        byte[] fresh = Batch(rng, 700);
        await log.AppendAsync(fresh, waitDurable: true);
        stored.Add(fresh);
        _time.Advance(IdleMs - 1);
        Assert.False(log.ReleaseIdleDescriptors(IdleMs), "released before the idle time");
        _time.Advance(1);
        Assert.True(log.ReleaseIdleDescriptors(IdleMs));
        Assert.Equal(1, OpenDescriptors()); // the read-write one, now the cache's
        Assert.Equal(stored.Sum(b => (long)b.Length), new FileInfo(SegmentPath("busy")).Length);
        Assert.Equal(stored, LogFixture.ReadAll(log, 0));
    }

    private async Task RunCycle(ILogDevice device, int perPartition, bool direct)
    {
        using (device)
        {
            var files = new SegmentFileCache(Capacity);
            var logs = new PartitionLog[Partitions];
            var stored = new List<byte[]>[Partitions];
            var rng = new Random(perPartition);
            try
            {
                for (int p = 0; p < Partitions; p++)
                {
                    logs[p] = Open(device, Topic(p), files);
                    stored[p] = new List<byte[]>();
                    await AppendSome(logs[p], stored[p], rng);
                }

                // Busy: each active segment holds its own descriptor(s).
                int busy = OpenDescriptors();
                Assert.True(busy >= Partitions * perPartition, $"{busy} descriptors for {Partitions} partitions before idling");

                _time.Advance(IdleMs);
                await ReleaseAll(logs);
                int idle = OpenDescriptors();
                Assert.True(idle <= Capacity, $"{idle} descriptors for {Partitions} idle partitions (busy: {busy})");
                for (int p = 0; p < Partitions; p++)
                {
                    Assert.Null(logs[p].ActiveTail);
                    Assert.Equal(logs[p].HighWatermark, logs[p].DurableOffset);
                    Assert.Equal(stored[p].Sum(b => (long)b.Length), new FileInfo(SegmentPath(Topic(p))).Length); // padding cut
                }

                // Reads of idle partitions lease from the cache; appends reopen and continue after the old bytes.
                for (int p = 0; p < Partitions; p++)
                {
                    Assert.Equal(stored[p], LogFixture.ReadAll(logs[p], 0));
                    await AppendSome(logs[p], stored[p], rng);
                    if (direct)
                    {
                        Assert.NotNull(logs[p].ActiveTail);
                    }
                }

                Assert.True(OpenDescriptors() >= Partitions * perPartition, "appends did not reopen the descriptors");
                for (int p = 0; p < Partitions; p++)
                {
                    Assert.Equal(stored[p], LogFixture.ReadAll(logs[p], 0));
                }

                // A second cycle, then appends (not flushed) and a crash: recovery keeps every completed batch.
                _time.Advance(IdleMs);
                await ReleaseAll(logs);
                Assert.True(OpenDescriptors() <= Capacity);
                for (int p = 0; p < Partitions; p++)
                {
                    await AppendSome(logs[p], stored[p], rng);
                }
            }
            catch
            {
                foreach (PartitionLog? log in logs)
                {
                    if (log is not null)
                    {
                        await log.DisposeAsync();
                    }
                }

                throw;
            }

            // The crash: the logs are abandoned without closing (their descriptors close with the process's finalizers).
            var recoveredFiles = new SegmentFileCache(Capacity);
            for (int p = 0; p < Partitions; p++)
            {
                await using PartitionLog recovered = Open(device, Topic(p), recoveredFiles);
                Assert.Equal(stored[p], LogFixture.ReadAll(recovered, 0));
                Assert.Equal(stored[p].Count, recovered.LogEndOffset);
            }

            Assert.DoesNotContain(_lines, l => l.Contains("quarantine", StringComparison.OrdinalIgnoreCase));
        }
    }

    private static async Task ReleaseAll(PartitionLog[] logs)
    {
        foreach (PartitionLog log in logs)
        {
            // The first call flushes what is not yet durable; the descriptors go once that is done.
            for (int i = 0; !log.ReleaseIdleDescriptors(IdleMs); i++)
            {
                Assert.True(i < 1000, $"{log.Topic}: descriptors not released");
                await Task.Delay(2);
            }
        }
    }

    /// <summary>Small batches (partial pages) and a large one (an O_DIRECT round on io_uring), ending off a page boundary.</summary>
    private static async Task AppendSome(PartitionLog log, List<byte[]> stored, Random rng)
    {
        int[] sizes = [100, 3000, DirectTail.DirectMinRoundBytes + 777, 50];
        foreach (int size in sizes)
        {
            byte[] batch = Batch(rng, size);
            AppendResult r = await log.AppendAsync(batch, waitDurable: false);
            Assert.Equal(stored.Count, r.BaseOffset);
            stored.Add(batch);
        }
    }

    private PartitionLog Open(ILogDevice device, string topic, SegmentFileCache files) =>
        PartitionLog.Open(_dataDir, topic, 0, new LogConfig(), device, _time, Log, files);

    private void Log(string line)
    {
        lock (_lines)
        {
            _lines.Add(line);
        }
    }

    private static string Topic(int p) => "idle" + p;

    private string SegmentPath(string topic) => Path.Combine(_dataDir, topic + "-0", Segment.FileName(0) + ".log");

    private static byte[] Batch(Random rng, int valueBytes)
    {
        var value = new byte[valueBytes];
        rng.NextBytes(value);
        return BatchBuilder.Build([new TestRecord(0, null, value)]);
    }

    private int OpenDescriptors() => SegmentFileCacheTests.OpenDescriptorsIn(_dataDir);
}

/// <summary>A theory that needs a working io_uring; skipped with the reason where this process cannot set up a ring.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class UringTheoryAttribute : TheoryAttribute
{
    private static readonly Lazy<string?> SkipReason = new(() =>
        IoUringSupport.TryProbeSetup(out string? whyNot) ? null : "io_uring unavailable: " + whyNot);

    public UringTheoryAttribute()
    {
        if (SkipReason.Value is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>A fact that needs a working io_uring; skipped with the reason where this process cannot set up a ring.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class UringFactAttribute : FactAttribute
{
    public UringFactAttribute()
    {
        if (IoUringSupport.TryProbeSetup(out string? whyNot) is false)
        {
            Skip = "io_uring unavailable: " + whyNot;
        }
    }
}
