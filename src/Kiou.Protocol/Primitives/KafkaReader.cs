using System.Buffers.Binary;
using System.Text;

namespace Kiou.Protocol;

/// <summary>
/// Reads big-endian Kafka protocol primitives (README §2) from one request or response frame.
/// </summary>
/// <remarks>
/// Lives on the stack of the thread that parses the frame and must not outlive the buffer.
/// Every byte is untrusted: a read past the end, a negative non-nullable length, an over-long
/// varint or an array count larger than the bytes remaining returns a default value and sets the
/// sticky <see cref="Failed"/> flag. Once failed, every further read returns a default value and
/// consumes nothing, so callers check <see cref="Failed"/> once at the end. Nothing here throws,
/// and no allocation is larger than the bytes actually present in the frame.
/// [franz-go kbin: sticky error instead of exceptions on the hot path]
/// </remarks>
public ref struct KafkaReader
{
    private readonly ReadOnlyMemory<byte> _memory;
    private readonly ReadOnlySpan<byte> _span;
    private int _position;
    private bool _failed;

    public KafkaReader(ReadOnlyMemory<byte> buffer)
    {
        _memory = buffer;
        _span = buffer.Span;
        _position = 0;
        _failed = false;
    }

    /// <summary>Bytes consumed so far.</summary>
    public readonly int Position => _position;

    /// <summary>Bytes not yet consumed.</summary>
    public readonly int Remaining => _span.Length - _position;

    /// <summary>True once any read went wrong; never resets.</summary>
    public readonly bool Failed => _failed;

    /// <summary>Marks the frame as malformed (generated code uses this for semantic violations).</summary>
    public void Fail() => _failed = true;

    // ---- fixed width -------------------------------------------------------------------------

    public sbyte ReadInt8()
    {
        if (!TryTake(1, out int start))
            return 0;
        return (sbyte)_span[start];
    }

    public short ReadInt16()
    {
        if (!TryTake(2, out int start))
            return 0;
        return BinaryPrimitives.ReadInt16BigEndian(_span.Slice(start, 2));
    }

    public int ReadInt32()
    {
        if (!TryTake(4, out int start))
            return 0;
        return BinaryPrimitives.ReadInt32BigEndian(_span.Slice(start, 4));
    }

    public long ReadInt64()
    {
        if (!TryTake(8, out int start))
            return 0;
        return BinaryPrimitives.ReadInt64BigEndian(_span.Slice(start, 8));
    }

    public ushort ReadUInt16()
    {
        if (!TryTake(2, out int start))
            return 0;
        return BinaryPrimitives.ReadUInt16BigEndian(_span.Slice(start, 2));
    }

    public uint ReadUInt32()
    {
        if (!TryTake(4, out int start))
            return 0;
        return BinaryPrimitives.ReadUInt32BigEndian(_span.Slice(start, 4));
    }

    /// <summary>Any non-zero byte reads as true (README §2).</summary>
    public bool ReadBool()
    {
        if (!TryTake(1, out int start))
            return false;
        return _span[start] != 0;
    }

    public double ReadFloat64()
    {
        if (!TryTake(8, out int start))
            return 0;
        return BinaryPrimitives.ReadDoubleBigEndian(_span.Slice(start, 8));
    }

    /// <summary>16 bytes, most significant first; <see cref="Guid"/>'s default layout is mixed-endian.</summary>
    public Guid ReadUuid()
    {
        if (!TryTake(16, out int start))
            return Guid.Empty;
        return new Guid(_span.Slice(start, 16), bigEndian: true);
    }

    // ---- varints -----------------------------------------------------------------------------

    /// <summary>
    /// At most 5 bytes. As in Kafka's ByteUtils.readUnsignedVarint, a fifth byte with the
    /// continuation bit set fails; surplus high bits in the fifth byte are dropped.
    /// </summary>
    public uint ReadUnsignedVarInt()
    {
        if (_failed)
            return 0;
        uint value = 0;
        for (int shift = 0; shift < 35; shift += 7)
        {
            if (_position >= _span.Length)
                return FailUInt();
            byte b = _span[_position++];
            value |= (uint)(b & 0x7F) << shift;
            if ((b & 0x80) == 0)
                return value;
        }
        return FailUInt();
    }

    /// <summary>Zigzag-decoded 32-bit varint, at most 5 bytes.</summary>
    public int ReadVarInt()
    {
        uint u = ReadUnsignedVarInt();
        return (int)(u >> 1) ^ -(int)(u & 1);
    }

    /// <summary>Zigzag-decoded 64-bit varint, at most 10 bytes.</summary>
    public long ReadVarLong()
    {
        if (_failed)
            return 0;
        ulong value = 0;
        for (int shift = 0; shift < 70; shift += 7)
        {
            if (_position >= _span.Length)
            {
                _failed = true;
                return 0;
            }
            byte b = _span[_position++];
            value |= (ulong)(b & 0x7F) << shift;
            if ((b & 0x80) == 0)
                return (long)(value >> 1) ^ -(long)(value & 1);
        }
        _failed = true;
        return 0;
    }

    // ---- strings -----------------------------------------------------------------------------

    /// <summary>STRING: INT16 length (must be ≥ 0), then UTF-8.</summary>
    public string ReadString() => ReadUtf8(ReadInt16(), nullable: false) ?? string.Empty;

    /// <summary>NULLABLE_STRING: INT16 length, −1 = null.</summary>
    public string? ReadNullableString() => ReadUtf8(ReadInt16(), nullable: true);

    /// <summary>COMPACT_STRING: UNSIGNED_VARINT length + 1 (0 is invalid).</summary>
    public string ReadCompactString() => ReadUtf8(ReadCompactLength(), nullable: false) ?? string.Empty;

    /// <summary>COMPACT_NULLABLE_STRING: UNSIGNED_VARINT length + 1, 0 = null.</summary>
    public string? ReadCompactNullableString() => ReadUtf8(ReadCompactLength(), nullable: true);

    /// <summary>STRING or COMPACT_STRING.</summary>
    public string ReadString(bool compact) => compact ? ReadCompactString() : ReadString();

    /// <summary>NULLABLE_STRING or COMPACT_NULLABLE_STRING.</summary>
    public string? ReadNullableString(bool compact) => compact ? ReadCompactNullableString() : ReadNullableString();

    // ---- bytes -------------------------------------------------------------------------------

    /// <summary>BYTES: INT32 length (must be ≥ 0), then the bytes, copied.</summary>
    public byte[] ReadBytes() => CopyBytes(ReadInt32(), nullable: false) ?? Array.Empty<byte>();

    /// <summary>NULLABLE_BYTES: INT32 length, −1 = null.</summary>
    public byte[]? ReadNullableBytes() => CopyBytes(ReadInt32(), nullable: true);

    /// <summary>COMPACT_BYTES: UNSIGNED_VARINT length + 1 (0 is invalid).</summary>
    public byte[] ReadCompactBytes() => CopyBytes(ReadCompactLength(), nullable: false) ?? Array.Empty<byte>();

    /// <summary>COMPACT_NULLABLE_BYTES: UNSIGNED_VARINT length + 1, 0 = null.</summary>
    public byte[]? ReadCompactNullableBytes() => CopyBytes(ReadCompactLength(), nullable: true);

    /// <summary>BYTES or COMPACT_BYTES.</summary>
    public byte[] ReadBytes(bool compact) => compact ? ReadCompactBytes() : ReadBytes();

    /// <summary>NULLABLE_BYTES or COMPACT_NULLABLE_BYTES.</summary>
    public byte[]? ReadNullableBytes(bool compact) => compact ? ReadCompactNullableBytes() : ReadNullableBytes();

    /// <summary>
    /// RECORDS: NULLABLE_BYTES, or COMPACT_NULLABLE_BYTES when <paramref name="compact"/>.
    /// Returns a slice of the frame, not a copy (record batches stay bytes from socket to
    /// segment); null for the null encoding (length −1, or compact 0).
    /// </summary>
    public ReadOnlyMemory<byte>? ReadRecords(bool compact)
    {
        int length = compact ? ReadCompactLength() : ReadInt32();
        if (_failed)
            return null;
        if (length == -1)
            return null;
        if (!TryTake(length, out int start))
            return null;
        return _memory.Slice(start, length);
    }

    // ---- arrays, slices, tagged fields -------------------------------------------------------

    /// <summary>
    /// ARRAY count (INT32) or COMPACT_ARRAY count (UNSIGNED_VARINT N+1). Returns −1 for null.
    /// Fails when the count exceeds <see cref="Remaining"/>: every element takes at least one
    /// byte, so this bounds what a caller pre-allocates.
    /// </summary>
    public int ReadArrayCount(bool compact)
    {
        int count = compact ? ReadCompactLength() : ReadInt32();
        if (_failed)
            return 0;
        if (count < -1 || count > Remaining)
            return FailInt();
        return count;
    }

    /// <summary>The next <paramref name="length"/> bytes as a slice of the frame (no copy).</summary>
    public ReadOnlyMemory<byte> ReadSlice(int length)
    {
        if (!TryTake(length, out int start))
            return ReadOnlyMemory<byte>.Empty;
        return _memory.Slice(start, length);
    }

    public void Skip(int length) => TryTake(length, out _);

    /// <summary>Reads a TAG_BUFFER and skips every field in it by its length.</summary>
    public void SkipTaggedFields()
    {
        int count = ReadTagCount();
        for (int i = 0; i < count && !_failed; i++)
        {
            ReadUnsignedVarInt();
            Skip(ReadLength32(ReadUnsignedVarInt()));
        }
    }

    /// <summary>
    /// The field count that opens a TAG_BUFFER. Fails if larger than <see cref="Remaining"/>
    /// (each field needs at least a tag and a size byte).
    /// </summary>
    public int ReadTagCount()
    {
        uint count = ReadUnsignedVarInt();
        if (count > (uint)Remaining)
            return FailInt();
        return (int)count;
    }

    /// <summary>
    /// Reads one tagged field header (tag, size) and returns a reader over exactly its payload.
    /// The caller decodes the payload from that reader, then calls <see cref="EndTaggedField"/>.
    /// </summary>
    public KafkaReader ReadTaggedField(out uint tag)
    {
        tag = ReadUnsignedVarInt();
        int size = ReadLength32(ReadUnsignedVarInt());
        return new KafkaReader(ReadSlice(size));
    }

    /// <summary>Fails this reader if a known tagged field's payload was malformed or not fully consumed.</summary>
    public void EndTaggedField(in KafkaReader field)
    {
        if (field.Failed || field.Remaining != 0)
            _failed = true;
    }

    // ---- helpers -----------------------------------------------------------------------------

    private bool TryTake(int length, out int start)
    {
        start = _position;
        if (_failed)
            return false;
        if (length < 0 || length > _span.Length - _position)
        {
            _failed = true;
            return false;
        }
        _position += length;
        return true;
    }

    /// <summary>UNSIGNED_VARINT N+1 as N: −1 for 0 (null), fails above int.MaxValue.</summary>
    private int ReadCompactLength()
    {
        uint n = ReadUnsignedVarInt();
        if (n > int.MaxValue)
            return FailInt();
        return (int)n - 1;
    }

    private int ReadLength32(uint n) => n <= int.MaxValue ? (int)n : FailInt();

    private string? ReadUtf8(int length, bool nullable)
    {
        if (_failed)
            return null;
        if (length < 0)
        {
            if (length == -1 && nullable)
                return null;
            _failed = true;
            return null;
        }
        if (!TryTake(length, out int start))
            return null;
        if (length == 0)
            return string.Empty;
        return Encoding.UTF8.GetString(_span.Slice(start, length));
    }

    private byte[]? CopyBytes(int length, bool nullable)
    {
        if (_failed)
            return null;
        if (length < 0)
        {
            if (length == -1 && nullable)
                return null;
            _failed = true;
            return null;
        }
        if (!TryTake(length, out int start))
            return null;
        if (length == 0)
            return Array.Empty<byte>();
        return _span.Slice(start, length).ToArray();
    }

    private int FailInt()
    {
        _failed = true;
        return 0;
    }

    private uint FailUInt()
    {
        _failed = true;
        return 0;
    }
}
