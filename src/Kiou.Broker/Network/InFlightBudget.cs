namespace Kiou.Broker.Network;

/// <summary>
/// Request bytes read but not yet answered, against a limit: one per connection
/// (KIOU_MAX_INFLIGHT_BYTES_PER_CONNECTION) and one per listener (KIOU_QUEUED_MAX_REQUEST_BYTES, Kafka's
/// queued.max.request.bytes). A read loop that finds a budget full stops reading until answers free it, so clients
/// pipelining large produce requests wait in TCP rather than in the broker's memory. One request is always taken,
/// whatever its size, so a request larger than the limit still gets through.
/// </summary>
/// <remarks>Every change of the count and every check for waiters happen under one lock, so a release can never
/// slip between a waiter's look at the count and its registration.</remarks>
public sealed class InFlightBudget(long limit)
{
    readonly object _gate = new();
    long _bytes;
    TaskCompletionSource? _room;

    public long Limit { get; } = limit;

    public long Bytes
    {
        get
        {
            lock (_gate)
                return _bytes;
        }
    }

    /// <summary>Counts <paramref name="bytes"/> in; true when the budget is now full.</summary>
    public bool Add(long bytes)
    {
        lock (_gate)
        {
            _bytes += bytes;
            return _bytes >= Limit;
        }
    }

    public void Release(long bytes)
    {
        TaskCompletionSource? room;
        lock (_gate)
        {
            _bytes -= bytes;
            if (_bytes >= Limit || _room is null)
                return;
            room = _room;
            _room = null;
        }
        room.TrySetResult(); // continuations run asynchronously, never under the lock
    }

    /// <summary>Completes once the budget is below its limit.</summary>
    public async ValueTask WaitForRoomAsync(CancellationToken ct)
    {
        while (true)
        {
            Task wait;
            lock (_gate)
            {
                if (_bytes < Limit)
                    return;
                _room ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                wait = _room.Task;
            }
            await wait.WaitAsync(ct).ConfigureAwait(false);
        }
    }
}
