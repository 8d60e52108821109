using Kiou.Protocol.Records;
using Kiou.Storage.Producers;

namespace Kiou.Storage.Cleaner;

/// <summary>
/// Kafka's CleanedTransactionMetadata: while the cleaner walks a log in offset order, which data batches belong to
/// aborted transactions (they are removed) and whether a transaction marker may go (no batch of its transaction was
/// met before it in this pass). Aborted transactions come from the segments' <c>.txnindex</c>.
/// </summary>
internal sealed class CleanedTransactions
{
    private readonly List<AbortedTxn> _aborted;
    private int _next;
    private readonly Dictionary<long, (AbortedTxn Txn, bool Observed)> _ongoingAborted = new();
    private readonly HashSet<long> _ongoingCommitted = new();

    public CleanedTransactions(List<AbortedTxn> aborted)
    {
        aborted.Sort(static (a, b) => a.FirstOffset.CompareTo(b.FirstOffset));
        _aborted = aborted;
    }

    /// <summary>Aborted transactions whose marker stays because data of theirs was met: the new segment's <c>.txnindex</c>.</summary>
    public TransactionIndex? CleanedIndex { get; set; }

    private void ConsumeUpTo(long offset)
    {
        while (_next < _aborted.Count && _aborted[_next].FirstOffset <= offset)
        {
            AbortedTxn txn = _aborted[_next++];
            _ongoingAborted[txn.ProducerId] = (txn, false);
        }
    }

    /// <summary>A data batch: true when it belongs to an aborted transaction (its records are removed).</summary>
    public bool OnBatchRead(in BatchHeader header, long producerId, bool transactional)
    {
        ConsumeUpTo(header.LastOffset);
        if (!transactional)
        {
            return false;
        }

        if (_ongoingAborted.TryGetValue(producerId, out var aborted))
        {
            _ongoingAborted[producerId] = (aborted.Txn, true);
            return true;
        }

        _ongoingCommitted.Add(producerId);
        return false;
    }

    /// <summary>A control batch: true when it may be removed (once its delete horizon has passed).</summary>
    public bool OnControlBatchRead(ReadOnlySpan<byte> batch, in BatchHeader header)
    {
        ConsumeUpTo(header.LastOffset);
        long producerId = RecordBatch.ProducerId(batch);
        if (RecordBatch.RecordsCount(batch) == 0)
        {
            return true;
        }

        if (!EndTransactionMarker.TryRead(batch, out short type, out _))
        {
            return false; // an unknown control record: kept
        }

        if (type == EndTransactionMarker.Abort)
        {
            _ongoingCommitted.Remove(producerId);
            if (_ongoingAborted.Remove(producerId, out var aborted) && aborted.Observed)
            {
                CleanedIndex?.Append(aborted.Txn);
                return false;
            }

            return true;
        }

        return !_ongoingCommitted.Remove(producerId);
    }
}
