using System.Collections.Concurrent;
using System.Collections.Immutable;
using Kiou.Broker.Hosting;

namespace Kiou.Broker.Transactions;

/// <summary>Transaction coordinator settings (KIOU_TRANSACTION_*).</summary>
public sealed record TransactionSettings
{
    /// <summary>KIOU_TRANSACTION_MAX_TIMEOUT_MS (Kafka's transaction.max.timeout.ms): longer transaction.timeout.ms
    /// values get INVALID_TRANSACTION_TIMEOUT.</summary>
    public int MaxTimeoutMs { get; init; } = 900_000;

    /// <summary>KIOU_TRANSACTION_ABORT_TIMED_OUT_CLEANUP_INTERVAL_MS (Kafka's
    /// transaction.abort.timed.out.transaction.cleanup.interval.ms): how often timed-out transactions are looked for.</summary>
    public int AbortTimedOutIntervalMs { get; init; } = 10_000;

    /// <summary>KIOU_TRANSACTION_STATE_LOG_NUM_PARTITIONS (Kafka's transaction.state.log.num.partitions): partitions of
    /// __transaction_state when it is created; an existing topic keeps its count.</summary>
    public int StateLogPartitions { get; init; } = TransactionLog.DefaultPartitions;

    /// <summary>KIOU_TRANSACTION_PARTITION_VERIFICATION_ENABLE (Kafka's transaction.partition.verification.enable,
    /// KIP-890): a transactional batch that would start a transaction on a partition is appended only once the
    /// coordinator confirms the partition is in the producer's open transaction.</summary>
    public bool PartitionVerificationEnable { get; init; } = true;

    /// <summary>Test seam: awaited before a prepared transaction's markers are written (holds it in Prepare*).</summary>
    internal Func<CancellationToken, Task>? BeforeMarkers { get; init; }
}

/// <summary>Where the coordinator keeps its records and writes its markers (the broker wires the partition logs;
/// unit tests use memory).</summary>
public interface ITransactionStore
{
    /// <summary>Appends one record batch of <see cref="TransactionLog.StateBatch"/> for this transactional id to its
    /// partition of __transaction_state; completes once durable, throws if it is not.</summary>
    Task AppendStateAsync(string transactionalId, byte[] batch);

    /// <summary>Appends a marker batch to a partition once durable: NONE, UNKNOWN_TOPIC_OR_PARTITION when the
    /// partition no longer exists (nothing to mark), or another code (retried).</summary>
    Task<short> WriteMarkerAsync(TopicPartition partition, byte[] batch);

    bool PartitionExists(TopicPartition partition);

    /// <summary>A producer id never handed out before; throws IOException when none can be reserved.</summary>
    long AllocateProducerId();
}

/// <summary>
/// The transaction coordinator, as Kafka's TransactionCoordinator and TransactionStateManager for one node: one
/// <see cref="TransactionMetadata"/> per transactional id, each transition computed under its lock, written to
/// __transaction_state and applied (and answered) only once durable; at most one transition in flight per id
/// (others get CONCURRENT_TRANSACTIONS). EndTxn is decided once Prepare* is durable; markers and Complete* follow in
/// the background, retried until they succeed, and EndTxn's answer waits a bounded time for them. docs/design/transaction-coordinator.md describes it.
/// </summary>
public sealed class TransactionCoordinator : IAsyncDisposable
{
    public const string OffsetsTopic = "__consumer_offsets";

    readonly ConcurrentDictionary<string, TransactionMetadata> _txns = new(StringComparer.Ordinal);
    readonly TransactionSettings _settings;
    readonly ITransactionStore _store;
    readonly TimeProvider _time;
    readonly Log _log;
    readonly CancellationTokenSource _stop = new();
    readonly TaskCompletionSource _loaded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly ConcurrentDictionary<Task, byte> _completions = new();
    ITimer? _timer;

    public TransactionCoordinator(TransactionSettings settings, ITransactionStore store, TimeProvider time, Log log)
    {
        _settings = settings;
        _store = store;
        _time = time;
        _log = log;
    }

    public TransactionSettings Settings => _settings;

    long NowMs => _time.GetUtcNow().ToUnixTimeMilliseconds();

    public bool IsLoaded => _loaded.Task.IsCompletedSuccessfully;

