using System.Buffers;
using Kiou.IoUring;

namespace Kiou.Broker.Network;

/// <summary>
/// The buffer one request is read into: a pooled array for small requests, a native buffer from the listener's
/// <see cref="NativeFramePool"/> for large ones (see <see cref="NativeFrom"/>). Owned by the request's slot, which
/// returns it exactly once.
/// </summary>
readonly struct RequestFrame
{
    /// <summary>Requests at least this large take native memory: as arrays they would live on the large-object heap,
    /// which the shared array pool keeps and the collector frees late.</summary>
    internal const int NativeFrom = Connection.DirectReadFrom;

    readonly byte[]? _array;
    readonly NativeFramePool.Buffer? _native;

    RequestFrame(byte[]? array, NativeFramePool.Buffer? native)
    {
        _array = array;
        _native = native;
    }

    public static RequestFrame Rent(NativeFramePool pool, int size) =>
        size >= NativeFrom ? new(null, pool.Rent(size)) : new(ArrayPool<byte>.Shared.Rent(size), null);

    public bool IsEmpty => _array is null && _native is null;

    /// <summary>The bytes charged to the in-flight budgets.</summary>
    public int Capacity => _array?.Length ?? _native!.Capacity;

    public Memory<byte> Memory => _array is not null ? _array : _native!.Memory;

    public Span<byte> Span => _array is not null ? _array : _native!.GetSpan();

    public void Return(NativeFramePool pool)
    {
        if (_array is not null)
            ArrayPool<byte>.Shared.Return(_array);
        else if (_native is not null)
            pool.Return(_native);
    }
}
