using System.Buffers.Binary;
using Kiou.Protocol.Records;

namespace Kiou.Testing;

/// <summary>One record for <see cref="BatchBuilder"/>. Null key/value encode as length -1.</summary>
public sealed record TestRecord(long TimestampDelta, byte[]? Key, byte[]? Value, (string Key, byte[]? Value)[]? Headers = null)
{
    /// <summary>Overrides the encoded offsetDelta (normally the record's index), to build invalid batches.</summary>
    public int? OffsetDelta { get; init; }
}

/// <summary>
/// Encodes RecordBatch v2 bytes (uncompressed) the way producers do, for tests. Checked byte for byte against
/// README §5.4 (BatchBuilderTests). Shared by Kiou.Protocol.Tests and Kiou.Storage.Tests (linked file).
/// </summary>
public static class BatchBuilder
{
    public const long DefaultBaseTimestamp = 1700000000000;

    /// <param name="maxTimestamp">Written as is; by default the largest record timestamp.</param>
    /// <param name="lastOffsetDelta">By default records.Count - 1.</param>
    /// <param name="recordsCount">By default records.Count.</param>
    public static byte[] Build(
        IReadOnlyList<TestRecord> records,
        long baseTimestamp = DefaultBaseTimestamp,
        long baseOffset = 0,
        int partitionLeaderEpoch = 0,
        short attributes = 0,
        long producerId = -1,
        short producerEpoch = -1,
        int baseSequence = -1,
        long? maxTimestamp = null,
        int? lastOffsetDelta = null,
        int? recordsCount = null)
    {
        var body = new List<byte>();
        long max = records.Count == 0 ? baseTimestamp : long.MinValue; // producers: the largest record timestamp
        for (int i = 0; i < records.Count; i++)
        {
            TestRecord r = records[i];
            max = Math.Max(max, baseTimestamp + r.TimestampDelta);
            var rec = new List<byte> { 0 };
            WriteVarlong(rec, r.TimestampDelta);
            WriteVarint(rec, r.OffsetDelta ?? i);
            WriteBytes(rec, r.Key);
            WriteBytes(rec, r.Value);
            var headers = r.Headers ?? [];
            WriteVarint(rec, headers.Length);
            foreach (var (key, value) in headers)
            {
                WriteBytes(rec, System.Text.Encoding.UTF8.GetBytes(key));
                WriteBytes(rec, value);
            }

            WriteVarint(body, rec.Count);
            body.AddRange(rec);
        }

        var batch = new byte[RecordBatch.HeaderSize + body.Count];
        Span<byte> s = batch;
        BinaryPrimitives.WriteInt64BigEndian(s[0..], baseOffset);
        BinaryPrimitives.WriteInt32BigEndian(s[8..], batch.Length - 12);
        BinaryPrimitives.WriteInt32BigEndian(s[12..], partitionLeaderEpoch);
        s[16] = 2;
        BinaryPrimitives.WriteInt16BigEndian(s[21..], attributes);
        BinaryPrimitives.WriteInt32BigEndian(s[23..], lastOffsetDelta ?? records.Count - 1);
        BinaryPrimitives.WriteInt64BigEndian(s[27..], baseTimestamp);
        BinaryPrimitives.WriteInt64BigEndian(s[35..], maxTimestamp ?? max);
        BinaryPrimitives.WriteInt64BigEndian(s[43..], producerId);
        BinaryPrimitives.WriteInt16BigEndian(s[51..], producerEpoch);
        BinaryPrimitives.WriteInt32BigEndian(s[53..], baseSequence);
        BinaryPrimitives.WriteInt32BigEndian(s[57..], recordsCount ?? records.Count);
        body.CopyTo(batch, RecordBatch.HeaderSize);
        BinaryPrimitives.WriteUInt32BigEndian(s[17..], Crc32C.Compute(s[21..]));
        return batch;
    }

    /// <summary><paramref name="count"/> records with values "v{i}" padded to <paramref name="valueBytes"/>, 1 ms apart.</summary>
    public static byte[] Simple(int count, long baseTimestamp = DefaultBaseTimestamp, int valueBytes = 8, long timestampStepMs = 1)
    {
        var records = new TestRecord[count];
        for (int i = 0; i < count; i++)
        {
            var value = new byte[valueBytes];
            System.Text.Encoding.ASCII.GetBytes($"v{i}").AsSpan(0, Math.Min(valueBytes, $"v{i}".Length)).CopyTo(value);
            records[i] = new TestRecord(i * timestampStepMs, null, value);
        }

        return Build(records, baseTimestamp);
    }

    /// <summary>Recomputes the CRC after a test edited CRC-covered bytes.</summary>
    public static void FixCrc(byte[] batch) =>
        BinaryPrimitives.WriteUInt32BigEndian(batch.AsSpan(17), Crc32C.Compute(batch.AsSpan(21)));

    /// <summary>The README §5.4 worked example: two records, 90 bytes, CRC b1267df6.</summary>
    public static byte[] WorkedExample() => Build(
        [
            new TestRecord(0, "k"u8.ToArray(), "hello"u8.ToArray(), [("h", "v"u8.ToArray())]),
            new TestRecord(5, null, "world"u8.ToArray()),
        ],
        baseTimestamp: 1700000000000);

    /// <summary>README §5.4, transcribed from the hex listing.</summary>
    public static readonly byte[] WorkedExampleBytes = Convert.FromHexString(
        "0000000000000000" + "0000004e" + "00000000" + "02" + "b1267df6" + "0000" + "00000001"
        + "0000018bcfe56800" + "0000018bcfe56805" + "ffffffffffffffff" + "ffff" + "ffffffff" + "00000002"
        + "2000000002" + "6b" + "0a" + "68656c6c6f" + "02" + "02" + "68" + "02" + "76"
        + "16000a0201" + "0a" + "776f726c64" + "00");

    public static void WriteVarint(List<byte> to, int value) => WriteUnsigned(to, (uint)((value << 1) ^ (value >> 31)));

    public static void WriteVarlong(List<byte> to, long value)
    {
        ulong v = (ulong)((value << 1) ^ (value >> 63));
        while (v >= 0x80)
        {
            to.Add((byte)(v | 0x80));
            v >>= 7;
        }

        to.Add((byte)v);
    }

    private static void WriteUnsigned(List<byte> to, uint v)
    {
        while (v >= 0x80)
        {
            to.Add((byte)(v | 0x80));
            v >>= 7;
        }

        to.Add((byte)v);
    }

    private static void WriteBytes(List<byte> to, byte[]? bytes)
    {
        if (bytes is null)
        {
            WriteVarint(to, -1);
            return;
        }

        WriteVarint(to, bytes.Length);
        to.AddRange(bytes);
    }
}
