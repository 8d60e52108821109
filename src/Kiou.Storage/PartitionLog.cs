using System.Diagnostics;
using Kiou.IoUring.Interop;
using Kiou.Protocol.Records;
using Kiou.Storage.Devices;
using Kiou.Storage.Producers;
using Microsoft.Win32.SafeHandles;

namespace Kiou.Storage;

/// <summary>
/// The disk-backed log of one topic-partition: a directory <c>&lt;data dir&gt;/&lt;topic&gt;-&lt;partition&gt;/</c> of
/// segments (<see cref="Segment"/>) holding RecordBatch v2 bytes exactly as stored and served.
/// </summary>
/// <remarks>
/// <para>A facade over parts with one job each (docs/design/storage.md): <see cref="AppendPipeline"/> (reservation,
/// writes, ordered publication), <see cref="FlushScheduler"/> (fdatasync rounds, durable waiters),
/// <see cref="SegmentSet"/> (segments, roll, retention, truncation) and <see cref="LogReader"/> (reads, lookups). The
/// tails and their invariant <c>LogStart ≤ Durable ≤ Completed (HighWatermark) ≤ Reserved (LogEndOffset)</c> live in
/// <see cref="LogTails"/>.</para>
/// <para>Threads: any thread may call any member. One short lock, <see cref="Lock"/>, guards the tails and every
/// part's state; device calls, fdatasyncs, file reads for fetches and producers' copies run outside it. Awaiters are
/// resumed asynchronously, never inside the lock. I/O errors: see <see cref="AppendAsync"/>.</para>
/// </remarks>
public sealed partial class PartitionLog : IAsyncDisposable
{
    /// <summary>One node, one leader epoch forever (README §7.5).</summary>
    public const int LeaderEpoch = 0;

    /// <summary>The partition lock: guards the tails and every part's state (docs/design/storage.md).</summary>
    internal readonly object Lock = new();
    internal readonly string Name;
    internal readonly ILogDevice Device;
    private readonly TimeProvider _time;
    internal readonly Action<string> Info;
    internal readonly Action<string> Warn;

    private LogConfig _config;
    internal LogTails Tails;
    internal readonly SegmentSet Segments;
    private readonly LogReader _reader;

    /// <summary>When this partition was last read: its written bytes are kept in the read cache only while it is.</summary>
    internal ReaderInterest Readers { get; }
    internal readonly FlushScheduler Flusher;
    internal readonly AppendPipeline Appends;
    private readonly LogCloser _closer;

    // Set under the lock: Closing stops appends (close drains those in flight), Closed stops reads and flush rounds.
    internal bool Closing;
    internal bool Closed;

    private PartitionLog(string directory, string topic, int partition, LogConfig config, ILogDevice device, TimeProvider time, Action<string> log, Action<string> warn, List<Segment> segments, SegmentFileCache files, long logStart)
    {
        Topic = topic;
        Partition = partition;
        Name = $"{topic}-{partition}";
        _config = config;
        Device = device;
        _time = time;
        Info = log;
        Warn = warn;
        Debug.Assert(segments[^1].ReservedEnd == segments[^1].CompletedEnd, "recovered with writes in flight");
        Tails = new LogTails(Name, logStart, segments[^1].CompletedEnd);
        _checkpointedLogStart = logStart;
        Segments = new SegmentSet(this, directory, segments, files);
        _reader = new LogReader(this);
        Readers = new ReaderInterest(time);
        Flusher = new FlushScheduler(this, segments[^1].CompletedEnd);
        Appends = new AppendPipeline(this, device.DirectWrites);
        _closer = new LogCloser(this);
        Producers = new ProducerStateManager(directory, Name, log, warn, config.ProducerIdExpirationMs,
            maxProducers: config.MaxProducersPerPartition, time: time);
    }

    public string Topic { get; }

    public int Partition { get; }

    /// <summary>Topic config; may be replaced at any time (AlterConfigs). Appends read it once each.</summary>
    public LogConfig Config
    {
        get => Volatile.Read(ref _config);
        set => Volatile.Write(ref _config, value ?? throw new ArgumentNullException(nameof(value)));
    }

    public long LogStartOffset => Tails.LogStart;

    /// <summary>The completed tail: every offset below it is written and may be fetched.</summary>
    public long HighWatermark => Tails.Completed;

    /// <summary>The reserved tail: the offset the next append gets.</summary>
    public long LogEndOffset => Tails.Reserved;

    /// <summary>Every offset below it is covered by a finished fdatasync.</summary>
    public long DurableOffset => Tails.Durable;

