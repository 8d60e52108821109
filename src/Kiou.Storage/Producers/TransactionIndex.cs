using System.Buffers.Binary;
using Kiou.Protocol.Records;

namespace Kiou.Storage.Producers;

/// <summary>
/// One aborted transaction as Kafka's AbortedTxn: the producer, the transaction's first offset, the offset of its
/// ABORT marker, and the last stable offset right after the marker (the first offset of the next open transaction
/// of another producer, else the marker's offset + 1).
/// </summary>
public readonly record struct AbortedTxn(long ProducerId, long FirstOffset, long LastOffset, long LastStableOffset)
{
    public override string ToString() => $"producer {ProducerId} offsets {FirstOffset}..{LastOffset} (last stable offset {LastStableOffset})";
}

/// <summary>
/// A segment's aborted-transaction index (Kafka's TransactionIndex, <c>.txnindex</c>): entries ordered by the
/// marker's offset, each 34 bytes big-endian: version int16 (0), producerId int64, firstOffset int64, lastOffset
/// int64, lastStableOffset int64. An entry lives in the segment that holds its ABORT marker.
/// </summary>
/// <remarks>Mutated and read under the partition lock only.</remarks>
public sealed class TransactionIndex
{
    /// <summary>Bytes per entry on disk.</summary>
    public const int EntrySize = 34;

    /// <summary>The only entry version Kafka writes.</summary>
    public const short Version = 0;

    public const string Suffix = ".txnindex";

    private readonly List<AbortedTxn> _entries = new();

    public int Count => _entries.Count;

    public AbortedTxn this[int index] => _entries[index];

    /// <summary>Kafka's append: the markers' offsets must increase.</summary>
    public void Append(AbortedTxn txn)
    {
        if (_entries.Count > 0 && _entries[^1].LastOffset >= txn.LastOffset)
        {
            throw new InvalidOperationException($"aborted transaction {txn} does not follow the last one indexed ({_entries[^1]})");
        }

        _entries.Add(txn);
    }

    /// <summary>Kafka's truncateTo: forgets the entries whose marker is at or after <paramref name="offset"/>.</summary>
    public void TruncateTo(long offset)
    {
        int keep = _entries.Count;
        while (keep > 0 && _entries[keep - 1].LastOffset >= offset)
        {
            keep--;
        }

        _entries.RemoveRange(keep, _entries.Count - keep);
    }

    public void Clear() => _entries.Clear();

    /// <summary>
    /// Kafka's collectAbortedTxns: adds the transactions that overlap [<paramref name="fetchOffset"/>,
    /// <paramref name="upperBoundOffset"/>) and returns true once an entry's last stable offset reaches the upper
    /// bound (no later segment can hold one that overlaps).
    /// </summary>
    public bool Collect(long fetchOffset, long upperBoundOffset, ref List<AbortedTxn>? into)
    {
        foreach (AbortedTxn txn in _entries)
        {
            if (txn.LastOffset >= fetchOffset && txn.FirstOffset < upperBoundOffset)
            {
                (into ??= new List<AbortedTxn>()).Add(txn);
            }

            if (txn.LastStableOffset >= upperBoundOffset)
            {
                return true;
            }
        }

        return false;
    }

    public byte[] Serialize()
    {
        byte[] bytes = new byte[_entries.Count * EntrySize];
        for (int i = 0; i < _entries.Count; i++)
        {
            Span<byte> s = bytes.AsSpan(i * EntrySize, EntrySize);
            AbortedTxn t = _entries[i];
            BinaryPrimitives.WriteInt16BigEndian(s, Version);
            BinaryPrimitives.WriteInt64BigEndian(s[2..], t.ProducerId);
            BinaryPrimitives.WriteInt64BigEndian(s[10..], t.FirstOffset);
            BinaryPrimitives.WriteInt64BigEndian(s[18..], t.LastOffset);
            BinaryPrimitives.WriteInt64BigEndian(s[26..], t.LastStableOffset);
        }

        return bytes;
    }

    /// <summary>
    /// Parses a file's bytes for the segment holding offsets [<paramref name="baseOffset"/>, <paramref name="endOffset"/>);
    /// null with <paramref name="problem"/> when the bytes cannot be such an index (size, version, order, offsets).
    /// </summary>
    public static TransactionIndex? Parse(ReadOnlySpan<byte> bytes, long baseOffset, long endOffset, out string problem)
    {
        problem = string.Empty;
        if (bytes.Length % EntrySize != 0)
        {
            problem = $"{bytes.Length} bytes is not a whole number of {EntrySize}-byte entries";
            return null;
        }

        var index = new TransactionIndex();
        for (int p = 0; p < bytes.Length; p += EntrySize)
        {
            ReadOnlySpan<byte> s = bytes.Slice(p, EntrySize);
            short version = BinaryPrimitives.ReadInt16BigEndian(s);
            var txn = new AbortedTxn(
                BinaryPrimitives.ReadInt64BigEndian(s[2..]),
                BinaryPrimitives.ReadInt64BigEndian(s[10..]),
                BinaryPrimitives.ReadInt64BigEndian(s[18..]),
                BinaryPrimitives.ReadInt64BigEndian(s[26..]));
            if (version != Version)
            {
                problem = $"entry {p / EntrySize} has version {version}";
                return null;
            }

            if (txn.ProducerId < 0 || txn.FirstOffset < 0 || txn.FirstOffset > txn.LastOffset || txn.LastOffset < baseOffset
                || txn.LastOffset >= endOffset || txn.LastStableOffset <= txn.FirstOffset
                || (index.Count > 0 && index[^1].LastOffset >= txn.LastOffset))
            {
                problem = $"entry {p / EntrySize} ({txn}) does not fit a segment of offsets {baseOffset}..{endOffset - 1} after the entries before it";
                return null;
            }

            index._entries.Add(txn);
        }

        return index;
    }
}

/// <summary>
/// Kafka's EndTransactionMarker, the one record of a control batch: key = version int16 (0) + type int16 (0 ABORT,
/// 1 COMMIT); value = version int16 (0) + coordinator epoch int32.
/// </summary>
public static class EndTransactionMarker
{
    public const short Abort = 0;
    public const short Commit = 1;

    /// <summary>Control batch attributes: control and transactional bits.</summary>
    public const short BatchAttributes = 0x30;

    /// <summary>
    /// Reads the marker of an uncompressed control batch (whole batch, header included). False when the batch holds
    /// no record, a record of another control type, or bytes that do not parse.
    /// </summary>
    public static bool TryRead(ReadOnlySpan<byte> batch, out short type, out int coordinatorEpoch)
    {
        type = -1;
        coordinatorEpoch = -1;
        if (batch.Length < RecordBatch.HeaderSize || RecordBatch.CompressionCodec(batch) != CompressionType.None || RecordBatch.RecordsCount(batch) < 1)
        {
            return false;
        }

        RecordCursor cursor = RecordCursor.ForBatch(batch);
        if (!cursor.MoveNext() || cursor.KeyLength < 4 || cursor.ValueLength < 6)
        {
            return false;
        }

        ReadOnlySpan<byte> key = cursor.Key;
        ReadOnlySpan<byte> value = cursor.Value;
        if (BinaryPrimitives.ReadInt16BigEndian(key) < 0 || BinaryPrimitives.ReadInt16BigEndian(value) < 0)
        {
            return false;
        }

        short t = BinaryPrimitives.ReadInt16BigEndian(key[2..]);
        if (t is not (Abort or Commit))
        {
            return false;
        }

        type = t;
        coordinatorEpoch = BinaryPrimitives.ReadInt32BigEndian(value[2..]);
        return true;
    }
}
