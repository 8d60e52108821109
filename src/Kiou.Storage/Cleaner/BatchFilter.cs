using System.Buffers;
using System.Buffers.Binary;
using Kiou.Compression;
using Kiou.Protocol.Records;

namespace Kiou.Storage.Cleaner;

/// <summary>What became of one batch.</summary>
internal enum FilterOutcome
{
    /// <summary>Nothing of it is kept.</summary>
    Drop,

    /// <summary>Kept byte for byte (nothing removed, no delete horizon to set): not recompressed.</summary>
    Copy,

    /// <summary>Rewritten into the output buffer.</summary>
    Rewritten,
}

/// <summary>Raised for bytes of a segment that do not parse or check out: the partition is not cleaned, nothing is changed.</summary>
internal sealed class CleanerCorruptionException(string message) : Exception(message);

/// <summary>
/// The per-batch rules of Kafka's log cleaner (LogCleaner's filter with MemoryRecords.filterTo): which records of a
/// batch stay, and the batch written for them. Base offset, last offset delta, producer id, epoch and base sequence are
/// kept; a rewritten batch gets a new CRC-32C and, when compressed, is recompressed with its own codec.
/// </summary>
/// <remarks>
/// Tombstones and transaction markers follow KIP-534: the first cleaning that keeps one sets the batch's delete
/// horizon (attribute bit 0x40, base timestamp = now + delete.retention.ms, record timestamp deltas made relative to
/// it); a later cleaning after that horizon removes them. One instance per cleaner thread: its buffers are reused.
/// </remarks>
internal sealed class BatchFilter
{
    private const short DeleteHorizonBit = 0x40;
    private const short TimestampTypeBit = 0x08;
    private const short TransactionalBit = 0x10;
    private const short ControlBit = 0x20;

    private readonly ArrayBufferWriter<byte> _records = new(64 * 1024);
    private readonly ArrayBufferWriter<byte> _output = new(64 * 1024);
    private bool[] _keep = new bool[256];

    public OffsetMap Map { get; set; } = null!;

    /// <summary>Records at or after it were not read into the map: kept.</summary>
    public long MapEnd { get; set; }

    public long NowMs { get; set; }

    public long DeleteRetentionMs { get; set; }

    public int DecompressedBytesMax { get; set; }

    public CleanedTransactions Transactions { get; set; } = null!;

    /// <summary>Producer id → offset of its last data batch (Kafka keeps that batch, emptied if need be, so producer state survives).</summary>
    public Dictionary<long, long> ProducerLastOffsets { get; set; } = new();

    /// <summary>The rewritten batch after <see cref="FilterOutcome.Rewritten"/>.</summary>
    public ReadOnlySpan<byte> Output => _output.WrittenSpan;

