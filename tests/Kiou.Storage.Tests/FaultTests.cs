using Kiou.Protocol.Records;
using Kiou.Storage.Tests.Support;
using Kiou.Testing;

namespace Kiou.Storage.Tests;

/// <summary>Injected write and flush errors: the failing append and later in-flight ones fail, nothing published changes, then resume.</summary>
public sealed class FaultTests : IDisposable
{
    private const int ENOSPC = -28;
    private const int EIO = -5;
    private readonly LogFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Fact]
    public async Task Enospc_FailsAppend_NoDamage_ResumesAfterFaultClears()
    {
        await using PartitionLog log = _f.Open();
        List<byte[]> before = await LogFixture.AppendMany(log, 5);
        long sizeBefore = new FileInfo(_f.SegmentPath(0)).Length;

        bool diskFull = true;
        _f.Device.WriteFault = _ => diskFull ? ENOSPC : null;
        var ex = await Assert.ThrowsAsync<StorageException>(async () => await log.AppendAsync(BatchBuilder.Simple(3), false));
        Assert.Equal(28, ex.Errno);
        Assert.Contains("demo-0", ex.Message);
        Assert.Contains("ENOSPC", ex.Message);
        Assert.True(log.IsFailed);
        Assert.Equal(5, log.HighWatermark);
        string failed = Assert.Single(_f.Lines, l => l.Contains("failed with ENOSPC"));
        Assert.Contains("free disk space", failed);

        // Still full: the resume's truncation works (nothing to write), but the append fails again.
        var again = await Assert.ThrowsAsync<StorageException>(async () => await log.AppendAsync(BatchBuilder.Simple(1), false));
        Assert.Equal(28, again.Errno);
        Assert.Contains(_f.Lines, l => l.Contains("resumed"));

        Assert.Equal(before, LogFixture.ReadAll(log, 0));
        Assert.Equal(sizeBefore, new FileInfo(_f.SegmentPath(0)).Length);

        diskFull = false;
        AppendResult r = await log.AppendAsync(BatchBuilder.Simple(2), false);
        Assert.Equal(5, r.BaseOffset);
        Assert.False(log.IsFailed);
        Assert.Equal(7, log.HighWatermark);
        Assert.Equal(6, LogFixture.ReadAll(log, 0).Count);
        log.CheckInvariants();
    }

    [Fact]
    public async Task WriteError_LaterInFlightAppendsFail_EarlierOnesPublish()
    {
        await using PartitionLog log = _f.Open();
        await LogFixture.AppendMany(log, 2);
        int firstHeld = _f.Device.WritesIssued;
        _f.Device.WriteFault = i => i == firstHeld + 2 ? EIO : null;
        _f.Device.HoldWrites = true;
        var batches = new List<byte[]>();
        var tasks = new List<Task<AppendResult>>();
        for (int i = 0; i < 6; i++)
        {
            byte[] b = BatchBuilder.Simple(1, valueBytes: 10 + i);
            batches.Add(b);
            tasks.Add(log.AppendAsync(b, false).AsTask());
        }

        // Complete the failing write (index 2) first, then the rest in reverse.
        _f.Device.ReleaseWrite(2);
        Assert.True(log.IsFailed);
        Assert.Equal(2, log.HighWatermark);
        _f.Device.ReleaseAllWrites(reverse: true);
        await Task.WhenAll(tasks.Select(t => t.ContinueWith(_ => { })));

        Assert.Equal(2, (await tasks[0]).BaseOffset);
        Assert.Equal(3, (await tasks[1]).BaseOffset);
        for (int i = 2; i < 6; i++)
        {
            var ex = await Assert.ThrowsAsync<StorageException>(() => tasks[i]);
            Assert.Equal(5, ex.Errno);
        }

        Assert.Equal(4, log.HighWatermark);
        Assert.Equal(8, log.LogEndOffset); // reserved until the next append resumes
        Assert.Single(_f.Lines, l => l.Contains("failed with EIO"));

        AppendResult next = await log.AppendAsync(BatchBuilder.Simple(1), false);
        Assert.Equal(4, next.BaseOffset);
        Assert.Equal(5, log.LogEndOffset);
        Assert.Contains(_f.Lines, l => l.Contains("resumed") && l.Contains("truncated 00000000000000000000.log"));
        List<byte[]> all = LogFixture.ReadAll(log, 0);
        Assert.Equal(5, all.Count);
        Assert.Equal(batches[0], all[2]);
        Assert.Equal(batches[1], all[3]);
        log.CheckInvariants();
    }

    [Fact]
    public async Task AppendWhileDraining_FailsFast()
    {
        await using PartitionLog log = _f.Open();
        _f.Device.HoldWrites = true;
        _f.Device.WriteFault = i => i == 0 ? ENOSPC : null;
        Task<AppendResult> a = log.AppendAsync(BatchBuilder.Simple(1), false).AsTask();
        Task<AppendResult> b = log.AppendAsync(BatchBuilder.Simple(1), false).AsTask();
        _f.Device.ReleaseWrite(0);
        Assert.True(log.IsFailed);
        var draining = await Assert.ThrowsAsync<StorageException>(async () => await log.AppendAsync(BatchBuilder.Simple(1), false));
        Assert.Contains("draining", draining.Message);
        _f.Device.ReleaseAllWrites();
        await Assert.ThrowsAsync<StorageException>(() => a);
        await Assert.ThrowsAsync<StorageException>(() => b);
        Assert.Equal(0, (await log.AppendAsync(BatchBuilder.Simple(1), false)).BaseOffset);
    }

    [Fact]
    public async Task WriteErrorAcrossRoll_ResumeDropsEmptyNewSegment()
    {
        var config = new LogConfig { SegmentBytes = 500 };
        await using PartitionLog log = _f.Open(config);
        List<byte[]> before = await LogFixture.AppendMany(log, 2, valueBytes: 80); // 296 bytes; each batch 148
        _f.Device.HoldWrites = true;
        int next = _f.Device.WritesIssued;
        _f.Device.WriteFault = i => i == next ? ENOSPC : null;
        var tasks = new List<Task<AppendResult>>();
        for (int i = 0; i < 4; i++)
        {
            tasks.Add(log.AppendAsync(BatchBuilder.Simple(1, valueBytes: 80), false).AsTask());
        }

        Assert.True(log.SegmentCount >= 2);
        _f.Device.ReleaseAllWrites();
        foreach (var t in tasks)
        {
            await Assert.ThrowsAsync<StorageException>(() => t);
        }

        // The failed write was the last one of segment 0; the next three went to a new segment at offset 3.
        Assert.Equal(2, log.HighWatermark);
        Assert.Equal(new long[] { 0, 3 }, log.SegmentBaseOffsets);
        AppendResult r = await log.AppendAsync(BatchBuilder.Simple(1, valueBytes: 80), false);
        Assert.Equal(2, r.BaseOffset);
        Assert.Equal(1, log.SegmentCount);
        Assert.False(File.Exists(_f.SegmentPath(3)));
        List<byte[]> all = LogFixture.ReadAll(log, 0);
        Assert.Equal(3, all.Count);
        Assert.Equal(before, all.Take(2).ToList());
        log.CheckInvariants();
    }

    [Fact]
    public async Task FlushError_FailsDurableAppends_AndKeepsThePartitionOfflineUntilReopened()
    {
        bool failing = true;
        _f.Device.FlushFault = _ => failing ? EIO : null;
        await using (PartitionLog log = _f.Open(new LogConfig { Flush = new FlushPolicy(FlushMode.Always, long.MaxValue, long.MaxValue) }))
        {
            var ex = await Assert.ThrowsAsync<StorageException>(async () => await log.AppendAsync(BatchBuilder.Simple(1), waitDurable: true));
            Assert.Equal(5, ex.Errno);
            Assert.Contains("fdatasync", ex.Message);
            Assert.True(log.IsFailed);
            Assert.Equal(1, log.HighWatermark); // published data is not withdrawn
            Assert.Equal(0, log.DurableOffset);
            Assert.Contains(_f.Lines, l => l.Contains("fdatasync failed with EIO"));

            // Even with the fault gone, a failed fdatasync keeps the partition offline: pages whose writeback
            // failed may be gone, so only a restart (and its recovery scan) may take writes again.
            failing = false;
            var offline = await Assert.ThrowsAsync<StorageException>(async () => await log.AppendAsync(BatchBuilder.Simple(1), waitDurable: true));
            Assert.Contains("restart", offline.Message);
            Assert.True(log.IsFailed);
        }

        await using (PartitionLog log = _f.Open(new LogConfig { Flush = new FlushPolicy(FlushMode.Always, long.MaxValue, long.MaxValue) }))
        {
            AppendResult r = await log.AppendAsync(BatchBuilder.Simple(1), waitDurable: true);
            Assert.Equal(1, r.BaseOffset);
            Assert.Equal(2, log.DurableOffset);
            Assert.False(log.IsFailed);
            log.CheckInvariants();
        }
    }

    [Fact]
    public async Task FailedAppendsWhoseBytesLanded_DoNotComeBackAfterRestart()
    {
        await using (PartitionLog log = _f.Open())
        {
            await LogFixture.AppendMany(log, 3);
            int next = _f.Device.WritesIssued;
            _f.Device.HoldWrites = true;
            _f.Device.WriteFault = i => i == next ? EIO : null;
            Task<AppendResult> a = log.AppendAsync(BatchBuilder.Simple(1), false).AsTask();
            Task<AppendResult> b = log.AppendAsync(BatchBuilder.Simple(1), false).AsTask(); // written, but after the failure
            _f.Device.ReleaseWrite(1);
            _f.Device.ReleaseWrite(0);
            await Assert.ThrowsAsync<StorageException>(() => a);
            await Assert.ThrowsAsync<StorageException>(() => b);
            Assert.True(log.IsFailed);
        }

        Assert.Contains(_f.Lines, l => l.Contains("closing after EIO") && l.Contains("truncated"));
        await using (PartitionLog log = _f.Open())
        {
            Assert.Equal(3, log.HighWatermark);
            Assert.Equal(3, LogFixture.ReadAll(log, 0).Count);
        }
    }

    [Fact]
    public async Task Failure_IsPerPartition()
    {
        await using PartitionLog a = _f.Open();
        await using PartitionLog b = PartitionLog.Open(_f.DataDir, "other", 3, new LogConfig(), _f.Sync, _f.Time, _f.Lines.Enqueue);
        _f.Device.WriteFault = _ => ENOSPC;
        await Assert.ThrowsAsync<StorageException>(async () => await a.AppendAsync(BatchBuilder.Simple(1), false));
        Assert.Equal(0, (await b.AppendAsync(BatchBuilder.Simple(1), false)).BaseOffset);
        Assert.False(b.IsFailed);
        Assert.True(a.IsFailed);
    }

    [Fact]
    public async Task FailedThenClosed_NoCleanMarker_RecoversPublishedData()
    {
        List<byte[]> before;
        await using (PartitionLog log = _f.Open())
        {
            before = await LogFixture.AppendMany(log, 4);
            _f.Device.WriteFault = _ => ENOSPC;
            await Assert.ThrowsAsync<StorageException>(async () => await log.AppendAsync(BatchBuilder.Simple(1), false));
        }

        _f.Device.WriteFault = null;
        await using (PartitionLog log = _f.Open())
        {
            Assert.Equal(4, log.HighWatermark);
            Assert.Equal(before, LogFixture.ReadAll(log, 0));
        }
    }

    [Fact]
    public async Task Enospc_WithRecordsStamped_CallerMemoryHasBaseOffset()
    {
        await using PartitionLog log = _f.Open();
        _f.Device.WriteFault = _ => ENOSPC;
        byte[] batch = BatchBuilder.Simple(1);
        await Assert.ThrowsAsync<StorageException>(async () => await log.AppendAsync(batch, false));
        Assert.Equal(0, RecordBatch.BaseOffset(batch));
    }
}
