using Microsoft.Win32.SafeHandles;

namespace Kiou.Storage.Devices;

/// <summary>
/// Where segment bytes go: writes and fdatasyncs on open segment files, completed asynchronously.
/// </summary>
/// <remarks>
/// Contract (the io_uring writer and the synchronous pwrite writer both keep it):
/// - <see cref="Write"/> writes all of <c>data</c> at <c>position</c>. A short write is retried by the
///   device itself; the callback reports either <c>data.Length</c> or a negative errno, never a partial count.
/// - <see cref="Flush"/> is an fdatasync of the file. It covers every write whose callback ran before
///   the flush was issued.
/// - Callbacks run on the device's own completion thread (or, for the sync device, may run on the calling
///   thread before Write returns). They must not block. Callers must not hold locks that a callback takes
///   while calling Write or Flush.
/// - <c>data</c> must stay valid and unchanged until the write's callback has run.
/// - Completions of different operations may arrive in any order; callers order them (see PartitionLog).
/// </remarks>
public interface ILogDevice : IDisposable
{
    /// <summary>"io_uring" or "sync": shown in the start-up line and in logs.</summary>
    string Mode { get; }

    /// <summary>
    /// True when the log should write through an O_DIRECT descriptor of each active segment, staging appends in
    /// page-aligned memory (<see cref="DirectTail"/>), rather than hand every append's buffer to
    /// <see cref="Write"/> on the buffered file.
    /// </summary>
    bool DirectWrites => false;

    /// <summary>With <see cref="DirectWrites"/>: write-behind rounds smaller than this go buffered (see
    /// <see cref="DirectTail.DirectMinRoundBytes"/>); 0 sends every round through O_DIRECT.</summary>
    int DirectMinRoundBytes => DirectTail.DirectMinRoundBytes;

    /// <summary>
    /// With <see cref="DirectWrites"/>: a small (buffered) round started by an appender that found its partition idle
    /// is written by that appender with pwrite instead of through the device, so an append at light load is answered
    /// without a hop between threads (see docs/design/io_uring.md). Rounds started by completions, and every direct
    /// round, still go through <see cref="Write"/>.
    /// </summary>
    bool WriteIdleRoundsInline => false;

    /// <summary>
    /// Opens an existing segment file for O_DIRECT writes (used when <see cref="DirectWrites"/> is true), or returns
    /// null with the errno (EINVAL: the file system refuses O_DIRECT; the log then writes that segment buffered).
    /// </summary>
    SafeFileHandle? TryOpenDirect(string path, out int errno) => Kiou.IoUring.DirectFile.TryOpenExistingForWrite(path, out errno);

    /// <summary>The device's own counters (io_uring submissions, completions, depth), or null when it keeps none.</summary>
    LogDeviceStats? Stats => null;

    void Write(SafeFileHandle file, long position, ReadOnlyMemory<byte> data, ILogDeviceCallback callback, long token);

    void Flush(SafeFileHandle file, ILogDeviceCallback callback, long token);
}

/// <summary>
/// A device's counters, read for metrics: io_uring_enter calls, SQEs submitted and CQEs completed so far, operations
/// the kernel holds now, and requests queued for the ring's thread.
/// </summary>
public readonly record struct LogDeviceStats(long Enters, long Submissions, long Completions, int InFlight, int Queued);

/// <summary>Receives completions from an <see cref="ILogDevice"/>. <c>token</c> is the caller's own.</summary>
public interface ILogDeviceCallback
{
    /// <param name="result">bytes written (the whole buffer) or a negative errno.</param>
    void OnWriteDone(long token, int result);

    /// <param name="result">0 or a negative errno.</param>
    void OnFlushDone(long token, int result);
}
