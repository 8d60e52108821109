using System.Buffers.Binary;
using System.Diagnostics;

namespace Kiou.Storage;

/// <summary>
/// Sparse offset index of one segment: maps a batch's base offset to its file position, one entry about every
/// index.interval.bytes of log (Kafka's OffsetIndex). Kept in memory; written to <c>NNNNNNNNNNNNNNNNNNNN.index</c>
/// when the segment is sealed and at clean close; rebuilt from the log when missing or inconsistent.
/// </summary>
/// <remarks>
/// File layout: 8-byte entries, no header, no checksum:
/// <code>relativeOffset INT32 (base offset of a batch − segment base) | position INT32 (file position of that batch)</code>
/// both big-endian; relative offsets and positions strictly increase. The segment's first batch (position 0)
/// needs no entry: a lookup below the first entry answers (0, 0).
/// Owning thread: mutated only under the partition lock (publish, recovery); read under the same lock.
/// </remarks>
internal sealed class OffsetIndex
{
    public const int EntrySize = 8;

    private int[] _relativeOffsets;
    private int[] _positions;

    public OffsetIndex(int capacity = 16)
    {
        _relativeOffsets = new int[Math.Max(capacity, 1)];
        _positions = new int[Math.Max(capacity, 1)];
    }

    public int Count { get; private set; }

    public int LastRelativeOffset => Count == 0 ? 0 : _relativeOffsets[Count - 1];

    public int LastPosition => Count == 0 ? 0 : _positions[Count - 1];

    public (int RelativeOffset, int Position) this[int i] => (_relativeOffsets[i], _positions[i]);

    public void Append(int relativeOffset, int position)
    {
        Debug.Assert(relativeOffset >= 0, "negative relative offset");
        Debug.Assert(position >= 0, "negative position");
        if (Count > 0 && (relativeOffset <= _relativeOffsets[Count - 1] || position <= _positions[Count - 1]))
        {
            throw new InvalidOperationException($"offset index entry ({relativeOffset}, {position}) does not follow ({_relativeOffsets[Count - 1]}, {_positions[Count - 1]})");
        }

        if (Count == _relativeOffsets.Length)
        {
            Array.Resize(ref _relativeOffsets, Count * 2);
            Array.Resize(ref _positions, Count * 2);
        }

        _relativeOffsets[Count] = relativeOffset;
        _positions[Count] = position;
        Count++;
    }

    /// <summary>The greatest entry whose relative offset is ≤ <paramref name="relativeTarget"/>, else (0, 0).</summary>
    public (int RelativeOffset, int Position) Lookup(long relativeTarget)
    {
        int lo = 0;
        int hi = Count - 1;
        int found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (_relativeOffsets[mid] <= relativeTarget)
            {
                found = mid;
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }

        return found < 0 ? (0, 0) : (_relativeOffsets[found], _positions[found]);
    }

    /// <summary>The greatest entry whose position is ≤ <paramref name="position"/>, else (0, 0).</summary>
    public (int RelativeOffset, int Position) LookupByPosition(int position)
    {
        int lo = 0;
        int hi = Count - 1;
        int found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (_positions[mid] <= position)
            {
                found = mid;
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }

        return found < 0 ? (0, 0) : (_relativeOffsets[found], _positions[found]);
    }

    public byte[] Serialize()
    {
        var bytes = new byte[Count * EntrySize];
        for (int i = 0; i < Count; i++)
        {
            BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(i * EntrySize), _relativeOffsets[i]);
            BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(i * EntrySize + 4), _positions[i]);
        }

        return bytes;
    }

    /// <summary>
    /// Parses an index file. Fails (with a reason for the log) unless the size is a multiple of 8, entries strictly
    /// increase, relative offsets lie below <paramref name="relativeOffsetLimit"/> and positions below
    /// <paramref name="fileLength"/>.
    /// </summary>
    public static bool TryLoad(ReadOnlySpan<byte> bytes, long relativeOffsetLimit, long fileLength, out OffsetIndex index, out string reason)
    {
        index = new OffsetIndex(Math.Max(bytes.Length / EntrySize, 16));
        if (bytes.Length % EntrySize != 0)
        {
            reason = $"size {bytes.Length} is not a multiple of {EntrySize}";
            return false;
        }

        for (int p = 0; p < bytes.Length; p += EntrySize)
        {
            int rel = BinaryPrimitives.ReadInt32BigEndian(bytes[p..]);
            int pos = BinaryPrimitives.ReadInt32BigEndian(bytes[(p + 4)..]);
            bool ordered = index.Count == 0 || (rel > index.LastRelativeOffset && pos > index.LastPosition);
            if (rel < 0 || pos < 0 || rel >= relativeOffsetLimit || pos >= fileLength || !ordered)
            {
                reason = $"entry {p / EntrySize} ({rel}, {pos}) is out of order or out of range";
                return false;
            }

            index.Append(rel, pos);
        }

        reason = string.Empty;
        return true;
    }
}
