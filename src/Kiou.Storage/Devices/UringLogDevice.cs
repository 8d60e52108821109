using System.Diagnostics;
using Kiou.IoUring;
using Microsoft.Win32.SafeHandles;

namespace Kiou.Storage.Devices;

/// <summary>
/// <see cref="ILogDevice"/> over io_uring: a write becomes an IORING_OP_WRITE (adjacent writes queued together one
/// IORING_OP_WRITEV), a flush an IORING_OP_FSYNC with IORING_FSYNC_DATASYNC, both submitted and completed by one
/// <see cref="RingWorker"/> thread.
/// </summary>
/// <remarks>
/// Owning thread: callers on any thread; callbacks run on the worker thread ("kiou-ring").
/// Lifecycle: <see cref="TryCreate(out string?)"/> or the constructor; Dispose lets every write and flush
/// already issued complete (their callbacks run), then closes the ring.
/// Guarantees (the <see cref="ILogDevice"/> contract): a write's callback gets <c>data.Length</c> or -errno
/// (short writes are resubmitted by the worker); a flush covers every write whose callback ran before it was
/// issued (page-cache writes that completed are what fdatasync persists; io_uring does not order the fsync
/// against writes still in flight, and the contract does not ask it to). The file handle is ref-counted while
/// an operation is in flight, so closing it early cannot redirect the I/O to a reused fd.
/// Write and Flush wait (spin, then yield) only when 4096 requests are already queued; from a callback they
/// never wait. Design and measurements: docs/design/io_uring.md.
/// </remarks>
public sealed class UringLogDevice : ILogDevice
{
    private static readonly IRingCallback Completer = new DeviceCompleter();

    private readonly RingWorker _worker;

    /// <summary>Wraps (and takes ownership of) a started worker.</summary>
    /// <param name="worker">The ring.</param>
    /// <param name="directWrites">See <see cref="DirectWrites"/>.</param>
    public UringLogDevice(RingWorker worker, bool directWrites = false)
    {
        ArgumentNullException.ThrowIfNull(worker);
        _worker = worker;
        DirectWrites = directWrites;
    }

    public string Mode => DirectWrites ? "io_uring (O_DIRECT)" : "io_uring";

    /// <summary>
    /// True (KIOU_URING_WRITES=direct, the default): logs stage appends and write whole pages through O_DIRECT
    /// descriptors, which io_uring completes without copying into the page cache. See docs/design/io_uring.md.
    /// </summary>
    public bool DirectWrites { get; }

    /// <summary>On with <see cref="DirectWrites"/>: an idle partition's small round costs one pwrite on the appender's
    /// thread instead of four thread hops; under load rounds grow and go through the ring.</summary>
    public bool WriteIdleRoundsInline => DirectWrites;

    public LogDeviceStats? Stats => new LogDeviceStats(_worker.EnterCount, _worker.SqeCount, _worker.CqeCount, _worker.InFlight, _worker.Queued);

    /// <summary>
    /// A device on a new ring, or null with a one-line reason when io_uring cannot be used here (the kernel
    /// lacks it, kernel.io_uring_disabled is set, a seccomp profile refuses it, or WRITE/FSYNC are missing),
    /// so the caller can log it once and fall back to the synchronous device.
    /// </summary>
    public static UringLogDevice? TryCreate(out string? whyNot) => TryCreate(new RingWorkerOptions(), out whyNot);

    /// <inheritdoc cref="TryCreate(out string?)"/>
    /// <param name="inlineWrites">See <see cref="RingWorkerOptions.InlineWrites"/> (KIOU_URING_WRITES=inline).</param>
    /// <param name="whyNot">Why io_uring cannot be used, when null is returned.</param>
    public static UringLogDevice? TryCreate(bool inlineWrites, out string? whyNot) =>
        TryCreate(new RingWorkerOptions { InlineWrites = inlineWrites }, out whyNot);

