using System.Diagnostics;
using Kiou.IoUring.Interop;
using Kiou.Protocol.Records;
using Kiou.Storage.Devices;
using Kiou.Storage.Producers;
using Microsoft.Win32.SafeHandles;

namespace Kiou.Storage;

/// <summary>
/// The append path of one partition: offset reservation, the write (the caller's memory, or a copy into the
/// segment's O_DIRECT write-behind), and the ordered publication of completions into <see cref="LogTails.Completed"/>;
/// and the partition's failure state after an I/O error, until the next append truncates and resumes.
/// </summary>
/// <remarks>
/// <para>Append: everything that can fail (roll, descriptors, the write-behind's memory, a flush round to start)
/// runs first; then, under the partition lock and without anything that throws, offsets and a file region are
/// reserved and the append is queued. A buffered append is written from the caller's memory; a direct one copies its
/// bytes into the reserved region outside the lock, then, briefly under it, moves the tail's copied end and starts a
/// round if none is in flight.</para>
/// <para>Completions (device thread) are found by sequence in the queue, marked, and published in offset order under
/// the lock, which producers hold only for short bookkeeping, never for a copy. Publication answers the append, or
/// hands it to the <see cref="FlushScheduler"/> when it waits for durability, and wakes
/// <see cref="WaitForAppendAsync"/>.</para>
/// </remarks>
internal sealed class AppendPipeline : ILogDeviceCallback
{
    private static int s_directUnsupportedLogged;
    private readonly PartitionLog _owner;
    private readonly bool _direct;
    private readonly bool _writeIdleRoundsInline;
    private readonly Action<DirectTail, int> _onTailPiece;
    private readonly PendingAppend.Pool _pool = new();
    private readonly RingQueue<PendingAppend> _pending = new();
    private long _nextSequence;

    private bool _failed;
    // Set by a failed fdatasync and never cleared while open: after a writeback error Linux may have dropped the
    // dirty pages, so a later "successful" flush proves nothing about them (the fsyncgate lesson). The partition
    // stays offline until a restart, when recovery re-checks every batch of the tail.
    private bool _flushFatal;
    private long _failedFrom = long.MaxValue;
    private int _failureErrno;

    private TaskCompletionSource? _hwSignal;
    private TaskCompletionSource? _drained;

    public AppendPipeline(PartitionLog owner, bool direct)
    {
        _owner = owner;
        _direct = direct;
        _writeIdleRoundsInline = direct && owner.Device.WriteIdleRoundsInline;
        _onTailPiece = OnTailPieceDone;
    }

    /// <summary>Test seam: runs where an O_DIRECT append takes staging memory; a throw stands for running out of it.</summary>
    internal Action? OnStaging { get; set; }

    /// <summary>Test seam: runs inside the copy of an append's bytes into the write-behind; a test blocks in it.</summary>
    internal Action? OnCopying { get; set; }

    /// <summary>True after an I/O error until the next append has truncated the damage away (read without the lock).</summary>
    public bool Failed => Volatile.Read(ref _failed);

    public int FailureErrno => _failureErrno;

    public int InFlightCountLocked => _pending.Count;

    /// <summary>At close: completes once every queued append has been answered or failed.</summary>
    public Task WhenDrainedLocked()
    {
        if (_pending.Count == 0)
        {
            return Task.CompletedTask;
        }

        _drained ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        return _drained.Task;
    }

    /// <summary>At close: releases whoever waits for the high watermark.</summary>
    public void WakeWaitersLocked()
    {
        _hwSignal?.TrySetResult();
        _hwSignal = null;
    }

    /// <summary>A flush failed: the partition stays offline until a restart (see the field's comment).</summary>
    public void MarkFlushFailedLocked(int errno, ref string? message)
    {
        MarkFailedLocked(errno, _owner.Tails.Completed, "fdatasync", ref message);
        _flushFatal = true;
    }

