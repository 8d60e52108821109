using Kiou.Protocol.Records;
using Kiou.Storage.Producers;

namespace Kiou.Storage;

/// <summary>
/// The idempotent-producer side of a partition (docs/design/producer-state.md): the state is checked and updated by
/// the append path under <see cref="Lock"/>, rebuilt from the latest snapshot plus the log after it at open and after a
/// failed write was truncated away, snapshotted at roll and at clean close.
/// </summary>
public sealed partial class PartitionLog
{
    /// <summary>The partition's producer state; touched only under <see cref="Lock"/>.</summary>
    internal readonly ProducerStateManager Producers;

    /// <summary>
    /// Bumped under the lock each time the state is rebuilt after truncation: a duplicate answer or a snapshot prepared
    /// before it no longer describes the log.
    /// </summary>
    internal long ProducerGeneration;

    /// <summary>Producers known to this partition, copied under the lock (DescribeProducers).</summary>
    public IReadOnlyList<ProducerStateEntry> ActiveProducers()
    {
        lock (Lock)
        {
            var list = new List<ProducerStateEntry>(Producers.ProducerCount);
            foreach (ProducerStateEntry e in Producers.ActiveProducers.Values)
            {
                list.Add(e.Clone());
            }

            return list;
        }
    }

    /// <summary>Forgets producers idle longer than producer.id.expiration.ms (the broker's periodic check).</summary>
    public int RemoveExpiredProducers(long nowMs)
    {
        lock (Lock)
        {
            return Closed ? 0 : Producers.RemoveExpired(nowMs, Config.ProducerIdExpirationMs);
        }
    }

    private void LoadProducerState(bool cleanStart)
    {
        lock (Lock)
        {
            if (cleanStart && Producers.LatestSnapshotOffset is null && Tails.Completed > Tails.LogStart)
            {
                // A clean stop of a log written before snapshots existed: as Kafka on upgrade, the state starts empty at
                // the end instead of reading the log (its producers are unknown and accepted at any sequence, KIP-360).
                Producers.UpdateMapEndOffset(Tails.Completed);
                return;
            }

            RebuildProducerStateLocked(startup: true);
        }
    }

    /// <summary>After recovery: the producer state (replay included), then any aborted-transaction index still missing.</summary>
    private void LoadTransactionState(bool cleanStart)
    {
        LoadProducerState(cleanStart);
        lock (Lock)
        {
            RebuildTxnIndexesFromLogStartLocked();
            UpdateFirstUnstableOffsetLocked();
            for (int i = 0; i < Segments.Count; i++)
            {
                if (Segments[i].TxnIndex.Count > 0)
                {
                    NoteAbortedLocked();
                }
            }
        }
    }