    /// <inheritdoc cref="TryCreate(out string?)"/>
    /// <param name="mode">KIOU_URING_WRITES: direct (O_DIRECT pages), ring (buffered IORING_OP_WRITE) or inline.</param>
    /// <param name="whyNot">Why io_uring cannot be used, when null is returned.</param>
    public static UringLogDevice? TryCreate(UringWriteMode mode, out string? whyNot) =>
        TryCreate(new RingWorkerOptions { InlineWrites = mode == UringWriteMode.Inline }, mode == UringWriteMode.Direct, out whyNot);

    /// <inheritdoc cref="TryCreate(out string?)"/>
    public static UringLogDevice? TryCreate(RingWorkerOptions options, out string? whyNot) => TryCreate(options, directWrites: false, out whyNot);

    /// <inheritdoc cref="TryCreate(out string?)"/>
    public static UringLogDevice? TryCreate(RingWorkerOptions options, bool directWrites, out string? whyNot)
    {
        string? disabled = IoUringSupport.ReadDisabledSysctl();
        if (disabled is not null && disabled != "0")
        {
            whyNot = $"io_uring unavailable: kernel.io_uring_disabled={disabled} (sysctl)";
            return null;
        }
        RingWorker worker;
        try
        {
            worker = new RingWorker(options);
        }
        catch (RingSetupException e)
        {
            whyNot = "io_uring unavailable: " + e.Message;
            return null;
        }
        whyNot = MissingOpcodes(worker.Probe);
        if (whyNot is not null)
        {
            worker.Dispose();
            return null;
        }
        return new UringLogDevice(worker, directWrites);
    }

    internal static string? MissingOpcodes(RingProbe? probe)
    {
        if (probe is null)
        {
            return "io_uring unavailable: the kernel cannot report supported opcodes (IORING_REGISTER_PROBE needs Linux 5.6+)";
        }
        if (!probe.IsSupported(RingOpcode.Write) || !probe.IsSupported(RingOpcode.Fsync))
        {
            return "io_uring unavailable: the kernel does not support IORING_OP_WRITE and IORING_OP_FSYNC (needs Linux 5.6+)";
        }
        return null;
    }

    public void Write(SafeFileHandle file, long position, ReadOnlyMemory<byte> data, ILogDeviceCallback callback, long token)
    {
        ArgumentNullException.ThrowIfNull(callback);
        Debug.Assert(position >= 0, "negative file position");
        _worker.Enqueue(RingRequest.Write(file, data, position, Completer, callback, token));
    }

    public void Flush(SafeFileHandle file, ILogDeviceCallback callback, long token)
    {
        ArgumentNullException.ThrowIfNull(callback);
        _worker.Enqueue(RingRequest.Fsync(file, dataSync: true, Completer, callback, token));
    }

    public void Dispose() => _worker.Dispose();

    // One stateless instance for all operations: the caller's ILogDeviceCallback travels as the request state,
    // so issuing a write allocates nothing.
    private sealed class DeviceCompleter : IRingCallback
    {
        public void OnRingCompletion(RingOperation operation, object? state, long token, int result)
        {
            var callback = (ILogDeviceCallback)state!;
            switch (operation)
            {
                case RingOperation.Write:
                    callback.OnWriteDone(token, result);
                    break;
                case RingOperation.Fsync:
                    callback.OnFlushDone(token, result);
                    break;
                default:
                    throw new UnreachableException($"the device issues no {operation}");
            }
        }
    }
}

/// <summary>How the io_uring device writes (KIOU_URING_WRITES).</summary>
public enum UringWriteMode
{
    /// <summary>Whole pages through O_DIRECT descriptors from staged memory (the default).</summary>
    Direct,

    /// <summary>Each append's buffer as a buffered IORING_OP_WRITE (ext4 hands these to io-wq workers).</summary>
    Ring,

    /// <summary>Buffered pwritev on the ring thread itself; fsyncs stay on the ring.</summary>
    Inline,
}
