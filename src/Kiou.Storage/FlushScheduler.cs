using System.Diagnostics;
using Kiou.IoUring.Interop;
using Kiou.Storage.Devices;
using Microsoft.Win32.SafeHandles;

namespace Kiou.Storage;

/// <summary>
/// Durability of one partition: rounds of fdatasync over the segments holding completed-but-not-durable bytes,
/// the appends and flush callers waiting for <see cref="LogTails.Durable"/> (answered together when a round ends:
/// group commit), and what follows durability: sealed segments' index files and the recovery point.
/// </summary>
/// <remarks>
/// At most one round in flight; a round covers the completed tail captured when it was issued. Rounds are wanted by
/// durable appends, <see cref="FlushAsync"/>, rolls (the sealed segment), Flush=Always and flush.messages
/// (<see cref="RequestLocked"/>). Started under the partition lock (<see cref="StartFlushLocked"/>), issued outside
/// it (<see cref="IssueFlushes"/>); the device calls back on its thread and the callback takes the lock. A failed
/// fdatasync takes the partition offline until restart (see <see cref="AppendPipeline.MarkFlushFailedLocked"/>). Index files and
/// the recovery point are written on the thread pool, never in a device callback.
/// </remarks>
internal sealed class FlushScheduler : ILogDeviceCallback
{
    private readonly PartitionLog _owner;
    private readonly object _recoveryPointGate = new();
    private readonly Queue<PendingAppend> _durableAppends = new();
    private readonly Queue<(long Target, TaskCompletionSource Task)> _durableTasks = new();
    private readonly List<(Segment Segment, long Target)> _flushTargets = new();
    private readonly List<Task> _indexWrites = new();
    private bool _flushInFlight;
    private int _flushOutstanding;
    private int _flushErrno;
    private long _flushRound;
    private long _flushRoundCompleted;
    private long _backgroundFlushTarget = -1;
    private TaskCompletionSource? _flushIdle;
    private long _recoveryPointWritten;

    public FlushScheduler(PartitionLog owner, long recoveryPointWritten)
    {
        _owner = owner;
        _recoveryPointWritten = recoveryPointWritten;
    }

    /// <summary>A round of fdatasyncs is in flight.</summary>
    public bool InFlight => _flushInFlight;

    /// <summary>A background round is wanted once the completed tail reaches <paramref name="target"/>.</summary>
    public void RequestLocked(long target) => _backgroundFlushTarget = Math.Max(_backgroundFlushTarget, target);

    /// <summary>A published append that answers only once durable.</summary>
    public void WaitDurableLocked(PendingAppend op) => _durableAppends.Enqueue(op);

    /// <summary>The completed tail advanced: Flush=Always and flush.messages ask for a round.</summary>
    public void OnCompletedLocked(FlushPolicy flush)
    {
        long completed = _owner.Tails.Completed;
        if (flush.Mode == FlushMode.Always
            || (flush.MessagesEnabled && completed - Math.Max(_owner.Tails.Durable, _flushRoundCompleted) >= flush.Messages))
        {
            RequestLocked(completed);
        }
    }

    /// <summary>
    /// At close: a task to wait for while a round or index writes are under way, else null; then no new round starts
    /// (<see cref="PartitionLog.Closed"/>) and <see cref="FailWaitersLocked"/> answers whoever still waits.
    /// </summary>
    public Task? WhenIdleLocked()
    {
        _indexWrites.RemoveAll(static t => t.IsCompleted);
        if (_flushInFlight)
        {
            _flushIdle ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _flushIdle.Task;
        }

        return _indexWrites.Count > 0 ? Task.WhenAll(_indexWrites) : null;
    }

    /// <summary>No flush will come for the waiters any more (close): they fail with <paramref name="error"/>.</summary>
    public void FailWaitersLocked(Exception error)
    {
        while (_durableAppends.Count > 0)
        {
            _durableAppends.Dequeue().Fail(error);
        }

        while (_durableTasks.Count > 0)
        {
            _durableTasks.Dequeue().Task.TrySetException(error);
        }
    }

