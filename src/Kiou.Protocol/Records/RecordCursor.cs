using System.Runtime.CompilerServices;

namespace Kiou.Protocol.Records;

/// <summary>
/// Walks the records of an uncompressed RecordBatch v2 (README §5.3) one at a time, without allocating.
/// </summary>
/// <remarks>
/// Layout of one record (all varints signed zigzag):
/// <c>length VARINT | attributes INT8 | timestampDelta VARLONG | offsetDelta VARINT | keyLength VARINT | key |
/// valueLength VARINT | value | headerCount VARINT | headers { keyLength VARINT (≥ 0) | key | valueLength VARINT | value }</c>.
/// <see cref="MoveNext"/> returns false at the end or on the first malformed record; then <see cref="Error"/>
/// says which (0 at a clean end). A clean end also requires <see cref="IsAtEnd"/>: the declared record count
/// used up exactly the bytes of the batch. A compressed batch's records are one blob: walk them once decompressed
/// (Kiou.Compression's BatchDecompressor).
/// </remarks>
public ref struct RecordCursor
{
    private readonly ReadOnlySpan<byte> _records;
    private int _position;
    private int _left;

    /// <param name="recordsArea">The bytes after the 61-byte header, up to the end of the batch.</param>
    /// <param name="recordsCount">The header's recordsCount.</param>
    public RecordCursor(ReadOnlySpan<byte> recordsArea, int recordsCount)
    {
        _records = recordsArea;
        _position = 0;
        _left = recordsCount < 0 ? 0 : recordsCount;
        Error = recordsCount < 0 ? RecordErrorCodes.CorruptMessage : RecordErrorCodes.None;
        Index = -1;
    }

    /// <summary>A cursor over a whole batch (header included) whose header is known to be sane.</summary>
    public static RecordCursor ForBatch(ReadOnlySpan<byte> batch)
    {
        int total = RecordBatch.BatchLength(batch) + RecordBatch.LogOverhead;
        if (total > batch.Length || total < RecordBatch.HeaderSize)
        {
            var broken = new RecordCursor(default, 0);
            broken.Error = RecordErrorCodes.CorruptMessage;
            return broken;
        }

        return new RecordCursor(batch[RecordBatch.HeaderSize..total], RecordBatch.RecordsCount(batch));
    }

    /// <summary>0, or <see cref="RecordErrorCodes.CorruptMessage"/> once a record did not parse.</summary>
    public short Error { get; private set; }

    /// <summary>True when every byte of the records area has been consumed.</summary>
    public readonly bool IsAtEnd => _position == _records.Length;

    /// <summary>Records not yet read, by the header's count.</summary>
    public readonly int RecordsLeft => _left;

    /// <summary>0-based index of the current record.</summary>
    public int Index { get; private set; }

    public byte Attributes { get; private set; }

    public long TimestampDelta { get; private set; }

    public int OffsetDelta { get; private set; }

    /// <summary>-1 for a null key.</summary>
    public int KeyLength { get; private set; }

    /// <summary>-1 for a null value (tombstone).</summary>
    public int ValueLength { get; private set; }

    public int HeaderCount { get; private set; }

    /// <summary>Bytes of the current record including its length prefix.</summary>
    public int SizeBytes { get; private set; }

    private int _keyStart;
    private int _valueStart;

    public readonly ReadOnlySpan<byte> Key => KeyLength <= 0 ? default : _records.Slice(_keyStart, KeyLength);

    public readonly ReadOnlySpan<byte> Value => ValueLength <= 0 ? default : _records.Slice(_valueStart, ValueLength);

    public bool MoveNext()
    {
        if (_left == 0 || Error != 0)
        {
            return false;
        }

        int start = _position;
        int p = _position;
        if (!TryReadVarint(_records, ref p, out int length) || length < 1 || length > _records.Length - p)
        {
            return Fail();
        }

        int end = p + length;
        ReadOnlySpan<byte> r = _records[..end];

        Attributes = r[p];
        p++;
        if (!TryReadVarlong(r, ref p, out long timestampDelta)
            || !TryReadVarint(r, ref p, out int offsetDelta)
            || !TryReadVarint(r, ref p, out int keyLength)
            || keyLength < -1
            || keyLength > end - p)
        {
            return Fail();
        }

        int keyStart = p;
        p += Math.Max(keyLength, 0);
        if (!TryReadVarint(r, ref p, out int valueLength) || valueLength < -1 || valueLength > end - p)
        {
            return Fail();
        }

        int valueStart = p;
        p += Math.Max(valueLength, 0);
        if (!TryReadVarint(r, ref p, out int headerCount) || headerCount < 0)
        {
            return Fail();
        }

        // Each header takes at least two bytes, so this loop ends within the record's bytes.
        for (int h = 0; h < headerCount; h++)
        {
            if (!TryReadVarint(r, ref p, out int hk) || hk < 0 || hk > end - p)
            {
                return Fail();
            }

            p += hk;
            if (!TryReadVarint(r, ref p, out int hv) || hv < -1 || hv > end - p)
            {
                return Fail();
            }

            p += Math.Max(hv, 0);
        }

        if (p != end)
        {
            // The record's length field disagrees with its contents.
            return Fail();
        }

        Index++;
        _left--;
        _position = end;
        TimestampDelta = timestampDelta;
        OffsetDelta = offsetDelta;
        KeyLength = keyLength;
        ValueLength = valueLength;
        HeaderCount = headerCount;
        SizeBytes = end - start;
        _keyStart = keyStart;
        _valueStart = valueStart;
        return true;
    }

    private bool Fail()
    {
        Error = RecordErrorCodes.CorruptMessage;
        return false;
    }

    /// <summary>Signed zigzag VARINT, at most 5 bytes (README §2). False if truncated or too long.</summary>
    /// <remarks>Most fields of a record fit one byte: that case is inlined into the walk, the rest goes out of line.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryReadVarint(ReadOnlySpan<byte> data, ref int position, out int value)
    {
        int p = position;
        if ((uint)p < (uint)data.Length)
        {
            uint b = data[p];
            if (b < 0x80)
            {
                position = p + 1;
                value = (int)(b >> 1) ^ -(int)(b & 1);
                return true;
            }
        }

        return TryReadVarintSlow(data, ref position, out value);
    }

    private static bool TryReadVarintSlow(ReadOnlySpan<byte> data, ref int position, out int value)
    {
        uint raw = 0;
        int shift = 0;
        int p = position;
        while (true)
        {
            if ((uint)p >= (uint)data.Length || shift > 28)
            {
                value = 0;
                return false;
            }

            byte b = data[p++];
            raw |= (uint)(b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                break;
            }

            shift += 7;
        }

        position = p;
        value = (int)(raw >> 1) ^ -(int)(raw & 1);
        return true;
    }

    /// <summary>Signed zigzag VARLONG, at most 10 bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryReadVarlong(ReadOnlySpan<byte> data, ref int position, out long value)
    {
        int p = position;
        if ((uint)p < (uint)data.Length)
        {
            uint b = data[p];
            if (b < 0x80)
            {
                position = p + 1;
                value = (long)(b >> 1) ^ -(long)(b & 1);
                return true;
            }
        }

        return TryReadVarlongSlow(data, ref position, out value);
    }

    private static bool TryReadVarlongSlow(ReadOnlySpan<byte> data, ref int position, out long value)
    {
        ulong raw = 0;
        int shift = 0;
        int p = position;
        while (true)
        {
            if ((uint)p >= (uint)data.Length || shift > 63)
            {
                value = 0;
                return false;
            }

            byte b = data[p++];
            raw |= (ulong)(b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                break;
            }

            shift += 7;
        }

        position = p;
        value = (long)(raw >> 1) ^ -(long)(raw & 1);
        return true;
    }
}