    /// <summary>Bytes of all segment files, including writes in flight.</summary>
    public long SizeBytes => Segments.SizeBytes;

    /// <summary>True after an I/O error until the next append has truncated the damage away and resumed.</summary>
    public bool IsFailed => Appends.Failed;

    /// <summary>"sync" or "io_uring".</summary>
    public string DeviceMode => Device.Mode;

    internal int SegmentCount
    {
        get
        {
            lock (Lock)
            {
                return Segments.Count;
            }
        }
    }

    internal IReadOnlyList<long> SegmentBaseOffsets
    {
        get
        {
            lock (Lock)
            {
                var bases = new long[Segments.Count];
                for (int i = 0; i < bases.Length; i++)
                {
                    bases[i] = Segments[i].BaseOffset;
                }

                return bases;
            }
        }
    }

    internal string DirectoryPath => Segments.Directory;

    /// <summary>Test seam: see <see cref="AppendPipeline.OnStaging"/>.</summary>
    internal Action? OnStaging
    {
        get => Appends.OnStaging;
        set => Appends.OnStaging = value;
    }

    /// <summary>Test seam: see <see cref="AppendPipeline.OnCopying"/>.</summary>
    internal Action? OnCopying
    {
        get => Appends.OnCopying;
        set => Appends.OnCopying = value;
    }

    /// <summary>Appends reserved and not yet answered or failed (tests).</summary>
    internal int PendingCount
    {
        get
        {
            lock (Lock)
            {
                return Appends.InFlightCountLocked;
            }
        }
    }

    /// <summary>The active segment's O_DIRECT write-behind, if it has one (tests).</summary>
    internal DirectTail? ActiveTail
    {
        get
        {
            lock (Lock)
            {
                return Segments.Active.Tail;
            }
        }
    }

    /// <summary>
    /// Opens the partition's directory under <paramref name="dataDir"/>, creating it if needed, and recovers it
    /// (<see cref="Recovery"/>): torn or corrupt tails are truncated with a log line, missing or inconsistent
    /// indexes rebuilt. The recovered data is fdatasync'ed, so all of it starts out durable.
    /// </summary>
    public static PartitionLog Open(string dataDir, string topic, int partition, LogConfig config, ILogDevice device, TimeProvider time, Action<string> log) =>
        Open(dataDir, topic, partition, config, device, time, log, log, null);

    /// <summary>As the overload above, with the broker's cache of sealed segments' descriptors.</summary>
    public static PartitionLog Open(string dataDir, string topic, int partition, LogConfig config, ILogDevice device, TimeProvider time, Action<string> log, SegmentFileCache? files) =>
        Open(dataDir, topic, partition, config, device, time, log, log, files);

    /// <summary>
    /// As <see cref="Open(string, string, int, LogConfig, ILogDevice, TimeProvider, Action{string})"/>, with
    /// <paramref name="warn"/> for what the operator must see: bytes dropped or set aside by recovery, damaged data
    /// met by reads (docs/design/recovery.md).
    /// </summary>
    /// <param name="files">The broker's bounded cache of sealed segments' descriptors (KIOU_MAX_OPEN_SEGMENT_FILES);
    /// null: a cache of <see cref="SegmentFileCache.DefaultCapacity"/> for this log alone.</param>
    public static PartitionLog Open(string dataDir, string topic, int partition, LogConfig config, ILogDevice device, TimeProvider time, Action<string> log, Action<string> warn, SegmentFileCache? files = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(dataDir);
        ArgumentException.ThrowIfNullOrEmpty(topic);
        ArgumentOutOfRangeException.ThrowIfNegative(partition);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(log);
        ArgumentNullException.ThrowIfNull(warn);
        if (topic.Contains('/') || topic is "." or "..")
        {
            throw new ArgumentException($"topic name '{topic}' cannot be a directory name", nameof(topic));
        }

        string name = $"{topic}-{partition}";
        string directory = Path.Combine(dataDir, name);
        long nowMs = time.GetUtcNow().ToUnixTimeMilliseconds();
        List<Segment> segments;
        bool cleanStart;
        long logStart;
        try
        {
            Directory.CreateDirectory(directory);
            cleanStart = File.Exists(Path.Combine(directory, Recovery.CleanShutdownMarker)); // Load consumes the marker
            segments = Recovery.Load(directory, name, config.IndexIntervalBytes, nowMs, log, warn, out long? savedRecoveryPoint);
            if (segments.Count == 0)
            {
                segments.Add(Segment.Create(directory, 0, nowMs));
                FileSync.SyncDirectory(directory);
            }
            else
            {
                int rc = FileSync.DataSync(segments[^1].Handle);
                if (rc < 0)
                {
                    throw new StorageException($"partition {name}: fdatasync of {segments[^1].LogPath} failed at open with {ErrnoNames.Describe(rc)}; {ErrnoNames.Advice(rc)}", -rc);
                }
            }

            // Everything recovery kept is durable now. Unchanged (a clean restart) or empty: nothing to write, which
            // keeps opening many partitions cheap.
            long end = segments[^1].CompletedEnd;
            if (savedRecoveryPoint != end && end > 0)
            {
                Recovery.WriteRecoveryPoint(directory, end);
            }

            logStart = InitialLogStart(directory, topic, partition, segments[0].BaseOffset, end, nowMs, warn);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException && ex is not StorageException)
        {
            int errno = ErrnoNames.FromException(ex);
            throw new StorageException($"partition {name}: cannot open {directory}: {ex.Message} ({ErrnoNames.Describe(errno)}); {ErrnoNames.Advice(errno)}", errno, ex);
        }

        // Sealed segments are durable once loaded: their descriptors close now, reads reopen them through the cache.
        files ??= new SegmentFileCache();
        for (int i = 0; i < segments.Count; i++)
        {
            segments[i].Files = files;
            if (i < segments.Count - 1)
            {
                segments[i].ReleaseHandle();
            }
        }

        var partitionLog = new PartitionLog(directory, topic, partition, config, device, time, log, warn, segments, files, logStart);
        partitionLog.LoadTransactionState(cleanStart);
        partitionLog.CheckInvariants();
        return partitionLog;
    }

