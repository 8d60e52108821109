using System.Diagnostics;
using Kiou.Storage.Devices;
using Microsoft.Win32.SafeHandles;

namespace Kiou.Broker.Http;

/// <summary>
/// The log device with its fsyncs (fdatasync of a segment file) counted and timed, from the request to the completion.
/// Writes pass straight through; a flush allocates its timing callback (one per fsync, never per record).
/// </summary>
sealed class MeteredLogDevice(ILogDevice inner, BrokerMetrics metrics) : ILogDevice
{
    public string Mode => inner.Mode;
    public bool DirectWrites => inner.DirectWrites;
    public int DirectMinRoundBytes => inner.DirectMinRoundBytes;
    public bool WriteIdleRoundsInline => inner.WriteIdleRoundsInline;
    public LogDeviceStats? Stats => inner.Stats;

    public SafeFileHandle? TryOpenDirect(string path, out int errno) => inner.TryOpenDirect(path, out errno);

    public void Write(SafeFileHandle file, long position, ReadOnlyMemory<byte> data, ILogDeviceCallback callback, long token) =>
        inner.Write(file, position, data, callback, token);

    public void Flush(SafeFileHandle file, ILogDeviceCallback callback, long token) =>
        inner.Flush(file, new Timed(callback, metrics, Stopwatch.GetTimestamp()), token);

    public void Dispose() => inner.Dispose();

    sealed class Timed(ILogDeviceCallback callback, BrokerMetrics metrics, long start) : ILogDeviceCallback
    {
        public void OnWriteDone(long token, int result) => callback.OnWriteDone(token, result);

        public void OnFlushDone(long token, int result)
        {
            metrics.Fsync(start, result < 0);
            callback.OnFlushDone(token, result);
        }
    }
}