    /// <summary>Installs the replayed state (latest record per id; tombstones already removed), resumes what was in
    /// PrepareCommit/PrepareAbort (markers, then Complete*), and starts the timeout sweep.</summary>
    public void Load(IEnumerable<KeyValuePair<string, TxnSnapshot>> states, bool driveTimers = true)
    {
        int resumed = 0;
        foreach (var (id, state) in states)
        {
            var md = new TransactionMetadata(id, state);
            _txns[id] = md;
            if (state.State is TxnState.PrepareCommit or TxnState.PrepareAbort)
            {
                resumed++;
                StartCompletion(md, state);
            }
        }
        if (_txns.Count > 0)
            _log.Info($"transaction coordinator loaded {_txns.Count} transactional id(s) from {TransactionLog.TopicName}; {resumed} prepared transaction(s) resumed");
        _loaded.TrySetResult();
        if (driveTimers && !_stop.IsCancellationRequested)
        {
            var period = TimeSpan.FromMilliseconds(_settings.AbortTimedOutIntervalMs);
            _timer = _time.CreateTimer(_ => AbortTimedOutTransactions(), null, period, period);
        }
    }

    /// <summary>The load failed: every transaction request gets COORDINATOR_NOT_AVAILABLE.</summary>
    public void LoadFailed(Exception e) => _loaded.TrySetException(e);

    /// <summary>NONE when loaded; else the error a transaction request gets.</summary>
    public short ReadyError => _loaded.Task.Status switch
    {
        TaskStatus.RanToCompletion => ErrorCodes.None,
        TaskStatus.Faulted or TaskStatus.Canceled => ErrorCodes.CoordinatorNotAvailable,
        _ => ErrorCodes.CoordinatorLoadInProgress,
    };

    public TransactionMetadata? Find(string transactionalId) => _txns.GetValueOrDefault(transactionalId);

    public IEnumerable<TransactionMetadata> All => _txns.Values;

    public bool ValidTimeout(int timeoutMs) => timeoutMs > 0 && timeoutMs <= _settings.MaxTimeoutMs;

    // ---- InitProducerId ---------------------------------------------------------------------------------------

    public readonly record struct InitResult(short Error, long ProducerId, short ProducerEpoch);

