using Kiou.Protocol.Records;

namespace Kiou.Storage.Producers;

/// <summary>
/// The header fields of one record batch that producer state looks at: taken from the produced batch before its
/// append, or from a stored batch when the state is rebuilt from the log.
/// </summary>
public readonly struct ProducerBatch
{
    public ProducerBatch(long producerId, short producerEpoch, int baseSequence, int lastOffsetDelta, long maxTimestamp, bool isTransactional,
        bool isControl = false, short markerType = -1, int coordinatorEpoch = -1)
    {
        IsControl = isControl;
        MarkerType = markerType;
        CoordinatorEpoch = coordinatorEpoch;
        ProducerId = producerId;
        ProducerEpoch = producerEpoch;
        BaseSequence = baseSequence;
        LastOffsetDelta = lastOffsetDelta;
        MaxTimestamp = maxTimestamp;
        IsTransactional = isTransactional;
    }

    public long ProducerId { get; }

    public short ProducerEpoch { get; }

    public int BaseSequence { get; }

    /// <summary>Offset of the last record relative to the batch's base offset.</summary>
    public int LastOffsetDelta { get; }

    /// <summary>The batch's max timestamp as it is (or was) appended: after LogAppendTime stamping where that applies.</summary>
    public long MaxTimestamp { get; }

    public bool IsTransactional { get; }

    /// <summary>A control batch (a transaction marker, or a control record of another kind).</summary>
    public bool IsControl { get; }

    /// <summary>For a control batch holding an EndTransactionMarker: <see cref="EndTransactionMarker.Abort"/> or
    /// <see cref="EndTransactionMarker.Commit"/>; -1 otherwise.</summary>
    public short MarkerType { get; }

    /// <summary>The marker's coordinator epoch; -1 when <see cref="MarkerType"/> is -1.</summary>
    public int CoordinatorEpoch { get; }

    /// <summary>A control batch carrying a COMMIT or ABORT marker.</summary>
    public bool IsMarker => MarkerType >= 0;

    /// <summary>RecordBatch.hasProducerId: Kafka treats every id at or below -1 as "none".</summary>
    public bool HasProducerId => ProducerId > ProducerSequence.NoProducerId;

    /// <summary>DefaultRecordBatch.lastSequence: base sequence plus last offset delta, wrapping past int.MaxValue to 0.</summary>
    public int LastSequence => BaseSequence == ProducerSequence.None ? ProducerSequence.None : ProducerSequence.Increment(BaseSequence, LastOffsetDelta);

    /// <summary>Reads the fields from a v2 batch header (at least <see cref="RecordBatch.HeaderSize"/> bytes).</summary>
    public static ProducerBatch FromHeader(ReadOnlySpan<byte> header) => new(
        RecordBatch.ProducerId(header),
        RecordBatch.ProducerEpoch(header),
        RecordBatch.BaseSequence(header),
        RecordBatch.LastOffsetDelta(header),
        RecordBatch.MaxTimestamp(header),
        RecordBatch.IsTransactional(header));

    /// <summary>Reads the header fields and, for a control batch, its EndTransactionMarker (a whole batch).</summary>
    public static ProducerBatch FromBatch(ReadOnlySpan<byte> batch)
    {
        if (!RecordBatch.IsControl(batch))
        {
            return FromHeader(batch);
        }

        EndTransactionMarker.TryRead(batch, out short type, out int coordinatorEpoch);
        return new ProducerBatch(
            RecordBatch.ProducerId(batch),
            RecordBatch.ProducerEpoch(batch),
            RecordBatch.BaseSequence(batch),
            RecordBatch.LastOffsetDelta(batch),
            RecordBatch.MaxTimestamp(batch),
            RecordBatch.IsTransactional(batch),
            isControl: true,
            markerType: type,
            coordinatorEpoch: coordinatorEpoch);
    }

    public override string ToString() =>
        $"producer {ProducerId} epoch {ProducerEpoch} sequences {BaseSequence}..{LastSequence}{(IsTransactional ? " transactional" : "")}";
}

/// <summary>
/// What <see cref="ProducerStateManager.Check"/> decided for one batch. Each rejection maps to one Kafka error code
/// (<see cref="ProducerCheck.ErrorCode"/>).
/// </summary>
public enum ProducerCheckOutcome : byte
{
    /// <summary>Append the batch, then call <see cref="ProducerStateManager.Apply"/> with its base offset.</summary>
    Append,

    /// <summary>
    /// A retry of one of the producer's last five batches: append nothing and answer NONE with the original base
    /// offset (<see cref="BatchMetadata.FirstOffset"/>) and <see cref="BatchMetadata.Timestamp"/> as the log append time,
    /// as Kafka's UnifiedLog.append does for a duplicate.
    /// </summary>
    Duplicate,

    /// <summary>
    /// The batch's epoch is older than the producer's: INVALID_PRODUCER_EPOCH (47). Kafka answers Produce with this
    /// code at every version since 2.7 (ProducerAppendInfo.checkProducerEpoch); PRODUCER_FENCED (90) belongs to
    /// InitProducerId and the transaction APIs, so the broker maps nothing here.
    /// </summary>
    InvalidProducerEpoch,

    /// <summary>OUT_OF_ORDER_SEQUENCE_NUMBER (45): a gap, a reuse outside the last five batches, or a new epoch not starting at 0.</summary>
    OutOfOrderSequence,

    /// <summary>INVALID_TXN_STATE (48): a non-transactional batch while the producer has a transaction open on this partition.</summary>
    InvalidTxnState,

    /// <summary>INVALID_RECORD (87): a batch with a producer id and a negative base sequence (LogValidator.validateBatch).</summary>
    InvalidSequence,

    /// <summary>
    /// TRANSACTION_COORDINATOR_FENCED (52): a marker whose coordinator epoch is older than the one that wrote the
    /// producer's last marker (ProducerAppendInfo.checkCoordinatorEpoch).
    /// </summary>
    CoordinatorFenced,

    /// <summary>INVALID_RECORD (87): a control batch from a client, or one that holds no COMMIT or ABORT marker.</summary>
    InvalidControlBatch,

    /// <summary>
    /// INVALID_TXN_STATE (48): a transactional batch that would start a transaction here without a valid
    /// <see cref="VerificationGuard"/> (KIP-890: the coordinator did not confirm the partition is in the transaction,
    /// or a marker or epoch bump came in between).
    /// </summary>
    TransactionNotVerified,
}

/// <summary>The outcome of a producer-state check and, for a duplicate, the batch it repeats.</summary>
public readonly struct ProducerCheck
{
    public ProducerCheck(ProducerCheckOutcome outcome, BatchMetadata duplicate = default)
    {
        Outcome = outcome;
        Duplicate = duplicate;
    }

    public static ProducerCheck Append => default;

    public ProducerCheckOutcome Outcome { get; }

    /// <summary>The original batch when <see cref="Outcome"/> is <see cref="ProducerCheckOutcome.Duplicate"/>.</summary>
    public BatchMetadata Duplicate { get; }

    /// <summary>The Kafka error code to answer with: 0 for an append or a duplicate.</summary>
    public short ErrorCode => Outcome switch
    {
        ProducerCheckOutcome.Append => 0,
        ProducerCheckOutcome.Duplicate => 0,
        ProducerCheckOutcome.OutOfOrderSequence => 45,
        ProducerCheckOutcome.InvalidProducerEpoch => 47,
        ProducerCheckOutcome.InvalidTxnState or ProducerCheckOutcome.TransactionNotVerified => 48,
        ProducerCheckOutcome.CoordinatorFenced => 52,
        _ => 87,
    };
}
