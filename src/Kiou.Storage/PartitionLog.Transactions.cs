using Kiou.Protocol.Records;
using Kiou.Storage.Producers;

namespace Kiou.Storage;

/// <summary>Who appends a batch, as Kafka's AppendOrigin: only the transaction coordinator may write control batches.</summary>
public enum AppendOrigin
{
    /// <summary>A producer through Produce: control batches are refused with INVALID_RECORD, as Kafka's LogValidator.</summary>
    Client,

    /// <summary>The transaction coordinator writing COMMIT/ABORT markers (checked against the producer's epochs).</summary>
    Coordinator,
}

/// <summary>
/// The partition side of transactions (docs/design/transactions.md): the last stable offset and the aborted-transaction
/// index (<c>.txnindex</c> per segment) that read_committed fetches use.
/// </summary>
public sealed partial class PartitionLog
{
    // Producers.FirstUnstableOffset, published for lock-free readers; long.MaxValue when no transaction is unstable.
    private long _firstUnstableOffset = long.MaxValue;

    // Set once any segment indexes an aborted transaction (never cleared): read_committed fetches of partitions that
    // never saw an abort (every librdkafka consumer's default) skip the lock and the segment walk.
    private bool _anyAborted;

    internal void NoteAbortedLocked() => Volatile.Write(ref _anyAborted, true);

    /// <summary>
    /// Kafka's lastStableOffset: the first offset of the oldest transaction that is open or whose marker is not yet
    /// below the high watermark, else the high watermark; never below the log start. read_committed reads stop here.
    /// </summary>
    public long LastStableOffset
    {
        get
        {
            // The completed tail first: a transaction's first batch sets the unstable offset when it is reserved, before
            // the tail can pass it, so a reader that sees the tail past it also sees the unstable offset.
            long completed = Tails.Completed;
            long firstUnstable = Volatile.Read(ref _firstUnstableOffset);
            return Math.Max(Math.Min(firstUnstable, completed), Tails.LogStart);
        }
    }

    internal void UpdateFirstUnstableOffsetLocked()
    {
        Producers.TakeTxnsChanged();
        Volatile.Write(ref _firstUnstableOffset, Producers.FirstUnstableOffset);
    }

    /// <summary>
    /// Kafka's collectAbortedTransactions: the aborted transactions that overlap [<paramref name="fetchOffset"/>,
    /// <paramref name="upperBoundOffset"/>) (their marker at or after the fetch offset, their first offset below the
    /// bound), in marker order; null when there are none.
    /// </summary>
    public List<AbortedTxn>? CollectAbortedTransactions(long fetchOffset, long upperBoundOffset)
    {
        if (!Volatile.Read(ref _anyAborted))
        {
            return null;
        }

        List<AbortedTxn>? found = null;
        lock (Lock)
        {
            if (Closed || Segments.Count == 0)
            {
                return null;
            }

            // As Kafka, on through later segments until an entry's last stable offset reaches the bound: a transaction
            // that starts below the bound may be aborted by a marker segments later.
            Segment first = Segments.FindLocked(Math.Max(fetchOffset, Segments[0].BaseOffset));
            for (int i = Segments.IndexOf(first); i < Segments.Count; i++)
            {
                if (Segments[i].TxnIndex.Collect(fetchOffset, upperBoundOffset, ref found))
                {
                    break;
                }
            }
        }

        return found;
    }

    /// <summary>
    /// KIP-890, Kafka's maybeStartTransactionVerification: the guard to pass with the producer's transactional append
    /// once the coordinator has confirmed the partition is in its transaction; <see cref="VerificationGuard.NotNeeded"/>
    /// (no question to ask) when its transaction is already open here at this epoch.
    /// </summary>
    public VerificationGuard StartTransactionVerification(long producerId, short producerEpoch)
    {
        lock (Lock)
        {
            return Producers.StartVerification(producerId, producerEpoch, NowMs());
        }
    }

    /// <summary>The coordinator refused: the guard is dropped (unless a later request of the producer replaced it).</summary>
    public void AbandonTransactionVerification(VerificationGuard guard)
    {
        lock (Lock)
        {
            Producers.AbandonVerification(guard);
        }
    }

    /// <summary>Open transactions on this partition (tests, DescribeProducers).</summary>
    public int OngoingTransactionCount
    {
        get
        {
            lock (Lock)
            {
                return Producers.OngoingTxnCount;
            }
        }
    }

    /// <summary>The aborted transactions indexed in each segment, by segment base offset (tests).</summary>
    internal IReadOnlyList<(long BaseOffset, AbortedTxn[] Aborted)> TxnIndexes()
    {
        lock (Lock)
        {
            var list = new List<(long, AbortedTxn[])>(Segments.Count);
            for (int i = 0; i < Segments.Count; i++)
            {
                TransactionIndex index = Segments[i].TxnIndex;
                var entries = new AbortedTxn[index.Count];
                for (int j = 0; j < entries.Length; j++)
                {
                    entries[j] = index[j];
                }

                list.Add((Segments[i].BaseOffset, entries));
            }

            return list;
        }
    }

