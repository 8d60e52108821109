using System.Diagnostics;

namespace Kiou.Broker.Groups;

/// <summary>
/// The one timer mechanism of every group: a priority queue of (due time, group), driven by a single
/// <see cref="ITimer"/> from the broker's <see cref="TimeProvider"/> and re-armed for the earliest deadline.
/// A group has at most one live entry (<see cref="Group.QueuedDueMs"/>); a later deadline never enqueues, an
/// earlier one enqueues and leaves the old entry stale (skipped when popped). So a heartbeat that pushes a
/// session deadline out costs nothing here, and an idle group with no deadline costs nothing at all.
/// Thread-safe; lock order is group lock, then this queue's lock. Timer callbacks take the group's lock.
/// </summary>
public sealed class GroupTimers : IDisposable
{
    readonly PriorityQueue<Group, long> _queue = new();
    readonly Lock _gate = new();
    readonly TimeProvider _time;
    readonly Action<Group, long> _fire;
    readonly ITimer? _timer;
    long _armedMs = long.MaxValue;
    bool _disposed;

    /// <param name="fire">Runs for a due group (without any lock held; it takes the group lock itself).</param>
    /// <param name="drive">False in unit tests: nothing fires until the test calls <see cref="RunDue"/>.</param>
    public GroupTimers(TimeProvider time, Action<Group, long> fire, bool drive = true)
    {
        _time = time;
        _fire = fire;
        if (drive)
            _timer = time.CreateTimer(static s => ((GroupTimers)s!).OnTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    long NowMs => _time.GetUtcNow().ToUnixTimeMilliseconds();

    public int QueuedCount
    {
        get
        {
            lock (_gate)
                return _queue.Count;
        }
    }

    /// <summary>Makes sure <paramref name="group"/> fires no later than <paramref name="dueMs"/>. Caller holds the group lock.</summary>
    public void Schedule(Group group, long dueMs)
    {
        Debug.Assert(Monitor.IsEntered(group), "schedule under the group lock");
        if (dueMs == long.MaxValue)
            return;
        bool rearm;
        lock (_gate)
        {
            if (_disposed || dueMs >= group.QueuedDueMs)
                return;
            group.QueuedDueMs = dueMs;
            _queue.Enqueue(group, dueMs);
            rearm = dueMs < _armedMs;
            if (rearm)
                _armedMs = dueMs;
        }
        if (rearm)
            Arm(dueMs);
    }

    void Arm(long dueMs)
    {
        long delay = Math.Max(0, dueMs - NowMs);
        try
        {
            _timer?.Change(TimeSpan.FromMilliseconds(delay), Timeout.InfiniteTimeSpan);
        }
        catch (ObjectDisposedException)
        {
        }
    }

    void OnTimer()
    {
        long next = RunDue(NowMs);
        if (next != long.MaxValue)
            Arm(next);
    }

    /// <summary>Fires every group due at <paramref name="nowMs"/>; returns the next due time (or MaxValue).</summary>
    public long RunDue(long nowMs)
    {
        var due = new List<Group>();
        lock (_gate)
        {
            while (_queue.TryPeek(out var g, out long at) && at <= nowMs)
            {
                _queue.Dequeue();
                if (g.QueuedDueMs != at)
                    continue; // stale: an earlier entry for this group was enqueued later
                g.QueuedDueMs = long.MaxValue;
                due.Add(g);
            }
        }
        foreach (var g in due)
            _fire(g, nowMs);
        lock (_gate)
        {
            // Drop stale heads so the armed time is a real deadline.
            while (_queue.TryPeek(out var g, out long at) && g.QueuedDueMs != at)
                _queue.Dequeue();
            _armedMs = _queue.TryPeek(out _, out long nextAt) ? nextAt : long.MaxValue;
            return _armedMs;
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            _queue.Clear();
        }
        _timer?.Dispose();
    }
}
