using System.Collections.Immutable;

namespace Kiou.Broker.Transactions;

/// <summary>Kafka's TransactionState, with its ids as written in TransactionLogValue.TransactionStatus.</summary>
public enum TxnState : sbyte
{
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
    Dead = 6,
    PrepareEpochFence = 7,
}

public readonly record struct TopicPartition(string Topic, int Partition) : IComparable<TopicPartition>
{
    public int CompareTo(TopicPartition other)
    {
        int c = string.CompareOrdinal(Topic, other.Topic);
        return c != 0 ? c : Partition.CompareTo(other.Partition);
    }

    public override string ToString() => $"{Topic}-{Partition}";
}

/// <summary>
/// One transactional id's state as its last durable TransactionLogValue says (Kafka's TransactionMetadata fields,
/// immutable: a transition computes the next one and it becomes current only once its record is durable).
/// <see cref="LastProducerEpoch"/> is not persisted, as in Kafka (it only answers a retried InitProducerId).
/// </summary>
public sealed record TxnSnapshot(
    long ProducerId,
    long PreviousProducerId,
    short ProducerEpoch,
    short LastProducerEpoch,
    int TimeoutMs,
    TxnState State,
    ImmutableSortedSet<TopicPartition> Partitions,
    long StartTimestampMs,
    long LastUpdateTimestampMs)
{
    public const short NoProducerEpoch = -1;
    public const long NoProducerId = -1;

    /// <summary>Kafka's isEpochExhausted: the next bump would reach the last epoch, which fencing needs.</summary>
    public static bool IsEpochExhausted(short epoch) => epoch >= short.MaxValue - 1;

    public static string StateName(TxnState state) => state switch
    {
        TxnState.Empty => "Empty",
        TxnState.Ongoing => "Ongoing",
        TxnState.PrepareCommit => "PrepareCommit",
        TxnState.PrepareAbort => "PrepareAbort",
        TxnState.CompleteCommit => "CompleteCommit",
        TxnState.CompleteAbort => "CompleteAbort",
        TxnState.Dead => "Dead",
        _ => "PrepareEpochFence",
    };
}
