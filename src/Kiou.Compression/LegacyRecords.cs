using System.Buffers;
using System.Buffers.Binary;
using K4os.Hash.xxHash;
using Kiou.Protocol.Records;

namespace Kiou.Compression;

/// <summary>What <see cref="LegacyRecords.ToBatch"/> or <see cref="LegacyRecords.DownConvert"/> found: 0 or a Kafka error code, and why.</summary>
public readonly record struct LegacyVerdict(short ErrorCode, string? Message)
{
    public static LegacyVerdict Ok => default;

    public bool IsOk => ErrorCode == RecordErrorCodes.None;
}

/// <summary>
/// The legacy message formats (magic 0 and 1, docs/design/message-formats.md) that Produce v0-2 carry and Fetch v0-3
/// return. A message is offset (8), size (4), then CRC-32 (IEEE) over the rest: magic (1), attributes (1), a timestamp
/// (8, magic 1 only), key and value (each a 4-byte length, -1 for null, and the bytes). A compressed message is a
/// wrapper whose value holds an inner message set compressed with the wrapper's codec: inner offsets are relative
/// (0..n-1) for magic 1 and absolute for magic 0, and the wrapper's offset is that of its last inner message.
/// <see cref="ToBatch"/> turns a produced message set into one record batch v2, as Kafka's LogValidator converts on
/// append; <see cref="DownConvert"/> turns stored batches into a message set, as Kafka's RecordsUtil.downConvert.
/// </summary>
/// <remarks>Every byte is untrusted: sizes are checked before use, CRCs are verified, decompression is bounded, and
/// nested wrappers are refused (Kafka: "Inner messages must not be compressed").</remarks>
public static class LegacyRecords
{
    /// <summary>Offset and size, before each message.</summary>
    public const int LogOverhead = 12;

    private const int CrcPosition = 12;
    private const int MagicPosition = 16;
    private const int AttributesPosition = 17;

    // CRC, magic, attributes, key length and value length (and the timestamp for magic 1).
    private const int RecordOverheadV0 = 14;
    private const int RecordOverheadV1 = 22;

    private const int TimestampTypeBit = 0x08;
    private const long NoTimestamp = -1;

    private static ReadOnlySpan<byte> Lz4Magic => [0x04, 0x22, 0x4D, 0x18];