    /// <summary>Throws unless the queue agrees with the tails and is not shared with the pool (tests, simulator).</summary>
    public void CheckInvariantsLocked(Action<bool, string> check)
    {
        long expected = -1;
        LogTails tails = _owner.Tails;
        for (int i = 0; i < _pending.Count; i++)
        {
            PendingAppend op = _pending[i];
            check(expected < 0 || op.BaseOffset == expected, $"in-flight appends not dense at {op.BaseOffset} (expected {expected})");
            check(op.BaseOffset >= tails.Completed, $"in-flight append {op.BaseOffset} below completed {tails.Completed}");
            check(!_pool.Holds(op), $"in-flight append {op.BaseOffset} is also in the pool");
            expected = op.EndOffset;
        }

        // After an I/O error, failed appends leave the queue without publishing: the rest start past a gap.
        check(
            _pending.Count == 0 || _pending.Front.BaseOffset == tails.Completed || (_failed && _pending.Front.BaseOffset >= _failedFrom),
            "the first in-flight append does not start at the completed tail");
        check(_failed || _failedFrom == long.MaxValue, "failure point set on a healthy partition");
        check(_pending.Count == 0 ? _failed || tails.Completed == tails.Reserved : expected == tails.Reserved, "in-flight appends do not end at the reserved tail");
    }

    void ILogDeviceCallback.OnFlushDone(long token, int result) =>
        throw new UnreachableException("flushes call back the flush scheduler");

