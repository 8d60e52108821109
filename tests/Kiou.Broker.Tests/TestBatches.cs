using System.Buffers.Binary;
using Kiou.Protocol.Records;

namespace Kiou.Broker.Tests;

/// <summary>Builds valid uncompressed RecordBatch v2 bytes (README §5) for raw-protocol tests.</summary>
public static class TestBatches
{
    /// <param name="keyless">The records written with a null key (KIP-467 tests); null: every record has one.</param>
    public static byte[] Uncompressed(int count, long baseTimestamp = 1700000000000, int[]? keyless = null)
    {
        var records = new List<byte>();
        for (int i = 0; i < count; i++)
        {
            var body = new List<byte> { 0 }; // attributes
            Varint(body, i); // timestamp delta (varlong, small)
            Varint(body, i); // offset delta
            if (keyless?.Contains(i) == true)
            {
                Varint(body, -1); // null key
            }
            else
            {
                Varint(body, 1); // key length
                body.Add((byte)('k' + i % 10));
            }
            Varint(body, 3); // value length
            body.AddRange("v-"u8.ToArray());
            body.Add((byte)('0' + i % 10));
            Varint(body, 0); // headers
            Varint(records, body.Count);
            records.AddRange(body);
        }
        var batch = new byte[61 + records.Count];
        var s = batch.AsSpan();
        BinaryPrimitives.WriteInt64BigEndian(s, 0);
        BinaryPrimitives.WriteInt32BigEndian(s[8..], batch.Length - 12);
        BinaryPrimitives.WriteInt32BigEndian(s[12..], -1);
        s[16] = 2;
        BinaryPrimitives.WriteInt16BigEndian(s[21..], 0);
        BinaryPrimitives.WriteInt32BigEndian(s[23..], count - 1);
        BinaryPrimitives.WriteInt64BigEndian(s[27..], baseTimestamp);
        BinaryPrimitives.WriteInt64BigEndian(s[35..], baseTimestamp + count - 1);
        BinaryPrimitives.WriteInt64BigEndian(s[43..], -1);
        BinaryPrimitives.WriteInt16BigEndian(s[51..], -1);
        BinaryPrimitives.WriteInt32BigEndian(s[53..], -1);
        BinaryPrimitives.WriteInt32BigEndian(s[57..], count);
        records.CopyTo(batch, 61);
        BinaryPrimitives.WriteUInt32BigEndian(s[17..], Crc32C.Compute(s[21..]));
        return batch;
    }

    static void Varint(List<byte> output, long value)
    {
        ulong v = (ulong)((value << 1) ^ (value >> 63));
        while (v >= 0x80)
        {
            output.Add((byte)(v | 0x80));
            v >>= 7;
        }
        output.Add((byte)v);
    }
}

/// <summary>Batches of an idempotent producer for raw-protocol tests.</summary>
public static class IdempotentBatches
{
    /// <summary>
    /// <see cref="TestBatches.Uncompressed"/> with a producer id, epoch and base sequence (CRC recomputed), timestamped
    /// now: a producer's idle time counts from its last batch's timestamp, as in Kafka.
    /// </summary>
    public static byte[] Of(int count, long producerId, short epoch, int baseSequence)
    {
        byte[] batch = TestBatches.Uncompressed(count, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        var s = batch.AsSpan();
        BinaryPrimitives.WriteInt64BigEndian(s[43..], producerId);
        BinaryPrimitives.WriteInt16BigEndian(s[51..], epoch);
        BinaryPrimitives.WriteInt32BigEndian(s[53..], baseSequence);
        BinaryPrimitives.WriteUInt32BigEndian(s[17..], Crc32C.Compute(s[21..]));
        return batch;
    }
}
