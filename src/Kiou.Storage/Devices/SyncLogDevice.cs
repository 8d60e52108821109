using Kiou.IoUring.Interop;
using Microsoft.Win32.SafeHandles;

namespace Kiou.Storage.Devices;

/// <summary>
/// The portable <see cref="ILogDevice"/>: pwrite on the calling thread, fdatasync on one dedicated flusher thread.
/// </summary>
/// <remarks>
/// <see cref="Write"/> writes the whole buffer with <see cref="RandomAccess.Write(SafeFileHandle, ReadOnlySpan{byte}, long)"/>
/// (which loops over short writes itself) and runs the callback before returning, with the byte count or a
/// negative errno. <see cref="Flush"/> only queues: the flusher thread runs fdatasync and the callback, so an
/// appender never blocks on a disk flush. The queue is bounded by the callers (one flush in flight per
/// partition, plus rolls). Dispose lets queued flushes finish, then stops the thread.
/// </remarks>
public sealed class SyncLogDevice : ILogDevice
{
    private readonly Queue<(SafeFileHandle File, ILogDeviceCallback Callback, long Token)> _flushes = new();
    private readonly Thread _flusher;
    private bool _stopping;

    public SyncLogDevice()
    {
        _flusher = new Thread(RunFlusher) { IsBackground = true, Name = "kiou-log-flusher" };
        _flusher.Start();
    }

    public string Mode => "sync";

    public void Write(SafeFileHandle file, long position, ReadOnlyMemory<byte> data, ILogDeviceCallback callback, long token) =>
        callback.OnWriteDone(token, WriteAll(file, data.Span, position));

    /// <summary>pwrite of the whole span on this thread: its length, or a negative errno (a device's completion result).</summary>
    internal static int WriteAll(SafeFileHandle file, ReadOnlySpan<byte> data, long position)
    {
        try
        {
            RandomAccess.Write(file, data, position);
            return data.Length;
        }
        catch (ObjectDisposedException)
        {
            return -ErrnoNames.EBADF;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return -ErrnoNames.FromException(ex);
        }
    }

    public void Flush(SafeFileHandle file, ILogDeviceCallback callback, long token)
    {
        lock (_flushes)
        {
            if (_stopping)
            {
                throw new ObjectDisposedException(nameof(SyncLogDevice));
            }

            _flushes.Enqueue((file, callback, token));
            Monitor.Pulse(_flushes);
        }
    }

    public void Dispose()
    {
        lock (_flushes)
        {
            _stopping = true;
            Monitor.Pulse(_flushes);
        }

        if (Thread.CurrentThread != _flusher)
        {
            _flusher.Join();
        }
    }

    private void RunFlusher()
    {
        while (true)
        {
            (SafeFileHandle File, ILogDeviceCallback Callback, long Token) item;
            lock (_flushes)
            {
                while (_flushes.Count == 0 && !_stopping)
                {
                    Monitor.Wait(_flushes);
                }

                if (_flushes.Count == 0)
                {
                    return;
                }

                item = _flushes.Dequeue();
            }

            int result = FileSync.DataSync(item.File);
            item.Callback.OnFlushDone(item.Token, result);
        }
    }
}