    /// <summary>
    /// Converts the message set of one produce partition (Produce v0-2) into one record batch v2 with offsets from 0,
    /// CreateTime timestamps (-1 for magic 0, which has none), no headers and no producer id, compressed with the
    /// producer's codec when any of its messages was compressed (Kafka's compression.type=producer). The batch is then
    /// validated and appended like any other.
    /// </summary>
    /// <param name="maxMessageBytes">max.message.bytes: bound on each message as sent, wrapper included.</param>
    /// <param name="decompressedBytesMax">Bound on the bytes all wrappers of the set decompress to.</param>
    public static LegacyVerdict ToBatch(ReadOnlyMemory<byte> messageSet, int maxMessageBytes, int decompressedBytesMax, bool requireKeys, out byte[]? batch)
    {
        batch = null;
        ReadOnlySpan<byte> set = messageSet.Span;
        if (set.Length == 0)
        {
            return new(RecordErrorCodes.InvalidRecord, "the message set is empty");
        }

        var records = new ArrayBufferWriter<byte>(Math.Min(set.Length + 64, 1 << 20));
        var state = new BuildState();
        CompressionType codec = CompressionType.None;
        int decompressedLeft = decompressedBytesMax;
        int position = 0;
        while (position < set.Length)
        {
            var verdict = ReadMessage(set[position..], out int size, out Message message);
            if (!verdict.IsOk)
            {
                return verdict;
            }

            if (size > maxMessageBytes)
            {
                return new(RecordErrorCodes.MessageTooLarge, $"a message of {size} bytes is larger than max.message.bytes ({maxMessageBytes})");
            }

            if (message.TimestampType == TimestampType.LogAppendTime)
            {
                return new(InvalidTimestamp, "the message already carries LogAppendTime; only the broker may set it");
            }

            if (message.Codec == CompressionType.None)
            {
                verdict = Append(records, ref state, message, set.Slice(position, size), requireKeys);
                if (!verdict.IsOk)
                {
                    return verdict;
                }
            }
            else
            {
                if (message.Codec > CompressionType.Lz4)
                {
                    return new(RecordErrorCodes.UnsupportedCompressionType, $"compression codec {(int)message.Codec} is not valid below message format v2");
                }

                if (message.ValueLength < 0)
                {
                    return new(RecordErrorCodes.InvalidRecord, "a compressed message has a null value");
                }

                codec = message.Codec;
                ReadOnlyMemory<byte> payload = messageSet.Slice(position + message.ValueStart, message.ValueLength);
                using var inner = Decompress(codec, payload, message.Magic, decompressedLeft, out verdict);
                if (!verdict.IsOk)
                {
                    return verdict;
                }

                decompressedLeft -= inner.Length;
                verdict = AppendInner(records, ref state, inner.Span, message.Magic, requireKeys);
                if (!verdict.IsOk)
                {
                    return verdict;
                }
            }

            position += size;
        }

        byte[] area = codec == CompressionType.None ? records.WrittenSpan.ToArray() : BatchCompressor.Compress(codec, records.WrittenSpan);
        batch = new byte[RecordBatch.HeaderSize + area.Length];
        Span<byte> b = batch;
        BinaryPrimitives.WriteInt64BigEndian(b[RecordBatch.BaseOffsetPosition..], 0);
        BinaryPrimitives.WriteInt32BigEndian(b[RecordBatch.BatchLengthPosition..], batch.Length - RecordBatch.LogOverhead);
        BinaryPrimitives.WriteInt32BigEndian(b[RecordBatch.PartitionLeaderEpochPosition..], -1);
        b[RecordBatch.MagicPosition] = RecordBatch.CurrentMagic;
        BinaryPrimitives.WriteInt16BigEndian(b[RecordBatch.AttributesPosition..], (short)codec);
        BinaryPrimitives.WriteInt32BigEndian(b[RecordBatch.LastOffsetDeltaPosition..], state.Count - 1);
        BinaryPrimitives.WriteInt64BigEndian(b[RecordBatch.BaseTimestampPosition..], state.BaseTimestamp);
        BinaryPrimitives.WriteInt64BigEndian(b[RecordBatch.MaxTimestampPosition..], state.MaxTimestamp);
        BinaryPrimitives.WriteInt64BigEndian(b[RecordBatch.ProducerIdPosition..], -1);
        BinaryPrimitives.WriteInt16BigEndian(b[RecordBatch.ProducerEpochPosition..], -1);
        BinaryPrimitives.WriteInt32BigEndian(b[RecordBatch.BaseSequencePosition..], -1);
        BinaryPrimitives.WriteInt32BigEndian(b[RecordBatch.RecordsCountPosition..], state.Count);
        area.CopyTo(b[RecordBatch.HeaderSize..]);
        RecordBatch.UpdateCrc(b);
        return LegacyVerdict.Ok;
    }

