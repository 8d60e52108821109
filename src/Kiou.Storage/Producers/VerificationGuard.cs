namespace Kiou.Storage.Producers;

/// <summary>
/// KIP-890's VerificationGuard: taken from a partition (<see cref="PartitionLog.StartTransactionVerification"/>) before
/// the transaction coordinator is asked whether the partition is in the producer's transaction, and passed with the
/// append. The append checks, under the partition's single writer, that the guard is still the producer's current one:
/// a marker, an epoch bump, a rebuild or expiry in between drops it, so a batch verified against a transaction that
/// has since ended cannot open a new, hanging one.
/// </summary>
public sealed class VerificationGuard
{
    /// <summary>
    /// Kafka's SENTINEL: handed out when the producer already has a transaction open on the partition at this epoch
    /// (nothing to ask the coordinator); it never verifies a batch that would start a transaction.
    /// </summary>
    public static readonly VerificationGuard NotNeeded = new(-1, -1, 0);

    internal VerificationGuard(long producerId, short producerEpoch, long createdMs)
    {
        ProducerId = producerId;
        ProducerEpoch = producerEpoch;
        CreatedMs = createdMs;
    }

    public long ProducerId { get; }

    public short ProducerEpoch { get; }

    /// <summary>When it was created (guards of producers that never append expire as idle producers do).</summary>
    internal long CreatedMs { get; }

    /// <summary>False for <see cref="NotNeeded"/>: the producer's transaction is already open here.</summary>
    public bool NeedsCoordinator => !ReferenceEquals(this, NotNeeded);

    public override string ToString() => NeedsCoordinator ? $"verification of producer {ProducerId} epoch {ProducerEpoch}" : "no verification needed";
}