    /// <summary>
    /// Applies the rules to one whole, CRC-checked batch. <paramref name="keepRange"/>: the batch ends its group, so
    /// something must cover its offsets (an empty batch if nothing else): a segment ends where it ended before cleaning.
    /// </summary>
    public FilterOutcome Filter(ReadOnlyMemory<byte> memory, in BatchHeader header, bool keepRange, out int recordsKept, out int recordsRemoved)
    {
        ReadOnlySpan<byte> batch = memory.Span;
        _output.ResetWrittenCount();
        recordsKept = 0;
        recordsRemoved = 0;
        short attributes = header.Attributes;
        bool control = (attributes & ControlBit) != 0;
        bool transactional = (attributes & TransactionalBit) != 0;
        long producerId = RecordBatch.ProducerId(batch);
        bool hasHorizon = (attributes & DeleteHorizonBit) != 0;
        long baseTimestamp = RecordBatch.BaseTimestamp(batch);
        bool horizonPassed = hasHorizon && NowMs >= baseTimestamp;
        int count = RecordBatch.RecordsCount(batch);
        if (count < 0)
        {
            throw new CleanerCorruptionException($"batch at offset {header.BaseOffset} declares {count} records");
        }

        bool discardRecords;
        bool markerForEmptyTxn = false;
        if (control)
        {
            bool canDiscard = Transactions.OnControlBatchRead(batch, header);
            discardRecords = canDiscard && horizonPassed;
            markerForEmptyTxn = canDiscard;
        }
        else
        {
            discardRecords = Transactions.OnBatchRead(header, producerId, transactional);
        }

        bool lastOfProducer = producerId >= 0 && ProducerLastOffsets.TryGetValue(producerId, out long last) && last == header.LastOffset;
        if (!lastOfProducer && discardRecords)
        {
            recordsRemoved = count;
            return keepRange ? WriteEmpty(batch, header, keepProducer: false) : FilterOutcome.Drop;
        }

        // The records area, decompressed when needed.
        DecompressedRecords decompressed = default;
        ReadOnlySpan<byte> area;
        CompressionType codec = header.Codec;
        try
        {
            if (codec == CompressionType.None)
            {
                area = batch[RecordBatch.HeaderSize..header.TotalSize];
            }
            else
            {
                if (codec > CompressionType.Zstd)
                {
                    throw new CleanerCorruptionException($"batch at offset {header.BaseOffset} names unknown codec {(int)codec}");
                }

                DecompressStatus status = BatchDecompressor.Decompress(codec, memory[RecordBatch.HeaderSize..header.TotalSize], DecompressedBytesMax, out decompressed, out string? error);
                if (status != DecompressStatus.Ok)
                {
                    throw new CleanerCorruptionException($"batch at offset {header.BaseOffset} does not decompress with {codec}: {error}");
                }

                area = decompressed.Span;
            }

            // First pass: decide each record.
            if (_keep.Length < count)
            {
                _keep = new bool[Math.Max(count, _keep.Length * 2)];
            }

            var cursor = new RecordCursor(area, count);
            bool tombstoneKept = false;
            long maxTimestamp = long.MinValue;
            int index = 0;
            while (cursor.MoveNext())
            {
                long offset = header.BaseOffset + cursor.OffsetDelta;
                bool keep;
                if (discardRecords)
                {
                    keep = false;
                }
                else if (control)
                {
                    keep = true;
                }
                else if (offset >= MapEnd)
                {
                    keep = true;
                }
                else if (cursor.KeyLength < 0)
                {
                    keep = false; // a compacted log has no use for a record without a key (Kafka counts it invalid)
                }
                else
                {
                    long latest = Map.Get(cursor.Key);
                    keep = offset >= latest && (cursor.ValueLength >= 0 || !horizonPassed);
                }

                _keep[index++] = keep;
                if (keep)
                {
                    recordsKept++;
                    tombstoneKept |= cursor.ValueLength < 0 && !control;
                    maxTimestamp = Math.Max(maxTimestamp, baseTimestamp + cursor.TimestampDelta);
                }
                else
                {
                    recordsRemoved++;
                }
            }

            if (cursor.Error != 0 || index != count || !cursor.IsAtEnd)
            {
                throw new CleanerCorruptionException($"the records of the batch at offset {header.BaseOffset} do not parse");
            }

            bool setHorizon = !hasHorizon && recordsKept > 0 && (tombstoneKept || (control && markerForEmptyTxn));
            if (recordsRemoved == 0 && !setHorizon)
            {
                return FilterOutcome.Copy;
            }

            if (recordsKept == 0)
            {
                if (lastOfProducer)
                {
                    return WriteEmpty(batch, header, keepProducer: true);
                }

                return keepRange ? WriteEmpty(batch, header, keepProducer: false) : FilterOutcome.Drop;
            }

            long newBase = setHorizon ? NowMs + DeleteRetentionMs : baseTimestamp;
            _records.ResetWrittenCount();
            cursor = new RecordCursor(area, count);
            int position = 0;
            index = 0;
            while (cursor.MoveNext())
            {
                int size = cursor.SizeBytes;
                if (_keep[index++])
                {
                    ReadOnlySpan<byte> record = area.Slice(position, size);
                    if (newBase == baseTimestamp)
                    {
                        _records.Write(record);
                    }
                    else
                    {
                        WriteWithTimestampDelta(record, baseTimestamp + cursor.TimestampDelta - newBase);
                    }
                }

                position += size;
            }

            ReadOnlySpan<byte> recordsArea = _records.WrittenSpan;
            byte[]? compressed = codec == CompressionType.None ? null : BatchCompressor.Compress(codec, recordsArea);
            ReadOnlySpan<byte> payload = compressed ?? recordsArea;
            Span<byte> outBatch = _output.GetSpan(RecordBatch.HeaderSize + payload.Length)[..(RecordBatch.HeaderSize + payload.Length)];
            batch[..RecordBatch.HeaderSize].CopyTo(outBatch);
            payload.CopyTo(outBatch[RecordBatch.HeaderSize..]);
            BinaryPrimitives.WriteInt32BigEndian(outBatch[RecordBatch.BatchLengthPosition..], outBatch.Length - RecordBatch.LogOverhead);
            short newAttributes = setHorizon ? (short)(attributes | DeleteHorizonBit) : attributes;
            BinaryPrimitives.WriteInt16BigEndian(outBatch[RecordBatch.AttributesPosition..], newAttributes);
            BinaryPrimitives.WriteInt64BigEndian(outBatch[RecordBatch.BaseTimestampPosition..], newBase);
            if ((attributes & TimestampTypeBit) == 0 && !control)
            {
                BinaryPrimitives.WriteInt64BigEndian(outBatch[RecordBatch.MaxTimestampPosition..], maxTimestamp);
            }

            BinaryPrimitives.WriteInt32BigEndian(outBatch[RecordBatch.RecordsCountPosition..], recordsKept);
            RecordBatch.UpdateCrc(outBatch);
            _output.Advance(outBatch.Length);
            return FilterOutcome.Rewritten;
        }
        finally
        {
            decompressed.Dispose();
        }
    }

