using System.Buffers.Binary;
using System.Diagnostics;

namespace Kiou.Storage;

/// <summary>
/// Sparse time index of one segment (Kafka's TimeIndex): entries (max timestamp so far, relative offset of the
/// first batch that reached it), appended together with offset index entries whenever the max timestamp grew,
/// plus one final entry when the segment is sealed or closed, so the last entry is the segment's max timestamp.
/// </summary>
/// <remarks>
/// File layout (<c>.timeindex</c>): 12-byte entries, big-endian, no header:
/// <code>timestamp INT64 (max record timestamp so far) | relativeOffset INT32 (base offset of the batch that first reached it − segment base)</code>
/// Timestamps strictly increase; relative offsets never decrease. Every batch before an entry's batch has a
/// smaller max timestamp, so a search for the first record with timestamp ≥ T may start at the batch of the
/// greatest entry with timestamp ≤ T. Mutated only under the partition lock.
/// </remarks>
internal sealed class TimeIndex
{
    public const int EntrySize = 12;

    private long[] _timestamps;
    private int[] _relativeOffsets;

    public TimeIndex(int capacity = 16)
    {
        _timestamps = new long[Math.Max(capacity, 1)];
        _relativeOffsets = new int[Math.Max(capacity, 1)];
    }

    public int Count { get; private set; }

    public long LastTimestamp => Count == 0 ? -1 : _timestamps[Count - 1];

    public int LastRelativeOffset => Count == 0 ? 0 : _relativeOffsets[Count - 1];

    public (long Timestamp, int RelativeOffset) this[int i] => (_timestamps[i], _relativeOffsets[i]);

    /// <summary>Appends (timestamp, relativeOffset) if the timestamp is above the last entry's.</summary>
    public void MaybeAppend(long timestamp, int relativeOffset)
    {
        if (timestamp < 0 || (Count > 0 && timestamp <= _timestamps[Count - 1]))
        {
            return;
        }

        Debug.Assert(relativeOffset >= 0, "negative relative offset");
        if (Count > 0 && relativeOffset < _relativeOffsets[Count - 1])
        {
            throw new InvalidOperationException($"time index entry ({timestamp}, {relativeOffset}) goes back from relative offset {_relativeOffsets[Count - 1]}");
        }

        if (Count == _timestamps.Length)
        {
            Array.Resize(ref _timestamps, Count * 2);
            Array.Resize(ref _relativeOffsets, Count * 2);
        }

        _timestamps[Count] = timestamp;
        _relativeOffsets[Count] = relativeOffset;
        Count++;
    }

    /// <summary>Relative offset of the greatest entry with timestamp ≤ <paramref name="timestamp"/>; 0 if none.</summary>
    public int Lookup(long timestamp)
    {
        int lo = 0;
        int hi = Count - 1;
        int found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (_timestamps[mid] <= timestamp)
            {
                found = mid;
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }

        return found < 0 ? 0 : _relativeOffsets[found];
    }

    public byte[] Serialize()
    {
        var bytes = new byte[Count * EntrySize];
        for (int i = 0; i < Count; i++)
        {
            BinaryPrimitives.WriteInt64BigEndian(bytes.AsSpan(i * EntrySize), _timestamps[i]);
            BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(i * EntrySize + 8), _relativeOffsets[i]);
        }

        return bytes;
    }

    /// <summary>Parses a time index file; fails unless sized in whole entries, ordered and within the segment.</summary>
    public static bool TryLoad(ReadOnlySpan<byte> bytes, long relativeOffsetLimit, out TimeIndex index, out string reason)
    {
        index = new TimeIndex(Math.Max(bytes.Length / EntrySize, 16));
        if (bytes.Length % EntrySize != 0)
        {
            reason = $"size {bytes.Length} is not a multiple of {EntrySize}";
            return false;
        }

        for (int p = 0; p < bytes.Length; p += EntrySize)
        {
            long ts = BinaryPrimitives.ReadInt64BigEndian(bytes[p..]);
            int rel = BinaryPrimitives.ReadInt32BigEndian(bytes[(p + 8)..]);
            bool ordered = index.Count == 0 || (ts > index.LastTimestamp && rel >= index.LastRelativeOffset);
            if (ts < 0 || rel < 0 || rel >= relativeOffsetLimit || !ordered)
            {
                reason = $"entry {p / EntrySize} ({ts}, {rel}) is out of order or out of range";
                return false;
            }

            index.MaybeAppend(ts, rel);
        }

        reason = string.Empty;
        return true;
    }
}