    /// <summary>See <see cref="PartitionLog.AppendAsync"/>.</summary>
    public ValueTask<AppendResult> AppendAsync(Memory<byte> batch, bool waitDurable, AppendOrigin origin = AppendOrigin.Client, VerificationGuard? verification = null)
    {
        Span<byte> span = batch.Span;
        if (!RecordBatch.TryReadHeader(span, out BatchHeader header) || header.TotalSize != span.Length)
        {
            throw new ArgumentException($"partition {_owner.Name}: an append must be exactly one RecordBatch v2 ({span.Length} bytes given)", nameof(batch));
        }

        LogConfig config = _owner.Config;
        if (span.Length > config.SegmentBytesEffective)
        {
            return ValueTask.FromException<AppendResult>(new RecordListTooLargeException(
                $"partition {_owner.Name}: a batch of {span.Length} bytes does not fit in a segment of segment.bytes={config.SegmentBytes}"));
        }

        long appendTimeMs = -1;
        if (config.LogAppendTime)
        {
            appendTimeMs = _owner.NowMs();
            RecordBatch.StampLogAppendTime(span, appendTimeMs); // recomputes the CRC: outside the lock
        }

        long maxTimestamp = RecordBatch.MaxTimestamp(span);
        bool idempotent = RecordBatch.ProducerId(span) >= 0;
        if (RecordBatch.IsControl(span) && (origin != AppendOrigin.Coordinator || !idempotent))
        {
            // LogValidator: "Clients are not allowed to write control records"; a marker names its producer.
            return ValueTask.FromException<AppendResult>(new ProducerStateException(RecordErrorCodes.InvalidRecord, origin == AppendOrigin.Coordinator
                ? $"partition {_owner.Name}: refused a control batch without a producer id (a transaction marker must name its producer)"
                : $"partition {_owner.Name}: refused a control batch from a client: clients are not allowed to write control records"));
        }

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
        ProducerBatch producer = default;
        ProducerCheck check = default;
        PendingSnapshot? snapshot = null;
        long generation = 0;
        try
        {
            lock (_owner.Lock)
            {
                // Everything that can throw comes first: a failure here has reserved nothing and queued nothing.
                EnsureWritableLocked(ref message);
                if (idempotent)
                {
                    // In append order under the single writer, so pipelined batches of one producer are checked in turn.
                    producer = ProducerBatch.FromBatch(span);
                    check = _owner.Producers.Check(producer, verification, coordinator: origin == AppendOrigin.Coordinator);
                    generation = _owner.ProducerGeneration;
                    if (check.Outcome != ProducerCheckOutcome.Append)
                    {
                        _pool.Return(op);
                        return RefuseLocked(producer, check, waitDurable, generation);
                    }
                }

                long nowMs = _owner.NowMs();
                if (_owner.Segments.ShouldRollLocked(span.Length, header.LastOffsetDelta, config, nowMs))
                {
                    Segment sealedSegment = _owner.Segments.RollLocked(nowMs, ref message);

                    // Flush=Roll durability: the sealed segment is fdatasync'ed once all its writes have completed.
                    _owner.Flusher.RequestLocked(sealedSegment.SealedEnd);

                    // Kafka's snapshot at roll: the state as of the sealed end, written once that is durable.
                    _owner.Producers.UpdateMapEndOffset(_owner.Tails.Reserved);
                    snapshot = _owner.Producers.PrepareSnapshot();
                    generation = _owner.ProducerGeneration;
                }

                // Descriptors first (reopened here if the idle segment gave them up).
                Segment segment = _owner.Segments.Active;
                file = AppendHandleLocked(segment);
                if (_direct && !segment.DirectUnavailable)
                {
                    tail = segment.Tail ?? OpenTailLocked(segment, segment.Size, ref message);
                    if (tail is not null)
                    {
                        PrepareTailLocked(tail, span.Length);
                    }
                }

                flushes = _owner.Flusher.StartFlushLocked(out round);

                // The reservation: nothing below throws.
                long baseOffset = _owner.Tails.Reserved;
                long endOffset = baseOffset + header.LastOffsetDelta + 1;
                RecordBatch.SetBaseOffset(span, baseOffset);
                RecordBatch.SetPartitionLeaderEpoch(span, PartitionLog.LeaderEpoch);

                position = _owner.Segments.ReserveLocked(span.Length, endOffset);
                Debug.Assert((long)position + span.Length <= config.SegmentBytesEffective || position == 0, "segment overfilled");
                _owner.Tails.Reserve(endOffset);
                if (idempotent)
                {
                    if (_owner.Producers.Apply(producer, baseOffset) is { } aborted)
                    {
                        segment.TxnIndex.Append(aborted);
                        _owner.NoteAbortedLocked();
                    }

                    if (_owner.Producers.TakeTxnsChanged())
                    {
                        _owner.UpdateFirstUnstableOffsetLocked();
                    }
                }

                sequence = _nextSequence++;
                op.Init(sequence, baseOffset, endOffset, segment, position, span.Length, maxTimestamp, waitDurable, appendTimeMs, _owner.Tails.LogStart);
                version = op.Version;
                if (tail is not null)
                {
                    region = tail.Reserve(position, span.Length);
                    op.Copying = true;
                }

                _pending.Enqueue(op);
            }

            if (snapshot is not null)
            {
                _owner.StartRollSnapshotWrite(snapshot, generation);
            }
        }
        catch (StorageException ex)
        {
            _pool.Return(op);
            _owner.Flusher.IssueFlushes(flushes, round);
            return ValueTask.FromException<AppendResult>(ex);
        }
        catch
        {
            _pool.Return(op);
            _owner.Flusher.IssueFlushes(flushes, round);
            throw;
        }
        finally
        {
            if (message is not null)
            {
                _owner.Info(message);
            }
        }

        _owner.Flusher.IssueFlushes(flushes, round);
        if (tail is not null)
        {
            // The region is this append's alone: the copy runs without the lock, so completions never wait for it.
            string? copyFailure = null;
            try
            {
                OnCopying?.Invoke();
                region.CopyFrom(span);
            }
            catch (Exception ex)
            {
                copyFailure = ex.Message; // reserved and queued: it must still leave the queue, failed
            }

            int pieces = 0;
            message = null;
            lock (_owner.Lock)
            {
                op.Copying = false;
                if (copyFailure is not null)
                {
                    // As a failed write: this append and later ones fail, and the resume truncates their bytes.
                    op.State = PendingAppend.WriteState.Failed;
                    op.Errno = -ErrnoNames.EIO;
                    MarkFailedLocked(op.Errno, op.BaseOffset, $"the copy of offsets {op.BaseOffset}..{op.EndOffset - 1} into the write-behind of {op.Segment.Name} ({copyFailure})", ref message);
                }

                AdvanceCopiedLocked(tail, sequence);
                if (tail.TryStartRound())
                {
                    pieces = tail.PieceCount;
                }

                if (op.State != PendingAppend.WriteState.InFlight)
                {
                    // Its round failed during the copy: it may leave the queue now (not touched after this).
                    PublishLocked();
                    flushes = _owner.Flusher.StartFlushLocked(out round);
                }
                else
                {
                    flushes = null;
                }
            }

            if (message is not null)
            {
                _owner.Info(message);
            }

            _owner.Flusher.IssueFlushes(flushes, round);
            if (pieces > 0 && _writeIdleRoundsInline && !tail.RoundIsDirect)
            {
                WriteRoundHere(tail, pieces);
            }
            else
            {
                IssueRound(tail, pieces);
            }

            return new ValueTask<AppendResult>(op, version);
        }

        try
        {
            _owner.Device.Write(file, position, batch, this, sequence);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException)
        {
            // The device refused the write outright; treat it like a failed completion.
            OnWriteDone(sequence, ex is ObjectDisposedException ? -ErrnoNames.EBADF : -ErrnoNames.FromException(ex));
        }

        return new ValueTask<AppendResult>(op, version);
    }

