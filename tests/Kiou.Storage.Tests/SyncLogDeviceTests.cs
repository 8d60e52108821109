using Kiou.IoUring.Interop;
using Kiou.Storage.Devices;

namespace Kiou.Storage.Tests;

public sealed class SyncLogDeviceTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "kiou-device-tests", Guid.NewGuid().ToString("N"));

    public SyncLogDeviceTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Write_CompletesOnCallingThread_WithWholeLength()
    {
        using var device = new SyncLogDevice();
        using var file = File.OpenHandle(Path.Combine(_dir, "a.log"), FileMode.CreateNew, FileAccess.ReadWrite);
        var callback = new Recorder();
        byte[] data = new byte[10000];
        new Random(1).NextBytes(data);
        device.Write(file, 100, data, callback, 42);
        Assert.Equal((42L, 10000), Assert.Single(callback.Writes));
        Assert.Equal(Environment.CurrentManagedThreadId, callback.WriteThread);
        var back = new byte[10000];
        Assert.Equal(10000, RandomAccess.Read(file, back, 100));
        Assert.Equal(data, back);
        Assert.Equal("sync", device.Mode);
    }

    [Fact]
    public async Task Flush_RunsOnFlusherThread()
    {
        using var device = new SyncLogDevice();
        using var file = File.OpenHandle(Path.Combine(_dir, "b.log"), FileMode.CreateNew, FileAccess.ReadWrite);
        var callback = new Recorder();
        device.Write(file, 0, new byte[] { 1, 2, 3 }, callback, 1);
        device.Flush(file, callback, 7);
        (long Token, int Result) done = await callback.FirstFlush.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal((7L, 0), done);
        Assert.NotEqual(Environment.CurrentManagedThreadId, callback.FlushThread);
    }

    [Fact]
    public async Task ClosedHandle_ReportsEbadf()
    {
        using var device = new SyncLogDevice();
        var file = File.OpenHandle(Path.Combine(_dir, "c.log"), FileMode.CreateNew, FileAccess.ReadWrite);
        file.Dispose();
        var callback = new Recorder();
        device.Write(file, 0, new byte[] { 1 }, callback, 3);
        Assert.Equal((3L, -9), Assert.Single(callback.Writes));
        device.Flush(file, callback, 4);
        Assert.Equal((4L, -9), await callback.FirstFlush.Task.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public void Dispose_DrainsQueuedFlushes_ThenRefuses()
    {
        var device = new SyncLogDevice();
        using var file = File.OpenHandle(Path.Combine(_dir, "d.log"), FileMode.CreateNew, FileAccess.ReadWrite);
        var callback = new Recorder();
        for (int i = 0; i < 5; i++)
        {
            device.Flush(file, callback, i);
        }

        device.Dispose();
        Assert.Equal(5, callback.FlushCount);
        Assert.Throws<ObjectDisposedException>(() => device.Flush(file, callback, 9));
    }

    [Fact]
    public void FileSync_DataSyncAndDirectory()
    {
        using var file = File.OpenHandle(Path.Combine(_dir, "e.log"), FileMode.CreateNew, FileAccess.ReadWrite);
        Assert.Equal(0, FileSync.DataSync(file));
        Assert.Equal(0, FileSync.SyncDirectory(_dir));
        Assert.Equal(-2, FileSync.SyncDirectory(Path.Combine(_dir, "missing"))); // ENOENT
    }

    [Fact]
    public void ErrnoNames_Describe()
    {
        Assert.Equal("ENOSPC (no space left on device)", ErrnoNames.Describe(-28));
        Assert.Equal("EIO (input/output error)", ErrnoNames.Describe(5));
        Assert.Equal("errno 200", ErrnoNames.Describe(-200));
    }

    private sealed class Recorder : ILogDeviceCallback
    {
        private int _flushCount;

        public List<(long, int)> Writes { get; } = new();

        public int WriteThread { get; private set; }

        public int FlushThread { get; private set; }

        public int FlushCount => Volatile.Read(ref _flushCount);

        public TaskCompletionSource<(long, int)> FirstFlush { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void OnWriteDone(long token, int result)
        {
            WriteThread = Environment.CurrentManagedThreadId;
            Writes.Add((token, result));
        }

        public void OnFlushDone(long token, int result)
        {
            FlushThread = Environment.CurrentManagedThreadId;
            Interlocked.Increment(ref _flushCount);
            FirstFlush.TrySetResult((token, result));
        }
    }
}