    /// <summary>Kafka's handleInitProducerId for a transactional id (the caller checked it is not empty).</summary>
    public async Task<InitResult> InitProducerIdAsync(string transactionalId, int timeoutMs, long expectedProducerId, short expectedEpoch)
    {
        if (System.Text.Encoding.UTF8.GetByteCount(transactionalId) > short.MaxValue)
            return new InitResult(ErrorCodes.InvalidRequest, -1, -1); // its log key has an int16 length
        if (!ValidTimeout(timeoutMs))
            return new InitResult(ErrorCodes.InvalidTransactionTimeout, -1, -1);
        if (ReadyError is var notReady and not ErrorCodes.None)
            return new InitResult(notReady, -1, -1);
        bool expected = expectedProducerId != TxnSnapshot.NoProducerId;
        TransactionMetadata? md = _txns.GetValueOrDefault(transactionalId);
        if (md is null)
        {
            long pid;
            try
            {
                pid = _store.AllocateProducerId();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                _log.Error($"InitProducerId for transactional id '{transactionalId}' could not reserve a producer id: {e.Message}; fix the disk, clients retry");
                return new InitResult(ErrorCodes.CoordinatorLoadInProgress, -1, -1);
            }
            long now = NowMs;
            md = _txns.GetOrAdd(transactionalId, id => new TransactionMetadata(id, new TxnSnapshot(pid, TxnSnapshot.NoProducerId,
                TxnSnapshot.NoProducerEpoch, TxnSnapshot.NoProducerEpoch, timeoutMs, TxnState.Empty, [], -1, now)));
        }
        TxnSnapshot next;
        bool fence = false;
        lock (md)
        {
            var cur = md.Current;
            if (md.Pending is not null)
                return new InitResult(ErrorCodes.ConcurrentTransactions, -1, -1);
            // Kafka's isValidProducerId (KIP-360): a given id must be the current one, or the previous one retrying
            // after its exhausted epoch rotated the id.
            if (expected && !(cur.ProducerEpoch == TxnSnapshot.NoProducerEpoch || expectedProducerId == cur.ProducerId ||
                (expectedProducerId == cur.PreviousProducerId && TxnSnapshot.IsEpochExhausted(expectedEpoch))))
                return new InitResult(ErrorCodes.InvalidProducerEpoch, -1, -1);
            long now = NowMs;
            switch (cur.State)
            {
                case TxnState.PrepareCommit or TxnState.PrepareAbort:
                    return new InitResult(ErrorCodes.ConcurrentTransactions, -1, -1);
                case TxnState.Empty or TxnState.CompleteCommit or TxnState.CompleteAbort:
                    if (TxnSnapshot.IsEpochExhausted(cur.ProducerEpoch) && (!expected || expectedEpoch == cur.ProducerEpoch))
                    {
                        long pid;
                        try
                        {
                            pid = _store.AllocateProducerId();
                        }
                        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                        {
                            _log.Error($"InitProducerId for transactional id '{transactionalId}' could not reserve a producer id: {e.Message}; fix the disk, clients retry");
                            return new InitResult(ErrorCodes.CoordinatorLoadInProgress, -1, -1);
                        }
                        next = cur with
                        {
                            ProducerId = pid,
                            PreviousProducerId = cur.ProducerId,
                            ProducerEpoch = 0,
                            LastProducerEpoch = expected ? cur.ProducerEpoch : TxnSnapshot.NoProducerEpoch,
                            TimeoutMs = timeoutMs,
                            State = TxnState.Empty,
                            Partitions = [],
                            StartTimestampMs = -1,
                            LastUpdateTimestampMs = now,
                        };
                    }
                    else
                    {
                        // Kafka's prepareIncrementProducerEpoch.
                        short bumped = (short)(cur.ProducerEpoch + 1);
                        short nextEpoch, lastEpoch;
                        if (!expected)
                            (nextEpoch, lastEpoch) = (bumped, TxnSnapshot.NoProducerEpoch);
                        else if (cur.ProducerEpoch == TxnSnapshot.NoProducerEpoch || expectedEpoch == cur.ProducerEpoch)
                            (nextEpoch, lastEpoch) = (bumped, cur.ProducerEpoch);
                        else if (expectedEpoch == cur.LastProducerEpoch)
                            (nextEpoch, lastEpoch) = (cur.ProducerEpoch, cur.LastProducerEpoch); // a retry of a bump that succeeded
                        else
                            return new InitResult(ErrorCodes.ProducerFenced, -1, -1);
                        next = cur with
                        {
                            ProducerEpoch = nextEpoch,
                            LastProducerEpoch = lastEpoch,
                            TimeoutMs = timeoutMs,
                            State = TxnState.Empty,
                            Partitions = [],
                            StartTimestampMs = -1,
                            LastUpdateTimestampMs = now,
                        };
                    }
                    break;
                case TxnState.Ongoing:
                    // Kafka's prepareFenceProducerEpoch: abort the open transaction under a bumped epoch (fencing its
                    // producer at every partition through the markers), answer CONCURRENT_TRANSACTIONS; the retry
                    // bumps again once the abort completed.
                    next = FenceAbort(cur, now);
                    fence = true;
                    break;
                default:
                    return new InitResult(ErrorCodes.ConcurrentTransactions, -1, -1);
            }
            md.Pending = next;
        }
        short error = await WriteAsync(md, next).ConfigureAwait(false);
        if (error != ErrorCodes.None)
            return new InitResult(error, -1, -1);
        if (fence)
        {
            _log.Info($"transactional id '{transactionalId}': a new producer fenced epoch {next.ProducerEpoch - 1} of producer id {next.ProducerId}; its open transaction is being aborted");
            _ = StartCompletion(md, next);
            return new InitResult(ErrorCodes.ConcurrentTransactions, -1, -1);
        }
        return new InitResult(ErrorCodes.None, next.ProducerId, next.ProducerEpoch);
    }

    static TxnSnapshot FenceAbort(TxnSnapshot cur, long now) => cur with
    {
        ProducerEpoch = cur.ProducerEpoch < short.MaxValue ? (short)(cur.ProducerEpoch + 1) : cur.ProducerEpoch,
        LastProducerEpoch = TxnSnapshot.NoProducerEpoch,
        State = TxnState.PrepareAbort,
        LastUpdateTimestampMs = now,
    };

    // ---- AddPartitionsToTxn / AddOffsetsToTxn -----------------------------------------------------------------