    /// <summary>
    /// A batch the producer state does not append: a retry of a stored batch gets the original's offsets (once that is
    /// completed, and durable if asked), anything else the Kafka error of the check.
    /// </summary>
    private ValueTask<AppendResult> RefuseLocked(in ProducerBatch batch, ProducerCheck check, bool waitDurable, long generation)
    {
        if (check.Outcome == ProducerCheckOutcome.Duplicate)
        {
            BatchMetadata original = check.Duplicate;
            LogTails tails = _owner.Tails;
            if (tails.Completed > original.LastOffset && (!waitDurable || tails.Durable > original.LastOffset))
            {
                return ValueTask.FromResult(new AppendResult(original.FirstOffset, original.Timestamp, tails.LogStart));
            }

            return _owner.AnswerDuplicateAsync(original, waitDurable, generation);
        }

        string why = check.Outcome switch
        {
            ProducerCheckOutcome.InvalidProducerEpoch => "its epoch is older than the producer's current epoch here (the producer was fenced or re-initialised)",
            ProducerCheckOutcome.OutOfOrderSequence => "its sequence does not follow the producer's last batch here (a gap, or a retry older than the last five batches)",
            ProducerCheckOutcome.InvalidTxnState => "the producer has a transaction open on this partition",
            ProducerCheckOutcome.CoordinatorFenced => "its coordinator epoch is older than the one of the producer's last marker here (a zombie coordinator)",
            ProducerCheckOutcome.InvalidControlBatch => "a control batch must be transactional and hold one COMMIT or ABORT marker",
            ProducerCheckOutcome.TransactionNotVerified => "it would start a transaction that the transaction coordinator did not confirm for this partition, or one that ended (a marker or a new epoch) after the check",
            _ => "a batch with a producer id must have a base sequence of 0 or more",
        };
        _owner.Producers.TryGetProducer(batch.ProducerId, out ProducerStateEntry? known);
        return ValueTask.FromException<AppendResult>(new ProducerStateException(check.ErrorCode,
            $"partition {_owner.Name}: refused the batch of {batch} because {why}; known here: {(known is null ? "nothing" : known.ToString())}"));
    }

