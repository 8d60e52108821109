using Kiou.Protocol;
using Kiou.Protocol.Records;

namespace Kiou.Broker.Logs;

/// <summary>The record batches the coordinators write to their internal topics and to data partitions (state
/// records, transactional offset commits, transaction markers): one RecordBatch v2 whose base offset and leader epoch
/// the log stamps.</summary>
public static class CoordinatorBatch
{
    /// <param name="records">Key and value per record (null value: tombstone), offset deltas 0, 1, 2, …</param>
    public static byte[] Build(IReadOnlyList<(byte[] Key, byte[]? Value)> records, long timestampMs, short attributes,
        long producerId, short producerEpoch, int baseSequence)
    {
        int size = 0;
        foreach (var (key, value) in records)
            size += 24 + key.Length + (value?.Length ?? 0);
        using var body = new KafkaWriter(size);
        using var record = new KafkaWriter(256);
        for (int i = 0; i < records.Count; i++)
        {
            var (key, value) = records[i];
            record.Reset();
            record.WriteInt8(0); // attributes
            record.WriteVarLong(0); // timestamp delta
            record.WriteVarInt(i); // offset delta
            record.WriteVarInt(key.Length);
            record.WriteRaw(key);
            if (value is null)
            {
                record.WriteVarInt(-1);
            }
            else
            {
                record.WriteVarInt(value.Length);
                record.WriteRaw(value);
            }
            record.WriteVarInt(0); // headers
            body.WriteVarInt(record.Length);
            body.WriteRaw(record.WrittenSpan);
        }
        using var w = new KafkaWriter(RecordBatch.HeaderSize + body.Length);
        w.WriteInt64(0); // base offset, stamped by the log
        w.WriteInt32(RecordBatch.HeaderSize - RecordBatch.LogOverhead + body.Length);
        w.WriteInt32(0); // partition leader epoch, stamped by the log
        w.WriteInt8((sbyte)RecordBatch.CurrentMagic);
        w.WriteUInt32(0); // CRC, below
        w.WriteInt16(attributes);
        w.WriteInt32(records.Count - 1); // last offset delta
        w.WriteInt64(timestampMs);
        w.WriteInt64(timestampMs);
        w.WriteInt64(producerId);
        w.WriteInt16(producerEpoch);
        w.WriteInt32(baseSequence);
        w.WriteInt32(records.Count);
        w.WriteRaw(body.WrittenSpan);
        byte[] batch = w.WrittenSpan.ToArray();
        RecordBatch.UpdateCrc(batch);
        return batch;
    }
}
