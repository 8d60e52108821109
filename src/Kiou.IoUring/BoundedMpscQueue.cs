using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Kiou.IoUring;

/// <summary>
/// A bounded multi-producer, single-consumer queue of structs (Dmitry Vyukov's bounded MPMC array queue with
/// the consumer side simplified to one thread). No allocation after construction; TryEnqueue fails when full.
/// </summary>
/// <remarks>
/// Each cell carries a sequence number: <c>position</c> when free for the producer claiming
/// <c>position</c>, <c>position + 1</c> once that producer has published its item, and
/// <c>position + capacity</c> after the consumer took it (free for the next lap). Producers claim positions
/// with a CAS on <see cref="_enqueuePosition"/>; the consumer alone moves <see cref="_dequeuePosition"/>.
/// </remarks>
internal sealed class BoundedMpscQueue<T>
{
    private readonly Cell[] _cells;
    private readonly long _mask;
    private PaddedPosition _enqueuePosition; // contended by producers: kept off the consumer's cache line
    private long _dequeuePosition;            // consumer thread only

    private struct Cell
    {
        public long Sequence;
        public T Item;
    }

    public BoundedMpscQueue(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 2);
        if ((capacity & (capacity - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(capacity), "capacity must be a power of two");
        }
        _cells = new Cell[capacity];
        _mask = capacity - 1;
        for (int i = 0; i < capacity; i++)
        {
            _cells[i].Sequence = i;
        }
    }

    public int Capacity => _cells.Length;

    /// <summary>Items queued now, approximately (read from any thread, for metrics).</summary>
    public int ApproximateCount => (int)Math.Clamp(Volatile.Read(ref _enqueuePosition.Value) - Volatile.Read(ref _dequeuePosition), 0, _cells.Length);

    /// <summary>Any thread. False when the queue is full.</summary>
    public bool TryEnqueue(in T item)
    {
        long position = Volatile.Read(ref _enqueuePosition.Value);
        while (true)
        {
            ref Cell cell = ref _cells[position & _mask];
            long sequence = Volatile.Read(ref cell.Sequence);
            long lap = sequence - position;
            if (lap == 0)
            {
                long seen = Interlocked.CompareExchange(ref _enqueuePosition.Value, position + 1, position);
                if (seen == position)
                {
                    cell.Item = item;
                    Volatile.Write(ref cell.Sequence, position + 1); // publish
                    return true;
                }
                position = seen;
            }
            else if (lap < 0)
            {
                return false; // the consumer has not freed this cell from the previous lap: full
            }
            else
            {
                position = Volatile.Read(ref _enqueuePosition.Value); // another producer took it
            }
        }
    }

    /// <summary>Consumer thread only.</summary>
    public bool TryDequeue(out T item)
    {
        long position = _dequeuePosition;
        ref Cell cell = ref _cells[position & _mask];
        if (Volatile.Read(ref cell.Sequence) != position + 1)
        {
            item = default!;
            return false;
        }
        item = cell.Item;
        cell.Item = default!; // drop references for the GC
        Volatile.Write(ref cell.Sequence, position + _cells.Length);
        _dequeuePosition = position + 1;
        Debug.Assert(_dequeuePosition <= Volatile.Read(ref _enqueuePosition.Value), "dequeued past the producers");
        return true;
    }

    /// <summary>
    /// Consumer thread only. False once an item has been published at the head. A producer that has claimed a
    /// position but not yet published counts as empty; it will wake the consumer after publishing.
    /// </summary>
    public bool IsEmpty => Volatile.Read(ref _cells[_dequeuePosition & _mask].Sequence) != _dequeuePosition + 1;
}

/// <summary>A long alone on its cache line (64 bytes of padding either side), so producers' CAS traffic does not
/// evict the consumer's fields. Outside the generic class: generic types cannot have explicit layout.</summary>
[StructLayout(LayoutKind.Explicit, Size = 128)]
internal struct PaddedPosition
{
    [FieldOffset(64)] public long Value;
}
