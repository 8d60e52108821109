using System.Buffers.Binary;
using Kiou.Protocol.Records;
using Kiou.Testing;

namespace Kiou.Compression.Tests;

/// <summary>
/// Produce-time validation of compressed batches (README §5.6), as the broker's Produce handler runs it: the header
/// check, then decompression and the record walk. Good batches come from real clients (Golden/) and from each
/// codec's reference encoder; poison batches carry a correct CRC, so only decompressing finds them.
/// </summary>
public sealed class PoisonBatchTests
{
    private const int MaxMessageBytes = 1048588;

    public static TheoryData<string> GoldenFiles =>
        ["librdkafka-gzip.bin", "librdkafka-snappy.bin", "librdkafka-lz4.bin", "librdkafka-zstd.bin", "kafka-python-gzip.bin"];

    public static TheoryData<string> Codecs => ["gzip", "snappy", "snappy-xerial", "lz4", "zstd"];

    /// <summary>Codecs whose data opens with a magic number, so random bytes can never pass as them.</summary>
    public static TheoryData<string> FramedCodecs => ["gzip", "snappy-xerial", "lz4", "zstd"];

    [Theory]
    [MemberData(nameof(GoldenFiles))]
    public void Real_client_batches_are_accepted_and_decompress_to_their_records(string file)
    {
        byte[] batch = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Golden", file));
        Assert.Equal(batch.Length, RecordBatch.TotalSize(batch)); // one whole batch
        var codec = RecordBatch.CompressionCodec(batch);
        Assert.NotEqual(CompressionType.None, codec);

        var verdict = Check(batch);
        Assert.True(verdict.IsOk, verdict.Message);

        var status = BatchDecompressor.Decompress(codec, batch.AsMemory(RecordBatch.HeaderSize), BatchDecompressor.DecompressedBytesMax(MaxMessageBytes), out var records, out string? error);
        Assert.True(status == DecompressStatus.Ok, error);
        using (records)
        {
            var cursor = new RecordCursor(records.Span, RecordBatch.RecordsCount(batch));
            int n = 0;
            while (cursor.MoveNext())
            {
                Assert.Equal($"key-{n}", System.Text.Encoding.ASCII.GetString(cursor.Key));
                Assert.Equal(408, cursor.ValueLength);
                Assert.Equal(1, cursor.HeaderCount);
                n++;
            }

            Assert.Equal(0, cursor.Error);
            Assert.True(cursor.IsAtEnd);
            Assert.Equal(5, n);
        }
    }

    [Theory]
    [MemberData(nameof(Codecs))]
    public void Good_batches_from_each_codecs_encoder_are_accepted(string codec)
    {
        Assert.True(Check(Compressed(codec, BatchBuilder.Simple(50, valueBytes: 100))).IsOk);
        Assert.True(Check(Compressed(codec, BatchBuilder.Simple(1))).IsOk);
    }

    [Theory]
    [MemberData(nameof(FramedCodecs))]
    public void Garbage_payload_with_a_correct_CRC_is_CORRUPT_MESSAGE(string codec)
    {
        byte[] garbage = new byte[300];
        new Random(11).NextBytes(garbage);
        var verdict = Check(Compressed(codec, BatchBuilder.Simple(5), _ => garbage));
        Assert.Equal(RecordErrorCodes.CorruptMessage, verdict.ErrorCode);
        Assert.Equal(0, verdict.RecordIndex);
        Assert.Contains("decompress", verdict.Message);
    }

    [Theory]
    [MemberData(nameof(Codecs))]
    public void Payload_garbled_after_its_first_bytes_is_rejected(string codec)
    {
        // The codec's header is intact, the data behind it is noise: a codec without checksums (snappy, lz4
        // without a content checksum) may decode noise to noise, which the record walk then refuses.
        var rng = new Random(12);
        for (int round = 0; round < 20; round++)
        {
            var verdict = Check(Compressed(codec, BatchBuilder.Simple(20, valueBytes: 50), c =>
            {
                int keep = codec == "snappy-xerial" ? 20 : 6;
                for (int i = keep; i < c.Length; i++)
                    c[i] = (byte)rng.Next(256);
                return c;
            }));
            Assert.False(verdict.IsOk, $"round {round}");
            Assert.Contains(verdict.ErrorCode, new short[] { RecordErrorCodes.CorruptMessage, RecordErrorCodes.InvalidRecord });
        }
    }