    /// <summary>
    /// Appends one batch that already passed <see cref="RecordBatch.ValidateForProduce"/>. The log stamps
    /// baseOffset, the partition leader epoch and, with LogAppendTime, the append time into the caller's memory,
    /// which must stay alive and unchanged until the returned task completes. No copy is made.
    /// </summary>
    /// <param name="waitDurable">Complete only once <see cref="DurableOffset"/> covers the batch (acks=all with
    /// Flush=Always); this requests a flush whatever the flush mode.</param>
    /// <exception cref="ArgumentException">Thrown at once: the memory is not exactly one RecordBatch v2.</exception>
    /// <exception cref="RecordListTooLargeException">Through the task: the batch is larger than segment.bytes.</exception>
    /// <exception cref="StorageException">Through the task:
    /// The write (or a flush) failed with an errno, an earlier in-flight write of this partition failed, or the
    /// partition is failed or closed. On an I/O error the failing append and every later in-flight append fail;
    /// nothing already published changes. Once in-flight writes have drained, the next append truncates the
    /// unpublished bytes and resumes, or throws again if that fails.
    /// </exception>
    /// <param name="origin">Who writes: control batches (transaction markers) are taken only from
    /// <see cref="AppendOrigin.Coordinator"/>; from a client they fail with <see cref="ProducerStateException"/> code
    /// INVALID_RECORD, as Kafka's LogValidator refuses them.</param>
    /// <param name="verification">KIP-890 (docs/design/transactions.md): the guard from
    /// <see cref="StartTransactionVerification"/>, taken before the coordinator confirmed the partition is in the
    /// producer's transaction. When given, a transactional batch that would start a transaction here is appended only
    /// if the guard is still the producer's current one; otherwise it fails with <see cref="ProducerStateException"/>
    /// code INVALID_TXN_STATE and nothing is appended. Null: not checked.</param>
    public ValueTask<AppendResult> AppendAsync(Memory<byte> batch, bool waitDurable, AppendOrigin origin = AppendOrigin.Client, VerificationGuard? verification = null) =>
        Appends.AppendAsync(batch, waitDurable, origin, verification);

    /// <summary>
    /// Completes when <see cref="HighWatermark"/> &gt; <paramref name="highWatermarkSeen"/>, woken by the publish
    /// (not polled), or when the log closes. One shared signal: cheap when nobody waits.
    /// </summary>
    public Task WaitForAppendAsync(long highWatermarkSeen, CancellationToken ct) => Appends.WaitForAppendAsync(highWatermarkSeen, ct);

    /// <inheritdoc cref="LogReader.Read"/>
    public ReadResult Read(long offset, int maxBytes, bool minOneBatch, bool zeroCopy = false, long maxOffset = long.MaxValue)
    {
        Readers.Mark();
        return _reader.Read(offset, maxBytes, minOneBatch, zeroCopy, maxOffset);
    }

