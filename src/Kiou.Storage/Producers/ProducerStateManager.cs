using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using Kiou.IoUring.Interop;

namespace Kiou.Storage.Producers;

/// <summary>
/// One partition's idempotent-producer state, following Kafka's ProducerStateManager, ProducerAppendInfo and the
/// producer part of UnifiedLog.append: for each producer id, its epoch and the metadata of its last five batches;
/// snapshots of it in the partition directory; expiry of idle producers.
/// </summary>
/// <remarks>
/// <para>Owned by the partition's single writer: <see cref="Check"/>, <see cref="Apply"/>, <see cref="Replay"/> and
/// every snapshot or truncation call run there, in append order. Readers on other threads (DescribeProducers) must be
/// served by that writer. Nothing here blocks except the snapshot calls, which write and fsync a file.</para>
/// <para>Produce path, per batch: <c>if (batch.HasProducerId)</c> (the one branch plain batches pay), then
/// <see cref="Check"/>; on <see cref="ProducerCheckOutcome.Append"/> assign offsets, append and call
/// <see cref="Apply"/> before the next batch of the partition is checked. A known producer allocates nothing.</para>
/// <para>Start-up and truncation, as Kafka's UnifiedLog.rebuildProducerState: <see cref="TruncateAndReload"/> with the
/// log's start and end, then <see cref="Replay"/> each stored batch from <see cref="MapEndOffset"/> to the end, then
/// <see cref="UpdateMapEndOffset"/> and <see cref="TakeSnapshot"/>.</para>
/// <para>At most <c>maxProducers</c> producer ids are kept (KIOU_MAX_PRODUCERS_PER_PARTITION): a new one beyond it
/// evicts the least recently used, found in O(1) through a list linked in the entries themselves; a producer with a
/// transaction open here is never evicted. The rebuild at open evicts the same way, so a snapshot written under a
/// higher bound loads. Evictions are logged at WARN at most once per <see cref="EvictionWarningIntervalMs"/>.</para>
/// <para>Snapshots are files <c>&lt;offset&gt;.snapshot</c> (<see cref="ProducerSnapshot"/>). A damaged one, or one
/// beyond the log's end (the log lost its tail), is moved to the partition's <c>quarantine/</c> with a warning and
/// the next older one is used; only snapshots at or below the log start offset (retention) and the oldest beyond
/// the <c>snapshotsRetained</c> most recent are deleted, each after a newer one is durable.</para>
/// </remarks>
public sealed class ProducerStateManager
{
    /// <summary>Kafka's producer.id.expiration.ms default: one day.</summary>
    public const long DefaultProducerIdExpirationMs = 86_400_000;

    /// <summary>Three: the snapshots at the last two rolls and at the last clean shutdown, as Kafka keeps at load.</summary>
    public const int DefaultSnapshotsRetained = 3;

    /// <summary>KIOU_MAX_PRODUCERS_PER_PARTITION's default: far above what real producers need on one partition, small
    /// enough that a client creating producer ids in a loop holds a bounded amount of memory there.</summary>
    public const int DefaultMaxProducers = 100_000;

    /// <summary>One minute: evictions under attack happen per batch, the warning about them does not.</summary>
    public const long EvictionWarningIntervalMs = 60_000;

    private readonly Dictionary<long, ProducerStateEntry> _producers = new();

    // Kafka's ongoingTxns and unreplicatedTxns, keyed by first offset: open transactions, and decided ones whose marker
    // is not yet below the high watermark (both keep the last stable offset at their first offset).
    private readonly SortedDictionary<long, long> _ongoingTxns = new();
    private readonly SortedDictionary<long, long> _unreplicatedTxns = new(); // first offset -> marker offset
    private bool _txnsChanged;

    // KIP-890's verification guards by producer id (Kafka's verificationStates), until the producer's next batch or
    // marker here, a rebuild, or expiry.
    private readonly Dictionary<long, VerificationGuard> _verifications = new();
    private readonly SortedSet<long> _snapshots = new();
    private readonly string _directory;
    private readonly string _partition;
    private readonly long _producerIdExpirationMs;
    private readonly int _snapshotsRetained;
    private readonly Action<string> _log;
    private readonly Action<string> _warn;
    private readonly int _maxProducers;
    private readonly TimeProvider _time;
    private long _mapEndOffset;
    private long _lastSnapOffset;

    // Every producer in _producers, least recently used first, linked through ProducerStateEntry.LessRecent/MoreRecent.
    private ProducerStateEntry? _leastRecent;
    private ProducerStateEntry? _mostRecent;

    // Evictions not yet in a warning, and when the last warning was written (valid once _evictionWarned).
    private int _evictedUnreported;
    private bool _evictionWarned;
    private long _lastEvictionWarningMs;