    /// <summary>
    /// Converts whole record batches v2 (a fetch's read) into a message set of <paramref name="toMagic"/> (0 or 1) as
    /// Kafka's RecordsUtil.downConvert: control batches are skipped; an uncompressed batch gives one message per record
    /// at or after <paramref name="firstOffset"/>, with its absolute offset; a compressed batch gives one wrapper with
    /// all its records, recompressed with the same codec; headers are dropped; magic 1 keeps the timestamps and their
    /// type (LogAppendTime: the batch's max timestamp). zstd cannot be carried below v2: a first batch in zstd is
    /// UNSUPPORTED_COMPRESSION_TYPE, a later one ends the answer there. The output stops at the last whole message
    /// within <paramref name="limit"/> bytes, but always holds the first (a consumer must be able to progress).
    /// </summary>
    public static LegacyVerdict DownConvert(ReadOnlyMemory<byte> stored, byte toMagic, long firstOffset, int limit, int decompressedBytesMax, out byte[] output)
    {
        ReadOnlySpan<byte> batches = stored.Span;
        var writer = new ArrayBufferWriter<byte>(Math.Clamp(batches.Length + batches.Length / 2, 256, Math.Max(256, limit) + 4096));
        var scratch = new ArrayBufferWriter<byte>(256);
        int position = 0;
        int lastWhole = 0;
        output = [];
        while (position < batches.Length && RecordBatch.TryReadHeader(batches[position..], out BatchHeader header))
        {
            if (header.TotalSize > batches.Length - position)
            {
                break; // a batch cut short by the read's limit
            }

            ReadOnlySpan<byte> batch = batches.Slice(position, header.TotalSize);
            position += header.TotalSize;
            if (RecordBatch.Magic(batch) != RecordBatch.CurrentMagic || header.TotalSize < RecordBatch.HeaderSize)
            {
                return new(RecordErrorCodes.CorruptMessage, "a stored batch is not a record batch v2");
            }

            if (RecordBatch.IsControl(batch) || header.LastOffset < firstOffset)
            {
                continue;
            }

            CompressionType codec = header.Codec;
            if (codec > CompressionType.Lz4)
            {
                if (writer.WrittenCount == 0)
                {
                    return new(RecordErrorCodes.UnsupportedCompressionType, "zstd-compressed records cannot be returned below fetch v10 (message format v2)");
                }

                break;
            }

            bool logAppendTime = header.TimestampType == TimestampType.LogAppendTime;
            long baseTimestamp = RecordBatch.BaseTimestamp(batch);
            long maxTimestamp = RecordBatch.MaxTimestamp(batch);
            int count = RecordBatch.RecordsCount(batch);
            DecompressedRecords decompressed = default;
            try
            {
                ReadOnlySpan<byte> area = batch[RecordBatch.HeaderSize..];
                if (codec != CompressionType.None)
                {
                    ReadOnlyMemory<byte> payload = stored.Slice(position - header.TotalSize + RecordBatch.HeaderSize, header.TotalSize - RecordBatch.HeaderSize);
                    if (BatchDecompressor.Decompress(codec, payload, decompressedBytesMax, out decompressed, out string? error) != DecompressStatus.Ok)
                    {
                        return new(RecordErrorCodes.CorruptMessage, $"a stored batch at offset {header.BaseOffset} does not decompress: {error}");
                    }

                    area = decompressed.Span;
                }

                var cursor = new RecordCursor(area, count);
                ArrayBufferWriter<byte> to = codec == CompressionType.None ? writer : scratch;
                scratch.ResetWrittenCount();
                long lastOffset = header.BaseOffset;
                long wrapperTimestamp = NoTimestamp;
                while (cursor.MoveNext())
                {
                    long offset = header.BaseOffset + cursor.OffsetDelta;
                    long timestamp = baseTimestamp + cursor.TimestampDelta;
                    if (codec == CompressionType.None)
                    {
                        if (offset < firstOffset)
                        {
                            continue;
                        }

                        WriteMessage(to, toMagic, offset, logAppendTime ? maxTimestamp : timestamp, logAppendTime, CompressionType.None,
                            cursor.Key, cursor.KeyLength, cursor.Value, cursor.ValueLength);
                        if (writer.WrittenCount <= limit || lastWhole == 0)
                        {
                            lastWhole = writer.WrittenCount;
                        }

                        if (writer.WrittenCount >= limit)
                        {
                            break;
                        }
                    }
                    else
                    {
                        // Magic 1: offsets relative to the first; magic 0: absolute (Kafka's MemoryRecordsBuilder).
                        WriteMessage(to, toMagic, toMagic == 0 ? offset : cursor.OffsetDelta, timestamp, logAppendTime, CompressionType.None,
                            cursor.Key, cursor.KeyLength, cursor.Value, cursor.ValueLength);
                        wrapperTimestamp = Math.Max(wrapperTimestamp, timestamp);
                    }

                    lastOffset = offset;
                }

                if (cursor.Error != 0 || (codec != CompressionType.None && !cursor.IsAtEnd))
                {
                    return new(RecordErrorCodes.CorruptMessage, $"a stored batch at offset {header.BaseOffset} has records that do not parse");
                }

                if (codec != CompressionType.None && scratch.WrittenCount > 0)
                {
                    byte[] compressed = Compress(codec, scratch.WrittenSpan, toMagic);
                    WriteMessage(writer, toMagic, lastOffset, logAppendTime ? maxTimestamp : wrapperTimestamp, logAppendTime, codec, default, -1, compressed, compressed.Length);
                    if (writer.WrittenCount <= limit || lastWhole == 0)
                    {
                        lastWhole = writer.WrittenCount;
                    }
                }
            }
            finally
            {
                decompressed.Dispose();
            }

            if (writer.WrittenCount >= limit)
            {
                break;
            }
        }

        output = writer.WrittenSpan[..lastWhole].ToArray();
        return LegacyVerdict.Ok;
    }