    [Theory]
    [MemberData(nameof(Codecs))]
    public void Truncated_payload_is_rejected(string codec)
    {
        foreach (int cut in new[] { 1, 7, 40 })
        {
            var verdict = Check(Compressed(codec, BatchBuilder.Simple(20, valueBytes: 50), c => c[..^cut]));
            Assert.False(verdict.IsOk, $"cut {cut}");
            Assert.Contains(verdict.ErrorCode, new short[] { RecordErrorCodes.CorruptMessage, RecordErrorCodes.InvalidRecord });
        }

        Assert.False(Check(Compressed(codec, BatchBuilder.Simple(3), _ => [])).IsOk);
    }

    [Theory]
    [MemberData(nameof(Codecs))]
    public void Header_counting_three_records_when_the_payload_holds_one_is_INVALID_RECORD_at_record_1(string codec)
    {
        byte[] batch = BatchBuilder.Build([new TestRecord(0, [1], [2])], recordsCount: 3, lastOffsetDelta: 2);
        var verdict = Check(Compressed(codec, batch));
        Assert.Equal(RecordErrorCodes.InvalidRecord, verdict.ErrorCode);
        Assert.Equal(1, verdict.RecordIndex);
        Assert.Contains("premature EOF", verdict.Message);
    }

    [Theory]
    [MemberData(nameof(Codecs))]
    public void Payload_holding_more_records_than_the_header_counts_is_INVALID_RECORD(string codec)
    {
        byte[] batch = BatchBuilder.Build([new TestRecord(0, [1], [2]), new TestRecord(0, [3], [4]), new TestRecord(0, [5], [6])], recordsCount: 1, lastOffsetDelta: 0);
        var verdict = Check(Compressed(codec, batch));
        Assert.Equal(RecordErrorCodes.InvalidRecord, verdict.ErrorCode);
        Assert.Equal(0, verdict.RecordIndex);
        Assert.Contains("remaining", verdict.Message);
    }

    [Theory]
    [MemberData(nameof(Codecs))]
    public void Wrong_offset_delta_is_INVALID_RECORD_naming_the_record(string codec)
    {
        byte[] batch = BatchBuilder.Build(
            [new TestRecord(0, null, [1]), new TestRecord(1, null, [2]), new TestRecord(2, null, [3]) { OffsetDelta = 7 }, new TestRecord(3, null, [4])]);
        var verdict = Check(Compressed(codec, batch));
        Assert.Equal(RecordErrorCodes.InvalidRecord, verdict.ErrorCode);
        Assert.Equal(2, verdict.RecordIndex);
        Assert.Contains("offset delta 7 of record 2 should be 2", verdict.Message);
    }

    [Theory]
    [MemberData(nameof(Codecs))]
    public void Record_that_does_not_parse_within_its_length_is_INVALID_RECORD(string codec)
    {
        byte[] batch = BatchBuilder.Simple(4);
        byte[] records = batch[RecordBatch.HeaderSize..];
        var cursor = new RecordCursor(records, 4);
        Assert.True(cursor.MoveNext());
        records[cursor.SizeBytes] += 2; // record 1's length (a zigzag varint): one byte longer than its fields
        var verdict = Check(Compressed(codec, batch, _ => Compress(codec, records)));
        Assert.Equal(RecordErrorCodes.InvalidRecord, verdict.ErrorCode);
        Assert.Equal(1, verdict.RecordIndex);
    }