    /// <summary>
    /// At open, for the segments recovery could not give a trusted <c>.txnindex</c> (<see cref="Segment.TxnIndexNeedsRebuild"/>)
    /// that the producer-state replay did not cover: their aborted transactions are found by walking the log from its
    /// start with only the open transactions in mind. Rare (a damaged or missing file below the replay's start).
    /// </summary>
    private void RebuildTxnIndexesFromLogStartLocked()
    {
        long firstFlagged = long.MaxValue;
        for (int i = 0; i < Segments.Count; i++)
        {
            if (Segments[i].TxnIndexNeedsRebuild)
            {
                Segments[i].TxnIndex.Clear();
                firstFlagged = Math.Min(firstFlagged, Segments[i].BaseOffset);
            }
        }

        if (firstFlagged == long.MaxValue)
        {
            return;
        }

        Info($"partition {Name}: rebuilding the aborted-transaction indexes from offset {firstFlagged} on by reading the log from its start at offset {Tails.LogStart}");
        var open = new Dictionary<long, long>(); // producer id -> first offset of its open transaction
        var openByOffset = new SortedDictionary<long, long>(); // first offset -> producer id
        long end = Tails.Completed;
        long offset = Tails.LogStart;
        while (offset < end)
        {
            using ReadResult read = _reader.Read(offset, 1 << 20, minOneBatch: true);
            if (read.Error != ReadError.None || read.Records.IsEmpty)
            {
                offset = NextSegmentBaseLocked(offset, end);
                continue;
            }

            ReadOnlySpan<byte> span = read.Records.Span;
            while (RecordBatch.TryReadHeader(span, out BatchHeader header) && header.TotalSize <= span.Length)
            {
                if (header.NextOffset > offset)
                {
                    Track(ProducerBatch.FromBatch(span[..header.TotalSize]), header.BaseOffset);
                    offset = header.NextOffset;
                }

                span = span[header.TotalSize..];
            }
        }

        FinishTxnIndexRebuildLocked();

        void Track(in ProducerBatch batch, long baseOffset)
        {
            if (!batch.HasProducerId || !batch.IsTransactional)
            {
                return;
            }

            if (!batch.IsControl)
            {
                if (open.TryAdd(batch.ProducerId, baseOffset))
                {
                    openByOffset[baseOffset] = batch.ProducerId;
                }

                return;
            }

            if (!batch.IsMarker || !open.Remove(batch.ProducerId, out long first))
            {
                return;
            }

            openByOffset.Remove(first);
            Segment segment = Segments.FindLocked(baseOffset);
            if (batch.MarkerType == EndTransactionMarker.Abort && segment.TxnIndexNeedsRebuild)
            {
                long lastStable = baseOffset + 1;
                foreach (KeyValuePair<long, long> t in openByOffset)
                {
                    lastStable = t.Key; // the producer's own transaction is removed already
                    break;
                }

                segment.TxnIndex.Append(new AbortedTxn(batch.ProducerId, first, baseOffset, lastStable));
            }
        }
    }

    /// <summary>The base of the first segment above <paramref name="offset"/>, else <paramref name="end"/> (skips damage).</summary>
    private long NextSegmentBaseLocked(long offset, long end)
    {
        for (int i = 0; i < Segments.Count; i++)
        {
            if (Segments[i].BaseOffset > offset)
            {
                return Math.Min(end, Segments[i].BaseOffset);
            }
        }

        return end;
    }

    /// <summary>Writes the rebuilt index files of sealed segments (the active one's are written at roll or close).</summary>
    private void FinishTxnIndexRebuildLocked()
    {
        for (int i = 0; i < Segments.Count; i++)
        {
            Segment segment = Segments[i];
            if (segment.TxnIndex.Count > 0)
            {
                NoteAbortedLocked();
            }

            if (!segment.TxnIndexNeedsRebuild)
            {
                continue;
            }

            segment.TxnIndexNeedsRebuild = false;
            if (i == Segments.Count - 1)
            {
                continue;
            }

            try
            {
                segment.WriteIndexFiles(); // recovery held back a rescanned segment's files until this one was known
                segment.IndexFilesCurrent = true;
                Info($"partition {Name}: rebuilt the aborted-transaction index of {segment.Name} from the log ({segment.TxnIndex.Count} aborted transactions)");
            }
            catch (IOException ex)
            {
                Warn($"partition {Name}: could not write {segment.TxnIndexPath} ({ex.Message}); read_committed fetches are served from memory and the next start rebuilds it again");
            }
        }
    }
}
