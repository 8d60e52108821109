namespace Kiou.Broker.Network;

/// <summary>
/// Request bytes read but not yet answered, against a limit: one per connection
/// (KIOU_MAX_INFLIGHT_BYTES_PER_CONNECTION) and one per listener (KIOU_QUEUED_MAX_REQUEST_BYTES, Kafka's
/// queued.max.request.bytes). A read loop that finds a budget full stops reading until answers free it, so clients
/// pipelining large produce requests wait in TCP rather than in the broker's memory. One request is always taken,
/// whatever its size, so a request larger than the limit still gets through.
/// </summary>
public sealed class InFlightBudget(long limit)
{
    readonly object _gate = new();
    long _bytes;
    TaskCompletionSource? _room;

    public long Limit { get; } = limit;

    public long Bytes => Volatile.Read(ref _bytes);

    /// <summary>Counts <paramref name="bytes"/> in; true when the budget is now full.</summary>
    public bool Add(long bytes) => Interlocked.Add(ref _bytes, bytes) >= Limit;

    public void Release(long bytes)
    {
        if (Interlocked.Add(ref _bytes, -bytes) < Limit && Volatile.Read(ref _room) is not null)
        {
            lock (_gate)
            {
                _room?.TrySetResult();
                _room = null;
            }
        }
    }

    /// <summary>Completes once the budget is below its limit.</summary>
    public async ValueTask WaitForRoomAsync(CancellationToken ct)
    {
        while (true)
        {
            Task wait;
            lock (_gate)
            {
                if (Volatile.Read(ref _bytes) < Limit)
                    return;
                _room ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                wait = _room.Task;
            }
            await wait.WaitAsync(ct).ConfigureAwait(false);
        }
    }
}
