using System.Buffers;
using System.Diagnostics;
using Kiou.IoUring.Interop;
using Kiou.Protocol.Records;
using Kiou.Storage.Devices;
using Microsoft.Win32.SafeHandles;

namespace Kiou.Storage;

/// <summary>
/// The disk-backed log of one topic-partition: a directory <c>&lt;data dir&gt;/&lt;topic&gt;-&lt;partition&gt;/</c> of
/// segments (<see cref="Segment"/>) holding RecordBatch v2 bytes exactly as stored and served.
/// </summary>
/// <remarks>
/// <para>Three tails, as offsets (STYLE §3), with one invariant checked at every update:
/// <c>LogStart ≤ Durable ≤ Completed (HighWatermark) ≤ Reserved (LogEndOffset)</c>.
/// Reserved: handed to appenders, bytes may be in flight. Completed: every write below has called back and
/// been published in offset order; reads never go past it. Durable: covered by a finished fdatasync.</para>
/// <para>Threads: any thread may call any member. One short lock guards the tails, the segment list and the
/// in-memory indexes. Device writes and flushes are issued outside it; their callbacks (device thread, or the
/// caller's thread for <see cref="SyncLogDevice"/>) take it briefly. File reads happen outside it, never past the
/// completed position captured under it. Awaiters are resumed asynchronously, never inside the lock.</para>
/// <para>Append: reserve offsets and file position under the lock (next offset = base + lastOffsetDelta + 1),
/// stamp baseOffset (and the leader epoch, and LogAppendTime when configured) into the caller's memory, write
/// that memory (no copy) through the device. Completions may arrive out of order; an early one waits for its
/// predecessors. Publishing advances the high watermark, appends index entries, wakes
/// <see cref="WaitForAppendAsync"/> and answers the append (or queues it for durability).</para>
/// <para>Flush: at most one round of fdatasyncs in flight; a round covers the completed tail captured when it was
/// issued, and when it finishes every waiter below that tail is answered at once (group commit). Rounds are
/// requested by durable appends, <see cref="FlushAsync"/>, rolls (the sealed segment), Flush=Always and
/// flush.messages.</para>
/// <para>I/O errors: see <see cref="AppendAsync"/>.</para>
/// </remarks>
public sealed class PartitionLog : IAsyncDisposable
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
    private readonly DeviceCallback _callback;
    private readonly bool _direct;
    private readonly Action<DirectTail, int> _onTailPiece;
    private readonly PendingAppend.Pool _pool = new();
    private readonly RingQueue<PendingAppend> _pending = new();

    private LogConfig _config;
    internal LogTails Tails;
    internal readonly SegmentSet Segments;
    private readonly LogReader _reader;
    internal readonly FlushScheduler Flusher;
    private long _nextSequence;

    private bool _failed;
    // Set by a failed fdatasync and never cleared while open: after a writeback error Linux may have dropped the
    // dirty pages, so a later "successful" flush proves nothing about them (the fsyncgate lesson). The partition
    // stays offline until a restart, when recovery re-checks every batch of the tail.
    internal bool FlushFatal;
    private long _failedFrom = long.MaxValue;
    private int _failureErrno;


    private TaskCompletionSource? _hwSignal;
    private TaskCompletionSource? _drained;
    internal bool Closing;
    internal bool Closed;


    private PartitionLog(string directory, string topic, int partition, LogConfig config, ILogDevice device, TimeProvider time, Action<string> log, Action<string> warn, List<Segment> segments, SegmentFileCache files)
    {
        Topic = topic;
        Partition = partition;
        Name = $"{topic}-{partition}";
        _config = config;
        Device = device;
        _time = time;
        Info = log;
        Warn = warn;
        _callback = new DeviceCallback(this);
        _direct = device.DirectWrites;
        _onTailPiece = OnTailPieceDone;
        Debug.Assert(segments[^1].ReservedEnd == segments[^1].CompletedEnd, "recovered with writes in flight");
        Tails = new LogTails(Name, segments[0].BaseOffset, segments[^1].CompletedEnd);
        Segments = new SegmentSet(this, directory, segments, files);
        _reader = new LogReader(this);
        Flusher = new FlushScheduler(this, segments[^1].CompletedEnd);
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
    public bool IsFailed => Volatile.Read(ref _failed);

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

    /// <summary>Test seam: runs where an O_DIRECT append takes staging memory; a throw stands for running out of it.</summary>
    internal Action? OnStaging { get; set; }

    /// <summary>Test seam: runs inside the copy of an append's bytes into the write-behind; a test blocks in it.</summary>
    internal Action? OnCopying { get; set; }

    /// <summary>Appends reserved and not yet answered or failed (tests).</summary>
    internal int PendingCount
    {
        get
        {
            lock (Lock)
            {
                return _pending.Count;
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
        try
        {
            Directory.CreateDirectory(directory);
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

        var partitionLog = new PartitionLog(directory, topic, partition, config, device, time, log, warn, segments, files);
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
    public ValueTask<AppendResult> AppendAsync(Memory<byte> batch, bool waitDurable)
    {
        Span<byte> span = batch.Span;
        if (!RecordBatch.TryReadHeader(span, out BatchHeader header) || header.TotalSize != span.Length)
        {
            throw new ArgumentException($"partition {Name}: an append must be exactly one RecordBatch v2 ({span.Length} bytes given)", nameof(batch));
        }

        LogConfig config = Config;
        if (span.Length > config.SegmentBytesEffective)
        {
            return ValueTask.FromException<AppendResult>(new RecordListTooLargeException(
                $"partition {Name}: a batch of {span.Length} bytes does not fit in a segment of segment.bytes={config.SegmentBytes}"));
        }

        long appendTimeMs = -1;
        if (config.LogAppendTime)
        {
            appendTimeMs = NowMs();
            RecordBatch.StampLogAppendTime(span, appendTimeMs); // recomputes the CRC: outside the lock
        }

        long maxTimestamp = RecordBatch.MaxTimestamp(span);
        PendingAppend op = _pool.Rent();
        string? message = null;
        SafeFileHandle[]? flushes = null;
        long round = 0;
        SafeFileHandle file;
        int position;
        long sequence;
        short version;
        DirectTail? tail = null;
        DirectTail.StagingRegion region = default;
        try
        {
            lock (Lock)
            {
                // Everything that can throw comes first: a failure here has reserved nothing and queued nothing.
                EnsureWritableLocked(ref message);
                long nowMs = NowMs();
                if (Segments.ShouldRollLocked(span.Length, header.LastOffsetDelta, config, nowMs))
                {
                    Segment sealedSegment = Segments.RollLocked(nowMs, ref message);

                    // Flush=Roll durability: the sealed segment is fdatasync'ed once all its writes have completed.
                    Flusher.RequestLocked(sealedSegment.SealedEnd);
                }

                // Descriptors first (reopened here if the idle segment gave them up).
                Segment segment = Segments.Active;
                file = AppendHandleLocked(segment);
                if (_direct && !segment.DirectUnavailable)
                {
                    tail = segment.Tail ?? OpenTailLocked(segment, segment.Size, ref message);
                    if (tail is not null)
                    {
                        OnStaging?.Invoke();
                        tail.Prepare(span.Length);
                    }
                }

                flushes = Flusher.StartFlushLocked(out round);

                // The reservation: nothing below throws.
                long baseOffset = Tails.Reserved;
                long endOffset = baseOffset + header.LastOffsetDelta + 1;
                RecordBatch.SetBaseOffset(span, baseOffset);
                RecordBatch.SetPartitionLeaderEpoch(span, LeaderEpoch);

                position = Segments.ReserveLocked(span.Length, endOffset);
                Debug.Assert((long)position + span.Length <= config.SegmentBytesEffective || position == 0, "segment overfilled");
                Tails.Reserve(endOffset);
                sequence = _nextSequence++;
                op.Init(sequence, baseOffset, endOffset, segment, position, span.Length, maxTimestamp, waitDurable, appendTimeMs, Tails.LogStart);
                version = op.Version;
                if (tail is not null)
                {
                    region = tail.Reserve(position, span.Length);
                    op.Copying = true;
                }

                _pending.Enqueue(op);
            }
        }
        catch (StorageException ex)
        {
            _pool.Return(op);
            Flusher.IssueFlushes(flushes, round);
            return ValueTask.FromException<AppendResult>(ex);
        }
        catch
        {
            _pool.Return(op);
            Flusher.IssueFlushes(flushes, round);
            throw;
        }
        finally
        {
            if (message is not null)
            {
                Info(message);
            }
        }

        Flusher.IssueFlushes(flushes, round);
        if (tail is not null)
        {
            // The region is this append's alone: the copy runs without the lock, so completions never wait for it.
            OnCopying?.Invoke();
            region.CopyFrom(span);
            int pieces = 0;
            lock (Lock)
            {
                op.Copying = false;
                AdvanceCopiedLocked(tail, sequence);
                if (tail.TryStartRound())
                {
                    pieces = tail.PieceCount;
                }

                if (op.State != PendingAppend.WriteState.InFlight)
                {
                    // Its round failed during the copy: it may leave the queue now (not touched after this).
                    PublishLocked();
                    flushes = Flusher.StartFlushLocked(out round);
                }
                else
                {
                    flushes = null;
                }
            }

            Flusher.IssueFlushes(flushes, round);
            IssueRound(tail, pieces);
            return new ValueTask<AppendResult>(op, version);
        }

        try
        {
            Device.Write(file, position, batch, _callback, sequence);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException)
        {
            // The device refused the write outright; treat it like a failed completion.
            OnWriteDone(sequence, ex is ObjectDisposedException ? -ErrnoNames.EBADF : -ErrnoNames.FromException(ex));
        }

        return new ValueTask<AppendResult>(op, version);
    }

    /// <summary>
    /// The copy of append <paramref name="sequence"/> landed: moves the tail's copied end over it and over every later
    /// append of the same tail whose copy already landed (copies finish in any order, rounds take them in order).
    /// </summary>
    private void AdvanceCopiedLocked(DirectTail tail, long sequence)
    {
        int index = (int)(sequence - _pending.Front.Sequence);
        PendingAppend op = _pending[index];
        if (op.Position != tail.Copied || op.Segment != tail.Segment)
        {
            return; // an earlier copy is still under way: it moves the end over this one
        }

        long end = op.Position + op.Size;
        for (int i = index + 1; i < _pending.Count; i++)
        {
            PendingAppend next = _pending[i];
            if (next.Segment != tail.Segment || next.Copying)
            {
                break;
            }

            end = next.Position + next.Size;
        }

        tail.AdvanceCopied(end);
    }

    private static int s_directUnsupportedLogged;

    /// <summary>The active segment's read-write descriptor, reopened if it was given up while idle.</summary>
    private SafeFileHandle AppendHandleLocked(Segment segment)
    {
        try
        {
            return segment.Handle;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            int errno = ErrnoNames.FromException(ex);
            throw new StorageException($"partition {Name}: cannot reopen {segment.LogPath} to append to it: {ex.Message} ({ErrnoNames.Describe(errno)}); the append was not stored, retry it; {ErrnoNames.Advice(errno)}", errno, ex);
        }
    }

    /// <summary>
    /// Opens the O_DIRECT write-behind of <paramref name="segment"/> (nothing in flight, the file holds exactly
    /// <paramref name="position"/> bytes), or marks it buffered for good. Its partial last page is read from the file
    /// here, before the caller reserves anything, so that a failed read fails only this append.
    /// </summary>
    private DirectTail? OpenTailLocked(Segment segment, int position, ref string? message)
    {
        DirectTail? tail = DirectTail.TryOpen(segment, position, Device, _onTailPiece, out int errno);
        if (tail is not null)
        {
            try
            {
                tail.LoadPartialPage();
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ObjectDisposedException)
            {
                tail.Dispose();
                int readErrno = ex is StorageException se ? se.Errno : ErrnoNames.FromException(ex);
                throw new StorageException($"partition {Name}: cannot read the last page of {segment.LogPath} to append after it: {ex.Message}; the append was not stored, retry it", readErrno, ex);
            }
        }

        if (tail is null)
        {
            segment.DirectUnavailable = true;
            if (Interlocked.Exchange(ref s_directUnsupportedLogged, 1) == 0)
            {
                message = $"partition {Name}: cannot open {segment.LogPath} with O_DIRECT ({ErrnoNames.Describe(-errno)}{(errno == ErrnoNames.EINVAL ? ", the file system does not support it" : "")}); "
                    + "io_uring appends to such files go through the page cache instead (slower; logged once per broker)";
            }

            return null;
        }

        tail.NextToMark = _nextSequence;
        segment.Tail = tail;
        return tail;
    }

    /// <summary>Hands a round's pieces to the device (outside the lock); a refused piece counts as failed.</summary>
    private void IssueRound(DirectTail tail, int pieces)
    {
        for (int i = 0; i < pieces; i++)
        {
            (SafeFileHandle file, long position, ReadOnlyMemory<byte> data) = tail.GetPiece(i);
            try
            {
                Device.Write(file, position, data, tail, i);
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException)
            {
                int errno = ex is ObjectDisposedException ? -ErrnoNames.EBADF : -ErrnoNames.FromException(ex);
                for (int j = i; j < pieces; j++)
                {
                    OnTailPieceDone(tail, errno);
                }

                return;
            }
        }
    }

    /// <summary>
    /// A piece of a direct round completed (device thread). When the round is whole: appends whose bytes it
    /// covers are written and get published in order; a sealed segment's tail is finished (padding cut before its
    /// final flush); the next round starts with whatever was staged meanwhile. A failed round fails every append
    /// staged in that tail, as a failed buffered write fails the appends after it.
    /// </summary>
    private void OnTailPieceDone(DirectTail tail, int result)
    {
        string? message = null;
        SafeFileHandle[]? flushes;
        long round;
        int pieces = 0;
        lock (Lock)
        {
            if (!tail.CompletePiece(result, out int errno))
            {
                return;
            }

            Segment segment = tail.Segment;
            if (segment.Tail != tail)
            {
                return; // disposed meanwhile (truncation, close): its appends were already settled
            }

            if (errno == 0)
            {
                MarkTailWrittenLocked(tail);
                if (segment.Sealed && tail.Idle)
                {
                    Segments.ReleaseTailLocked(segment, trim: true, ref message); // a sealed segment's last round: cut the padding before its final flush
                }
                else if (tail.TryStartRound())
                {
                    pieces = tail.PieceCount;
                }
            }
            else
            {
                FailTailLocked(tail, errno, ref message);
            }

            PublishLocked();
            flushes = Flusher.StartFlushLocked(out round);
        }

        if (message is not null)
        {
            Info(message);
        }

        Flusher.IssueFlushes(flushes, round);
        if (pieces > 0)
        {
            IssueRound(tail, pieces);
        }
    }

    private void MarkTailWrittenLocked(DirectTail tail)
    {
        Segment segment = tail.Segment;
        int from = _pending.Count == 0 ? 0 : (int)Math.Max(0, tail.NextToMark - _pending.Front.Sequence);
        for (int i = from; i < _pending.Count; i++)
        {
            PendingAppend op = _pending[i];
            if (op.Segment != segment)
            {
                if (op.Segment.BaseOffset > segment.BaseOffset)
                {
                    break;
                }

                continue;
            }

            if (op.State != PendingAppend.WriteState.InFlight)
            {
                continue;
            }

            if (op.Position + op.Size > tail.Written)
            {
                break;
            }

            op.State = PendingAppend.WriteState.Written;
            tail.NextToMark = op.Sequence + 1;
        }
    }

    private void FailTailLocked(DirectTail tail, int errno, ref string? message)
    {
        Segment segment = tail.Segment;
        PendingAppend? first = null;
        for (int i = 0; i < _pending.Count; i++)
        {
            PendingAppend op = _pending[i];
            if (op.Segment == segment && op.State == PendingAppend.WriteState.InFlight)
            {
                first ??= op;
                op.State = PendingAppend.WriteState.Failed;
                op.Errno = errno;
            }
        }

        if (first is not null)
        {
            MarkFailedLocked(errno, first.BaseOffset, $"the write-behind round of offsets from {first.BaseOffset} at position {tail.Written} of {segment.Name}", ref message);
        }
    }

    /// <inheritdoc cref="LogReader.Read"/>
    public ReadResult Read(long offset, int maxBytes, bool minOneBatch, bool zeroCopy = false) => _reader.Read(offset, maxBytes, minOneBatch, zeroCopy);

    /// <inheritdoc cref="LogReader.BytesAvailable"/>
    public long BytesAvailable(long offset) => _reader.BytesAvailable(offset);

    /// <inheritdoc cref="LogReader.LookupByTimestamp"/>
    public (long Offset, long Timestamp) LookupByTimestamp(long timestamp) => _reader.LookupByTimestamp(timestamp);

    /// <inheritdoc cref="LogReader.MaxTimestampEntry"/>
    public (long Offset, long Timestamp) MaxTimestampEntry() => _reader.MaxTimestampEntry();

    /// <summary>
    /// Completes when <see cref="HighWatermark"/> &gt; <paramref name="highWatermarkSeen"/>, woken by the publish
    /// (not polled), or when the log closes. One shared signal: cheap when nobody waits.
    /// </summary>
    public Task WaitForAppendAsync(long highWatermarkSeen, CancellationToken ct)
    {
        if (Tails.Completed > highWatermarkSeen)
        {
            return Task.CompletedTask;
        }

        Task signal;
        lock (Lock)
        {
            if (Tails.Completed > highWatermarkSeen || Closed)
            {
                return Task.CompletedTask;
            }

            _hwSignal ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            signal = _hwSignal.Task;
        }

        return ct.CanBeCanceled ? signal.WaitAsync(ct) : signal;
    }

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
            if (Closing || Closed || _failed || Flusher.InFlight || _pending.Count > 0 || Tails.Reserved != Tails.Completed
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
        await CloseAsync(clean: false).ConfigureAwait(false);
        try
        {
            Directory.Delete(Segments.Directory, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }

    /// <summary>Lets in-flight writes finish, flushes, writes the index files and a clean-shutdown marker, closes.</summary>
    public ValueTask DisposeAsync() => new(CloseAsync(clean: true));

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
            long expected = -1;
            for (int i = 0; i < _pending.Count; i++)
            {
                PendingAppend op = _pending[i];
                Check(expected < 0 || op.BaseOffset == expected, $"in-flight appends not dense at {op.BaseOffset} (expected {expected})");
                Check(op.BaseOffset >= Tails.Completed, $"in-flight append {op.BaseOffset} below completed {Tails.Completed}");
                Check(!_pool.Holds(op), $"in-flight append {op.BaseOffset} is also in the pool");
                expected = op.EndOffset;
            }

            // After an I/O error, failed appends leave the queue without publishing: the rest start past a gap.
            Check(
                _pending.Count == 0 || _pending.Front.BaseOffset == Tails.Completed || (_failed && _pending.Front.BaseOffset >= _failedFrom),
                "the first in-flight append does not start at the completed tail");
            Check(_failed || _failedFrom == long.MaxValue, "failure point set on a healthy partition");
            Check(_pending.Count == 0 ? _failed || Tails.Completed == Tails.Reserved : expected == Tails.Reserved, "in-flight appends do not end at the reserved tail");
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

    private void EnsureWritableLocked(ref string? message)
    {
        if (Closing)
        {
            throw new StorageException($"partition {Name} is closed (topic deleted or broker shutting down); retry on the new leader or after restart");
        }

        if (!_failed)
        {
            return;
        }

        if (FlushFatal)
        {
            throw new StorageException(
                $"partition {Name} is offline: an fdatasync failed with {ErrnoNames.Describe(_failureErrno)}, so data written before it may not be on disk; fix the disk, then restart the broker (recovery checks the log)",
                Math.Abs(_failureErrno));
        }

        // A flush in flight covers only completed bytes, which truncation keeps: no need to wait for it.
        if (_pending.Count > 0)
        {
            throw new StorageException(
                $"partition {Name} is failed after {ErrnoNames.Describe(_failureErrno)} and still draining {_pending.Count} in-flight write(s); retry shortly ({ErrnoNames.Advice(_failureErrno)})",
                Math.Abs(_failureErrno));
        }

        // Drained: truncate the unpublished bytes (written or not) and take appends again.
        int dropped;
        try
        {
            dropped = Segments.TruncateToCompletedLocked(ref message);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            int errno = ErrnoNames.FromException(ex);
            throw new StorageException(
                $"partition {Name} is failed after {ErrnoNames.Describe(_failureErrno)} and could not truncate {Segments.Active.Name} back to offset {Tails.Completed}: {ex.Message}; {ErrnoNames.Advice(errno)}",
                errno,
                ex);
        }

        Segment keep = Segments.Active;
        _failed = false;
        _failedFrom = long.MaxValue;
        if (Tails.Durable < Tails.Completed)
        {
            Flusher.RequestLocked(Tails.Completed);
        }

        message = (message is null ? string.Empty : message + " ")
            + $"partition {Name}: resumed after {ErrnoNames.Describe(_failureErrno)}; truncated {keep.Name} back to position {keep.CompletedSize} (dropped {dropped} unpublished bytes), next offset {Tails.Reserved}";
        _failureErrno = 0;
    }

    private void OnWriteDone(long token, int result)
    {
        string? message = null;
        SafeFileHandle[]? flushes;
        long round;
        lock (Lock)
        {
            Debug.Assert(_pending.Count > 0, "write completion with nothing in flight");
            int index = (int)(token - _pending.Front.Sequence);
            PendingAppend op = _pending[index];
            if (op.Sequence != token || op.State != PendingAppend.WriteState.InFlight)
            {
                throw new InvalidOperationException($"partition {Name}: unexpected write completion for token {token}");
            }

            if (result == op.Size)
            {
                op.State = PendingAppend.WriteState.Written;
            }
            else
            {
                op.State = PendingAppend.WriteState.Failed;
                op.Errno = result < 0 ? result : -ErrnoNames.EIO;
                MarkFailedLocked(op.Errno, op.BaseOffset, $"the write of offsets {op.BaseOffset}..{op.EndOffset - 1} at position {op.Position} of {op.Segment.Name}", ref message);
            }

            PublishLocked();
            flushes = Flusher.StartFlushLocked(out round);
        }

        if (message is not null)
        {
            Info(message);
        }

        Flusher.IssueFlushes(flushes, round);
    }

    internal void MarkFailedLocked(int errno, long fromOffset, string what, ref string? message)
    {
        _failedFrom = Math.Min(_failedFrom, fromOffset);
        if (_failed)
        {
            return;
        }

        _failed = true;
        _failureErrno = errno;
        message = $"partition {Name}: {what} failed with {ErrnoNames.Describe(errno)}; the partition is failed: appends from offset {_failedFrom} on fail with KAFKA_STORAGE_ERROR, "
            + $"published data below offset {Tails.Completed} is untouched, and once the in-flight writes drain the next append truncates the unpublished bytes and resumes; {ErrnoNames.Advice(errno)}";
    }

    /// <summary>Publishes finished writes in offset order; answers or fails their appends.</summary>
    private void PublishLocked()
    {
        LogConfig config = Config;
        bool advanced = false;
        long nowMs = 0;
        while (_pending.Count > 0 && _pending.Front.State != PendingAppend.WriteState.InFlight && !_pending.Front.Copying)
        {
            PendingAppend op = _pending.Dequeue();
            if (op.State == PendingAppend.WriteState.Written && op.BaseOffset < _failedFrom)
            {
                if (op.BaseOffset != Tails.Completed)
                {
                    throw new InvalidOperationException($"partition {Name}: publishing offset {op.BaseOffset} at completed tail {Tails.Completed}");
                }

                if (!advanced)
                {
                    nowMs = NowMs();
                }

                Segment segment = op.Segment;
                segment.OnPublished(op.BaseOffset, op.EndOffset, op.Position, op.Size, op.MaxTimestamp, config.IndexIntervalBytes, nowMs);
                if (segment.Sealed && segment.CompletedEnd == segment.SealedEnd)
                {
                    segment.FinishTimeIndex();
                }

                Tails.Complete(op.EndOffset);
                advanced = true;
                if (op.WaitDurable && Tails.Durable < op.EndOffset)
                {
                    Flusher.WaitDurableLocked(op);
                }
                else
                {
                    op.Complete();
                }
            }
            else
            {
                int errno = op.State == PendingAppend.WriteState.Failed ? op.Errno : _failureErrno;
                string cause = op.State == PendingAppend.WriteState.Failed
                    ? $"the write of offsets {op.BaseOffset}..{op.EndOffset - 1} failed with {ErrnoNames.Describe(errno)}"
                    : $"an earlier write or flush failed with {ErrnoNames.Describe(errno)}";
                op.Fail(new StorageException($"partition {Name}: {cause}; the append was not stored, retry it ({ErrnoNames.Advice(errno)})", Math.Abs(errno)));
            }
        }

        if (advanced)
        {
            Flusher.OnCompletedLocked(config.Flush);

            if (_hwSignal is not null)
            {
                _hwSignal.TrySetResult();
                _hwSignal = null;
            }
        }

        if (_pending.Count == 0 && _drained is not null)
        {
            _drained.TrySetResult();
            _drained = null;
        }
    }

    private async Task CloseAsync(bool clean)
    {
        Task drained;
        lock (Lock)
        {
            if (Closing)
            {
                return;
            }

            Closing = true;
            if (_pending.Count == 0)
            {
                drained = Task.CompletedTask;
            }
            else
            {
                _drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                drained = _drained.Task;
            }
        }

        await drained.ConfigureAwait(false);

        string? tailMessage = null;
        lock (Lock)
        {
            Segments.CloseTailsLocked(trim: !_failed, ref tailMessage);
        }

        if (tailMessage is not null)
        {
            Info(tailMessage);
        }

        if (clean)
        {
            // Writes that completed after an I/O error were never published: cut them now, or recovery would
            // bring back appends that were answered with an error.
            string? message = null;
            lock (Lock)
            {
                if (_failed)
                {
                    try
                    {
                        int dropped = Segments.TruncateToCompletedLocked(ref message);
                        message = (message is null ? string.Empty : message + " ")
                            + $"partition {Name}: closing after {ErrnoNames.Describe(_failureErrno)}; truncated {Segments.Active.Name} back to offset {Tails.Completed} (dropped {dropped} unpublished bytes)";
                    }
                    catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                    {
                        message = $"partition {Name}: closing after {ErrnoNames.Describe(_failureErrno)} and could not truncate back to offset {Tails.Completed} ({ex.Message}); the next start scans the log";
                    }
                }
            }

            if (message is not null)
            {
                Info(message);
            }
        }

        bool flushed = false;
        if (clean)
        {
            try
            {
                await FlushAsync().ConfigureAwait(false);
                flushed = true;
            }
            catch (StorageException ex)
            {
                Info($"partition {Name}: the final flush at close failed ({ex.Message}); the next start scans the log");
            }
        }

        // No new flush rounds from here on; wait for a round started by appends, and for index writes.
        Segment[] segments;
        Segment active;
        bool failed;
        lock (Lock)
        {
            Closed = true;
            _hwSignal?.TrySetResult();
            _hwSignal = null;
        }

        while (true)
        {
            Task? wait;
            lock (Lock)
            {
                wait = Flusher.WhenIdleLocked();
                if (wait is null)
                {
                    segments = Segments.ToArrayLocked();
                    active = Segments.Active;
                    failed = _failed;
                    if (clean)
                    {
                        active.FinishTimeIndex();
                    }

                    // No flush will come for these any more (delete, or a failed final flush).
                    Flusher.FailWaitersLocked(new StorageException($"partition {Name} was closed before the data became durable; retry the produce"));
                    break;
                }
            }

            await wait.ConfigureAwait(false);
        }

        // Index files only over durable bytes: a sealed segment's files are trusted at the next start.
        if (clean && flushed)
        {
            foreach (Segment s in segments)
            {
                if (!s.IndexFilesCurrent)
                {
                    try
                    {
                        s.WriteIndexFiles();
                        s.IndexFilesCurrent = true;
                    }
                    catch (IOException ex)
                    {
                        Info($"partition {Name}: could not write the index files of {s.Name} at close ({ex.Message}); they will be rebuilt at the next start");
                    }
                }
            }

            if (!failed)
            {
                try
                {
                    Flusher.TryWriteRecoveryPoint(active.CompletedEnd);
                    Recovery.WriteCleanMarker(Segments.Directory, active.BaseOffset, active.Size, active.CompletedEnd);
                }
                catch (IOException ex)
                {
                    Info($"partition {Name}: could not write the clean-shutdown marker ({ex.Message}); the next start scans the active segment");
                }
            }
        }

        foreach (Segment s in segments)
        {
            s.Close();
        }
    }

    /// <summary>Routes device completions to the log without making the callbacks part of its public surface.</summary>
    private sealed class DeviceCallback(PartitionLog log) : ILogDeviceCallback
    {
        public void OnWriteDone(long token, int result) => log.OnWriteDone(token, result);

        public void OnFlushDone(long token, int result) => throw new UnreachableException("flushes call back the flush scheduler");
    }
}
