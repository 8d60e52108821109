using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Kiou.Storage.Cleaner;

/// <summary>
/// Kafka's SkimpyOffsetMap: key → latest offset for the dirty section of a log, in one fixed buffer. A key is stored
/// as its MD5 digest (16 bytes) next to its offset (8 bytes); slots are probed linearly. Two keys with the same digest
/// share a slot, as in Kafka (a 2^-128 chance). Nothing is allocated per key.
/// </summary>
/// <remarks>Used by the cleaner thread only. <see cref="Capacity"/> is <see cref="LoadFactor"/> of the slots, so probes stay short.</remarks>
public sealed class OffsetMap
{
    /// <summary>Kafka's log.cleaner.io.buffer.load.factor.</summary>
    public const double LoadFactor = 0.9;

    private const int HashBytes = 16;
    private const int SlotBytes = HashBytes + 8;

    private readonly byte[] _slots;
    private readonly int _slotCount;
    private int _epoch;
    private readonly int[] _slotEpochs;

    /// <param name="memoryBytes">The buffer's size (KIOU_LOG_CLEANER_DEDUPE_BUFFER_SIZE).</param>
    public OffsetMap(int memoryBytes)
    {
        _slotCount = Math.Max(16, memoryBytes / (SlotBytes + sizeof(int)));
        _slots = new byte[_slotCount * SlotBytes];
        _slotEpochs = new int[_slotCount];
        Capacity = (int)(_slotCount * LoadFactor);
        _epoch = 1;
    }

    /// <summary>How many distinct keys fit before the map is full.</summary>
    public int Capacity { get; }

    public int Count { get; private set; }

    /// <summary>The largest offset put since <see cref="Clear"/>, -1 if none.</summary>
    public long LatestOffset { get; private set; } = -1;

    public double Utilization => (double)Count / _slotCount;

    /// <summary>Empties the map in O(1): slots of an older epoch count as free.</summary>
    public void Clear()
    {
        Count = 0;
        LatestOffset = -1;
        if (++_epoch == int.MaxValue)
        {
            Array.Clear(_slotEpochs);
            _epoch = 1;
        }
    }

    /// <summary>Records <paramref name="offset"/> as the latest for <paramref name="key"/>. Callers check <see cref="Count"/> against <see cref="Capacity"/> first.</summary>
    public void Put(ReadOnlySpan<byte> key, long offset)
    {
        Span<byte> hash = stackalloc byte[HashBytes];
        MD5.HashData(key, hash);
        int slot = FindSlot(hash, out bool found);
        Span<byte> at = _slots.AsSpan(slot * SlotBytes, SlotBytes);
        if (!found)
        {
            hash.CopyTo(at);
            _slotEpochs[slot] = _epoch;
            Count++;
        }

        BinaryPrimitives.WriteInt64LittleEndian(at[HashBytes..], offset);
        LatestOffset = Math.Max(LatestOffset, offset);
    }

    /// <summary>The latest offset recorded for <paramref name="key"/>, or -1.</summary>
    public long Get(ReadOnlySpan<byte> key)
    {
        Span<byte> hash = stackalloc byte[HashBytes];
        MD5.HashData(key, hash);
        int slot = FindSlot(hash, out bool found);
        return found ? BinaryPrimitives.ReadInt64LittleEndian(_slots.AsSpan(slot * SlotBytes + HashBytes, 8)) : -1;
    }

    private int FindSlot(ReadOnlySpan<byte> hash, out bool found)
    {
        int slot = (int)((BinaryPrimitives.ReadUInt32LittleEndian(hash) & 0x7fffffff) % (uint)_slotCount);
        while (true)
        {
            if (_slotEpochs[slot] != _epoch)
            {
                found = false;
                return slot;
            }

            if (_slots.AsSpan(slot * SlotBytes, HashBytes).SequenceEqual(hash))
            {
                found = true;
                return slot;
            }

            slot = slot + 1 == _slotCount ? 0 : slot + 1;
        }
    }
}
