using System.Buffers;
using Kiou.IoUring.Interop;

namespace Kiou.IoUring;

/// <summary>
/// Page-backed native buffers for large request frames, with a cap on the bytes kept for reuse. A frame of a
/// megabyte taken from <see cref="ArrayPool{T}"/> is a two-megabyte array on the large-object heap: the shared pool
/// keeps many of them per core, and those it does not keep stay resident until a full collection. Here a buffer is
/// an anonymous mapping rounded up to <see cref="Granularity"/>, so only the pages written become resident; returned
/// buffers are kept for reuse up to <see cref="RetainedBytesMax"/> bytes, the least recently returned unmapped (given
/// back to the system at once) to make room, so what is kept follows the frame sizes in use.
/// </summary>
/// <remarks>
/// Thread-safe: one lock around the free list, taken once per rent and once per return. The pool bounds only what
/// it keeps; what is rented is bounded by its owner (the listener's in-flight budgets). A buffer must not be used
/// after its return: the owner returns it once every reader of the frame (handler, device write) is done.
/// After <see cref="Dispose"/>, returned buffers are unmapped at once.
/// </remarks>
public sealed unsafe class NativeFramePool : IDisposable
{
    /// <summary>Capacities are multiples of this, so frames of similar sizes share buffers.</summary>
    public const int Granularity = 64 * 1024;

    private readonly object _gate = new();
    private readonly List<Buffer> _free = [];
    private long _retainedBytes;
    private long _rentedBytes;
    private long _mappedCount;
    private bool _disposed;

    public NativeFramePool(long retainedBytesMax)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(retainedBytesMax);
        RetainedBytesMax = retainedBytesMax;
    }

    public long RetainedBytesMax { get; }

    /// <summary>Capacity of the buffers kept for reuse.</summary>
    public long RetainedBytes
    {
        get
        {
            lock (_gate)
            {
                return _retainedBytes;
            }
        }
    }

    /// <summary>Capacity of the buffers rented and not yet returned.</summary>
    public long RentedBytes
    {
        get
        {
            lock (_gate)
            {
                return _rentedBytes;
            }
        }
    }

    /// <summary>Buffers mapped so far (each rent that found none to reuse); for tests.</summary>
    public long MappedCount => Interlocked.Read(ref _mappedCount);

    /// <summary>A buffer of at least <paramref name="size"/> bytes (no more than twice that, rounded up); its
    /// contents are whatever the last user left.</summary>
    public Buffer Rent(int size)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(size);
        int capacity = (int)Math.Min(int.MaxValue - (Granularity - 1), ((long)size + Granularity - 1) / Granularity * Granularity);
        lock (_gate)
        {
            // Best fit among the kept buffers; a far larger one is left for a frame that needs it.
            int best = -1;
            for (int i = 0; i < _free.Count; i++)
            {
                int c = _free[i].Capacity;
                if (c >= size && c <= 2L * capacity && (best < 0 || c < _free[best].Capacity))
                {
                    best = i;
                }
            }

            if (best >= 0)
            {
                Buffer kept = _free[best];
                _free.RemoveAt(best); // in return order: the oldest first, for Return's eviction
                _retainedBytes -= kept.Capacity;
                _rentedBytes += kept.Capacity;
                kept.Rented = true;
                return kept;
            }

            _rentedBytes += capacity;
        }

        void* address = LibC.mmap(null, (nuint)capacity, LibC.PROT_READ | LibC.PROT_WRITE, LibC.MAP_PRIVATE | LibC.MAP_ANONYMOUS, -1, 0);
        if (address == LibC.MAP_FAILED)
        {
            lock (_gate)
            {
                _rentedBytes -= capacity;
            }

            throw new OutOfMemoryException($"mmap of a {capacity}-byte request buffer failed (errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()})");
        }

        Interlocked.Increment(ref _mappedCount);
        return new Buffer(this, (byte*)address, capacity) { Rented = true };
    }

    /// <summary>Gives a rented buffer back: kept for reuse, the least recently returned kept buffers unmapped to stay under the cap.</summary>
    public void Return(Buffer buffer)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        if (buffer.Pool != this)
        {
            throw new ArgumentException("the buffer belongs to another pool", nameof(buffer));
        }

        List<Buffer>? evicted = null;
        bool kept = false;
        lock (_gate)
        {
            if (!buffer.Rented)
            {
                throw new InvalidOperationException("the buffer was returned twice");
            }

            buffer.Rented = false;
            _rentedBytes -= buffer.Capacity;
            if (!_disposed && buffer.Capacity <= RetainedBytesMax)
            {
                // The kept buffers follow the frames in use: the least recently returned make room. Kept buffers of
                // sizes no longer asked for would otherwise fill the cap, and every frame be mapped and unmapped.
                while (_retainedBytes + buffer.Capacity > RetainedBytesMax)
                {
                    Buffer oldest = _free[0];
                    _free.RemoveAt(0);
                    _retainedBytes -= oldest.Capacity;
                    (evicted ??= []).Add(oldest);
                }

                _retainedBytes += buffer.Capacity;
                _free.Add(buffer);
                kept = true;
            }
        }

        if (evicted is not null)
        {
            foreach (Buffer b in evicted)
            {
                b.Unmap();
            }
        }

        if (!kept)
        {
            buffer.Unmap();
        }
    }

    /// <summary>Unmaps the kept buffers; buffers still rented are unmapped when they come back.</summary>
    public void Dispose()
    {
        Buffer[] kept;
        lock (_gate)
        {
            _disposed = true;
            kept = [.. _free];
            _free.Clear();
            _retainedBytes = 0;
        }

        foreach (Buffer b in kept)
        {
            b.Unmap();
        }
    }

    /// <summary>One mapping. Its memory never moves, so pinning is free.</summary>
    public sealed class Buffer : MemoryManager<byte>
    {
        private byte* _pointer;

        internal Buffer(NativeFramePool pool, byte* pointer, int capacity)
        {
            Pool = pool;
            _pointer = pointer;
            Capacity = capacity;
        }

        internal NativeFramePool Pool { get; }

        internal bool Rented { get; set; }

        public int Capacity { get; }

        public override Span<byte> GetSpan()
        {
            ObjectDisposedException.ThrowIf(_pointer == null, this);
            return new Span<byte>(_pointer, Capacity);
        }

        public override MemoryHandle Pin(int elementIndex = 0)
        {
            ObjectDisposedException.ThrowIf(_pointer == null, this);
            ArgumentOutOfRangeException.ThrowIfNegative(elementIndex);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(elementIndex, Capacity);
            return new MemoryHandle(_pointer + elementIndex);
        }

        public override void Unpin()
        {
            // Native memory never moves; nothing to undo.
        }

        internal void Unmap()
        {
            byte* p = _pointer;
            _pointer = null;
            if (p != null)
            {
                LibC.munmap(p, (nuint)Capacity);
            }
        }

        // The pool owns the mapping: only Return or the pool's Dispose unmaps it.
        protected override void Dispose(bool disposing)
        {
        }
    }
}