    /// <summary>Kafka's handleAddPartitionsToTransaction: one error for all the partitions.</summary>
    public async Task<short> AddPartitionsAsync(string transactionalId, long producerId, short producerEpoch, IReadOnlyCollection<TopicPartition> partitions)
    {
        if (ReadyError is var notReady and not ErrorCodes.None)
            return notReady;
        var md = _txns.GetValueOrDefault(transactionalId);
        if (md is null)
            return ErrorCodes.InvalidProducerIdMapping;
        TxnSnapshot next;
        lock (md)
        {
            var cur = md.Current;
            if (cur.ProducerId != producerId)
                return ErrorCodes.InvalidProducerIdMapping;
            if (cur.ProducerEpoch != producerEpoch)
                return ErrorCodes.ProducerFenced;
            if (md.Pending is not null || cur.State is TxnState.PrepareCommit or TxnState.PrepareAbort)
                return ErrorCodes.ConcurrentTransactions;
            if (cur.State == TxnState.Ongoing && partitions.All(cur.Partitions.Contains))
                return ErrorCodes.None;
            long now = NowMs;
            next = cur with
            {
                State = TxnState.Ongoing,
                Partitions = cur.Partitions.Union(partitions),
                StartTimestampMs = cur.State == TxnState.Ongoing ? cur.StartTimestampMs : now,
                LastUpdateTimestampMs = now,
            };
            md.Pending = next;
        }
        return await WriteAsync(md, next).ConfigureAwait(false);
    }

    /// <summary>KIP-890's verification (AddPartitionsToTxn v4 VerifyOnly): per partition NONE when it is in the open
    /// transaction, INVALID_TXN_STATE when not; or one error for all.</summary>
    public (short Error, Func<TopicPartition, short>? PerPartition) Verify(string transactionalId, long producerId, short producerEpoch)
    {
        if (ReadyError is var notReady and not ErrorCodes.None)
            return (notReady, null);
        var md = _txns.GetValueOrDefault(transactionalId);
        if (md is null)
            return (ErrorCodes.InvalidProducerIdMapping, null);
        lock (md)
        {
            var cur = md.Current;
            if (cur.ProducerId != producerId)
                return (ErrorCodes.InvalidProducerIdMapping, null);
            if (cur.ProducerEpoch != producerEpoch)
                return (ErrorCodes.ProducerFenced, null);
            if (md.Pending is not null && md.Pending.State != TxnState.Ongoing)
                return (ErrorCodes.ConcurrentTransactions, null);
            var inTxn = cur.State == TxnState.Ongoing ? cur.Partitions : [];
            return (ErrorCodes.None, p => inTxn.Contains(p) ? ErrorCodes.None : ErrorCodes.InvalidTxnState);
        }
    }

    /// <summary>
    /// KIP-890's produce-side check for one partition (Kafka's handleVerifyPartitionsInTransaction, asked in process
    /// since this is one node): NONE when the partition is in the producer's open transaction; INVALID_TXN_STATE when
    /// it is not (or no transaction is open); CONCURRENT_TRANSACTIONS while the transaction is being ended.
    /// </summary>
    public short VerifyPartition(string transactionalId, long producerId, short producerEpoch, TopicPartition partition)
    {
        if (ReadyError is var notReady and not ErrorCodes.None)
            return notReady;
        var md = _txns.GetValueOrDefault(transactionalId);
        if (md is null)
            return ErrorCodes.InvalidProducerIdMapping;
        lock (md)
        {
            var cur = md.Current;
            if (cur.ProducerId != producerId)
                return ErrorCodes.InvalidProducerIdMapping;
            if (cur.ProducerEpoch != producerEpoch)
                return ErrorCodes.ProducerFenced;
            if (cur.State is TxnState.PrepareCommit or TxnState.PrepareAbort || (md.Pending is not null && md.Pending.State != TxnState.Ongoing))
                return ErrorCodes.ConcurrentTransactions;
            return cur.State == TxnState.Ongoing && cur.Partitions.Contains(partition) ? ErrorCodes.None : ErrorCodes.InvalidTxnState;
        }
    }

    // ---- EndTxn -----------------------------------------------------------------------------------------------

