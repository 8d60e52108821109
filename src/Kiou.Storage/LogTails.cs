using System.Diagnostics.CodeAnalysis;

namespace Kiou.Storage;

/// <summary>
/// The four offsets of a partition's log and the one invariant between them (docs/design/storage.md):
/// <c>LogStart ≤ Durable ≤ Completed ≤ Reserved</c>. Reserved: the offset the next append gets; bytes below may still
/// be in flight. Completed (the high watermark): every write below has called back and been published in order.
/// Durable: covered by a finished fdatasync. LogStart: the first offset still kept.
/// </summary>
/// <remarks>
/// Written only through the methods below, under the partition lock; each checks the invariant in Release builds too
/// and throws, naming the partition and the values, if a move would break it (a bug: fail fast rather than serve or
/// acknowledge the wrong bytes). Read without the lock through the volatile getters.
/// </remarks>
internal struct LogTails
{
    private readonly string _partition;
    private long _logStart;
    private long _durable;
    private long _completed;
    private long _reserved;

    /// <summary>A log recovered with everything in it durable: <paramref name="end"/> is all four tails but the start.</summary>
    public LogTails(string partition, long logStart, long end)
    {
        _partition = partition;
        _logStart = logStart;
        _durable = end;
        _completed = end;
        _reserved = end;
        Check(logStart, end, end, end, "open");
    }

    public long LogStart => Volatile.Read(ref _logStart);

    public long Durable => Volatile.Read(ref _durable);

    public long Completed => Volatile.Read(ref _completed);

    public long Reserved => Volatile.Read(ref _reserved);

    /// <summary>An append takes [Reserved, <paramref name="end"/>).</summary>
    public void Reserve(long end)
    {
        if (end <= _reserved)
        {
            Fail(nameof(Reserve), end);
        }

        Volatile.Write(ref _reserved, end);
    }

    /// <summary>The appends below <paramref name="end"/> are written and published in order.</summary>
    public void Complete(long end)
    {
        if (end <= _completed || end > _reserved)
        {
            Fail(nameof(Complete), end);
        }

        Volatile.Write(ref _completed, end);
    }

    /// <summary>A flush covers everything below <paramref name="durable"/> (never backwards, never past Completed).</summary>
    public void MakeDurable(long durable)
    {
        if (durable < _durable || durable > _completed)
        {
            Fail(nameof(MakeDurable), durable);
        }

        Volatile.Write(ref _durable, durable);
    }

    /// <summary>After an I/O error, with nothing in flight: offsets from <paramref name="reserved"/> on are given back.</summary>
    public void Truncate(long reserved)
    {
        if (reserved < _completed || reserved > _reserved)
        {
            Fail(nameof(Truncate), reserved);
        }

        Volatile.Write(ref _reserved, reserved);
    }

    /// <summary>Retention deleted the segments below <paramref name="logStart"/>.</summary>
    public void AdvanceLogStart(long logStart)
    {
        if (logStart < _logStart || logStart > _durable)
        {
            Fail(nameof(AdvanceLogStart), logStart);
        }

        Volatile.Write(ref _logStart, logStart);
    }

    /// <summary>Throws unless the invariant holds now (tests, <see cref="PartitionLog.CheckInvariants"/>).</summary>
    public readonly void CheckInvariant() => Check(_logStart, _durable, _completed, _reserved, "check");

    public override readonly string ToString() =>
        $"logStart={_logStart}, durable={_durable}, completed={_completed}, reserved={_reserved}";

    private readonly void Check(long logStart, long durable, long completed, long reserved, string what)
    {
        if (logStart > durable || durable > completed || completed > reserved)
        {
            throw new InvalidOperationException(
                $"partition {_partition}: tails break logStart <= durable <= completed <= reserved at {what}: logStart={logStart}, durable={durable}, completed={completed}, reserved={reserved}");
        }
    }

    [DoesNotReturn]
    private readonly void Fail(string move, long value) =>
        throw new InvalidOperationException(
            $"partition {_partition}: {move}({value}) would break logStart <= durable <= completed <= reserved ({this}); this is a bug in the log, not on disk");
}