    /// <summary>
    /// The message at the start of <paramref name="data"/> (offset and size included, <paramref name="size"/> bytes in
    /// all), its CRC-32 verified. Positions in <paramref name="message"/> are from the start of <paramref name="data"/>.
    /// </summary>
    public static LegacyVerdict ReadMessage(ReadOnlySpan<byte> data, out int size, out Message message)
    {
        size = 0;
        message = default;
        if (data.Length < LogOverhead)
        {
            return new(RecordErrorCodes.CorruptMessage, "the message set ends inside a message's offset and size");
        }

        int messageSize = BinaryPrimitives.ReadInt32BigEndian(data[8..]);
        if (messageSize < RecordOverheadV0 || messageSize > data.Length - LogOverhead)
        {
            return new(RecordErrorCodes.CorruptMessage, $"a message's size ({messageSize}) is smaller than a message or beyond the bytes sent");
        }

        size = LogOverhead + messageSize;
        ReadOnlySpan<byte> m = data[..size];
        byte magic = m[MagicPosition];
        if (magic > 1)
        {
            return new(RecordErrorCodes.InvalidRecord, $"magic {magic} in a legacy message set");
        }

        if (magic == 1 && messageSize < RecordOverheadV1)
        {
            return new(RecordErrorCodes.CorruptMessage, $"a message of magic 1 has {messageSize} bytes, fewer than its header");
        }

        if (Crc32.Compute(m[MagicPosition..]) != BinaryPrimitives.ReadUInt32BigEndian(m[CrcPosition..]))
        {
            return new(RecordErrorCodes.CorruptMessage, "a message's CRC-32 does not match its bytes");
        }

        byte attributes = m[AttributesPosition];
        int p = AttributesPosition + 1;
        long timestamp = NoTimestamp;
        var timestampType = TimestampType.CreateTime;
        if (magic == 1)
        {
            timestamp = BinaryPrimitives.ReadInt64BigEndian(m[p..]);
            timestampType = (attributes & TimestampTypeBit) != 0 ? TimestampType.LogAppendTime : TimestampType.CreateTime;
            p += 8;
        }

        int keyLength = BinaryPrimitives.ReadInt32BigEndian(m[p..]);
        p += 4;
        if (keyLength < -1 || keyLength > size - p - 4)
        {
            return new(RecordErrorCodes.CorruptMessage, $"a message's key length ({keyLength}) does not fit in it");
        }

        int keyStart = p;
        p += Math.Max(0, keyLength);
        int valueLength = BinaryPrimitives.ReadInt32BigEndian(m[p..]);
        p += 4;
        if (valueLength < -1 || p + Math.Max(0, valueLength) != size)
        {
            return new(RecordErrorCodes.CorruptMessage, $"a message's value length ({valueLength}) does not match its size");
        }

        message = new Message(BinaryPrimitives.ReadInt64BigEndian(m), magic, (CompressionType)(attributes & 0x07), timestampType, timestamp, keyStart, keyLength, p, valueLength);
        return LegacyVerdict.Ok;
    }

    /// <summary>One legacy message as <see cref="ReadMessage"/> found it.</summary>
    public readonly record struct Message(long Offset, byte Magic, CompressionType Codec, TimestampType TimestampType, long Timestamp,
        int KeyStart, int KeyLength, int ValueStart, int ValueLength);

