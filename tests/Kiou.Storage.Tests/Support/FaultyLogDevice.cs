using Kiou.Storage.Devices;
using Microsoft.Win32.SafeHandles;

namespace Kiou.Storage.Tests.Support;

/// <summary>
/// Wraps a real device: fails chosen writes/flushes with an errno, and can hold writes or flushes so a test
/// releases them later, in any order (out-of-order completions, group commit). Counts what reaches the inner device.
/// </summary>
public sealed class FaultyLogDevice : ILogDevice
{
    private readonly ILogDevice _inner;
    private readonly object _gate = new();
    private readonly List<HeldWrite> _heldWrites = new();
    private readonly List<HeldFlush> _heldFlushes = new();
    private int _writeIndex;
    private int _flushIndex;

    public FaultyLogDevice(ILogDevice inner) => _inner = inner;

    public string Mode => "faulty(" + _inner.Mode + ")";

    /// <summary>Asks logs for O_DIRECT write-behind (the inner device then writes to O_DIRECT descriptors).</summary>
    public bool DirectWrites { get; init; }

    public int DirectMinRoundBytes { get; init; } = DirectTail.DirectMinRoundBytes;

    /// <summary>When set, opening a segment for O_DIRECT fails with this errno (a file system without O_DIRECT).</summary>
    public int? DirectOpenErrno { get; set; }

    public SafeFileHandle? TryOpenDirect(string path, out int errno)
    {
        if (DirectOpenErrno is int e)
        {
            errno = e;
            return null;
        }

        return _inner.TryOpenDirect(path, out errno);
    }

    /// <summary>Given the 0-based write index, a negative errno to fail that write with (the bytes are not written), or null.</summary>
    public Func<int, int?>? WriteFault { get; set; }

    /// <summary>Given the 0-based flush index, a negative errno to fail that flush with, or null.</summary>
    public Func<int, int?>? FlushFault { get; set; }

    public bool HoldWrites { get; set; }

    public bool HoldFlushes { get; set; }

    public int WritesIssued => Volatile.Read(ref _writeIndex);

    public int FlushesIssued => Volatile.Read(ref _flushIndex);

    public int HeldWriteCount
    {
        get
        {
            lock (_gate)
            {
                return _heldWrites.Count;
            }
        }
    }

    public int HeldFlushCount
    {
        get
        {
            lock (_gate)
            {
                return _heldFlushes.Count;
            }
        }
    }

    public void Write(SafeFileHandle file, long position, ReadOnlyMemory<byte> data, ILogDeviceCallback callback, long token)
    {
        int index = Interlocked.Increment(ref _writeIndex) - 1;
        var held = new HeldWrite(file, position, data, callback, token, WriteFault?.Invoke(index));
        lock (_gate)
        {
            if (HoldWrites)
            {
                _heldWrites.Add(held);
                return;
            }
        }

        Run(held);
    }

    public void Flush(SafeFileHandle file, ILogDeviceCallback callback, long token)
    {
        int index = Interlocked.Increment(ref _flushIndex) - 1;
        var held = new HeldFlush(file, callback, token, FlushFault?.Invoke(index));
        lock (_gate)
        {
            if (HoldFlushes)
            {
                _heldFlushes.Add(held);
                return;
            }
        }

        Run(held);
    }

    /// <summary>Performs and completes the held write at <paramref name="heldIndex"/> (its position in the held list).</summary>
    public void ReleaseWrite(int heldIndex)
    {
        HeldWrite held;
        lock (_gate)
        {
            held = _heldWrites[heldIndex];
            _heldWrites.RemoveAt(heldIndex);
        }

        Run(held);
    }

    /// <summary>Stops holding and releases everything held, newest first when <paramref name="reverse"/>.</summary>
    public void ReleaseAllWrites(bool reverse = false)
    {
        List<HeldWrite> all;
        lock (_gate)
        {
            HoldWrites = false;
            all = new List<HeldWrite>(_heldWrites);
            _heldWrites.Clear();
        }

        if (reverse)
        {
            all.Reverse();
        }

        foreach (HeldWrite w in all)
        {
            Run(w);
        }
    }

    public void ReleaseAllFlushes()
    {
        List<HeldFlush> all;
        lock (_gate)
        {
            HoldFlushes = false;
            all = new List<HeldFlush>(_heldFlushes);
            _heldFlushes.Clear();
        }

        foreach (HeldFlush f in all)
        {
            Run(f);
        }
    }

    /// <summary>Releases held flushes without stopping to hold new ones.</summary>
    public void ReleaseHeldFlushes()
    {
        List<HeldFlush> all;
        lock (_gate)
        {
            all = new List<HeldFlush>(_heldFlushes);
            _heldFlushes.Clear();
        }

        foreach (HeldFlush f in all)
        {
            Run(f);
        }
    }

    public void Dispose() => _inner.Dispose();

    private void Run(HeldWrite w)
    {
        if (w.Fault is int errno)
        {
            w.Callback.OnWriteDone(w.Token, errno);
            return;
        }

        _inner.Write(w.File, w.Position, w.Data, w.Callback, w.Token);
    }

    private void Run(HeldFlush f)
    {
        if (f.Fault is int errno)
        {
            f.Callback.OnFlushDone(f.Token, errno);
            return;
        }

        _inner.Flush(f.File, f.Callback, f.Token);
    }

    private sealed record HeldWrite(SafeFileHandle File, long Position, ReadOnlyMemory<byte> Data, ILogDeviceCallback Callback, long Token, int? Fault);

    private sealed record HeldFlush(SafeFileHandle File, ILogDeviceCallback Callback, long Token, int? Fault);
}
