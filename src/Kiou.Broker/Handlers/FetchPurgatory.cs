using Kiou.Storage;

namespace Kiou.Broker.Handlers;

/// <summary>
/// Parked long-poll fetches. A parked fetch is released by an append past the high watermark it saw on any of its
/// partitions, by its deadline, or by its connection closing, whichever comes first. Deadlines share one timer set
/// to the earliest; each partition with parked fetches holds one continuation on the partition's shared append
/// signal, which releases all of them. A fetch registers with the watermarks its own reads saw and checks them as
/// it registers, so an append published after those reads releases it at once instead of being missed.
/// </summary>
sealed class FetchPurgatory
{
    readonly TimeProvider _time;
    readonly object _lock = new();
    readonly Dictionary<PartitionLog, List<Parked>> _byPartition = new(ReferenceEqualityComparer.Instance);
    readonly PriorityQueue<Parked, long> _deadlines = new();
    readonly ITimer _timer;
    long _timerDue = long.MaxValue;

    public FetchPurgatory(TimeProvider time)
    {
        _time = time;
        _timer = time.CreateTimer(static s => ((FetchPurgatory)s!).Expire(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    long NowMs => _time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>Parks until an append passes one of <paramref name="seen"/>, <paramref name="deadlineMs"/> passes, or
    /// <paramref name="ct"/> is cancelled. Dispose the result once its task completed.</summary>
    public Parked Park(List<(PartitionLog Log, long HighWatermark)> seen, long deadlineMs, CancellationToken ct)
    {
        var parked = new Parked(this, seen.Count);
        lock (_lock)
        {
            foreach (var (log, hw) in seen)
            {
                // The check needs no care about order: a publish after it fires the signal it returned, and the
                // continuation that releases this partition's list cannot run before this lock is let go.
                Task appended = log.WaitForAppendAsync(hw, CancellationToken.None);
                if (appended.IsCompleted)
                {
                    CompleteLocked(parked);
                    return parked;
                }
                parked.Logs.Add(log);
                if (!_byPartition.TryGetValue(log, out var list))
                {
                    list = [];
                    _byPartition[log] = list;
                    appended.ContinueWith(static (_, s) => { var (p, l) = ((FetchPurgatory, PartitionLog))s!; p.Appended(l); },
                        (this, log), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
                }
                list.Add(parked);
            }
            _deadlines.Enqueue(parked, deadlineMs);
            if (deadlineMs < _timerDue)
            {
                _timerDue = deadlineMs;
                _timer.Change(TimeSpan.FromMilliseconds(Math.Max(0, deadlineMs - NowMs)), Timeout.InfiniteTimeSpan);
            }
        }
        if (ct.CanBeCanceled)
            parked.Registration = ct.UnsafeRegister(static s => ((Parked)s!).Release(), parked);
        return parked;
    }

    void Appended(PartitionLog log)
    {
        lock (_lock)
        {
            if (!_byPartition.Remove(log, out var list))
                return;
            foreach (var parked in list)
                CompleteLocked(parked); // touches the lists still registered, not this one
        }
    }

    void Expire()
    {
        lock (_lock)
        {
            long now = NowMs;
            while (_deadlines.TryPeek(out var parked, out long due) && (due <= now || parked.IsDone))
            {
                _deadlines.Dequeue();
                CompleteLocked(parked);
            }
            _timerDue = _deadlines.TryPeek(out _, out long next) ? next : long.MaxValue;
            if (_timerDue != long.MaxValue)
                _timer.Change(TimeSpan.FromMilliseconds(Math.Max(1, _timerDue - now)), Timeout.InfiniteTimeSpan);
        }
    }

    void CompleteLocked(Parked parked)
    {
        if (parked.IsDone)
            return;
        parked.IsDone = true;
        foreach (var log in parked.Logs)
        {
            // An emptied list stays registered until the partition's next append: one entry per partition at most.
            if (_byPartition.TryGetValue(log, out var list))
                list.Remove(parked);
        }
        parked.Signal.TrySetResult();
    }

    public sealed class Parked : IDisposable
    {
        readonly FetchPurgatory _owner;
        internal readonly List<PartitionLog> Logs;
        internal readonly TaskCompletionSource Signal = new(TaskCreationOptions.RunContinuationsAsynchronously);
        internal bool IsDone;
        internal CancellationTokenRegistration Registration;

        internal Parked(FetchPurgatory owner, int partitions)
        {
            _owner = owner;
            Logs = new List<PartitionLog>(partitions);
        }

        public Task Task => Signal.Task;

        internal void Release()
        {
            lock (_owner._lock)
                _owner.CompleteLocked(this);
        }

        public void Dispose()
        {
            Registration.Dispose();
            Release();
        }
    }
}