    /// <param name="directory">The partition directory, which holds the snapshot files.</param>
    /// <param name="partitionName">topic-partition, for log lines.</param>
    public ProducerStateManager(string directory, string partitionName, Action<string> log, Action<string> warn,
        long producerIdExpirationMs = DefaultProducerIdExpirationMs, int snapshotsRetained = DefaultSnapshotsRetained,
        int maxProducers = DefaultMaxProducers, TimeProvider? time = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxProducers, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(snapshotsRetained, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(producerIdExpirationMs);
        _directory = directory;
        _partition = partitionName;
        _log = log;
        _warn = warn;
        _producerIdExpirationMs = producerIdExpirationMs;
        _snapshotsRetained = snapshotsRetained;
        _maxProducers = maxProducers;
        _time = time ?? TimeProvider.System;
        LoadSnapshotList();
    }

    /// <summary>The offset up to which (exclusive) the state reflects the log.</summary>
    public long MapEndOffset => _mapEndOffset;

    public int ProducerCount => _producers.Count;

    /// <summary>The producers, for DescribeProducers and snapshots; read on the writer only.</summary>
    public IReadOnlyDictionary<long, ProducerStateEntry> ActiveProducers => _producers;

    /// <summary>End offsets of the snapshot files present, ascending.</summary>
    public IReadOnlyCollection<long> SnapshotOffsets => _snapshots;

    public long? LatestSnapshotOffset => _snapshots.Count == 0 ? null : _snapshots.Max;

    public long? OldestSnapshotOffset => _snapshots.Count == 0 ? null : _snapshots.Min;

    public bool TryGetProducer(long producerId, [MaybeNullWhen(false)] out ProducerStateEntry entry) => _producers.TryGetValue(producerId, out entry);

    /// <summary>
    /// Decides whether a produced batch with a producer id is appended, answered as a duplicate, or refused.
    /// Changes nothing: on <see cref="ProducerCheckOutcome.Append"/> call <see cref="Apply"/> once it has offsets.
    /// </summary>
    /// <remarks>
    /// The order is Kafka's: LogValidator refuses a negative base sequence; UnifiedLog.analyzeAndValidateProducerState
    /// looks for a duplicate among the producer's last five batches (same epoch, same first and last sequence) before
    /// any other check; then ProducerAppendInfo.checkProducerEpoch and checkSequence:
    /// <code>
    /// known epoch   batch epoch   first sequence        outcome
    /// none (-1)     any           any                   append (KIP-360: state lost to retention or expiry)
    /// e             &lt; e           any                   INVALID_PRODUCER_EPOCH
    /// e             &gt; e           0                     append (the new epoch forgets the old batches)
    /// e             &gt; e           not 0                 OUT_OF_ORDER_SEQUENCE_NUMBER
    /// e             e             last + 1 (wrapping)   append (last is -1 when no batch is kept: 0 follows)
    /// e             e             anything else         OUT_OF_ORDER_SEQUENCE_NUMBER
    /// </code>
    /// Current Kafka never answers a produce with UNKNOWN_PRODUCER_ID or DUPLICATE_SEQUENCE_NUMBER, and neither does this.
    /// </remarks>
    /// <param name="verification">KIP-890: null when the caller does not verify transactions (markers, tests, the setting
    /// off); otherwise a transactional batch that would start a transaction here needs the producer's current guard.</param>
    /// <param name="coordinator">The batch is the group coordinator's (AppendOrigin.Coordinator): as Kafka, only the
    /// epoch and transaction state are checked, not sequences (its transactional offset commits all start at 0).</param>
    public ProducerCheck Check(in ProducerBatch batch, VerificationGuard? verification = null, bool coordinator = false)
    {
        if (!batch.HasProducerId)
        {
            return ProducerCheck.Append;
        }

        if (batch.IsControl)
        {
            return CheckMarker(batch);
        }

        if (coordinator)
        {
            return CheckCoordinatorBatch(batch);
        }

        if (batch.BaseSequence < 0)
        {
            return new ProducerCheck(ProducerCheckOutcome.InvalidSequence);
        }

        // An unknown producer is Kafka's ProducerStateEntry.empty: epoch -1, no batches.
        short currentEpoch = ProducerSequence.NoProducerEpoch;
        int firstSequence = batch.BaseSequence;
        if (_producers.TryGetValue(batch.ProducerId, out ProducerStateEntry? current))
        {
            if (current.TryFindDuplicate(batch.ProducerEpoch, firstSequence, batch.LastSequence, out BatchMetadata duplicate))
            {
                return new ProducerCheck(ProducerCheckOutcome.Duplicate, duplicate);
            }

            currentEpoch = current.ProducerEpoch;
        }

        // UnifiedLog.analyzeAndValidateProducerState: after the duplicate check, before the epoch and sequence checks.
        if (verification is not null && batch.IsTransactional && !HasOngoingTransaction(batch.ProducerId, batch.ProducerEpoch)
            && !IsCurrentGuard(verification, batch.ProducerId, batch.ProducerEpoch))
        {
            return new ProducerCheck(ProducerCheckOutcome.TransactionNotVerified);
        }

        if (batch.ProducerEpoch < currentEpoch)
        {
            return new ProducerCheck(ProducerCheckOutcome.InvalidProducerEpoch);
        }

        if (batch.ProducerEpoch != currentEpoch)
        {
            if (firstSequence != 0 && currentEpoch != ProducerSequence.NoProducerEpoch)
            {
                return new ProducerCheck(ProducerCheckOutcome.OutOfOrderSequence);
            }
        }
        else if (currentEpoch != ProducerSequence.NoProducerEpoch && !ProducerSequence.InSequence(current!.LastSequence, firstSequence))
        {
            return new ProducerCheck(ProducerCheckOutcome.OutOfOrderSequence);
        }

        // ProducerAppendInfo.appendDataBatch: a transaction in progress takes transactional batches only.
        if (current is { CurrentTxnFirstOffset: >= 0 } && !batch.IsTransactional)
        {
            return new ProducerCheck(ProducerCheckOutcome.InvalidTxnState);
        }

        return ProducerCheck.Append;
    }

    /// <summary>ProducerAppendInfo.appendDataBatch for AppendOrigin.COORDINATOR: checkProducerEpoch, no checkSequence.</summary>
    private ProducerCheck CheckCoordinatorBatch(in ProducerBatch batch)
    {
        if (_producers.TryGetValue(batch.ProducerId, out ProducerStateEntry? current))
        {
            if (batch.ProducerEpoch < current.ProducerEpoch)
            {
                return new ProducerCheck(ProducerCheckOutcome.InvalidProducerEpoch);
            }

            if (current.CurrentTxnFirstOffset >= 0 && !batch.IsTransactional)
            {
                return new ProducerCheck(ProducerCheckOutcome.InvalidTxnState);
            }
        }

        return ProducerCheck.Append;
    }

    /// <summary>Kafka's hasOngoingTransaction(producerId, epoch): a transaction of this producer epoch is open here.</summary>
    public bool HasOngoingTransaction(long producerId, short producerEpoch) =>
        _producers.TryGetValue(producerId, out ProducerStateEntry? e) && e.CurrentTxnFirstOffset >= 0 && e.ProducerEpoch == producerEpoch;

    /// <summary>
    /// Kafka's maybeStartTransactionVerification: <see cref="VerificationGuard.NotNeeded"/> when the producer's
    /// transaction is already open here at this epoch; else its current guard (one per producer, shared by its
    /// concurrent requests), made when there is none or the one there is for an older epoch.
    /// </summary>
    public VerificationGuard StartVerification(long producerId, short producerEpoch, long nowMs)
    {
        if (HasOngoingTransaction(producerId, producerEpoch))
        {
            return VerificationGuard.NotNeeded;
        }

        if (_verifications.TryGetValue(producerId, out VerificationGuard? guard) && guard.ProducerEpoch >= producerEpoch)
        {
            return guard;
        }

        guard = new VerificationGuard(producerId, producerEpoch, nowMs);
        _verifications[producerId] = guard;
        return guard;
    }

    /// <summary>Drops <paramref name="guard"/> if it is still its producer's (the coordinator refused the batch).</summary>
    public void AbandonVerification(VerificationGuard guard)
    {
        if (guard.NeedsCoordinator && _verifications.TryGetValue(guard.ProducerId, out VerificationGuard? current) && ReferenceEquals(current, guard))
        {
            _verifications.Remove(guard.ProducerId);
        }
    }

    /// <summary>Guards handed out and not yet used or dropped (tests).</summary>
    public int VerificationCount => _verifications.Count;

    private bool IsCurrentGuard(VerificationGuard guard, long producerId, short producerEpoch) =>
        guard.NeedsCoordinator && guard.ProducerId == producerId && guard.ProducerEpoch == producerEpoch
        && _verifications.TryGetValue(producerId, out VerificationGuard? current) && ReferenceEquals(current, guard);

    /// <summary>
    /// A COMMIT or ABORT marker from the transaction coordinator (ProducerAppendInfo.appendEndTxnMarker): an epoch older
    /// than the producer's is INVALID_PRODUCER_EPOCH, a coordinator epoch older than the one of the producer's last
    /// marker is TRANSACTION_COORDINATOR_FENCED. A marker for a producer with no open transaction here is accepted.
    /// </summary>
    private ProducerCheck CheckMarker(in ProducerBatch batch)
    {
        if (!batch.IsMarker || !batch.IsTransactional)
        {
            return new ProducerCheck(ProducerCheckOutcome.InvalidControlBatch);
        }

        if (_producers.TryGetValue(batch.ProducerId, out ProducerStateEntry? current))
        {
            if (batch.ProducerEpoch < current.ProducerEpoch)
            {
                return new ProducerCheck(ProducerCheckOutcome.InvalidProducerEpoch);
            }

            if (current.CoordinatorEpoch > batch.CoordinatorEpoch)
            {
                return new ProducerCheck(ProducerCheckOutcome.CoordinatorFenced);
            }
        }

        return ProducerCheck.Append;
    }

    /// <summary>
    /// Records a batch that <see cref="Check"/> allowed, now appended at <paramref name="baseOffset"/>. Returns the
    /// aborted transaction an ABORT marker ends, to be added to the marker segment's <see cref="TransactionIndex"/>.
    /// </summary>
    public AbortedTxn? Apply(in ProducerBatch batch, long baseOffset)
    {
        if (!batch.HasProducerId)
        {
            return null;
        }

        int unreported = _evictedUnreported;
        AbortedTxn? aborted = Update(batch, baseOffset);
        if (_evictedUnreported != unreported)
        {
            ReportEvictions();
        }

        return aborted;
    }

    /// <summary>
    /// Records a batch read back from the log while rebuilding the state: no checks, as Kafka loads with
    /// AppendOrigin.REPLICATION, so whatever the log holds becomes the state.
    /// </summary>
    public AbortedTxn? Replay(in ProducerBatch batch, long baseOffset)
    {
        AbortedTxn? aborted = null;
        if (batch.HasProducerId)
        {
            aborted = Update(batch, baseOffset);
        }

        long end = baseOffset + batch.LastOffsetDelta + 1;
        if (end > _mapEndOffset)
        {
            _mapEndOffset = end;
        }

        return aborted;
    }

    private AbortedTxn? Update(in ProducerBatch batch, long baseOffset)
    {
        // Any batch or marker of the producer ends what its guard was for: a started transaction now answers
        // HasOngoingTransaction; after a marker or an epoch bump the coordinator must be asked again.
        _verifications.Remove(batch.ProducerId);

        if (batch.IsControl && !batch.IsMarker)
        {
            // A control batch without a COMMIT/ABORT record (Kafka: emptied by compaction) changes no producer.
            _mapEndOffset = Math.Max(_mapEndOffset, baseOffset + batch.LastOffsetDelta + 1);
            return null;
        }

        if (_producers.TryGetValue(batch.ProducerId, out ProducerStateEntry? entry))
        {
            MarkMostRecent(entry);
        }
        else
        {
            entry = new ProducerStateEntry(batch.ProducerId);
            EvictBeyond(_maxProducers - 1);
            _producers.Add(batch.ProducerId, entry);
            LinkMostRecent(entry);
        }

        long lastOffset = baseOffset + batch.LastOffsetDelta;
        if (lastOffset + 1 > _mapEndOffset)
        {
            _mapEndOffset = lastOffset + 1;
        }

        if (batch.IsControl)
        {
            return EndTransaction(entry, batch, baseOffset);
        }

        entry.AddBatch(batch.ProducerEpoch, batch.LastSequence, lastOffset, batch.LastOffsetDelta, batch.MaxTimestamp);
        if (batch.IsTransactional && entry.CurrentTxnFirstOffset < 0)
        {
            entry.CurrentTxnFirstOffset = baseOffset;
            _ongoingTxns[baseOffset] = entry.ProducerId;
            _txnsChanged = true;
        }

        return null;
    }

    /// <summary>
    /// ProducerAppendInfo.appendEndTxnMarker and ProducerStateManager.completeTxn: the producer's open transaction (if
    /// any) ends at <paramref name="markerOffset"/> and waits for the high watermark to pass the marker before the last
    /// stable offset moves past it; an ABORT returns its index entry, whose last stable offset is Kafka's
    /// lastStableOffset(completedTxn): the next open transaction of another producer, else the marker's offset + 1.
    /// </summary>
    private AbortedTxn? EndTransaction(ProducerStateEntry entry, in ProducerBatch marker, long markerOffset)
    {
        AbortedTxn? aborted = null;
        long first = entry.CurrentTxnFirstOffset;
        if (first >= 0)
        {
            _ongoingTxns.Remove(first);
            if (marker.MarkerType == EndTransactionMarker.Abort)
            {
                long lastStable = markerOffset + 1;
                foreach (KeyValuePair<long, long> t in _ongoingTxns)
                {
                    if (t.Value != entry.ProducerId)
                    {
                        lastStable = t.Key;
                        break;
                    }
                }

                aborted = new AbortedTxn(entry.ProducerId, first, markerOffset, lastStable);
            }

            _unreplicatedTxns[first] = markerOffset;
            _txnsChanged = true;
        }

        entry.EndTransaction(marker.ProducerEpoch, marker.CoordinatorEpoch, marker.MaxTimestamp);
        return aborted;
    }

    /// <summary>
    /// Kafka's firstUnstableOffset: the smallest first offset of a transaction that is open, or decided with its marker
    /// not yet below the high watermark; <see cref="long.MaxValue"/> when there is none.
    /// </summary>
    public long FirstUnstableOffset
    {
        get
        {
            long first = long.MaxValue;
            foreach (KeyValuePair<long, long> t in _ongoingTxns)
            {
                first = t.Key;
                break;
            }

            foreach (KeyValuePair<long, long> t in _unreplicatedTxns)
            {
                return Math.Min(first, t.Key);
            }

            return first;
        }
    }

    /// <summary>
    /// True once after a transaction opened or was decided (then <see cref="FirstUnstableOffset"/> may have changed):
    /// the append path recomputes it only then, not for every batch of an open transaction.
    /// </summary>
    public bool TakeTxnsChanged()
    {
        bool changed = _txnsChanged;
        _txnsChanged = false;
        return changed;
    }

    /// <summary>True while a decided transaction waits for the high watermark to pass its marker (checked on publish).</summary>
    public bool HasUnreplicatedTxns => _unreplicatedTxns.Count > 0;

    /// <summary>Open transactions on this partition.</summary>
    public int OngoingTxnCount => _ongoingTxns.Count;

    /// <summary>
    /// Kafka's onHighWatermarkUpdated: decided transactions whose marker is below <paramref name="highWatermark"/> no
    /// longer hold the last stable offset back. Returns true when one was released.
    /// </summary>
    public bool OnHighWatermarkUpdated(long highWatermark)
    {
        if (_unreplicatedTxns.Count == 0)
        {
            return false;
        }

        List<long>? done = null;
        foreach (KeyValuePair<long, long> t in _unreplicatedTxns)
        {
            if (t.Value < highWatermark)
            {
                (done ??= new List<long>()).Add(t.Key);
            }
        }

        if (done is null)
        {
            return false;
        }

        foreach (long first in done)
        {
            _unreplicatedTxns.Remove(first);
        }

        return true;
    }

    /// <summary>
    /// Kafka's updateMapEndOffset: the log end the state reflects (call before <see cref="TakeSnapshot"/>). It ends a
    /// rebuild, so the evictions of the reload and replay are reported here, in one warning.
    /// </summary>
    public void UpdateMapEndOffset(long offset)
    {
        _mapEndOffset = offset;
        if (_evictedUnreported != 0)
        {
            ReportEvictions();
        }
    }

    /// <summary>Places a loaded or test entry as is (Kafka's loadProducerEntry), with its open transaction, as the most
    /// recently used.</summary>
    public void LoadProducerEntry(ProducerStateEntry entry)
    {
        if (_producers.Remove(entry.ProducerId, out ProducerStateEntry? old))
        {
            Unlink(old);
            if (old.CurrentTxnFirstOffset >= 0)
            {
                _ongoingTxns.Remove(old.CurrentTxnFirstOffset);
            }
        }
        else
        {
            EvictBeyond(_maxProducers - 1);
        }

        _producers.Add(entry.ProducerId, entry);
        LinkMostRecent(entry);
        if (entry.CurrentTxnFirstOffset >= 0)
        {
            _ongoingTxns[entry.CurrentTxnFirstOffset] = entry.ProducerId;
        }
    }

    /// <summary>
    /// Evicts least recently used producers until at most <paramref name="keep"/> remain. One with a transaction open
    /// here is never evicted (its markers and the last stable offset depend on it): it moves to the most recent end,
    /// so the walk sees it again only after the others before it, and with nothing else left the map stays above.
    /// </summary>
    private void EvictBeyond(int keep)
    {
        int skipped = 0;
        while (_producers.Count > keep && skipped < _producers.Count)
        {
            ProducerStateEntry victim = _leastRecent!;
            if (victim.CurrentTxnFirstOffset >= 0)
            {
                MarkMostRecent(victim);
                skipped++;
                continue;
            }

            Unlink(victim);
            _producers.Remove(victim.ProducerId);
            _evictedUnreported++;
        }
    }

    private void LinkMostRecent(ProducerStateEntry entry)
    {
        entry.LessRecent = _mostRecent;
        entry.MoreRecent = null;
        if (_mostRecent is null)
        {
            _leastRecent = entry;
        }
        else
        {
            _mostRecent.MoreRecent = entry;
        }

        _mostRecent = entry;
    }

    private void Unlink(ProducerStateEntry entry)
    {
        if (entry.LessRecent is null)
        {
            _leastRecent = entry.MoreRecent;
        }
        else
        {
            entry.LessRecent.MoreRecent = entry.MoreRecent;
        }

        if (entry.MoreRecent is null)
        {
            _mostRecent = entry.LessRecent;
        }
        else
        {
            entry.MoreRecent.LessRecent = entry.LessRecent;
        }

        entry.LessRecent = null;
        entry.MoreRecent = null;
    }

    private void MarkMostRecent(ProducerStateEntry entry)
    {
        if (!ReferenceEquals(entry, _mostRecent))
        {
            Unlink(entry);
            LinkMostRecent(entry);
        }
    }

    private void ClearProducers()
    {
        _verifications.Clear();
        _producers.Clear();
        _ongoingTxns.Clear();
        _unreplicatedTxns.Clear();
        _leastRecent = null;
        _mostRecent = null;
    }

    /// <summary>The WARN about evictions not yet reported, unless one was written less than a minute ago.</summary>
    private void ReportEvictions()
    {
        long nowMs = _time.GetUtcNow().ToUnixTimeMilliseconds();
        long sinceMs = nowMs - _lastEvictionWarningMs;
        if (_evictionWarned && sinceMs >= 0 && sinceMs < EvictionWarningIntervalMs)
        {
            return;
        }

        int evicted = _evictedUnreported;
        _evictedUnreported = 0;
        _evictionWarned = true;
        _lastEvictionWarningMs = nowMs;

        // Apply runs after the append's reservation, where nothing may throw: a log that cannot be written loses the line.
        try
        {
            _warn($"partition {_partition}: evicted {evicted} producer id{(evicted == 1 ? "" : "s")} (the least recently used) to keep at most {_maxProducers} on this partition "
                + "(KIOU_MAX_PRODUCERS_PER_PARTITION); an evicted producer is unknown here, so a retry of its earlier batch is no longer recognised as a duplicate. "
                + "If that many producers really write to this partition, raise KIOU_MAX_PRODUCERS_PER_PARTITION; otherwise look for a client that creates a producer id per batch "
                + "(InitProducerId in a loop). This warning repeats at most once a minute");
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException)
        {
        }
    }

    /// <summary>
    /// Forgets producers idle for <paramref name="producerIdExpirationMs"/> or longer (Kafka's removeExpiredProducers),
    /// never one with a transaction in progress. Returns how many were removed.
    /// </summary>
    public int RemoveExpired(long nowMs, long producerIdExpirationMs)
    {
        int removed = 0;
        foreach (KeyValuePair<long, ProducerStateEntry> p in _producers)
        {
            if (IsExpired(p.Value, nowMs, producerIdExpirationMs))
            {
                _producers.Remove(p.Key);
                Unlink(p.Value);
                removed++;
            }
        }

        foreach (KeyValuePair<long, VerificationGuard> v in _verifications)
        {
            if (nowMs - v.Value.CreatedMs >= producerIdExpirationMs)
            {
                _verifications.Remove(v.Key);
            }
        }

        // The periodic check also reports evictions held back by the once-a-minute limit.
        if (_evictedUnreported != 0)
        {
            ReportEvictions();
        }

        return removed;
    }

    private static bool IsExpired(ProducerStateEntry entry, long nowMs, long expirationMs) =>
        entry.CurrentTxnFirstOffset < 0 && nowMs - entry.LastTimestamp >= expirationMs;

    /// <summary>
    /// Writes a snapshot at <see cref="MapEndOffset"/> unless one is there already (Kafka's takeSnapshot), fsyncs it
    /// and the directory, then deletes the oldest snapshots beyond the retained count. Returns the file written, or
    /// null. Throws <see cref="IOException"/> when the write fails; the state in memory is unchanged either way.
    /// </summary>
    public string? TakeSnapshot()
    {
        PendingSnapshot? pending = PrepareSnapshot();
        if (pending is null)
        {
            return null;
        }

        pending.Write();
        CompleteSnapshot(pending);
        return pending.Path;
    }

    /// <summary>
    /// The first step of <see cref="TakeSnapshot"/>, on the writer: the state's bytes at <see cref="MapEndOffset"/>,
    /// or null when a snapshot there exists. <see cref="PendingSnapshot.Write"/> may then run on another thread (it
    /// fsyncs), and <see cref="CompleteSnapshot"/> back on the writer once it succeeded.
    /// </summary>
    public PendingSnapshot? PrepareSnapshot()
    {
        if (_mapEndOffset <= _lastSnapOffset)
        {
            return null;
        }

        long offset = _mapEndOffset;
        return new PendingSnapshot(offset, Path.Combine(_directory, ProducerSnapshot.FileName(offset)), _directory, ProducerSnapshot.Serialize(_producers.Values), _producers.Count);
    }

    /// <summary>Records a written (durable) snapshot and deletes the oldest beyond the retained count.</summary>
    public void CompleteSnapshot(PendingSnapshot written)
    {
        if (!written.Written)
        {
            throw new InvalidOperationException($"snapshot {written.Path} was not written");
        }

        _snapshots.Add(written.Offset);
        if (written.Offset > _lastSnapOffset)
        {
            _lastSnapOffset = written.Offset;
        }

        // Quiet for partitions without idempotent producers: opening and closing many partitions logs nothing.
        if (written.ProducerCount > 0)
        {
            _log($"partition {_partition}: wrote producer snapshot {written.Path} at offset {written.Offset} with {written.ProducerCount} producer ids ({written.Bytes.Length} bytes)");
        }

        while (_snapshots.Count > _snapshotsRetained)
        {
            long oldest = _snapshots.Min;
            _snapshots.Remove(oldest);
            DeleteSnapshotFile(oldest);
        }
    }

    /// <summary>
    /// Kafka's truncateAndReload: drops snapshots outside (logStart, logEnd]; when the state does not already end at
    /// <paramref name="logEndOffset"/>, reloads it from the latest usable snapshot (dropping producers expired at
    /// <paramref name="nowMs"/>), or empties it at the log start when there is none. The caller then replays the log
    /// from <see cref="MapEndOffset"/> to <paramref name="logEndOffset"/>.
    /// </summary>
    public void TruncateAndReload(long logStartOffset, long logEndOffset, long nowMs)
    {
        foreach (long offset in _snapshots.ToArray())
        {
            if (offset > logEndOffset)
            {
                _snapshots.Remove(offset);
                SetAside(offset, $"it describes the log up to offset {offset} but the log now ends at offset {logEndOffset}");
            }
            else if (offset <= logStartOffset)
            {
                _snapshots.Remove(offset);
                DeleteSnapshotFile(offset);
            }
        }

        if (logEndOffset != _mapEndOffset)
        {
            ClearProducers();
            LoadFromSnapshot(logStartOffset, nowMs);
        }
        else
        {
            OnLogStartOffsetIncremented(logStartOffset);
        }
    }

    private void LoadFromSnapshot(long logStartOffset, long nowMs)
    {
        while (_snapshots.Count > 0)
        {
            long offset = _snapshots.Max;
            string path = Path.Combine(_directory, ProducerSnapshot.FileName(offset));
            List<ProducerStateEntry>? entries;
            string problem;
            try
            {
                entries = ProducerSnapshot.Read(path, offset, out problem);
            }
            catch (IOException ex)
            {
                entries = null;
                problem = $"it could not be read ({ex.Message})";
            }

            if (entries is null)
            {
                _snapshots.Remove(offset);
                SetAside(offset, problem + "; the producer state is rebuilt from an older snapshot or the log instead");
                continue;
            }

            // Linked in the order the producers last appended, so a lower bound than the snapshot's keeps the most recent.
            entries.Sort(static (a, b) => a.LastDataOffset != b.LastDataOffset ? a.LastDataOffset.CompareTo(b.LastDataOffset) : a.LastTimestamp.CompareTo(b.LastTimestamp));
            int expired = 0;
            foreach (ProducerStateEntry e in entries)
            {
                if (IsExpired(e, nowMs, _producerIdExpirationMs))
                {
                    expired++;
                }
                else
                {
                    LoadProducerEntry(e);
                }
            }

            EvictBeyond(_maxProducers);

            _lastSnapOffset = offset;
            _mapEndOffset = offset;
            if (entries.Count > 0)
            {
                _log($"partition {_partition}: loaded producer state from {path}: {_producers.Count} producer ids ({expired} expired)");
            }

            return;
        }

        _lastSnapOffset = logStartOffset;
        _mapEndOffset = logStartOffset;
    }

    /// <summary>Kafka's onLogStartOffsetIncremented: the state now starts no lower than the log.</summary>
    public void OnLogStartOffsetIncremented(long logStartOffset)
    {
        OnHighWatermarkUpdated(logStartOffset);
        if (_mapEndOffset < logStartOffset)
        {
            _mapEndOffset = logStartOffset;
        }

        _lastSnapOffset = LatestSnapshotOffset ?? logStartOffset;
    }

    /// <summary>
    /// Kafka's truncateFullyAndStartAt: forgets every producer and deletes every snapshot, the log being emptied and
    /// restarted at <paramref name="offset"/> (DeleteRecords past the end, a recreated partition).
    /// </summary>
    public void TruncateFullyAndStartAt(long offset)
    {
        ClearProducers();
        foreach (long s in _snapshots)
        {
            DeleteSnapshotFile(s);
        }

        _snapshots.Clear();
        _lastSnapOffset = 0;
        _mapEndOffset = offset;
    }

    /// <summary>Kafka's deleteSnapshotsBefore: deletes snapshots below <paramref name="offset"/> (segments removed by retention).</summary>
    public void DeleteSnapshotsBefore(long offset)
    {
        foreach (long s in _snapshots.GetViewBetween(long.MinValue, offset - 1).ToArray())
        {
            _snapshots.Remove(s);
            DeleteSnapshotFile(s);
        }
    }

    private void LoadSnapshotList()
    {
        _snapshots.Clear();
        if (!Directory.Exists(_directory))
        {
            return;
        }

        foreach (string path in Directory.EnumerateFiles(_directory, "*" + ProducerSnapshot.Suffix))
        {
            if (ProducerSnapshot.TryParseFileName(Path.GetFileName(path), out long offset))
            {
                _snapshots.Add(offset);
            }
        }
    }

    private void DeleteSnapshotFile(long offset)
    {
        try
        {
            File.Delete(Path.Combine(_directory, ProducerSnapshot.FileName(offset)));
        }
        catch (IOException ex)
        {
            _warn($"partition {_partition}: could not delete the old producer snapshot {ProducerSnapshot.FileName(offset)} in {_directory} ({ex.Message}); it is ignored, delete it by hand");
        }
    }

    /// <summary>Moves a snapshot into the quarantine directory with a warning: it is never read again, but kept.</summary>
    private void SetAside(long offset, string why)
    {
        string name = ProducerSnapshot.FileName(offset);
        string path = Path.Combine(_directory, name);
        string quarantine = Path.Combine(_directory, Recovery.QuarantineDirectory);
        long bytes = -1;
        try
        {
            bytes = new FileInfo(path).Length;
            Directory.CreateDirectory(quarantine);
            string aside = Path.Combine(quarantine, name);
            for (int n = 1; File.Exists(aside); n++)
            {
                aside = Path.Combine(quarantine, string.Create(CultureInfo.InvariantCulture, $"{name}-{n}"));
            }

            File.Move(path, aside);
            SyncDirectory(quarantine);
            SyncDirectory(_directory);
            _warn($"partition {_partition}: set aside the producer snapshot {path} ({bytes} bytes, offsets below {offset}) as {aside} because {why}. "
                + "Idempotent producers keep working; a retry of a batch sent before the restart may be refused as out of order instead of being recognised");
        }
        catch (IOException ex)
        {
            _warn($"partition {_partition}: the producer snapshot {path} ({bytes} bytes) is not used because {why}, and it could not be moved to {quarantine} ({ex.Message}); "
                + "it is left in place and ignored until restart. Move it away by hand");
        }
    }

    internal static void SyncDirectory(string directory)
    {
        int rc = FileSync.SyncDirectory(directory);
        if (rc < 0)
        {
            throw new IOException($"fsync of directory {directory} failed: {ErrnoNames.Describe(rc)}", -rc);
        }
    }

    /// <summary>Checks the state's invariants (tests and the simulator).</summary>
    internal void CheckInvariants()
    {
        int linked = 0;
        ProducerStateEntry? previous = null;
        for (ProducerStateEntry? e = _leastRecent; e is not null; e = e.MoreRecent)
        {
            if (!ReferenceEquals(e.LessRecent, previous) || !_producers.TryGetValue(e.ProducerId, out ProducerStateEntry? stored) || !ReferenceEquals(stored, e))
            {
                throw new InvalidOperationException($"{e}: the use order does not match the producer map");
            }

            previous = e;
            if (++linked > _producers.Count)
            {
                throw new InvalidOperationException("the use order holds more entries than the producer map");
            }
        }

        if (linked != _producers.Count || !ReferenceEquals(previous, _mostRecent))
        {
            throw new InvalidOperationException($"the use order holds {linked} of {_producers.Count} producers");
        }

        foreach (KeyValuePair<long, ProducerStateEntry> p in _producers)
        {
            ProducerStateEntry e = p.Value;
            if (e.ProducerId != p.Key)
            {
                throw new InvalidOperationException($"producer {p.Key} is stored under {e.ProducerId}");
            }

            for (int i = 1; i < e.BatchCount; i++)
            {
                if (e.Batch(i).FirstOffset <= e.Batch(i - 1).LastOffset)
                {
                    throw new InvalidOperationException($"{e}: batch {i} does not follow batch {i - 1}");
                }
            }

            if (e.LastDataOffset >= _mapEndOffset)
            {
                throw new InvalidOperationException($"{e}: last offset at or beyond the state's end {_mapEndOffset}");
            }

            if (e.CurrentTxnFirstOffset >= 0 && (!_ongoingTxns.TryGetValue(e.CurrentTxnFirstOffset, out long owner) || owner != e.ProducerId))
            {
                throw new InvalidOperationException($"{e}: its open transaction is not among the open transactions");
            }
        }

        foreach (KeyValuePair<long, long> t in _ongoingTxns)
        {
            if (!_producers.TryGetValue(t.Value, out ProducerStateEntry? e) || e.CurrentTxnFirstOffset != t.Key)
            {
                throw new InvalidOperationException($"open transaction at offset {t.Key} of producer {t.Value} is not that producer's");
            }
        }
    }
}

/// <summary>A snapshot's bytes taken on the partition's writer, to be written (possibly elsewhere) and then completed.</summary>
public sealed class PendingSnapshot
{
    internal PendingSnapshot(long offset, string path, string directory, byte[] bytes, int producerCount)
    {
        Offset = offset;
        Path = path;
        Directory = directory;
        Bytes = bytes;
        ProducerCount = producerCount;
    }

    public long Offset { get; }

    public string Path { get; }

    public byte[] Bytes { get; }

    public int ProducerCount { get; }

    public bool Written { get; private set; }

    private string Directory { get; }

    /// <summary>Writes the file atomically and fsyncs it and its directory; throws <see cref="IOException"/> on failure.</summary>
    public void Write()
    {
        SmallFiles.WriteAtomically(Path, Bytes);
        ProducerStateManager.SyncDirectory(Directory);
        Written = true;
    }
}