    /// <summary>Kafka's handleEndTransaction from a client: decided once Prepare* is durable, answered once the
    /// transaction is complete or <see cref="EndTxnCompletionWait"/> has passed.</summary>
    public async Task<short> EndTxnAsync(string transactionalId, long producerId, short producerEpoch, bool commit)
    {
        if (ReadyError is var notReady and not ErrorCodes.None)
            return notReady;
        var md = _txns.GetValueOrDefault(transactionalId);
        if (md is null)
            return ErrorCodes.InvalidProducerIdMapping;
        TxnSnapshot next;
        lock (md)
        {
            var cur = md.Current;
            if (cur.ProducerId != producerId)
                return ErrorCodes.InvalidProducerIdMapping;
            if (producerEpoch != cur.ProducerEpoch)
                return ErrorCodes.ProducerFenced;
            if (md.Pending is not null)
                return ErrorCodes.ConcurrentTransactions;
            switch (cur.State)
            {
                case TxnState.Ongoing:
                    next = cur with { State = commit ? TxnState.PrepareCommit : TxnState.PrepareAbort, LastUpdateTimestampMs = NowMs };
                    break;
                case TxnState.CompleteCommit:
                    return commit ? ErrorCodes.None : InvalidTransition(transactionalId, cur.State, commit);
                case TxnState.CompleteAbort:
                    return !commit ? ErrorCodes.None : InvalidTransition(transactionalId, cur.State, commit);
                case TxnState.PrepareCommit:
                    return commit ? ErrorCodes.ConcurrentTransactions : InvalidTransition(transactionalId, cur.State, commit);
                case TxnState.PrepareAbort:
                    return !commit ? ErrorCodes.ConcurrentTransactions : InvalidTransition(transactionalId, cur.State, commit);
                default:
                    return InvalidTransition(transactionalId, cur.State, commit);
            }
            md.Pending = next;
        }
        short error = await WriteAsync(md, next).ConfigureAwait(false);
        if (error == ErrorCodes.None)
        {
            // Decided once Prepare* is durable (Kafka answers here). On one node the markers and Complete* take a few
            // milliseconds more: waiting for them spares the client's next AddPartitionsToTxn a CONCURRENT_TRANSACTIONS
            // and its retry backoff (librdkafka's is 100 ms) on every transaction. Bounded, for a slow disk.
            Task completion = StartCompletion(md, next);
            await Task.WhenAny(completion, Task.Delay(EndTxnCompletionWait, _stop.Token)).ConfigureAwait(false); // wall-clock bound, also under a test clock
        }
        return error;
    }

    /// <summary>How long EndTxn waits for its markers and Complete* before answering anyway (the outcome is decided).</summary>
    public static readonly TimeSpan EndTxnCompletionWait = TimeSpan.FromSeconds(2);

    short InvalidTransition(string transactionalId, TxnState state, bool commit)
    {
        _log.Debug($"transactional id '{transactionalId}': EndTxn({(commit ? "commit" : "abort")}) in state {TxnSnapshot.StateName(state)} refused with INVALID_TXN_STATE");
        return ErrorCodes.InvalidTxnState;
    }

    // ---- Timeouts ---------------------------------------------------------------------------------------------

    /// <summary>Kafka's abortTimedOutTransactions: an Ongoing transaction older than its timeout is aborted under a
    /// bumped epoch, so its producer is fenced. Returns how many were started.</summary>
    public int AbortTimedOutTransactions()
    {
        if (!IsLoaded || _stop.IsCancellationRequested)
            return 0;
        long now = NowMs;
        int started = 0;
        foreach (var md in _txns.Values)
        {
            TxnSnapshot next;
            lock (md)
            {
                var cur = md.Current;
                if (md.Pending is not null || cur.State != TxnState.Ongoing || cur.StartTimestampMs + cur.TimeoutMs >= now)
                    continue;
                next = FenceAbort(cur, now);
                md.Pending = next;
            }
            started++;
            _log.Info($"transactional id '{md.Id}': transaction of producer id {next.ProducerId} open longer than its timeout ({next.TimeoutMs} ms): aborting it and fencing epoch {next.ProducerEpoch - 1}");
            Track(AbortTimedOutAsync(md, next));
        }
        return started;
    }

    async Task AbortTimedOutAsync(TransactionMetadata md, TxnSnapshot next)
    {
        if (await WriteAsync(md, next).ConfigureAwait(false) == ErrorCodes.None)
            _ = StartCompletion(md, next);
    }

    // ---- Writes and markers -----------------------------------------------------------------------------------