    /// <summary>Rents the write-behind memory of an append before it reserves anything; running out fails only it.</summary>
    private void PrepareTailLocked(DirectTail tail, int size)
    {
        try
        {
            OnStaging?.Invoke();
            tail.Prepare(size);
        }
        catch (OutOfMemoryException ex)
        {
            throw new StorageException($"partition {_owner.Name}: no memory to stage an append of {size} bytes for its O_DIRECT write ({ex.Message}); the append was not stored, retry it; if this repeats, give the broker more memory", ErrnoNames.ENOMEM, ex);
        }
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
            throw new StorageException($"partition {_owner.Name}: cannot reopen {segment.LogPath} to append to it: {ex.Message} ({ErrnoNames.Describe(errno)}); the append was not stored, retry it; {ErrnoNames.Advice(errno)}", errno, ex);
        }
    }

    /// <summary>
    /// Opens the O_DIRECT write-behind of <paramref name="segment"/> (nothing in flight, the file holds exactly
    /// <paramref name="position"/> bytes), or marks it buffered for good. Its partial last page is read from the file
    /// here, before the caller reserves anything, so that a failed read fails only this append.
    /// </summary>
    private DirectTail? OpenTailLocked(Segment segment, int position, ref string? message)
    {
        DirectTail? tail = DirectTail.TryOpen(segment, position, _owner.Device, _onTailPiece, out int errno, _owner.Readers);
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
                throw new StorageException($"partition {_owner.Name}: cannot read the last page of {segment.LogPath} to append after it: {ex.Message}; the append was not stored, retry it", readErrno, ex);
            }
        }

        if (tail is null)
        {
            segment.DirectUnavailable = true;
            if (Interlocked.Exchange(ref s_directUnsupportedLogged, 1) == 0)
            {
                message = $"partition {_owner.Name}: cannot open {segment.LogPath} with O_DIRECT ({ErrnoNames.Describe(-errno)}{(errno == ErrnoNames.EINVAL ? ", the file system does not support it" : "")}); "
                    + "io_uring appends to such files go through the page cache instead (slower; logged once per broker)";
            }

            return null;
        }

        tail.NextToMark = _nextSequence;
        segment.Tail = tail;
        return tail;
    }

    /// <summary>
    /// Writes a small buffered round on this (the appender's) thread, outside the lock, and completes it as the device
    /// would: the append is then answered before AppendAsync returns, with no hop to the ring thread and back. The
    /// round's later successors, started by this completion, go through the device.
    /// </summary>
    private void WriteRoundHere(DirectTail tail, int pieces)
    {
        for (int i = 0; i < pieces; i++)
        {
            (SafeFileHandle file, long position, ReadOnlyMemory<byte> data) = tail.GetPiece(i);
            OnTailPieceDone(tail, SyncLogDevice.WriteAll(file, data.Span, position));
        }
    }

    /// <summary>Hands a round's pieces to the device (outside the lock); a refused piece counts as failed.</summary>
    private void IssueRound(DirectTail tail, int pieces)
    {
        for (int i = 0; i < pieces; i++)
        {
            (SafeFileHandle file, long position, ReadOnlyMemory<byte> data) = tail.GetPiece(i);
            try
            {
                _owner.Device.Write(file, position, data, tail, i);
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
        lock (_owner.Lock)
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
                    _owner.Segments.ReleaseTailLocked(segment, trim: true, ref message); // a sealed segment's last round: cut the padding before its final flush
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
            flushes = _owner.Flusher.StartFlushLocked(out round);
        }

        if (message is not null)
        {
            _owner.Info(message);
        }

        _owner.Flusher.IssueFlushes(flushes, round);
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

    /// <summary>See <see cref="PartitionLog.WaitForAppendAsync"/>.</summary>
    public Task WaitForAppendAsync(long highWatermarkSeen, CancellationToken ct)
    {
        if (_owner.Tails.Completed > highWatermarkSeen)
        {
            return Task.CompletedTask;
        }

        Task signal;
        lock (_owner.Lock)
        {
            if (_owner.Tails.Completed > highWatermarkSeen || _owner.Closed)
            {
                return Task.CompletedTask;
            }

            _hwSignal ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            signal = _hwSignal.Task;
        }

        return ct.CanBeCanceled ? signal.WaitAsync(ct) : signal;
    }

    private void EnsureWritableLocked(ref string? message)
    {
        if (_owner.Closing)
        {
            throw new StorageException($"partition {_owner.Name} is closed (topic deleted or broker shutting down); retry on the new leader or after restart");
        }

        if (!_failed)
        {
            return;
        }

        if (_flushFatal)
        {
            throw new StorageException(
                $"partition {_owner.Name} is offline: an fdatasync failed with {ErrnoNames.Describe(_failureErrno)}, so data written before it may not be on disk; fix the disk, then restart the broker (recovery checks the log)",
                Math.Abs(_failureErrno));
        }

        // A flush in flight covers only completed bytes, which truncation keeps: no need to wait for it.
        if (_pending.Count > 0)
        {
            throw new StorageException(
                $"partition {_owner.Name} is failed after {ErrnoNames.Describe(_failureErrno)} and still draining {_pending.Count} in-flight write(s); retry shortly ({ErrnoNames.Advice(_failureErrno)})",
                Math.Abs(_failureErrno));
        }

        // Drained: truncate the unpublished bytes (written or not) and take appends again.
        int dropped;
        try
        {
            dropped = _owner.Segments.TruncateToCompletedLocked(ref message);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            int errno = ErrnoNames.FromException(ex);
            throw new StorageException(
                $"partition {_owner.Name} is failed after {ErrnoNames.Describe(_failureErrno)} and could not truncate {_owner.Segments.Active.Name} back to offset {_owner.Tails.Completed}: {ex.Message}; {ErrnoNames.Advice(errno)}",
                errno,
                ex);
        }

        Segment keep = _owner.Segments.Active;

        // The state took the dropped batches at reservation: rebuild it from the log before taking appends again.
        _owner.RebuildProducerStateLocked(startup: false);
        _failed = false;
        _failedFrom = long.MaxValue;
        if (_owner.Tails.Durable < _owner.Tails.Completed)
        {
            _owner.Flusher.RequestLocked(_owner.Tails.Completed);
        }

        message = (message is null ? string.Empty : message + " ")
            + $"partition {_owner.Name}: resumed after {ErrnoNames.Describe(_failureErrno)}; truncated {keep.Name} back to position {keep.CompletedSize} (dropped {dropped} unpublished bytes), next offset {_owner.Tails.Reserved}";
        _failureErrno = 0;
    }

    public void OnWriteDone(long token, int result)
    {
        string? message = null;
        SafeFileHandle[]? flushes;
        long round;
        lock (_owner.Lock)
        {
            Debug.Assert(_pending.Count > 0, "write completion with nothing in flight");
            int index = (int)(token - _pending.Front.Sequence);
            PendingAppend op = _pending[index];
            if (op.Sequence != token || op.State != PendingAppend.WriteState.InFlight)
            {
                throw new InvalidOperationException($"partition {_owner.Name}: unexpected write completion for token {token}");
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
            flushes = _owner.Flusher.StartFlushLocked(out round);
        }

        if (message is not null)
        {
            _owner.Info(message);
        }

        _owner.Flusher.IssueFlushes(flushes, round);
    }

    public void MarkFailedLocked(int errno, long fromOffset, string what, ref string? message)
    {
        _failedFrom = Math.Min(_failedFrom, fromOffset);

        // ABORT markers from there on will not be published: their index entries go now, not only at the resume.
        for (int i = _owner.Segments.Count - 1; i >= 0 && _owner.Segments[i].ReservedEnd > _failedFrom; i--)
        {
            _owner.Segments[i].TxnIndex.TruncateTo(_failedFrom);
        }

        if (_failed)
        {
            return;
        }

        _failed = true;
        _failureErrno = errno;
        message = $"partition {_owner.Name}: {what} failed with {ErrnoNames.Describe(errno)}; the partition is failed: appends from offset {_failedFrom} on fail with KAFKA_STORAGE_ERROR, "
            + $"published data below offset {_owner.Tails.Completed} is untouched, and once the in-flight writes drain the next append truncates the unpublished bytes and resumes; {ErrnoNames.Advice(errno)}";
    }

    /// <summary>Publishes finished writes in offset order; answers or fails their appends.</summary>
    private void PublishLocked()
    {
        LogConfig config = _owner.Config;
        bool advanced = false;
        long nowMs = 0;
        while (_pending.Count > 0 && _pending.Front.State != PendingAppend.WriteState.InFlight && !_pending.Front.Copying)
        {
            PendingAppend op = _pending.Dequeue();
            if (op.State == PendingAppend.WriteState.Written && op.BaseOffset < _failedFrom)
            {
                if (op.BaseOffset != _owner.Tails.Completed)
                {
                    throw new InvalidOperationException($"partition {_owner.Name}: publishing offset {op.BaseOffset} at completed tail {_owner.Tails.Completed}");
                }

                if (!advanced)
                {
                    nowMs = _owner.NowMs();
                }

                Segment segment = op.Segment;
                segment.OnPublished(op.BaseOffset, op.EndOffset, op.Position, op.Size, op.MaxTimestamp, config.IndexIntervalBytes, nowMs);
                if (segment.Sealed && segment.CompletedEnd == segment.SealedEnd)
                {
                    segment.FinishTimeIndex();
                }

                _owner.Tails.Complete(op.EndOffset);
                advanced = true;
                if (op.WaitDurable && _owner.Tails.Durable < op.EndOffset)
                {
                    _owner.Flusher.WaitDurableLocked(op);
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
                op.Fail(new StorageException($"partition {_owner.Name}: {cause}; the append was not stored, retry it ({ErrnoNames.Advice(errno)})", Math.Abs(errno)));
            }
        }

        if (advanced)
        {
            if (_owner.Producers.HasUnreplicatedTxns && _owner.Producers.OnHighWatermarkUpdated(_owner.Tails.Completed))
            {
                _owner.UpdateFirstUnstableOffsetLocked(); // before the wake-up below: woken fetches see the new LSO
            }

            _owner.Flusher.OnCompletedLocked(config.Flush);

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
}