    void ILogDeviceCallback.OnWriteDone(long token, int result) =>
        throw new UnreachableException("the flush scheduler issues no writes");

    /// <summary>
    /// Starts a flush round if one is wanted and none is in flight: captures the completed tail and returns the
    /// files holding completed-but-not-durable bytes. The caller issues them outside the lock.
    /// </summary>
    public SafeFileHandle[]? StartFlushLocked(out long round)
    {
        round = 0;
        if (_flushInFlight || _owner.Closed || _owner.Tails.Completed <= _owner.Tails.Durable)
        {
            return null;
        }

        bool wanted = _durableAppends.Count > 0
            || _durableTasks.Count > 0
            || (_backgroundFlushTarget > _owner.Tails.Durable && _backgroundFlushTarget <= _owner.Tails.Completed);
        if (!wanted)
        {
            return null;
        }

        Debug.Assert(_flushTargets.Count == 0, "flush targets left over");
        foreach (Segment s in _owner.Segments)
        {
            if (s.FlushedEnd < s.CompletedEnd)
            {
                _flushTargets.Add((s, s.CompletedEnd));
            }
        }

        if (_flushTargets.Count == 0)
        {
            Debug.Fail("completed beyond durable with every segment flushed");
            AdvanceDurableLocked();
            return null;
        }

        _flushInFlight = true;
        _flushRound++;
        _flushOutstanding = _flushTargets.Count;
        _flushErrno = 0;
        _flushRoundCompleted = _owner.Tails.Completed;
        round = _flushRound;
        var files = new SafeFileHandle[_flushTargets.Count];
        for (int i = 0; i < files.Length; i++)
        {
            files[i] = _flushTargets[i].Segment.Handle;
        }

        return files;
    }

    public void IssueFlushes(SafeFileHandle[]? files, long round)
    {
        if (files is null)
        {
            return;
        }

        foreach (SafeFileHandle file in files)
        {
            try
            {
                _owner.Device.Flush(file, this, round);
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException)
            {
                OnFlushDone(round, ex is ObjectDisposedException ? -ErrnoNames.EBADF : -ErrnoNames.FromException(ex));
            }
        }
    }

    public void OnFlushDone(long token, int result)
    {
        string? message = null;
        SafeFileHandle[]? flushes;
        long round;
        lock (_owner.Lock)
        {
            if (!_flushInFlight || token != _flushRound)
            {
                throw new InvalidOperationException($"partition {_owner.Name}: unexpected flush completion for round {token}");
            }

            if (result < 0 && _flushErrno == 0)
            {
                _flushErrno = result;
            }

            if (--_flushOutstanding > 0)
            {
                return;
            }

            _flushInFlight = false;
            if (_flushErrno == 0)
            {
                foreach (var (segment, target) in _flushTargets)
                {
                    segment.FlushedEnd = Math.Max(segment.FlushedEnd, target);
                }

                _flushTargets.Clear();
                StartIndexWritesLocked();
                AdvanceDurableLocked();
            }
            else
            {
                int errno = _flushErrno;
                _flushTargets.Clear();
                _owner.Appends.MarkFlushFailedLocked(errno, ref message);
                var failure = new StorageException($"partition {_owner.Name}: fdatasync failed with {ErrnoNames.Describe(errno)}; the data is stored but not known to be durable; the partition is offline until the broker restarts ({ErrnoNames.Advice(errno)})", Math.Abs(errno));
                while (_durableAppends.Count > 0)
                {
                    _durableAppends.Dequeue().Fail(failure);
                }

                while (_durableTasks.Count > 0)
                {
                    _durableTasks.Dequeue().Task.TrySetException(failure);
                }

                _backgroundFlushTarget = -1;
            }

            flushes = StartFlushLocked(out round);
            if (flushes is null && _flushIdle is not null)
            {
                _flushIdle.TrySetResult();
                _flushIdle = null;
            }
        }

        if (message is not null)
        {
            _owner.Info(message);
        }

        IssueFlushes(flushes, round);
    }