    /// <summary>
    /// Kafka's writeEmptyHeader: a batch without records over the same offsets. With <paramref name="keepProducer"/> it
    /// keeps the producer's fields (its state survives a reload); otherwise it only holds the offset range.
    /// </summary>
    private FilterOutcome WriteEmpty(ReadOnlySpan<byte> batch, in BatchHeader header, bool keepProducer)
    {
        Span<byte> empty = _output.GetSpan(RecordBatch.HeaderSize)[..RecordBatch.HeaderSize];
        empty.Clear();
        BinaryPrimitives.WriteInt64BigEndian(empty, header.BaseOffset);
        BinaryPrimitives.WriteInt32BigEndian(empty[RecordBatch.BatchLengthPosition..], RecordBatch.HeaderSize - RecordBatch.LogOverhead);
        BinaryPrimitives.WriteInt32BigEndian(empty[RecordBatch.PartitionLeaderEpochPosition..], RecordBatch.PartitionLeaderEpoch(batch));
        empty[RecordBatch.MagicPosition] = RecordBatch.CurrentMagic;
        short attributes = (short)(header.Attributes & (keepProducer ? TimestampTypeBit | TransactionalBit | ControlBit : TimestampTypeBit));
        BinaryPrimitives.WriteInt16BigEndian(empty[RecordBatch.AttributesPosition..], attributes);
        BinaryPrimitives.WriteInt32BigEndian(empty[RecordBatch.LastOffsetDeltaPosition..], header.LastOffsetDelta);
        BinaryPrimitives.WriteInt64BigEndian(empty[RecordBatch.BaseTimestampPosition..], header.MaxTimestamp);
        BinaryPrimitives.WriteInt64BigEndian(empty[RecordBatch.MaxTimestampPosition..], header.MaxTimestamp);
        BinaryPrimitives.WriteInt64BigEndian(empty[RecordBatch.ProducerIdPosition..], keepProducer ? RecordBatch.ProducerId(batch) : -1);
        BinaryPrimitives.WriteInt16BigEndian(empty[RecordBatch.ProducerEpochPosition..], keepProducer ? RecordBatch.ProducerEpoch(batch) : (short)-1);
        BinaryPrimitives.WriteInt32BigEndian(empty[RecordBatch.BaseSequencePosition..], keepProducer ? RecordBatch.BaseSequence(batch) : -1);
        BinaryPrimitives.WriteInt32BigEndian(empty[RecordBatch.RecordsCountPosition..], 0);
        RecordBatch.UpdateCrc(empty);
        _output.Advance(RecordBatch.HeaderSize);
        return FilterOutcome.Rewritten;
    }

    /// <summary>Writes <paramref name="record"/> with its timestamp delta replaced (the rest of its bytes unchanged).</summary>
    private void WriteWithTimestampDelta(ReadOnlySpan<byte> record, long timestampDelta)
    {
        int p = 0;
        RecordCursor.TryReadVarint(record, ref p, out int length);
        int attributesAt = p;
        int q = attributesAt + 1;
        RecordCursor.TryReadVarlong(record, ref q, out _);
        ReadOnlySpan<byte> rest = record[q..(attributesAt + length)];
        Span<byte> delta = stackalloc byte[10];
        int deltaBytes = WriteVarlong(delta, timestampDelta);
        int newLength = 1 + deltaBytes + rest.Length;
        Span<byte> lengthBytes = stackalloc byte[5];
        int lengthSize = WriteVarlong(lengthBytes, newLength);
        Span<byte> to = _records.GetSpan(lengthSize + newLength);
        lengthBytes[..lengthSize].CopyTo(to);
        to[lengthSize] = record[attributesAt];
        delta[..deltaBytes].CopyTo(to[(lengthSize + 1)..]);
        rest.CopyTo(to[(lengthSize + 1 + deltaBytes)..]);
        _records.Advance(lengthSize + newLength);
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
