namespace Kiou.Storage.Producers;

/// <summary>
/// One producer id's state on one partition, as Kafka's ProducerStateEntry: its epoch, the metadata of its last
/// <see cref="BatchesRetained"/> batches (oldest first), its last timestamp (for expiry) and the transaction fields
/// kept for the snapshot layout (coordinator epoch, first offset of an ongoing transaction).
/// </summary>
/// <remarks>
/// Owned by the partition's <see cref="ProducerStateManager"/> and mutated only by its single writer. The batches live
/// in a ring allocated with the entry, so appends of a known producer allocate nothing.
/// </remarks>
public sealed class ProducerStateEntry
{
    /// <summary>Kafka's NUM_BATCHES_TO_RETAIN, which is also the most requests a producer may have in flight.</summary>
    public const int BatchesRetained = 5;

    private readonly BatchMetadata[] _batches = new BatchMetadata[BatchesRetained];
    private int _head; // slot of the oldest batch
    private int _count;

    // The manager's use order (least recently used first), linked through the entries so a use allocates nothing.
    internal ProducerStateEntry? LessRecent;
    internal ProducerStateEntry? MoreRecent;

    public ProducerStateEntry(long producerId, short producerEpoch = ProducerSequence.NoProducerEpoch, int coordinatorEpoch = -1, long lastTimestamp = -1, long currentTxnFirstOffset = -1)
    {
        ProducerId = producerId;
        ProducerEpoch = producerEpoch;
        CoordinatorEpoch = coordinatorEpoch;
        LastTimestamp = lastTimestamp;
        CurrentTxnFirstOffset = currentTxnFirstOffset;
    }

    public long ProducerId { get; }

    public short ProducerEpoch { get; private set; }

    /// <summary>Epoch of the transaction coordinator that wrote this producer's last marker here; -1 before any.</summary>
    public int CoordinatorEpoch { get; internal set; }

    /// <summary>Max timestamp of the last batch appended; producer expiry counts from it, as in Kafka.</summary>
    public long LastTimestamp { get; private set; }

    /// <summary>First offset of the ongoing transaction, -1 when there is none.</summary>
    public long CurrentTxnFirstOffset { get; internal set; }

    /// <summary>How many batches are remembered (0 to <see cref="BatchesRetained"/>).</summary>
    public int BatchCount => _count;

    public bool IsEmpty => _count == 0;

    /// <summary>The <paramref name="index"/>-th remembered batch, oldest first.</summary>
    public BatchMetadata Batch(int index)
    {
        if ((uint)index >= (uint)_count)
        {
            throw new ArgumentOutOfRangeException(nameof(index));
        }

        return _batches[(_head + index) % BatchesRetained];
    }

    public int FirstSequence => _count == 0 ? ProducerSequence.None : Batch(0).FirstSequence;

    public int LastSequence => _count == 0 ? ProducerSequence.None : Batch(_count - 1).LastSequence;

    public long FirstDataOffset => _count == 0 ? -1 : Batch(0).FirstOffset;

    public long LastDataOffset => _count == 0 ? -1 : Batch(_count - 1).LastOffset;

    public int LastOffsetDelta => _count == 0 ? 0 : Batch(_count - 1).OffsetDelta;

    /// <summary>ProducerStateEntry.addBatch: a new epoch forgets the old epoch's batches; the oldest batch makes room.</summary>
    public void AddBatch(short producerEpoch, int lastSequence, long lastOffset, int offsetDelta, long timestamp)
    {
        MaybeUpdateProducerEpoch(producerEpoch);
        if (_count == BatchesRetained)
        {
            _batches[_head] = new BatchMetadata(lastSequence, lastOffset, offsetDelta, timestamp);
            _head = (_head + 1) % BatchesRetained;
        }
        else
        {
            _batches[(_head + _count) % BatchesRetained] = new BatchMetadata(lastSequence, lastOffset, offsetDelta, timestamp);
            _count++;
        }

        LastTimestamp = timestamp;
    }

    /// <summary>
    /// ProducerStateEntry.update(epoch, coordinatorEpoch, timestamp) for a COMMIT or ABORT marker: a newer epoch forgets
    /// the batches, the transaction closes, the coordinator epoch and the last timestamp are the marker's.
    /// </summary>
    public void EndTransaction(short producerEpoch, int coordinatorEpoch, long timestamp)
    {
        MaybeUpdateProducerEpoch(producerEpoch);
        CoordinatorEpoch = coordinatorEpoch;
        CurrentTxnFirstOffset = -1;
        LastTimestamp = timestamp;
    }

    /// <summary>ProducerStateEntry.maybeUpdateProducerEpoch: true when the epoch changed (and the batches were forgotten).</summary>
    public bool MaybeUpdateProducerEpoch(short producerEpoch)
    {
        if (ProducerEpoch == producerEpoch)
        {
            return false;
        }

        _count = 0;
        _head = 0;
        ProducerEpoch = producerEpoch;
        return true;
    }

    /// <summary>
    /// ProducerStateEntry.findDuplicateBatch: the remembered batch with exactly this epoch and sequence range, if any.
    /// </summary>
    public bool TryFindDuplicate(short producerEpoch, int firstSequence, int lastSequence, out BatchMetadata duplicate)
    {
        if (producerEpoch == ProducerEpoch)
        {
            for (int i = 0; i < _count; i++)
            {
                BatchMetadata b = _batches[(_head + i) % BatchesRetained];
                if (b.LastSequence == lastSequence && b.FirstSequence == firstSequence)
                {
                    duplicate = b;
                    return true;
                }
            }
        }

        duplicate = default;
        return false;
    }

    /// <summary>A copy with the same fields and batches (for tests comparing states and for snapshot round trips).</summary>
    public ProducerStateEntry Clone()
    {
        var copy = new ProducerStateEntry(ProducerId, ProducerEpoch, CoordinatorEpoch, LastTimestamp, CurrentTxnFirstOffset);
        for (int i = 0; i < _count; i++)
        {
            BatchMetadata b = Batch(i);
            copy.AddBatch(ProducerEpoch, b.LastSequence, b.LastOffset, b.OffsetDelta, b.Timestamp);
        }

        copy.LastTimestamp = LastTimestamp;
        return copy;
    }

    public override string ToString() =>
        $"producer {ProducerId} epoch {ProducerEpoch} sequences {FirstSequence}..{LastSequence} offsets {FirstDataOffset}..{LastDataOffset} ({_count} batches) last timestamp {LastTimestamp}"
        + (CurrentTxnFirstOffset >= 0 ? $" transaction from offset {CurrentTxnFirstOffset}" : "");
}