    [Theory]
    [MemberData(nameof(Codecs))]
    public void Zip_bomb_beyond_the_bound_is_INVALID_RECORD_without_decompressing_it_all(string codec)
    {
        const int bound = 1 << 20;
        byte[] zeros = new byte[4 * bound];
        byte[] batch = Compressed(codec, BatchBuilder.Simple(1), _ => Compress(codec, zeros));
        Assert.Equal(0, RecordBatch.ValidateForProduce(batch, MaxMessageBytes, out var info));
        var verdict = CompressedBatchCheck.Validate(batch, info, bound);
        Assert.Equal(RecordErrorCodes.InvalidRecord, verdict.ErrorCode);
        Assert.Contains($"more than {bound} bytes", verdict.Message);

        // The same bytes are no bomb under a bound they fit: the record walk rejects them instead.
        var walked = CompressedBatchCheck.Validate(batch, info, 8 * bound);
        Assert.Equal(RecordErrorCodes.InvalidRecord, walked.ErrorCode);
        Assert.DoesNotContain("more than", walked.Message);
    }

    [Theory]
    [MemberData(nameof(Codecs))]
    public void Output_of_exactly_the_bound_is_accepted(string codec)
    {
        byte[] data = new byte[100_000];
        new Random(3).NextBytes(data.AsSpan(0, 50_000));
        var status = BatchDecompressor.Decompress(Codec(codec), Compress(codec, data), data.Length, out var records, out string? error);
        using (records)
        {
            Assert.True(status == DecompressStatus.Ok, error);
            Assert.True(records.Span.SequenceEqual(data));
        }

        Assert.Equal(DecompressStatus.TooLarge, BatchDecompressor.Decompress(Codec(codec), Compress(codec, data), data.Length - 1, out _, out _));
    }

    [Fact]
    public void The_bound_is_32_times_max_message_bytes_and_at_least_32_MiB()
    {
        Assert.Equal(32 << 20, BatchDecompressor.DecompressedBytesMax(1000));
        Assert.Equal(32 * 4_000_000, BatchDecompressor.DecompressedBytesMax(4_000_000));
        Assert.Equal(1 << 30, BatchDecompressor.DecompressedBytesMax(int.MaxValue));
    }

    [Fact]
    public void Xerial_block_length_beyond_the_payload_is_CORRUPT_MESSAGE()
    {
        byte[] batch = Compressed("snappy-xerial", BatchBuilder.Simple(5), c =>
        {
            BinaryPrimitives.WriteInt32BigEndian(c.AsSpan(16), c.Length);
            return c;
        });
        Assert.Equal(RecordErrorCodes.CorruptMessage, Check(batch).ErrorCode);
    }

    [Theory]
    [MemberData(nameof(Codecs))]
    public void Validation_allocates_nothing_per_record(string codec)
    {
        // Streams and codec state cost a little per batch; the records themselves are walked in pooled memory.
        byte[] small = Compressed(codec, BatchBuilder.Simple(10, valueBytes: 100));
        byte[] large = Compressed(codec, BatchBuilder.Simple(2000, valueBytes: 100));
        long smallBytes = AllocatedPerCheck(small);
        long largeBytes = AllocatedPerCheck(large);
        Assert.True(largeBytes < smallBytes + 1024, $"{codec}: {smallBytes} B per batch of 10 records, {largeBytes} B per batch of 2000");
    }

    private static long AllocatedPerCheck(byte[] batch)
    {
        const int rounds = 20;
        Assert.True(Check(batch).IsOk);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < rounds; i++)
            Check(batch);
        return (GC.GetAllocatedBytesForCurrentThread() - before) / rounds;
    }

    /// <summary>The broker's two steps: the header check, then for a compressed batch decompression and the walk.</summary>
    private static RecordsVerdict Check(byte[] batch)
    {
        short error = RecordBatch.ValidateForProduce(batch, MaxMessageBytes, out var info, out var verdict);
        if (error != RecordErrorCodes.None)
            return verdict.IsOk ? new RecordsVerdict(error, -1, $"header check: {error}") : verdict;
        Assert.NotEqual(CompressionType.None, info.Codec);
        return CompressedBatchCheck.Validate(batch, info, BatchDecompressor.DecompressedBytesMax(MaxMessageBytes));
    }

    private static CompressionType Codec(string codec) => CompressedBatches.Codec(codec);

    private static byte[] Compressed(string codec, byte[] uncompressed, Func<byte[], byte[]>? payload = null) =>
        CompressedBatches.Compressed(codec, uncompressed, payload);

    private static byte[] Compress(string codec, byte[] data) => CompressedBatches.Compress(codec, data);
}
