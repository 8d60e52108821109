using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Text;

namespace Kiou.Protocol;

/// <summary>
/// Writes big-endian Kafka protocol primitives (README §2) into a growable buffer rented from
/// <see cref="ArrayPool{T}.Shared"/>.
/// </summary>
/// <remarks>
/// One writer per response, owned by one thread; <see cref="Reset"/> makes it reusable and
/// <see cref="Dispose"/> returns the buffer to the pool. <see cref="WrittenMemory"/> stays valid
/// until the next write, <see cref="Reset"/> or <see cref="Dispose"/>. Writers trust their
/// caller: a string longer than its length prefix can express throws, since dropping or
/// truncating it would silently change the message.
/// </remarks>
public sealed class KafkaWriter : IBufferWriter<byte>, IDisposable
{
    private byte[] _buffer;
    private int _length;
    private List<(int Position, ReadOnlyMemory<byte> Bytes)>? _deferred;
    private long _deferredBytes;
    private int _openTaggedFields;

    public KafkaWriter(int initialCapacity = 256)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(initialCapacity);
        _buffer = ArrayPool<byte>.Shared.Rent(Math.Max(initialCapacity, 16));
    }

    /// <summary>Bytes written since construction or the last <see cref="Reset"/>.</summary>
    public int Length => _length;

    public ReadOnlyMemory<byte> WrittenMemory => _buffer.AsMemory(0, _length);

    public ReadOnlySpan<byte> WrittenSpan => _buffer.AsSpan(0, _length);

    /// <summary>Forgets the written bytes (and the deferred records) and keeps the buffer.</summary>
    public void Reset()
    {
        _length = 0;
        _deferred?.Clear();
        _deferredBytes = 0;
        _openTaggedFields = 0;
    }

    /// <summary>
    /// RECORDS fields at least this long are not copied: <see cref="WriteRecords"/> writes only their length prefix
    /// and lists the bytes in <see cref="Deferred"/>, for the caller to send itself, right after the written bytes
    /// before their position (from the file with sendfile, or straight from the read buffer). Default: never.
    /// </summary>
    public int DeferRecordsFrom { get; set; } = int.MaxValue;

    /// <summary>Deferred records in write order: each belongs in the output right before written byte <c>Position</c>.</summary>
    public IReadOnlyList<(int Position, ReadOnlyMemory<byte> Bytes)> Deferred =>
        (IReadOnlyList<(int, ReadOnlyMemory<byte>)>?)_deferred ?? [];

    /// <summary>Total length of <see cref="Deferred"/>: the message is <see cref="Length"/> + this many bytes.</summary>
    public long DeferredBytes => _deferredBytes;

    public void Dispose()
    {
        byte[] buffer = _buffer;
        _buffer = Array.Empty<byte>();
        _length = 0;
        if (buffer.Length != 0)
            ArrayPool<byte>.Shared.Return(buffer);
    }

    // ---- fixed width -------------------------------------------------------------------------

    public void WriteInt8(sbyte v) => Take(1)[0] = (byte)v;

    public void WriteInt16(short v) => BinaryPrimitives.WriteInt16BigEndian(Take(2), v);

    public void WriteInt32(int v) => BinaryPrimitives.WriteInt32BigEndian(Take(4), v);

    public void WriteInt64(long v) => BinaryPrimitives.WriteInt64BigEndian(Take(8), v);

    public void WriteUInt16(ushort v) => BinaryPrimitives.WriteUInt16BigEndian(Take(2), v);

    public void WriteUInt32(uint v) => BinaryPrimitives.WriteUInt32BigEndian(Take(4), v);

    public void WriteBool(bool v) => Take(1)[0] = v ? (byte)1 : (byte)0;

    public void WriteFloat64(double v) => BinaryPrimitives.WriteDoubleBigEndian(Take(8), v);

    /// <summary>16 bytes, most significant first (not <see cref="Guid"/>'s default layout).</summary>
    public void WriteUuid(Guid v)
    {
        bool written = v.TryWriteBytes(Take(16), bigEndian: true, out _);
        Debug.Assert(written, "16 bytes always fit a Guid");
    }

    // ---- varints -----------------------------------------------------------------------------

    public void WriteUnsignedVarInt(uint v)
    {
        Span<byte> span = GetSpan(5);
        int i = 0;
        while (v >= 0x80)
        {
            span[i++] = (byte)(v | 0x80);
            v >>= 7;
        }
        span[i++] = (byte)v;
        _length += i;
    }

    /// <summary>Zigzag-encoded 32-bit varint.</summary>
    public void WriteVarInt(int v) => WriteUnsignedVarInt((uint)((v << 1) ^ (v >> 31)));

    /// <summary>Zigzag-encoded 64-bit varint.</summary>
    public void WriteVarLong(long v)
    {
        ulong u = (ulong)((v << 1) ^ (v >> 63));
        Span<byte> span = GetSpan(10);
        int i = 0;
        while (u >= 0x80)
        {
            span[i++] = (byte)(u | 0x80);
            u >>= 7;
        }
        span[i++] = (byte)u;
        _length += i;
    }

    /// <summary>Bytes <see cref="WriteUnsignedVarInt"/> uses for <paramref name="v"/>.</summary>
    public static int SizeOfUnsignedVarInt(uint v)
    {
        int size = 1;
        while (v >= 0x80)
        {
            v >>= 7;
            size++;
        }
        return size;
    }

    // ---- strings -----------------------------------------------------------------------------

    /// <summary>STRING: INT16 byte length, then UTF-8. Throws if longer than 32767 bytes.</summary>
    public void WriteString(string v)
    {
        ArgumentNullException.ThrowIfNull(v);
        int byteCount = Encoding.UTF8.GetByteCount(v);
        if (byteCount > short.MaxValue)
            ThrowStringTooLong(byteCount);
        WriteInt16((short)byteCount);
        WriteUtf8(v, byteCount);
    }

    /// <summary>NULLABLE_STRING: INT16 byte length (−1 = null), then UTF-8.</summary>
    public void WriteNullableString(string? v)
    {
        if (v is null)
            WriteInt16(-1);
        else
            WriteString(v);
    }

    /// <summary>COMPACT_STRING: UNSIGNED_VARINT byte length + 1, then UTF-8.</summary>
    public void WriteCompactString(string v)
    {
        ArgumentNullException.ThrowIfNull(v);
        int byteCount = Encoding.UTF8.GetByteCount(v);
        if (byteCount > short.MaxValue)
            ThrowStringTooLong(byteCount); // Kafka caps compact strings at 32767 bytes as well
        WriteUnsignedVarInt((uint)byteCount + 1);
        WriteUtf8(v, byteCount);
    }

    /// <summary>COMPACT_NULLABLE_STRING: UNSIGNED_VARINT byte length + 1 (0 = null), then UTF-8.</summary>
    public void WriteCompactNullableString(string? v)
    {
        if (v is null)
            WriteUnsignedVarInt(0);
        else
            WriteCompactString(v);
    }

    /// <summary>STRING or COMPACT_STRING.</summary>
    public void WriteString(string v, bool compact)
    {
        if (compact)
            WriteCompactString(v);
        else
            WriteString(v);
    }

    /// <summary>NULLABLE_STRING or COMPACT_NULLABLE_STRING.</summary>
    public void WriteNullableString(string? v, bool compact)
    {
        if (compact)
            WriteCompactNullableString(v);
        else
            WriteNullableString(v);
    }

    // ---- bytes -------------------------------------------------------------------------------

    /// <summary>BYTES: INT32 length, then the bytes.</summary>
    public void WriteBytes(ReadOnlySpan<byte> v)
    {
        WriteInt32(v.Length);
        WriteRaw(v);
    }

    /// <summary>NULLABLE_BYTES: INT32 length (−1 = null), then the bytes.</summary>
    public void WriteNullableBytes(byte[]? v)
    {
        if (v is null)
            WriteInt32(-1);
        else
            WriteBytes(v);
    }

    /// <summary>COMPACT_BYTES: UNSIGNED_VARINT length + 1, then the bytes.</summary>
    public void WriteCompactBytes(ReadOnlySpan<byte> v)
    {
        WriteUnsignedVarInt((uint)v.Length + 1);
        WriteRaw(v);
    }

    /// <summary>COMPACT_NULLABLE_BYTES: UNSIGNED_VARINT length + 1 (0 = null), then the bytes.</summary>
    public void WriteCompactNullableBytes(byte[]? v)
    {
        if (v is null)
            WriteUnsignedVarInt(0);
        else
            WriteCompactBytes(v);
    }

    /// <summary>BYTES or COMPACT_BYTES.</summary>
    public void WriteBytes(ReadOnlySpan<byte> v, bool compact)
    {
        if (compact)
            WriteCompactBytes(v);
        else
            WriteBytes(v);
    }

    /// <summary>NULLABLE_BYTES or COMPACT_NULLABLE_BYTES.</summary>
    public void WriteNullableBytes(byte[]? v, bool compact)
    {
        if (compact)
            WriteCompactNullableBytes(v);
        else
            WriteNullableBytes(v);
    }

    /// <summary>RECORDS: NULLABLE_BYTES, or COMPACT_NULLABLE_BYTES when <paramref name="compact"/>.</summary>
    public void WriteRecords(ReadOnlyMemory<byte>? records, bool compact)
    {
        if (records is not { } bytes)
        {
            if (compact)
                WriteUnsignedVarInt(0);
            else
                WriteInt32(-1);
            return;
        }
        if (bytes.Length >= DeferRecordsFrom && _openTaggedFields == 0)
        {
            // Length prefix only; the bytes follow from the caller (a tagged field's size would not count them).
            if (compact)
                WriteUnsignedVarInt((uint)bytes.Length + 1);
            else
                WriteInt32(bytes.Length);
            (_deferred ??= []).Add((_length, bytes));
            _deferredBytes += bytes.Length;
            return;
        }
        if (compact)
            WriteCompactBytes(bytes.Span);
        else
            WriteBytes(bytes.Span);
    }

    // ---- arrays, raw, tagged fields ----------------------------------------------------------

    /// <summary>ARRAY count (INT32) or COMPACT_ARRAY count (UNSIGNED_VARINT N+1); −1 = null.</summary>
    public void WriteArrayCount(int count, bool compact)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, -1);
        if (compact)
            WriteUnsignedVarInt((uint)(count + 1));
        else
            WriteInt32(count);
    }

    public void WriteRaw(ReadOnlySpan<byte> bytes) => bytes.CopyTo(Take(bytes.Length));

    /// <summary>Reserves 4 bytes (zeroed) and returns their position, for <see cref="PatchInt32"/>.</summary>
    public int ReserveInt32()
    {
        int position = _length;
        Take(4).Clear();
        return position;
    }

    /// <summary>Overwrites 4 bytes written earlier, e.g. a size prefix once the frame is complete.</summary>
    public void PatchInt32(int position, int value)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(position);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(position, _length - 4);
        BinaryPrimitives.WriteInt32BigEndian(_buffer.AsSpan(position, 4), value);
    }

    /// <summary>
    /// Starts one field of a TAG_BUFFER: writes its tag and returns where its payload starts.
    /// Write the payload next, then call <see cref="EndTaggedField"/>.
    /// </summary>
    public int BeginTaggedField(uint tag)
    {
        WriteUnsignedVarInt(tag);
        _openTaggedFields++;
        return _length;
    }

    /// <summary>
    /// Inserts the payload size in front of the payload written since <see cref="BeginTaggedField"/>.
    /// The size is a varint whose width is only known afterwards, so the payload moves right by
    /// that width (tagged fields are rare and small; this keeps the codec single-pass).
    /// </summary>
    public void EndTaggedField(int payloadStart)
    {
        Debug.Assert(payloadStart >= 0, "payload start before the buffer");
        Debug.Assert(payloadStart <= _length, "payload start beyond what was written");
        _openTaggedFields--;
        int size = _length - payloadStart;
        int prefix = SizeOfUnsignedVarInt((uint)size);
        Take(prefix);
        _buffer.AsSpan(payloadStart, size).CopyTo(_buffer.AsSpan(payloadStart + prefix, size));
        int end = _length;
        _length = payloadStart;
        WriteUnsignedVarInt((uint)size);
        Debug.Assert(_length == payloadStart + prefix, "varint width mismatch");
        _length = end;
    }

    // ---- IBufferWriter<byte> -----------------------------------------------------------------

    public void Advance(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, _buffer.Length - _length);
        _length += count;
    }

    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        EnsureCapacity(sizeHint);
        return _buffer.AsMemory(_length);
    }

    public Span<byte> GetSpan(int sizeHint = 0)
    {
        EnsureCapacity(sizeHint);
        return _buffer.AsSpan(_length);
    }

    // ---- helpers -----------------------------------------------------------------------------

    private Span<byte> Take(int count)
    {
        EnsureCapacity(count);
        Span<byte> span = _buffer.AsSpan(_length, count);
        _length += count;
        return span;
    }

    private void WriteUtf8(string v, int byteCount)
    {
        int written = Encoding.UTF8.GetBytes(v, Take(byteCount));
        Debug.Assert(written == byteCount, "UTF-8 byte count changed between passes");
    }

    private void EnsureCapacity(int sizeHint)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(sizeHint);
        int needed = Math.Max(sizeHint, 1);
        if (_buffer.Length - _length >= needed)
            return;
        Grow(needed);
    }

    private void Grow(int needed)
    {
        ObjectDisposedException.ThrowIf(_buffer.Length == 0, this); // only Dispose leaves an empty buffer
        long target = Math.Max((long)_buffer.Length * 2, (long)_length + needed);
        if (target > Array.MaxLength)
            target = (long)_length + needed;
        if (target > Array.MaxLength)
            throw new OutOfMemoryException("KafkaWriter cannot grow beyond Array.MaxLength.");
        byte[] next = ArrayPool<byte>.Shared.Rent((int)target);
        _buffer.AsSpan(0, _length).CopyTo(next);
        byte[] old = _buffer;
        _buffer = next;
        if (old.Length != 0)
            ArrayPool<byte>.Shared.Return(old);
    }

    [DoesNotReturn]
    private static void ThrowStringTooLong(int byteCount) =>
        throw new ArgumentException($"String of {byteCount} UTF-8 bytes exceeds the protocol limit of 32767.");
}
