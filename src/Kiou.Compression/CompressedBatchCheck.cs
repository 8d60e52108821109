using Kiou.Protocol.Records;

namespace Kiou.Compression;

/// <summary>
/// The produce-time check of a compressed batch whose header already passed
/// <see cref="RecordBatch.ValidateForProduce(ReadOnlySpan{byte}, int, out BatchInfo, out RecordsVerdict)"/>: decompress
/// into pooled memory, then walk the records as an uncompressed batch's are (<see cref="RecordsCheck.Walk"/>), as
/// Kafka's LogValidator does. The batch itself is left as it came: KIOU stores and serves the client's compressed
/// bytes and never recompresses.
/// </summary>
/// <remarks>
/// Payload that does not decompress → CORRUPT_MESSAGE (2), record 0. More than
/// <see cref="BatchDecompressor.DecompressedBytesMax"/> bytes once decompressed → INVALID_RECORD (87), record 0.
/// Records that do not match the header → INVALID_RECORD (87) with the record at fault.
/// </remarks>
public static class CompressedBatchCheck
{
    /// <param name="batch">The whole batch, header included.</param>
    /// <param name="info">What the header check learned.</param>
    /// <param name="decompressedBytesMax">The bound on the decompressed records.</param>
    /// <param name="requireKeys">A compacted topic's batch: a record without a key is refused (KIP-467).</param>
    public static RecordsVerdict Validate(ReadOnlyMemory<byte> batch, in BatchInfo info, int decompressedBytesMax, bool requireKeys = false)
    {
        if (info.Codec == CompressionType.None)
        {
            throw new ArgumentException("the batch is not compressed", nameof(info));
        }

        var payload = batch[RecordBatch.HeaderSize..info.SizeBytes];
        var status = BatchDecompressor.Decompress(info.Codec, payload, decompressedBytesMax, out var records, out string? error);
        using (records)
        {
            return status switch
            {
                DecompressStatus.Ok => RecordsCheck.Walk(records.Span, info.RecordsCount, info.BaseTimestamp, out _, requireKeys),
                DecompressStatus.TooLarge => new RecordsVerdict(
                    RecordErrorCodes.InvalidRecord,
                    0,
                    $"The {Name(info.Codec)} records of {payload.Length} bytes decompress to more than {decompressedBytesMax} bytes, the broker's bound ({BatchDecompressor.DecompressionRatioMax} × max.message.bytes)"),
                _ => new RecordsVerdict(
                    RecordErrorCodes.CorruptMessage,
                    0,
                    $"Failed to decompress record stream: the {payload.Length} bytes are not valid {Name(info.Codec)} data ({error})"),
            };
        }
    }

    private static string Name(CompressionType codec) => codec switch
    {
        CompressionType.Gzip => "gzip",
        CompressionType.Snappy => "snappy",
        CompressionType.Lz4 => "lz4",
        CompressionType.Zstd => "zstd",
        _ => "uncompressed",
    };
}