    /// <summary>Recomputes the durable tail from the segments' flushed ends, answers waiters below it.</summary>
    private void AdvanceDurableLocked()
    {
        long durable = _owner.Tails.Completed;
        foreach (Segment s in _owner.Segments)
        {
            if (s.FlushedEnd < s.CompletedEnd)
            {
                durable = s.FlushedEnd;
                break;
            }
        }

        _owner.Tails.MakeDurable(durable);
        while (_durableAppends.Count > 0 && _durableAppends.Peek().EndOffset <= durable)
        {
            _durableAppends.Dequeue().Complete();
        }

        while (_durableTasks.Count > 0 && _durableTasks.Peek().Target <= durable)
        {
            _durableTasks.Dequeue().Task.TrySetResult();
        }

        if (_backgroundFlushTarget <= durable)
        {
            _backgroundFlushTarget = -1;
        }
    }

    /// <summary>
    /// Starts the index file writes of sealed segments that just became fully durable, on the thread pool (file
    /// I/O never runs in a device callback). Registered under the lock, so whoever sees the durable tail also
    /// sees the write in the list <see cref="WhenIdleLocked"/> waits for.
    /// </summary>
    private void StartIndexWritesLocked()
    {
        foreach (Segment s in _owner.Segments)
        {
            if (s.FullyFlushed && !s.IndexFilesCurrent && !s.IndexWriteInProgress)
            {
                s.IndexWriteInProgress = true;
                _indexWrites.RemoveAll(static t => t.IsCompleted);
                _indexWrites.Add(Task.Run(() => WriteIndexFiles(s)));
            }
        }
    }

    private void WriteIndexFiles(Segment segment)
    {
        string? failure = null;
        try
        {
            segment.WriteIndexFiles();
            FileSync.SyncDirectory(_owner.Segments.Directory);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            failure = ex.Message;
        }

        bool delete;
        lock (_owner.Lock)
        {
            segment.IndexWriteInProgress = false;
            segment.IndexFilesCurrent = failure is null;
            delete = segment.DeletePending;
            if (!delete && segment.FullyFlushed && segment.Tail is null)
            {
                // Sealed and durable: nothing writes or flushes it again, its descriptor goes to the bounded cache.
                segment.ReleaseHandle();
            }
        }

        if (delete)
        {
            _owner.Segments.DeleteSegmentFiles(segment);
            FileSync.SyncDirectory(_owner.Segments.Directory);
        }
        else if (failure is not null)
        {
            _owner.Info($"partition {_owner.Name}: could not write the index files of {segment.Name} ({failure}); they will be rebuilt from the log at the next start");
        }
        else
        {
            TryWriteRecoveryPoint(_owner.Tails.Durable);
        }
    }

    /// <summary>Persists the recovery point (never backwards); a failure only means more is re-checked at the next start.</summary>
    public void TryWriteRecoveryPoint(long offset)
    {
        lock (_recoveryPointGate)
        {
            if (offset <= _recoveryPointWritten)
            {
                return;
            }

            try
            {
                Recovery.WriteRecoveryPoint(_owner.Segments.Directory, offset);
                _recoveryPointWritten = offset;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                _owner.Info($"partition {_owner.Name}: could not write the recovery point ({ex.Message}); the next start re-checks more of the log");
            }
        }
    }

    /// <summary>See <see cref="PartitionLog.FlushAsync"/>.</summary>
    public Task FlushAsync()
    {
        TaskCompletionSource tcs;
        SafeFileHandle[]? flushes;
        long round;
        lock (_owner.Lock)
        {
            if (_owner.Closed || _owner.Tails.Durable >= _owner.Tails.Completed)
            {
                return Task.CompletedTask;
            }

            tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _durableTasks.Enqueue((_owner.Tails.Completed, tcs));
            flushes = StartFlushLocked(out round);
        }

        IssueFlushes(flushes, round);
        return tcs.Task;
    }

    /// <summary>Completes when the background index writes started so far (and deletions deferred to them) are done. For tests.</summary>
    public Task WhenBackgroundIdleAsync()
    {
        lock (_owner.Lock)
        {
            _indexWrites.RemoveAll(static t => t.IsCompleted);
            return Task.WhenAll(_indexWrites.ToArray());
        }
    }
}