    /// <summary>
    /// Kafka's rebuildProducerState: the latest usable snapshot, then the headers of the batches stored after it up to
    /// the completed tail. Runs at open and after a failed write's bytes were truncated (the state had already taken
    /// the batches that are now gone).
    /// </summary>
    internal void RebuildProducerStateLocked(bool startup)
    {
        long start = Tails.LogStart;
        long end = Tails.Completed;
        Producers.TruncateAndReload(start, end, NowMs());
        long from = Producers.MapEndOffset;
        if (startup && Producers.LatestSnapshotOffset is null && Segments.Count >= 2)
        {
            // No snapshot at all (a log written before snapshots existed): as Kafka on upgrade, only the last two
            // segments are read; producers seen only before them are unknown and accepted at any sequence (KIP-360).
            from = Math.Max(from, Segments[Segments.Count - 2].BaseOffset);
        }

        // The replay rebuilds the aborted-transaction indexes that recovery could not trust, when it covers them all
        // (it knows every open transaction from the snapshot on); otherwise RebuildTxnIndexesFromLogStartLocked does.
        bool buildTxnIndexes = startup;
        for (int i = 0; i < Segments.Count && buildTxnIndexes; i++)
        {
            buildTxnIndexes = !Segments[i].TxnIndexNeedsRebuild || Segments[i].BaseOffset >= from;
        }

        for (int i = 0; i < Segments.Count && buildTxnIndexes; i++)
        {
            if (Segments[i].TxnIndexNeedsRebuild)
            {
                Segments[i].TxnIndex.Clear();
            }
        }

        long offset = from;
        while (offset < end)
        {
            using ReadResult read = _reader.Read(offset, 1 << 20, minOneBatch: true);
            if (read.Error != ReadError.None || read.Records.IsEmpty)
            {
                // Damage set aside by recovery (already reported at WARN): go on at the next segment. A producer whose
                // batches there are skipped may get OUT_OF_ORDER_SEQUENCE_NUMBER once and re-initialise.
                long skipTo = end;
                for (int i = 0; i < Segments.Count; i++)
                {
                    if (Segments[i].BaseOffset > offset)
                    {
                        skipTo = Math.Min(skipTo, Segments[i].BaseOffset);
                        break;
                    }
                }

                Info($"partition {Name}: the producer state skips offsets {offset}..{skipTo - 1}, which could not be read ({read.Error})");
                offset = skipTo;
                continue;
            }

            ReadOnlySpan<byte> span = read.Records.Span;
            while (RecordBatch.TryReadHeader(span, out BatchHeader header) && header.TotalSize <= span.Length)
            {
                if (header.NextOffset > offset)
                {
                    if (Producers.Replay(ProducerBatch.FromBatch(span[..header.TotalSize]), header.BaseOffset) is { } aborted && buildTxnIndexes)
                    {
                        Segment segment = Segments.FindLocked(header.BaseOffset);
                        if (segment.TxnIndexNeedsRebuild)
                        {
                            segment.TxnIndex.Append(aborted);
                        }
                    }

                    offset = header.NextOffset;
                }

                span = span[header.TotalSize..];
            }
        }

        Producers.UpdateMapEndOffset(end);
        Producers.OnHighWatermarkUpdated(end); // every replayed marker is below the completed tail
        ProducerGeneration++;
        if (buildTxnIndexes)
        {
            FinishTxnIndexRebuildLocked();
        }

        UpdateFirstUnstableOffsetLocked();
    }

    /// <summary>
    /// A retry of a batch already in the log: answered with its original offsets once the original is completed (and
    /// durable when <paramref name="waitDurable"/>), as Kafka answers a duplicate only after the original's append.
    /// </summary>
    internal async ValueTask<AppendResult> AnswerDuplicateAsync(BatchMetadata original, bool waitDurable, long generation)
    {
        await Task.Yield(); // called under the lock: the waits below must not start there
        long last = original.LastOffset;
        while (true)
        {
            long completed;
            lock (Lock)
            {
                CheckGenerationLocked(generation, original);
                completed = Tails.Completed;
                if (completed > last && (!waitDurable || Tails.Durable > last))
                {
                    return new AppendResult(original.FirstOffset, original.Timestamp, Tails.LogStart);
                }
            }

            await (completed > last ? FlushAsync() : Appends.WaitForAppendAsync(completed, CancellationToken.None)).ConfigureAwait(false);
        }
    }

    private void CheckGenerationLocked(long generation, BatchMetadata original)
    {
        if (Closing || Closed || ProducerGeneration != generation)
        {
            throw new StorageException($"partition {Name}: the batch at offsets {original.FirstOffset}..{original.LastOffset} that this retry repeats was not stored (a write failed or the partition closed); retry the produce");
        }
    }

    // Serialises a roll snapshot's write with the close snapshot: a roll write still under way when close starts could
    // otherwise land after, or delete, the close snapshot of the same offset. Never held across a wait for durability.
    private readonly object _snapshotWriteGate = new();

    private readonly List<Task> _rollSnapshotWrites = new();

