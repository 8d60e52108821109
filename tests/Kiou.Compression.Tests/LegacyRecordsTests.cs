using System.Buffers.Binary;
using System.IO.Compression;
using Kiou.Protocol.Records;

namespace Kiou.Compression.Tests;

/// <summary>
/// The legacy message formats (magic 0 and 1) of Produce v0-2 and Fetch v0-3 (LegacyRecords,
/// docs/design/message-formats.md). The message sets below were written by kafka-python 2.0.2's
/// LegacyRecordBatchBuilder (three records: key "k-0" value "value-0", a null key with "value-1", "k-2" with
/// "value-2"; timestamps 1700000000000 + i for magic 1), not by our code; the down-conversion must give back the same
/// bytes, and the librdkafka batches of Golden/ must convert down to messages a legacy reader takes.
/// </summary>
public sealed class LegacyRecordsTests
{
    private const int MaxMessageBytes = 1048588;
    private const long Ts = 1700000000000;

    private static readonly byte[] KafkaPythonV0 = Convert.FromHexString(
        "000000000000000000000018332fc1220000000000036b2d300000000776616c75652d3000000000000000010000001598dda4ae0000ffffffff0000000776616c75652d31000000000000000200000018311a3e910000000000036b2d320000000776616c75652d32");

    private static readonly byte[] KafkaPythonV0Gzip = Convert.FromHexString(
        "00000000000000000000005a9c7b43d90001ffffffff0000004c1f8b08009b2f146b02ff636080030963fd834a601673b6ae0190622f4bcc294d0533418011884567dc5db28e81e13f10201418421530810c3194b29b0833c408a1c608008860507e69000000");

    private static readonly byte[] KafkaPythonV1 = Convert.FromHexString(
        "000000000000000000000020768dd34f01000000018bcfe56800000000036b2d300000000776616c75652d3000000000000000010000001dd96ef7d901000000018bcfe56801ffffffff0000000776616c75652d31000000000000000200000020000c2a0d01000000018bcfe56802000000036b2d320000000776616c75652d32");

    private static readonly byte[] KafkaPythonV1Gzip = Convert.FromHexString(
        "00000000000000000000006d19e3f50901010000000000000000ffffffff000000571f8b08009b2f146b02ff6360800385b2decbfe8c400663f7f9a7192011e66c5d0320c55e9698539a0a6682004889eccdbcef37e16a19ff030142a121542113c850061e2d5eb8422688a14608b54600cdb0006881000000");

    public static TheoryData<string, int> ClientMessageSets => new()
    {
        { "v0", 0 }, { "v0-gzip", 0 }, { "v1", 1 }, { "v1-gzip", 1 },
    };

    private static byte[] Set(string name) => name switch
    {
        "v0" => KafkaPythonV0,
        "v0-gzip" => KafkaPythonV0Gzip,
        "v1" => KafkaPythonV1,
        _ => KafkaPythonV1Gzip,
    };