    private const short InvalidTimestamp = 32;

    private struct BuildState
    {
        public int Count;
        public long BaseTimestamp;
        public long MaxTimestamp;
    }

    private static LegacyVerdict AppendInner(ArrayBufferWriter<byte> records, ref BuildState state, ReadOnlySpan<byte> inner, byte wrapperMagic, bool requireKeys)
    {
        if (inner.Length == 0)
        {
            return new(RecordErrorCodes.InvalidRecord, "a compressed message holds no messages");
        }

        int position = 0;
        while (position < inner.Length)
        {
            var verdict = ReadMessage(inner[position..], out int size, out Message message);
            if (!verdict.IsOk)
            {
                return verdict;
            }

            if (message.Codec != CompressionType.None)
            {
                return new(RecordErrorCodes.InvalidRecord, "a compressed message holds another compressed message (inner messages must not be compressed)");
            }

            if (message.Magic != wrapperMagic)
            {
                return new(RecordErrorCodes.InvalidRecord, "an inner message's magic does not match its wrapper's");
            }

            verdict = Append(records, ref state, message, inner.Slice(position, size), requireKeys);
            if (!verdict.IsOk)
            {
                return verdict;
            }

            position += size;
        }

        return LegacyVerdict.Ok;
    }

    private static LegacyVerdict Append(ArrayBufferWriter<byte> records, ref BuildState state, in Message message, ReadOnlySpan<byte> bytes, bool requireKeys)
    {
        if (requireKeys && message.KeyLength < 0)
        {
            return new(RecordErrorCodes.InvalidRecord, "Compacted topic cannot accept message without key");
        }

        if (state.Count == int.MaxValue - 1)
        {
            return new(RecordErrorCodes.InvalidRecord, "too many messages");
        }

        long timestamp = message.Timestamp;
        if (state.Count == 0)
        {
            state.BaseTimestamp = timestamp;
            state.MaxTimestamp = timestamp;
        }

        state.MaxTimestamp = Math.Max(state.MaxTimestamp, timestamp);
        ReadOnlySpan<byte> key = message.KeyLength < 0 ? default : bytes.Slice(message.KeyStart, message.KeyLength);
        ReadOnlySpan<byte> value = message.ValueLength < 0 ? default : bytes.Slice(message.ValueStart, message.ValueLength);

        // attributes, timestampDelta, offsetDelta, key, value, no headers
        Span<byte> head = stackalloc byte[1 + 10 + 5 + 5];
        int n = 0;
        head[n++] = 0;
        n += WriteVarlong(head[n..], timestamp - state.BaseTimestamp);
        n += WriteVarlong(head[n..], state.Count);
        n += WriteVarlong(head[n..], message.KeyLength);
        Span<byte> valueLength = stackalloc byte[5];
        int v = WriteVarlong(valueLength, message.ValueLength);
        long body = (long)n + key.Length + v + value.Length + 1;
        Span<byte> length = stackalloc byte[5];
        int l = WriteVarlong(length, body);
        Span<byte> to = records.GetSpan(l + (int)body);
        length[..l].CopyTo(to);
        head[..n].CopyTo(to[l..]);
        key.CopyTo(to[(l + n)..]);
        valueLength[..v].CopyTo(to[(l + n + key.Length)..]);
        value.CopyTo(to[(l + n + key.Length + v)..]);
        to[l + (int)body - 1] = 0;
        records.Advance(l + (int)body);
        state.Count++;
        return LegacyVerdict.Ok;
    }

