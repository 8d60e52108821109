using Kiou.IoUring.Interop;

namespace Kiou.Storage;

/// <summary>
/// Closing one partition's log, once (<see cref="PartitionLog.DisposeAsync"/>, <see cref="PartitionLog.DeleteAsync"/>):
/// stop appends and drain those in flight, release the write-behind tails, cut what an I/O error left unpublished,
/// the final flush, then wait for flush rounds and index writes, fail whoever still waits for durability, and on a
/// clean close write index files, the recovery point and the clean-shutdown marker.
/// </summary>
/// <remarks>Runs on the caller's thread and the thread pool; takes the partition lock in short steps, never across an await.</remarks>
internal sealed class LogCloser(PartitionLog owner)
{
    private readonly PartitionLog _owner = owner;

    /// <param name="clean">Flush and leave files a clean start trusts (dispose); false: only stop (delete).</param>
    public async Task CloseAsync(bool clean)
    {
        Task drained;
        lock (_owner.Lock)
        {
            if (_owner.Closing)
            {
                return;
            }

            _owner.Closing = true;
            drained = _owner.Appends.WhenDrainedLocked();
        }

        await drained.ConfigureAwait(false);

        string? tailMessage = null;
        lock (_owner.Lock)
        {
            _owner.Segments.CloseTailsLocked(trim: !_owner.Appends.Failed, ref tailMessage);
        }

        if (tailMessage is not null)
        {
            _owner.Info(tailMessage);
        }

        if (clean)
        {
            // Writes that completed after an I/O error were never published: cut them now, or recovery would
            // bring back appends that were answered with an error.
            string? message = null;
            lock (_owner.Lock)
            {
                if (_owner.Appends.Failed)
                {
                    try
                    {
                        int dropped = _owner.Segments.TruncateToCompletedLocked(ref message);
                        message = (message is null ? string.Empty : message + " ")
                            + $"partition {_owner.Name}: closing after {ErrnoNames.Describe(_owner.Appends.FailureErrno)}; truncated {_owner.Segments.Active.Name} back to offset {_owner.Tails.Completed} (dropped {dropped} unpublished bytes)";
                    }
                    catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                    {
                        message = $"partition {_owner.Name}: closing after {ErrnoNames.Describe(_owner.Appends.FailureErrno)} and could not truncate back to offset {_owner.Tails.Completed} ({ex.Message}); the next start scans the log";
                    }
                }
            }

            if (message is not null)
            {
                _owner.Info(message);
            }
        }

        bool flushed = false;
        if (clean)
        {
            try
            {
                await _owner.FlushAsync().ConfigureAwait(false);
                flushed = true;
            }
            catch (StorageException ex)
            {
                _owner.Info($"partition {_owner.Name}: the final flush at close failed ({ex.Message}); the next start scans the log");
            }
        }

        // No new flush rounds from here on; wait for a round started by appends, and for index writes.
        Segment[] segments;
        Segment active;
        bool failed;
        lock (_owner.Lock)
        {
            _owner.Closed = true;
            _owner.Appends.WakeWaitersLocked();
        }

        while (true)
        {
            Task? wait;
            lock (_owner.Lock)
            {
                wait = _owner.Flusher.WhenIdleLocked();
                if (wait is null)
                {
                    segments = _owner.Segments.ToArrayLocked();
                    active = _owner.Segments.Active;
                    failed = _owner.Appends.Failed;
                    if (clean)
                    {
                        active.FinishTimeIndex();
                    }

                    // No flush will come for these any more (delete, or a failed final flush).
                    _owner.Flusher.FailWaitersLocked(new StorageException($"partition {_owner.Name} was closed before the data became durable; retry the produce"));
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
                        _owner.Info($"partition {_owner.Name}: could not write the index files of {s.Name} at close ({ex.Message}); they will be rebuilt at the next start");
                    }
                }
            }

            if (!failed)
            {
                _owner.TakeCloseSnapshotAfterRollWrites();
                try
                {
                    _owner.Flusher.TryWriteRecoveryPoint(active.CompletedEnd);
                    Recovery.WriteCleanMarker(_owner.Segments.Directory, active.BaseOffset, active.Size, active.CompletedEnd);
                }
                catch (IOException ex)
                {
                    _owner.Info($"partition {_owner.Name}: could not write the clean-shutdown marker ({ex.Message}); the next start scans the active segment");
                }
            }
        }

        foreach (Segment s in segments)
        {
            s.Close();
        }
    }
}