    /// <inheritdoc cref="LogReader.BytesAvailable"/>
    public long BytesAvailable(long offset, long maxOffset = long.MaxValue) => _reader.BytesAvailable(offset, maxOffset);

    /// <inheritdoc cref="LogReader.LookupByTimestamp"/>
    public (long Offset, long Timestamp) LookupByTimestamp(long timestamp) => _reader.LookupByTimestamp(timestamp);

    /// <inheritdoc cref="LogReader.MaxTimestampEntry"/>
    public (long Offset, long Timestamp) MaxTimestampEntry() => _reader.MaxTimestampEntry();

    /// <summary>
    /// fdatasyncs everything completed so far; completes when <see cref="DurableOffset"/> reaches the high
    /// watermark as it was at the call. Used by the interval flusher, roll and close. Throws
    /// <see cref="StorageException"/> if the flush fails.
    /// </summary>
    public Task FlushAsync() => Flusher.FlushAsync();

    /// <summary>
    /// Gives up the active segment's descriptors (the read-write one, which goes to the bounded
    /// <see cref="SegmentFileCache"/> like a sealed segment's, and the O_DIRECT one of its write-behind, closed after the
    /// zero padding is cut) once nothing has been published for <paramref name="idleMs"/> and nothing is in flight:
    /// no append, no write-behind round, no flush. Data not yet durable is fdatasync'ed first (a background flush is
    /// started and the descriptors go at a later call), so no dirty page of a closed descriptor is left for writeback
    /// to fail unseen. The next append reopens both, a read leases from the cache. Called by the broker's background
    /// loop; cheap when there is nothing to give up. Returns true when descriptors were given up.
    /// </summary>
    public bool ReleaseIdleDescriptors(long idleMs)
    {
        Segment active = Segments.Active;
        if (!active.HoldsHandle && active.Tail is null)
        {
            return false; // given up already (read without the lock: a stale answer only delays to the next call)
        }

        string? message = null;
        SafeFileHandle[]? flushes = null;
        long round = 0;
        bool released = false;
        lock (Lock)
        {
            Segment segment = Segments.Active;
            long nowMs = NowMs();
            if (Closing || Closed || Appends.Failed || Flusher.InFlight || Appends.InFlightCountLocked > 0 || Tails.Reserved != Tails.Completed
                || nowMs - segment.LastAppendMs < idleMs || segment.Tail is { Idle: false })
            {
                return false;
            }

            if (Tails.Durable < Tails.Completed)
            {
                Flusher.RequestLocked(Tails.Completed);
                flushes = Flusher.StartFlushLocked(out round);
            }
            else
            {
                released = Segments.TryReleaseIdleLocked(nowMs, idleMs, ref message);
            }
        }

        if (message is not null)
        {
            Info(message);
        }

        Flusher.IssueFlushes(flushes, round);
        return released;
    }

    /// <summary>
    /// Deletes whole old segments: those whose newest timestamp is older than retention.ms before
    /// <paramref name="nowMs"/>, and the oldest ones while the log exceeds retention.bytes by at least their size.
    /// Never the active segment, and only segments whose bytes are durable. Advances <see cref="LogStartOffset"/>.
    /// </summary>
    public void EnforceRetention(long nowMs) => Segments.EnforceRetention(nowMs);

    /// <summary>Closes the log (in-flight appends finish first, nothing is flushed) and removes its directory (DeleteTopics).</summary>
    public async Task DeleteAsync()
    {
        await _closer.CloseAsync(clean: false).ConfigureAwait(false);
        try
        {
            Directory.Delete(Segments.Directory, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }

    /// <summary>Lets in-flight writes finish, flushes, writes the index files and a clean-shutdown marker, closes.</summary>
    public ValueTask DisposeAsync() => new(_closer.CloseAsync(clean: true));

    /// <summary>Completes when the background index writes started so far (and deletions deferred to them) are done. For tests.</summary>
    internal Task WhenBackgroundIdleAsync() => Flusher.WhenBackgroundIdleAsync();

    /// <summary>Throws <see cref="InvalidOperationException"/> unless the tails and segments are consistent (tests, simulator).</summary>
    internal void CheckInvariants()
    {
        lock (Lock)
        {
            Check(Segments.Count > 0, "no segments");
            Tails.CheckInvariant();
            Segments.CheckInvariantsLocked(Check);
            Appends.CheckInvariantsLocked(Check);
        }

        static void Check(bool condition, string what)
        {
            if (!condition)
            {
                throw new InvalidOperationException("PartitionLog invariant violated: " + what);
            }
        }
    }

    internal long NowMs() => _time.GetUtcNow().ToUnixTimeMilliseconds();

}