    private static DecompressedRecords Decompress(CompressionType codec, ReadOnlyMemory<byte> payload, byte magic, int limit, out LegacyVerdict verdict)
    {
        verdict = LegacyVerdict.Ok;
        if (codec == CompressionType.Lz4 && magic == 0 && payload.Length >= 7 && payload.Span[..4].SequenceEqual(Lz4Magic))
        {
            // Kafka before 0.10 computed the frame descriptor's checksum over the magic number too, and reads magic 0
            // without checking it (KafkaLZ4BlockInputStream): write the right one so the frame decoder accepts it.
            byte[] fixedPayload = payload.ToArray();
            int descriptorEnd = DescriptorEnd(fixedPayload);
            if (descriptorEnd > 0 && descriptorEnd < fixedPayload.Length)
            {
                fixedPayload[descriptorEnd] = (byte)(XXH32.DigestOf(fixedPayload.AsSpan(4, descriptorEnd - 4)) >> 8);
            }

            payload = fixedPayload;
        }

        var status = BatchDecompressor.Decompress(codec, payload, Math.Max(0, limit), out var records, out string? error);
        if (status == DecompressStatus.TooLarge)
        {
            verdict = new(RecordErrorCodes.CorruptMessage, $"the compressed messages decompress to {error}");
        }
        else if (status != DecompressStatus.Ok)
        {
            verdict = new(RecordErrorCodes.CorruptMessage, $"a compressed message does not decompress: {error}");
        }

        return records;
    }

    /// <summary>The position of an LZ4 frame descriptor's checksum byte: after magic, FLG, BD and the optional
    /// content size (FLG bit 3) and dictionary id (bit 0); 0 when the frame is too short.</summary>
    private static int DescriptorEnd(ReadOnlySpan<byte> frame)
    {
        byte flg = frame[4];
        int end = 6 + ((flg & 0x08) != 0 ? 8 : 0) + ((flg & 0x01) != 0 ? 4 : 0);
        return end < frame.Length ? end : 0;
    }

    private static byte[] Compress(CompressionType codec, ReadOnlySpan<byte> inner, byte magic)
    {
        byte[] compressed = BatchCompressor.Compress(codec, inner);
        if (codec == CompressionType.Lz4 && magic == 0)
        {
            // Kafka writes magic 0 frames with the old checksum over magic and descriptor (useBrokenFlagDescriptorChecksum),
            // which librdkafka and kafka-python expect for magic 0.
            int end = DescriptorEnd(compressed);
            if (end > 0)
            {
                compressed[end] = (byte)(XXH32.DigestOf(compressed.AsSpan(0, end)) >> 8);
            }
        }

        return compressed;
    }

    private static void WriteMessage(ArrayBufferWriter<byte> to, byte magic, long offset, long timestamp, bool logAppendTime, CompressionType codec,
        ReadOnlySpan<byte> key, int keyLength, ReadOnlySpan<byte> value, int valueLength)
    {
        int messageSize = (magic == 0 ? RecordOverheadV0 : RecordOverheadV1) + key.Length + value.Length;
        Span<byte> m = to.GetSpan(LogOverhead + messageSize)[..(LogOverhead + messageSize)];
        BinaryPrimitives.WriteInt64BigEndian(m, offset);
        BinaryPrimitives.WriteInt32BigEndian(m[8..], messageSize);
        m[MagicPosition] = magic;
        m[AttributesPosition] = (byte)((byte)codec | (magic == 1 && logAppendTime ? TimestampTypeBit : 0));
        int p = AttributesPosition + 1;
        if (magic == 1)
        {
            BinaryPrimitives.WriteInt64BigEndian(m[p..], timestamp);
            p += 8;
        }

        BinaryPrimitives.WriteInt32BigEndian(m[p..], keyLength);
        p += 4;
        key.CopyTo(m[p..]);
        p += key.Length;
        BinaryPrimitives.WriteInt32BigEndian(m[p..], valueLength);
        p += 4;
        value.CopyTo(m[p..]);
        BinaryPrimitives.WriteUInt32BigEndian(m[CrcPosition..], Crc32.Compute(m[MagicPosition..]));
        to.Advance(LogOverhead + messageSize);
    }

    private static int WriteVarlong(Span<byte> to, long value)
    {
        ulong v = (ulong)((value << 1) ^ (value >> 63));
        int n = 0;
        while (v >= 0x80)
        {
            to[n++] = (byte)(v | 0x80);
            v >>= 7;
        }

        to[n++] = (byte)v;
        return n;
    }
}