    [Theory]
    [MemberData(nameof(ClientMessageSets))]
    public void Kafka_python_message_sets_become_one_valid_batch_v2_with_their_records(string name, int magic)
    {
        var verdict = LegacyRecords.ToBatch(Set(name), MaxMessageBytes, 1 << 20, requireKeys: false, out byte[]? batch);
        Assert.True(verdict.IsOk, verdict.Message);
        Assert.NotNull(batch);
        Assert.Equal(RecordErrorCodes.None, RecordBatch.ValidateForProduce(batch, MaxMessageBytes, out var info));
        Assert.Equal(name.EndsWith("gzip", StringComparison.Ordinal) ? CompressionType.Gzip : CompressionType.None, info.Codec);
        Assert.Equal(3, info.RecordsCount);
        Assert.Equal(-1, RecordBatch.ProducerId(batch));
        Assert.Equal(TimestampType.CreateTime, info.TimestampType);
        Assert.Equal(magic == 0 ? -1 : Ts + 2, info.MaxTimestamp);

        var records = Records(batch);
        Assert.Equal(3, records.Count);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(i, records[i].OffsetDelta);
            Assert.Equal(i == 1 ? null : $"k-{i}", records[i].Key);
            Assert.Equal($"value-{i}", records[i].Value);
            Assert.Equal(magic == 0 ? -1 : Ts + i, records[i].Timestamp);
        }
    }

    [Theory]
    [InlineData("v0", 0)]
    [InlineData("v1", 1)]
    public void Down_conversion_gives_back_the_clients_own_bytes(string name, int magic)
    {
        byte[] source = Set(name);
        Assert.True(LegacyRecords.ToBatch(source, MaxMessageBytes, 1 << 20, false, out byte[]? batch).IsOk);
        var verdict = LegacyRecords.DownConvert(batch, (byte)magic, 0, 1 << 20, 1 << 20, out byte[] messages);
        Assert.True(verdict.IsOk, verdict.Message);
        Assert.Equal(Convert.ToHexString(source), Convert.ToHexString(messages));
    }

    [Theory]
    [InlineData("v0-gzip", 0)]
    [InlineData("v1-gzip", 1)]
    public void A_compressed_batch_converts_down_to_one_wrapper_of_the_same_codec(string name, int magic)
    {
        Assert.True(LegacyRecords.ToBatch(Set(name), MaxMessageBytes, 1 << 20, false, out byte[]? batch).IsOk);
        RecordBatch.SetBaseOffset(batch, 100);
        Assert.True(LegacyRecords.DownConvert(batch, (byte)magic, 101, 1 << 20, 1 << 20, out byte[] messages).IsOk);

        // One wrapper, at the offset of its last inner message, holding all three (the first below the fetch offset
        // included, as Kafka keeps compressed batches whole).
        Assert.True(LegacyRecords.ReadMessage(messages, out int size, out var wrapper).IsOk);
        Assert.Equal(messages.Length, size);
        Assert.Equal(102, wrapper.Offset);
        Assert.Equal(CompressionType.Gzip, wrapper.Codec);
        Assert.Equal(-1, wrapper.KeyLength);
        if (magic == 1)
        {
            Assert.Equal(Ts + 2, wrapper.Timestamp);
        }

        byte[] inner;
        using (var gzip = new GZipStream(new MemoryStream(messages, wrapper.ValueStart, wrapper.ValueLength), CompressionMode.Decompress))
        using (var output = new MemoryStream())
        {
            gzip.CopyTo(output);
            inner = output.ToArray();
        }

        // Inner offsets: relative for magic 1, absolute for magic 0; otherwise what kafka-python writes.
        int at = 0;
        for (int i = 0; i < 3; i++)
        {
            Assert.True(LegacyRecords.ReadMessage(inner.AsSpan(at), out int innerSize, out var m).IsOk);
            Assert.Equal(magic == 1 ? i : 100 + i, m.Offset);
            Assert.Equal(magic, m.Magic);
            Assert.Equal($"value-{i}", System.Text.Encoding.ASCII.GetString(inner, at + m.ValueStart, m.ValueLength));
            at += innerSize;
        }

        Assert.Equal(inner.Length, at);
    }

    [Theory]
    [InlineData("librdkafka-gzip.bin")]
    [InlineData("librdkafka-snappy.bin")]
    [InlineData("librdkafka-lz4.bin")]
    [InlineData("kafka-python-gzip.bin")]
    public void Librdkafka_and_kafka_python_batches_convert_down_and_back_to_the_same_records(string file)
    {
        byte[] batch = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Golden", file));
        var want = Records(batch);
        foreach (byte magic in new byte[] { 0, 1 })
        {
            var verdict = LegacyRecords.DownConvert(batch, magic, 0, 1 << 20, 1 << 20, out byte[] messages);
            Assert.True(verdict.IsOk, verdict.Message);
            Assert.True(LegacyRecords.ReadMessage(messages, out _, out var wrapper).IsOk);
            Assert.Equal(RecordBatch.CompressionCodec(batch), wrapper.Codec);
            Assert.True(LegacyRecords.ToBatch(messages, MaxMessageBytes, 1 << 24, false, out byte[]? back).IsOk);
            var got = Records(back!);
            Assert.Equal(want.Select(r => (r.Key, r.Value)), got.Select(r => (r.Key, r.Value)));
            Assert.Equal(magic == 0 ? want.Select(_ => -1L) : want.Select(r => r.Timestamp), got.Select(r => r.Timestamp));
        }
    }

    [Fact]
    public void Zstd_cannot_be_converted_down()
    {
        byte[] batch = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Golden", "librdkafka-zstd.bin"));
        var verdict = LegacyRecords.DownConvert(batch, 1, 0, 1 << 20, 1 << 20, out byte[] messages);
        Assert.Equal(RecordErrorCodes.UnsupportedCompressionType, verdict.ErrorCode);
        Assert.Empty(messages);
    }

    [Fact]
    public void Uncompressed_down_conversion_starts_at_the_fetch_offset_and_stops_at_the_last_whole_message_in_the_limit()
    {
        Assert.True(LegacyRecords.ToBatch(KafkaPythonV1, MaxMessageBytes, 1 << 20, false, out byte[]? batch).IsOk);
        Assert.True(LegacyRecords.DownConvert(batch, 1, 1, 1 << 20, 1 << 20, out byte[] fromOne).IsOk);
        Assert.Equal(Convert.ToHexString(KafkaPythonV1.AsSpan(44)), Convert.ToHexString(fromOne)); // messages 1 and 2

        // A limit below one message still returns the first whole; one byte short of two returns one.
        Assert.True(LegacyRecords.DownConvert(batch, 1, 0, 1, 1 << 20, out byte[] tiny).IsOk);
        Assert.Equal(44, tiny.Length);
        Assert.True(LegacyRecords.DownConvert(batch, 1, 0, 44 + 41 - 1, 1 << 20, out byte[] almostTwo).IsOk);
        Assert.Equal(44, almostTwo.Length);
    }

    [Fact]
    public void A_bad_crc_is_corrupt_message()
    {
        byte[] bad = (byte[])KafkaPythonV1.Clone();
        bad[40] ^= 1; // in the first message's value
        Assert.Equal(RecordErrorCodes.CorruptMessage, LegacyRecords.ToBatch(bad, MaxMessageBytes, 1 << 20, false, out _).ErrorCode);

        byte[] badInner = (byte[])KafkaPythonV1Gzip.Clone();
        Assert.Equal(RecordErrorCodes.None, LegacyRecords.ToBatch(badInner, MaxMessageBytes, 1 << 20, false, out _).ErrorCode);
        badInner[^10] ^= 0x10; // inside the gzip payload: the wrapper's CRC no longer matches
        Assert.Equal(RecordErrorCodes.CorruptMessage, LegacyRecords.ToBatch(badInner, MaxMessageBytes, 1 << 20, false, out _).ErrorCode);
    }

    public static TheoryData<string, byte[], short> Hostile()
    {
        var data = new TheoryData<string, byte[], short>();
        data.Add("size beyond the bytes", WithSize(KafkaPythonV0, int.MaxValue), RecordErrorCodes.CorruptMessage);
        data.Add("negative size", WithSize(KafkaPythonV0, -5), RecordErrorCodes.CorruptMessage);
        data.Add("size below a message header", WithSize(KafkaPythonV0, 3), RecordErrorCodes.CorruptMessage);
        data.Add("a partial message at the end", KafkaPythonV0[..^3], RecordErrorCodes.CorruptMessage);
        data.Add("only an offset", new byte[8], RecordErrorCodes.CorruptMessage);
        data.Add("magic 2 in a message set", Message(2, 0, [1, 2], null), RecordErrorCodes.InvalidRecord);
        data.Add("key length past the message", Patched(Message(0, 0, [1, 2, 3], [4]), 18, 0x00, 0x00, 0x10, 0x00), RecordErrorCodes.CorruptMessage);
        data.Add("zstd below magic 2", Message(1, 4, null, [1, 2, 3]), RecordErrorCodes.UnsupportedCompressionType);
        data.Add("codec 7", Message(1, 7, null, [1, 2, 3]), RecordErrorCodes.UnsupportedCompressionType);
        data.Add("compressed with a null value", Message(1, 1, null, null), RecordErrorCodes.InvalidRecord);
        data.Add("garbage in a gzip wrapper", Message(1, 1, null, [0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]), RecordErrorCodes.CorruptMessage);
        data.Add("nested wrapper", Message(1, 1, null, Gzip(KafkaPythonV1Gzip)), RecordErrorCodes.InvalidRecord);
        data.Add("inner magic differs from the wrapper", Message(0, 1, null, Gzip(KafkaPythonV1)), RecordErrorCodes.InvalidRecord);
        data.Add("empty wrapper", Message(1, 1, null, Convert.FromHexString("1f8b080000000000020303000000000000000000")), RecordErrorCodes.InvalidRecord);
        data.Add("LogAppendTime from a producer", Message(1, 0x08, null, [1]), (short)32);
        data.Add("empty message set", [], RecordErrorCodes.InvalidRecord);
        return data;
    }

    [Theory]
    [MemberData(nameof(Hostile))]
    public void Hostile_message_sets_are_refused_with_kafkas_code(string why, byte[] set, short code)
    {
        var verdict = LegacyRecords.ToBatch(set, MaxMessageBytes, 1 << 20, false, out byte[]? batch);
        Assert.True(code == verdict.ErrorCode, $"{why}: {verdict.ErrorCode} {verdict.Message}");
        Assert.Null(batch);
    }

    [Fact]
    public void A_decompression_bomb_stops_at_the_bound()
    {
        // 64 MiB of inner messages on a few hundred KiB of wire: refused at the 1 MiB bound given.
        byte[] one = Message(1, 0, null, new byte[1 << 16]);
        byte[] inner = new byte[one.Length * 1024];
        for (int i = 0; i < 1024; i++)
        {
            one.CopyTo(inner, i * one.Length);
        }

        byte[] bomb = Message(1, 1, null, Gzip(inner));
        Assert.True(bomb.Length < 1 << 20);
        var verdict = LegacyRecords.ToBatch(bomb, MaxMessageBytes, 1 << 20, false, out _);
        Assert.Equal(RecordErrorCodes.CorruptMessage, verdict.ErrorCode);
        Assert.Contains("more than", verdict.Message);
    }

    [Fact]
    public void A_message_larger_than_max_message_bytes_is_refused()
    {
        byte[] big = Message(1, 0, null, new byte[2000]);
        Assert.Equal(RecordErrorCodes.MessageTooLarge, LegacyRecords.ToBatch(big, 1000, 1 << 20, false, out _).ErrorCode);
    }

    [Fact]
    public void A_compacted_topic_refuses_a_message_without_a_key()
    {
        Assert.Equal(RecordErrorCodes.InvalidRecord, LegacyRecords.ToBatch(KafkaPythonV1Gzip, MaxMessageBytes, 1 << 20, requireKeys: true, out _).ErrorCode);
    }

    [Fact]
    public void Crc32_is_the_ieee_checksum()
    {
        Assert.Equal(0xCBF43926u, Crc32.Compute("123456789"u8));
    }

    private static List<(string? Key, string? Value, long Timestamp, int OffsetDelta)> Records(byte[] batch)
    {
        var codec = RecordBatch.CompressionCodec(batch);
        DecompressedRecords decompressed = default;
        ReadOnlySpan<byte> area = batch.AsSpan(RecordBatch.HeaderSize);
        if (codec != CompressionType.None)
        {
            Assert.Equal(DecompressStatus.Ok, BatchDecompressor.Decompress(codec, batch.AsMemory(RecordBatch.HeaderSize), 1 << 24, out decompressed, out _));
            area = decompressed.Span;
        }

        var list = new List<(string?, string?, long, int)>();
        var cursor = new RecordCursor(area, RecordBatch.RecordsCount(batch));
        while (cursor.MoveNext())
        {
            list.Add((cursor.KeyLength < 0 ? null : System.Text.Encoding.ASCII.GetString(cursor.Key),
                cursor.ValueLength < 0 ? null : System.Text.Encoding.ASCII.GetString(cursor.Value),
                RecordBatch.BaseTimestamp(batch) + cursor.TimestampDelta, cursor.OffsetDelta));
        }

        Assert.Equal(0, cursor.Error);
        decompressed.Dispose();
        return list;
    }

    private static byte[] WithSize(byte[] set, int size)
    {
        byte[] copy = (byte[])set.Clone();
        BinaryPrimitives.WriteInt32BigEndian(copy.AsSpan(8), size);
        return copy;
    }

    private static byte[] Patched(byte[] message, int at, params byte[] bytes)
    {
        bytes.CopyTo(message, at);
        BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(12), Crc32.Compute(message.AsSpan(16)));
        return message;
    }

    /// <summary>One message at offset 0 with a correct CRC (timestamp 0 for magic 1).</summary>
    private static byte[] Message(byte magic, byte attributes, byte[]? key, byte[]? value)
    {
        var m = new List<byte>();
        m.AddRange(new byte[8]);
        m.AddRange(new byte[4]);
        m.AddRange(new byte[4]);
        m.Add(magic);
        m.Add(attributes);
        if (magic >= 1)
        {
            m.AddRange(new byte[8]);
        }

        AddBytes(m, key);
        AddBytes(m, value);
        byte[] bytes = [.. m];
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(8), bytes.Length - 12);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(12), Crc32.Compute(bytes.AsSpan(16)));
        return bytes;
    }

    private static void AddBytes(List<byte> m, byte[]? b)
    {
        byte[] length = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(length, b?.Length ?? -1);
        m.AddRange(length);
        if (b is not null)
        {
            m.AddRange(b);
        }
    }

    private static byte[] Gzip(byte[] data)
    {
        var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Optimal, leaveOpen: true))
        {
            gzip.Write(data);
        }

        return output.ToArray();
    }
}
