namespace Kiou.Protocol.Records;

/// <summary>
/// The outcome of checking a batch's records (README §5.6): an error code, the 0-based index of the record at
/// fault (KIP-467 <c>batch_index</c>) and a message for the operator and the client. Success carries no message,
/// so a good batch allocates nothing.
/// </summary>
public readonly record struct RecordsVerdict(short ErrorCode, int RecordIndex, string? Message)
{
    /// <summary>Every record at fault when there are several (records without a key to a compacted topic, which
    /// Kafka reports one by one so a client fails just those); null when only <see cref="RecordIndex"/> is.</summary>
    public int[]? RecordIndexes { get; init; }

    public static RecordsVerdict Ok => default;

    public bool IsOk => ErrorCode == RecordErrorCodes.None;
}

/// <summary>
/// Walks the records of one batch, uncompressed bytes as stored or as decompressed, the way Kafka's
/// DefaultRecordBatch iterator does on produce: exactly <c>recordsCount</c> records that each parse within their
/// length, offset deltas 0, 1, 2, … (each equal to its index) and no byte left over. Every failure is
/// INVALID_RECORD (87), as Kafka answers with InvalidRecordException ("Incorrect declared batch size", "Inner
/// record offset"), and names the record. Allocation-free unless the batch fails.
/// </summary>
public static class RecordsCheck
{
    /// <param name="records">The records area: the bytes after the 61-byte header, decompressed if need be.</param>
    /// <param name="recordsCount">The header's recordsCount.</param>
    /// <param name="baseTimestamp">The header's baseTimestamp, to compute <paramref name="maxTimestamp"/>.</param>
    /// <param name="maxTimestamp">The largest record timestamp, -1 when none was read.</param>
    /// <param name="requireKeys">A compacted topic's batch: a record without a key is refused (KIP-467).</param>
    public static RecordsVerdict Walk(ReadOnlySpan<byte> records, int recordsCount, long baseTimestamp, out long maxTimestamp, bool requireKeys = false)
    {
        maxTimestamp = -1;
        List<int>? keyless = null;
        var cursor = new RecordCursor(records, recordsCount);
        while (cursor.MoveNext())
        {
            if (cursor.OffsetDelta != cursor.Index)
            {
                return OffsetDeltaWrong(cursor.Index, cursor.OffsetDelta);
            }

            if (requireKeys && cursor.KeyLength < 0)
            {
                (keyless ??= []).Add(cursor.Index);
            }

            long timestamp = baseTimestamp + cursor.TimestampDelta;
            if (timestamp > maxTimestamp)
            {
                maxTimestamp = timestamp;
            }
        }

        if (cursor.Error != 0)
        {
            // The record after the last good one did not parse: either the bytes end inside it (the header
            // counts more records than the payload holds) or its fields disagree with its length.
            int index = cursor.Index + 1;
            return cursor.IsAtEnd
                ? PrematureEnd(index, recordsCount)
                : Malformed(index, records.Length);
        }

        if (!cursor.IsAtEnd)
        {
            return BytesRemaining(recordsCount);
        }

        return keyless is null ? RecordsVerdict.Ok : KeyMissing(keyless);
    }

    private static RecordsVerdict OffsetDeltaWrong(int index, int offsetDelta) => new(
        RecordErrorCodes.InvalidRecord,
        index,
        $"Inner record offset delta {offsetDelta} of record {index} should be {index}");

    /// <summary>Kafka's LogValidator wording, each record's and the batch's.</summary>
    public const string KeyMissingMessage = "Compacted topic cannot accept message without key";

    private static RecordsVerdict KeyMissing(List<int> indexes) => new(
        RecordErrorCodes.InvalidRecord,
        indexes[0],
        $"One or more records have been rejected due to {indexes.Count} record errors in total: {KeyMissingMessage} (record {string.Join(", ", indexes.Take(3))}{(indexes.Count > 3 ? ", ..." : string.Empty)} of the batch)")
    {
        RecordIndexes = indexes.ToArray(),
    };

    private static RecordsVerdict PrematureEnd(int index, int recordsCount) => new(
        RecordErrorCodes.InvalidRecord,
        index,
        $"Incorrect declared batch size, premature EOF reached: the header counts {recordsCount} records, the payload holds {index}");

    private static RecordsVerdict Malformed(int index, int recordsBytes) => new(
        RecordErrorCodes.InvalidRecord,
        index,
        $"Found invalid record structure: record {index} does not parse within its length ({recordsBytes} bytes of records)");

    private static RecordsVerdict BytesRemaining(int recordsCount) => new(
        RecordErrorCodes.InvalidRecord,
        Math.Max(recordsCount - 1, 0),
        $"Incorrect declared batch size, records still remaining after the {recordsCount} records the header counts");
}
