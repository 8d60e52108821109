namespace Kiou.Storage.Producers;

/// <summary>
/// What KIOU remembers of one appended idempotent batch, as Kafka's BatchMetadata: enough to recognise a retry of it
/// (its sequence range) and to answer that retry with the original offsets and timestamp.
/// </summary>
/// <param name="LastSequence">The batch's last sequence: base sequence plus last offset delta, wrapping past
/// <see cref="int.MaxValue"/> to 0.</param>
/// <param name="LastOffset">The offset assigned to the batch's last record.</param>
/// <param name="OffsetDelta">Last offset minus first offset (the batch's last offset delta).</param>
/// <param name="Timestamp">The batch's max timestamp as appended (the log append time on LogAppendTime topics).</param>
public readonly record struct BatchMetadata(int LastSequence, long LastOffset, int OffsetDelta, long Timestamp)
{
    public int FirstSequence => ProducerSequence.Decrement(LastSequence, OffsetDelta);

    public long FirstOffset => LastOffset - OffsetDelta;
}

/// <summary>Sequence arithmetic with Kafka's wrap-around: after <see cref="int.MaxValue"/> comes 0.</summary>
public static class ProducerSequence
{
    /// <summary>Kafka's RecordBatch.NO_SEQUENCE.</summary>
    public const int None = -1;

    /// <summary>Kafka's RecordBatch.NO_PRODUCER_ID.</summary>
    public const long NoProducerId = -1;

    /// <summary>Kafka's RecordBatch.NO_PRODUCER_EPOCH.</summary>
    public const short NoProducerEpoch = -1;

    /// <summary>DefaultRecordBatch.incrementSequence: <paramref name="sequence"/> + <paramref name="increment"/>, wrapping to 0.</summary>
    public static int Increment(int sequence, int increment)
    {
        if (sequence > int.MaxValue - increment)
        {
            return increment - (int.MaxValue - sequence) - 1;
        }

        return sequence + increment;
    }

    /// <summary>DefaultRecordBatch.decrementSequence, the inverse of <see cref="Increment"/>.</summary>
    public static int Decrement(int sequence, int decrement)
    {
        if (sequence < decrement)
        {
            return int.MaxValue - (decrement - sequence) + 1;
        }

        return sequence - decrement;
    }

    /// <summary>ProducerAppendInfo.inSequence: <paramref name="next"/> follows <paramref name="last"/> (<see cref="None"/> is followed by 0).</summary>
    public static bool InSequence(int last, int next) => next == last + 1L || (next == 0 && last == int.MaxValue);
}