    /// <summary>Tests: completes when every roll snapshot started so far is written or given up.</summary>
    internal Task WhenRollSnapshotsWrittenAsync()
    {
        lock (_rollSnapshotWrites)
        {
            _rollSnapshotWrites.RemoveAll(t => t.IsCompleted);
            return Task.WhenAll(_rollSnapshotWrites.ToArray()).ContinueWith(static _ => { }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    internal void StartRollSnapshotWrite(PendingSnapshot pending, long generation)
    {
        Task write = WriteSnapshotWhenDurableAsync(pending, generation);
        lock (_rollSnapshotWrites)
        {
            _rollSnapshotWrites.RemoveAll(t => t.IsCompleted);
            if (!write.IsCompleted)
            {
                _rollSnapshotWrites.Add(write);
            }
        }
    }

    /// <summary>Runs the close snapshot after any roll snapshot write under way; later roll writes see Closing and stop.</summary>
    internal void TakeCloseSnapshotAfterRollWrites()
    {
        lock (_snapshotWriteGate)
        {
            TakeCloseSnapshot();
        }
    }

    /// <summary>Test hook: a roll snapshot's segment is durable and its write is about to take the gate.</summary>
    internal Action? OnRollSnapshotDurable { get; set; }

    /// <summary>The roll's snapshot, written once the sealed segment is durable, off the append path.</summary>
    internal async Task WriteSnapshotWhenDurableAsync(PendingSnapshot pending, long generation)
    {
        try
        {
            while (true)
            {
                lock (Lock)
                {
                    // A failed partition rebuilds its state when it resumes: this snapshot may describe lost batches.
                    if (Closing || Closed || Appends.Failed || ProducerGeneration != generation)
                    {
                        return;
                    }

                    if (Tails.Durable >= pending.Offset)
                    {
                        break;
                    }
                }

                long before = Tails.Durable;
                await FlushAsync().ConfigureAwait(false);
                if (Tails.Durable == before)
                {
                    await Task.Delay(5).ConfigureAwait(false);
                }
            }

            OnRollSnapshotDurable?.Invoke();
            lock (_snapshotWriteGate)
            {
                lock (Lock)
                {
                    if (Closing || Closed || ProducerGeneration != generation)
                    {
                        return; // close takes its own snapshot; a rebuilt state may no longer match this one
                    }
                }

                pending.Write();
                lock (Lock)
                {
                    if (ProducerGeneration != generation)
                    {
                        // The state was rebuilt meanwhile (a failed write's batches are gone): this snapshot may describe them.
                        File.Delete(pending.Path);
                        return;
                    }

                    Producers.CompleteSnapshot(pending);
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ObjectDisposedException)
        {
            Warn($"partition {Name}: could not write the producer snapshot {pending.Path} ({ex.Message}); the next start rebuilds the producer state from an older snapshot and the log after it");
        }
    }

    /// <summary>At clean close, after the final flush: a snapshot at the log end, so the next start replays nothing.</summary>
    internal void TakeCloseSnapshot()
    {
        PendingSnapshot? pending;
        lock (Lock)
        {
            Producers.UpdateMapEndOffset(Tails.Completed);
            pending = Producers.PrepareSnapshot();
        }

        if (pending is null)
        {
            return;
        }

        try
        {
            pending.Write();
            lock (Lock)
            {
                Producers.CompleteSnapshot(pending);
            }
        }
        catch (IOException ex)
        {
            Warn($"partition {Name}: could not write the producer snapshot {pending.Path} at close ({ex.Message}); the next start rebuilds the producer state from an older snapshot and the log after it");
        }
    }
}

/// <summary>A batch refused by the producer-state check; <see cref="ErrorCode"/> is the Kafka error code to answer.</summary>
public sealed class ProducerStateException : Exception
{
    public ProducerStateException(short errorCode, string message)
        : base(message)
    {
        ErrorCode = errorCode;
    }

    public short ErrorCode { get; }
}
