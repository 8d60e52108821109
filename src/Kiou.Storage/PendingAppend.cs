using System.Threading.Tasks.Sources;

namespace Kiou.Storage;

/// <summary>
/// One append between its reservation and its answer: the completion source behind the ValueTask that
/// <see cref="PartitionLog.AppendAsync"/> returns, plus what publishing needs. Pooled per partition.
/// </summary>
/// <remarks>
/// Lifecycle: rented and filled under the partition lock at reservation; <see cref="State"/> set by the write
/// callback; completed (result or exception) by publish or by the flush that makes it durable, after the last
/// access by the log; returned to the pool by <see cref="GetResult"/>, i.e. after the caller has awaited it
/// once (the ValueTask rule). Continuations run asynchronously, so completing under the lock is safe.
/// </remarks>
internal sealed class PendingAppend : IValueTaskSource<AppendResult>
{
    private readonly Pool _pool;
    private ManualResetValueTaskSourceCore<AppendResult> _core;

    private PendingAppend(Pool pool)
    {
        _pool = pool;
        _core = new ManualResetValueTaskSourceCore<AppendResult> { RunContinuationsAsynchronously = true };
    }

    public enum WriteState : byte
    {
        InFlight,
        Written,
        Failed,
    }

    public long Sequence { get; private set; }

    public long BaseOffset { get; private set; }

    /// <summary>Offset after the batch: BaseOffset + lastOffsetDelta + 1.</summary>
    public long EndOffset { get; private set; }

    public Segment Segment { get; private set; } = null!;

    public int Position { get; private set; }

    public int Size { get; private set; }

    public long MaxTimestamp { get; private set; }

    public bool WaitDurable { get; private set; }

    public long LogAppendTimeMs { get; private set; }

    public long LogStartOffset { get; private set; }

    public WriteState State { get; set; }

    /// <summary>Its appender is still copying it into the write-behind (outside the lock): it may not leave the queue.</summary>
    public bool Copying { get; set; }

    /// <summary>Negative errno of a failed write.</summary>
    public int Errno { get; set; }

    public short Version => _core.Version;

    public void Init(long sequence, long baseOffset, long endOffset, Segment segment, int position, int size, long maxTimestamp, bool waitDurable, long logAppendTimeMs, long logStartOffset)
    {
        Sequence = sequence;
        BaseOffset = baseOffset;
        EndOffset = endOffset;
        Segment = segment;
        Position = position;
        Size = size;
        MaxTimestamp = maxTimestamp;
        WaitDurable = waitDurable;
        LogAppendTimeMs = logAppendTimeMs;
        LogStartOffset = logStartOffset;
        State = WriteState.InFlight;
        Copying = false;
        Errno = 0;
    }

    /// <summary>Answers the appender. Must be the log's last access to this object.</summary>
    public void Complete()
    {
        var result = new AppendResult(BaseOffset, LogAppendTimeMs, LogStartOffset);
        Segment = null!;
        _core.SetResult(result);
    }

    /// <summary>Fails the appender. Must be the log's last access to this object.</summary>
    public void Fail(Exception exception)
    {
        Segment = null!;
        _core.SetException(exception);
    }

    public AppendResult GetResult(short token)
    {
        try
        {
            return _core.GetResult(token);
        }
        finally
        {
            _core.Reset();
            _pool.Return(this);
        }
    }

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);

    /// <summary>A small bounded free list; beyond its capacity objects are left to the GC.</summary>
    internal sealed class Pool
    {
        private const int Capacity = 1024;
        private readonly PendingAppend?[] _items = new PendingAppend?[Capacity];
        private int _count;

        public PendingAppend Rent()
        {
            lock (_items)
            {
                if (_count > 0)
                {
                    PendingAppend item = _items[--_count]!;
                    _items[_count] = null;
                    return item;
                }
            }

            return new PendingAppend(this);
        }

        /// <summary>True if <paramref name="item"/> sits in the free list (invariant checks).</summary>
        public bool Holds(PendingAppend item)
        {
            lock (_items)
            {
                return Array.IndexOf(_items, item, 0, _count) >= 0;
            }
        }

        public void Return(PendingAppend item)
        {
            lock (_items)
            {
                if (_count < Capacity)
                {
                    _items[_count++] = item;
                }
            }
        }
    }
}