    /// <summary>Writes <paramref name="next"/> (already <see cref="TransactionMetadata.Pending"/>) and applies it once
    /// durable. A failed write leaves the state as it was: COORDINATOR_NOT_AVAILABLE, clients retry.</summary>
    async Task<short> WriteAsync(TransactionMetadata md, TxnSnapshot next)
    {
        try
        {
            await _store.AppendStateAsync(md.Id, TransactionLog.StateBatch(md.Id, next, NowMs)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            lock (md)
                md.Pending = null;
            _log.Warn($"transactional id '{md.Id}': writing state {TxnSnapshot.StateName(next.State)} to {TransactionLog.TopicName} failed ({e.Message}); the transaction stays {TxnSnapshot.StateName(md.Current.State)} and the client retries");
            return ErrorCodes.CoordinatorNotAvailable;
        }
        lock (md)
        {
            md.Current = next;
            md.Pending = null;
        }
        return ErrorCodes.None;
    }

    Task StartCompletion(TransactionMetadata md, TxnSnapshot prepared) => Track(CompleteAsync(md, prepared));

    Task Track(Task task)
    {
        _completions[task] = 0;
        _ = task.ContinueWith(t => _completions.TryRemove(t, out _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return task;
    }

    /// <summary>Kafka's TransactionMarkerChannelManager for one node: a marker to every partition of the transaction
    /// (each retried until written or its partition is gone), then Complete* (retried until durable).</summary>
    async Task CompleteAsync(TransactionMetadata md, TxnSnapshot prepared)
    {
        await Task.Yield();
        if (_settings.BeforeMarkers is { } hold)
        {
            try
            {
                await hold(_stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
        bool commit = prepared.State == TxnState.PrepareCommit;
        var markers = new List<Task>(prepared.Partitions.Count);
        foreach (var tp in prepared.Partitions)
            markers.Add(WriteMarkerAsync(md.Id, tp, prepared, commit));
        await Task.WhenAll(markers).ConfigureAwait(false);
        var delay = TimeSpan.FromMilliseconds(50);
        while (!_stop.IsCancellationRequested)
        {
            TxnSnapshot complete;
            lock (md)
            {
                if (!ReferenceEquals(md.Current, prepared))
                    return; // completed by another path already
                if (md.Pending is not null)
                {
                    complete = null!;
                }
                else
                {
                    complete = prepared with
                    {
                        State = commit ? TxnState.CompleteCommit : TxnState.CompleteAbort,
                        Partitions = [],
                        LastUpdateTimestampMs = NowMs,
                    };
                    md.Pending = complete;
                }
            }
            if (complete is not null && await WriteAsync(md, complete).ConfigureAwait(false) == ErrorCodes.None)
                return;
            try
            {
                await Task.Delay(delay, _time, _stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 5000));
        }
    }

    async Task WriteMarkerAsync(string transactionalId, TopicPartition tp, TxnSnapshot prepared, bool commit)
    {
        var delay = TimeSpan.FromMilliseconds(50);
        bool warned = false;
        while (!_stop.IsCancellationRequested)
        {
            short error;
            try
            {
                var batch = TransactionLog.MarkerBatch(prepared.ProducerId, prepared.ProducerEpoch, commit, CoordinatorEpoch, NowMs);
                error = await _store.WriteMarkerAsync(tp, batch).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                error = ErrorCodes.KafkaStorageError;
                if (!warned)
                    _log.Warn($"transactional id '{transactionalId}': writing the {(commit ? "COMMIT" : "ABORT")} marker of producer id {prepared.ProducerId} to {tp} failed ({e.Message}); retrying until it succeeds");
                warned = true;
            }
            if (error is ErrorCodes.None)
                return;
            if (error is ErrorCodes.UnknownTopicOrPartition)
            {
                _log.Info($"transactional id '{transactionalId}': {tp} no longer exists; its {(commit ? "COMMIT" : "ABORT")} marker is skipped");
                return;
            }
            try
            {
                await Task.Delay(delay, _time, _stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 5000));
        }
    }

    /// <summary>A single node is the coordinator's only leader, at epoch 0.</summary>
    public const int CoordinatorEpoch = 0;

    /// <summary>Test seam: completes once no marker or completion is in flight.</summary>
    internal async Task WhenIdleAsync()
    {
        while (!_completions.IsEmpty)
            await Task.WhenAll(_completions.Keys.ToArray()).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        if (_timer is not null)
            await _timer.DisposeAsync().ConfigureAwait(false);
        _stop.Cancel();
        _loaded.TrySetCanceled();
        try
        {
            await Task.WhenAll(_completions.Keys.ToArray()).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException)
        {
            // What did not finish is still Prepare* in the log: the next start resumes it.
        }
    }
}

/// <summary>One transactional id: its durable state and the transition being written, under <c>lock (this)</c>.</summary>
public sealed class TransactionMetadata(string id, TxnSnapshot current)
{
    public string Id { get; } = id;

    public TxnSnapshot Current { get; internal set; } = current;

    /// <summary>The state being written; requests that would change the state meanwhile get CONCURRENT_TRANSACTIONS.</summary>
    public TxnSnapshot? Pending { get; internal set; }
}
