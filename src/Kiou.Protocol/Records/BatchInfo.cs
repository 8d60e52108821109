namespace Kiou.Protocol.Records;

/// <summary>Compression codec in attribute bits 0–2 (README §5.2). Values 5–7 are invalid.</summary>
public enum CompressionType : byte
{
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

/// <summary>Attribute bit 3 (README §5.2).</summary>
public enum TimestampType : byte
{
    CreateTime = 0,
    LogAppendTime = 1,
}

/// <summary>
/// The Kafka error codes <see cref="RecordBatch.ValidateForProduce"/> returns (README §6). Kept here so the
/// records layer does not depend on the generated protocol code; the values are Kafka's.
/// </summary>
public static class RecordErrorCodes
{
    public const short None = 0;
    public const short CorruptMessage = 2;
    public const short MessageTooLarge = 10;
    public const short UnsupportedCompressionType = 76;
    public const short InvalidRecord = 87;
}

/// <summary>What <see cref="RecordBatch.ValidateForProduce"/> learned about a valid produce batch.</summary>
/// <param name="SizeBytes">Whole batch, header included (batchLength + 12).</param>
/// <param name="RecordsMaxTimestamp">
/// The largest record timestamp found by walking the records (uncompressed batches only); -1 for compressed
/// batches, whose records are not read. Kafka corrects <c>maxTimestamp</c> when it differs from this.
/// </param>
public readonly record struct BatchInfo(
    int SizeBytes,
    int RecordsCount,
    int LastOffsetDelta,
    long BaseTimestamp,
    long MaxTimestamp,
    long RecordsMaxTimestamp,
    CompressionType Codec,
    TimestampType TimestampType,
    bool IsTransactional,
    long ProducerId,
    short ProducerEpoch,
    int BaseSequence);
