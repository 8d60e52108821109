using Kiou.Storage.Tests.Support;
using Kiou.Testing;

namespace Kiou.Storage.Tests;

public sealed class AllocationTests : IDisposable
{
    private readonly LogFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Fact]
    public async Task Append_SteadyState_DoesNotAllocate()
    {
        await using PartitionLog log = PartitionLog.Open(_f.DataDir, "alloc", 0, new LogConfig(), _f.Sync, _f.Time, _f.Lines.Enqueue);
        byte[] batch = BatchBuilder.Simple(5, valueBytes: 100);
        for (int i = 0; i < 100; i++)
        {
            AppendSync(log, batch);
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            AppendSync(log, batch);
        }

        long perAppend = (GC.GetAllocatedBytesForCurrentThread() - before) / 1000;
        Assert.True(perAppend < 16, $"{perAppend} bytes allocated per append");
    }

    [Fact]
    public async Task ZeroCopyRead_AllocatesTwoSmallObjects_NotTheBytes()
    {
        await using PartitionLog log = PartitionLog.Open(_f.DataDir, "alloc", 0, new LogConfig(), _f.Sync, _f.Time, _f.Lines.Enqueue);
        byte[] batch = BatchBuilder.Simple(20, valueBytes: 1000); // about 20 KiB per batch, 2 MiB in all
        for (int i = 0; i < 100; i++)
        {
            AppendSync(log, batch);
        }

        for (int i = 0; i < 10; i++)
        {
            log.Read(0, 1 << 20, minOneBatch: true, zeroCopy: true).Dispose();
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++)
        {
            using ReadResult r = log.Read((i % 40) * 20, 1 << 20, minOneBatch: true, zeroCopy: true);
            Assert.True(r.Records.Length > 500_000);
        }

        // A ReadResult and a FileRecords: a few hundred bytes per 1 MiB read, never the data.
        long perRead = (GC.GetAllocatedBytesForCurrentThread() - before) / 100;
        Assert.True(perRead < 512, $"{perRead} bytes allocated per zero-copy read of about 1 MiB");
    }

    private static void AppendSync(PartitionLog log, byte[] batch)
    {
        ValueTask<AppendResult> task = log.AppendAsync(batch, false);
        Assert.True(task.IsCompletedSuccessfully); // the sync device completes the write before returning
        _ = task.Result;
    }
}
