using System.Diagnostics;
using Kiou.IoUring.Interop;

namespace Kiou.Storage;

/// <summary>
/// The segments of one partition, oldest first, the last one active: finding the segment of an offset, rolling,
/// retention, truncation after an I/O error, and the segments' descriptors and write-behind tails (released when
/// sealed, idle or truncated).
/// </summary>
/// <remarks>
/// Every member runs under the partition lock (<see cref="PartitionLog.Lock"/>) unless it says otherwise; file
/// deletion after retention runs outside it. Sealed segments' descriptors live in the shared
/// <see cref="SegmentFileCache"/>; the active segment keeps its own until it idles.
/// </remarks>
internal sealed class SegmentSet
{
    private readonly PartitionLog _owner;
    private readonly List<Segment> _segments;
    private readonly SegmentFileCache _files;
    private Segment _active;
    private long _sizeBytes;
    private long _noIdleReleaseBeforeMs;

    public SegmentSet(PartitionLog owner, string directory, List<Segment> segments, SegmentFileCache files)
    {
        Debug.Assert(segments.Count > 0, "a log has at least its active segment");
        _owner = owner;
        Directory = directory;
        _segments = segments;
        _files = files;
        _active = segments[^1];
        foreach (Segment s in segments)
        {
            _sizeBytes += s.Size;
        }
    }

    public string Directory { get; }

    /// <summary>The segment appends go to (read without the lock: a stale answer is only a hint).</summary>
    public Segment Active => Volatile.Read(ref _active);

    public int Count => _segments.Count;

    public Segment this[int index] => _segments[index];

    /// <summary>Bytes of all segment files, including writes in flight (read without the lock).</summary>
    public long SizeBytes => Volatile.Read(ref _sizeBytes);

    public List<Segment>.Enumerator GetEnumerator() => _segments.GetEnumerator();

    public int IndexOf(Segment segment) => _segments.IndexOf(segment);

    public Segment[] ToArrayLocked() => _segments.ToArray();

    /// <summary>
    /// Takes <paramref name="size"/> bytes at the end of the active segment for an append ending at offset
    /// <paramref name="endOffset"/>; returns the file position they start at.
    /// </summary>
    public int ReserveLocked(int size, long endOffset)
    {
        Segment segment = _active;
        int position = segment.Size;
        segment.Size = position + size;
        segment.ReservedEnd = endOffset;
        Volatile.Write(ref _sizeBytes, _sizeBytes + size);
        return position;
    }

    /// <summary>
    /// Gives up the idle active segment's descriptors (see <see cref="PartitionLog.ReleaseIdleDescriptors"/>, which
    /// checks that nothing is in flight): the write-behind's padding is cut first; if that fails nothing is released
    /// and the next try waits <paramref name="idleMs"/>.
    /// </summary>
    public bool TryReleaseIdleLocked(long nowMs, long idleMs, ref string? message)
    {
        Segment segment = _active;
        if (nowMs - segment.LastAppendMs < idleMs || nowMs < _noIdleReleaseBeforeMs || segment.Tail is { Idle: false })
        {
            return false;
        }

        if (!TrimIdleTailLocked(segment, nowMs + idleMs, ref message))
        {
            return false;
        }

        if (segment.Tail is not null)
        {
            ReleaseTailLocked(segment, trim: false, ref message);
        }

        segment.ReleaseHandle();
        return true;
    }

    /// <summary>Throws unless the segments agree with each other and with the tails (tests, simulator).</summary>
    public void CheckInvariantsLocked(Action<bool, string> check)
    {
        LogTails tails = _owner.Tails;
        // Above the first base only after DeleteRecords (until retention deletes the segments wholly below it).
        check(tails.LogStart >= _segments[0].BaseOffset, $"log start {tails.LogStart} < first segment base {_segments[0].BaseOffset}");
        check(_active == _segments[^1] && !_active.Sealed, "the last segment is not the active one");
        check(_active.ReservedEnd == tails.Reserved, $"active segment reserved end {_active.ReservedEnd} != reserved {tails.Reserved}");
        long size = 0;
        for (int i = 0; i < _segments.Count; i++)
        {
            Segment s = _segments[i];
            size += s.Size;
            check(s.CompletedSize <= s.Size, $"{s.Name}: completed size {s.CompletedSize} > size {s.Size}");
            check(s.CompletedEnd <= s.ReservedEnd, $"{s.Name}: completed end > reserved end");
            check(s.FlushedEnd <= s.CompletedEnd, $"{s.Name}: flushed end {s.FlushedEnd} > completed end {s.CompletedEnd}");
            if (i < _segments.Count - 1)
            {
                check(s.Sealed, $"{s.Name} is not sealed but not last");
                // Below: a hole left by damage that recovery set aside (docs/design/recovery.md).
                check(s.SealedEnd <= _segments[i + 1].BaseOffset, $"{s.Name} ends at {s.SealedEnd}, past the next segment's base {_segments[i + 1].BaseOffset}");
                check(s.CompletedEnd == s.SealedEnd || _segments[i + 1].CompletedEnd == _segments[i + 1].BaseOffset, $"{s.Name} not complete but a later segment has published data");
            }
        }

        check(size == _sizeBytes, $"size {_sizeBytes} != sum of segments {size}");
    }

    /// <summary>The log cleaner's swap: <paramref name="count"/> segments from <paramref name="index"/> become <paramref name="replacement"/>.</summary>
    internal void ReplaceLocked(int index, int count, Segment replacement)
    {
        long removed = 0;
        for (int i = index; i < index + count; i++)
        {
            removed += _segments[i].Size;
        }

        _segments.RemoveRange(index, count);
        _segments.Insert(index, replacement);
        Volatile.Write(ref _sizeBytes, _sizeBytes - removed + replacement.Size);
    }

    private void SubtractBytes(long size) => Volatile.Write(ref _sizeBytes, _sizeBytes - size);

    internal Segment FindLocked(long offset)
    {
        int lo = 0;
        int hi = _segments.Count - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) >>> 1;
            if (_segments[mid].BaseOffset <= offset)
            {
                lo = mid;
            }
            else
            {
                hi = mid - 1;
            }
        }

        Debug.Assert(_segments[lo].BaseOffset <= offset, "offset below the first segment");
        return _segments[lo];
    }

    /// <summary>The base offset of the segment after <paramref name="segment"/> (the end of a hole after it).</summary>
    internal long NextBaseLocked(Segment segment)
    {
        int i = _segments.IndexOf(segment);
        return _segments[i + 1].BaseOffset;
    }

    internal bool ShouldRollLocked(int size, int lastOffsetDelta, LogConfig config, long nowMs)
    {
        Segment active = _active;
        if (active.Size == 0)
        {
            return false;
        }

        return (long)active.Size + size > config.SegmentBytesEffective
            || (config.RollMs > 0 && nowMs - active.RollBaseMs >= config.RollMs)
            || _owner.Tails.Reserved + lastOffsetDelta + 1 - active.BaseOffset > int.MaxValue;
    }

    internal Segment RollLocked(long nowMs, ref string? message)
    {
        Segment old = _active;
        Segment next;
        try
        {
            next = Segment.Create(Directory, _owner.Tails.Reserved, nowMs);
            next.Files = _files;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            int errno = ErrnoNames.FromException(ex);
            throw new StorageException($"partition {_owner.Name}: cannot create segment {Segment.FileName(_owner.Tails.Reserved)}.log: {ex.Message}; {ErrnoNames.Advice(errno)}", errno, ex);
        }

        int rc = FileSync.SyncDirectory(Directory);
        if (rc < 0)
        {
            message = $"partition {_owner.Name}: fsync of {Directory} after creating {next.Name} failed with {ErrnoNames.Describe(rc)}";
        }

        old.Seal();
        if (old.CompletedEnd == old.SealedEnd)
        {
            old.FinishTimeIndex();
        }

        if (old.Tail is { Idle: true })
        {
            ReleaseTailLocked(old, trim: true, ref message);
        }

        _segments.Add(next);
        _active = next;

        return old;
    }

    /// <summary>See <see cref="PartitionLog.EnforceRetention"/>. Takes the lock itself; deletes files outside it.</summary>
    internal void EnforceRetention(long nowMs)
    {
        LogConfig config = _owner.Config;

        var deleted = new List<(Segment Segment, string Why)>();
        lock (_owner.Lock)
        {
            if (_owner.Closing)
            {
                return;
            }

            long excess = config.RetentionBytes >= 0 ? _sizeBytes - config.RetentionBytes : -1;
            while (_segments.Count > 1)
            {
                Segment oldest = _segments[0];
                if (oldest == _active || !oldest.FullyFlushed)
                {
                    break;
                }

                long newest = oldest.MaxTimestamp >= 0 ? oldest.MaxTimestamp : oldest.LastAppendMs;
                string? why = null;
                if (_segments[1].BaseOffset <= _owner.Tails.LogStart)
                {
                    // Kafka's deleteLogStartOffsetBreachedSegments: whatever the cleanup policy.
                    why = $"it lies wholly below the log start offset {_owner.Tails.LogStart} (DeleteRecords)";
                }
                else if (!config.DeleteRetention)
                {
                    break;
                }
                else if (config.RetentionMs >= 0 && nowMs - newest > config.RetentionMs)
                {
                    why = $"its newest record is {nowMs - newest} ms old (retention.ms={config.RetentionMs})";
                }
                else if (excess >= 0 && excess - oldest.Size >= 0)
                {
                    why = $"the log is {_sizeBytes} bytes (retention.bytes={config.RetentionBytes})";
                }

                if (why is null)
                {
                    break;
                }

                excess -= oldest.Size;
                _segments.RemoveAt(0);
                SubtractBytes(oldest.Size);
                if (_segments[0].BaseOffset > _owner.Tails.LogStart)
                {
                    _owner.Tails.AdvanceLogStart(_segments[0].BaseOffset);
                }

                oldest.DeletePending = oldest.IndexWriteInProgress; // the index writer deletes it when done
                deleted.Add((oldest, why));
            }

            if (deleted.Count > 0)
            {
                // As Kafka: the snapshots of deleted segments go, the producers stay (their state outlives their batches).
                _owner.Producers.OnLogStartOffsetIncremented(_owner.Tails.LogStart);
                _owner.Producers.DeleteSnapshotsBefore(_segments[0].BaseOffset); // the kept first segment's snapshot stays
            }
        }

        if (deleted.Count == 0)
        {
            return;
        }

        foreach (var (segment, why) in deleted)
        {
            _owner.Info($"partition {_owner.Name}: retention deleted {segment.Name} (offsets {segment.BaseOffset}..{segment.SealedEnd - 1}, {segment.Size} bytes) because {why}; log start offset is now {_owner.Tails.LogStart}");
            if (!segment.DeletePending)
            {
                DeleteSegmentFiles(segment);
            }
        }

        FileSync.SyncDirectory(Directory);
    }

    internal void DeleteSegmentFiles(Segment segment)
    {
        try
        {
            segment.CloseAndDelete();
        }
        catch (IOException ex)
        {
            _owner.Info($"partition {_owner.Name}: could not delete {segment.LogPath} ({ex.Message}); it is no longer served, remove it by hand");
        }
    }

    /// <summary>
    /// Cuts everything past the completed tail (after an I/O error, with nothing in flight): the segment holding the
    /// tail is truncated first (if that throws, nothing changed), later segments are deleted, the kept segment
    /// becomes active again. Returns the bytes dropped.
    /// </summary>
    internal int TruncateToCompletedLocked(ref string? message)
    {
        int keepIndex = _segments.Count - 1;
        while (keepIndex > 0 && _segments[keepIndex].BaseOffset > _owner.Tails.Completed)
        {
            keepIndex--;
        }

        Segment keep = _segments[keepIndex];
        RandomAccess.SetLength(keep.Handle, keep.CompletedSize);
        CloseTailsLocked(trim: false, ref message);
        keep.DropCached(); // its positions past the cut are written again
        int dropped = keep.Size - keep.CompletedSize;
        for (int i = _segments.Count - 1; i > keepIndex; i--)
        {
            Segment drop = _segments[i];
            Debug.Assert(drop.CompletedEnd == drop.BaseOffset, "dropping a segment with published data");
            _segments.RemoveAt(i);
            SubtractBytes(drop.Size);
            dropped += drop.Size;
            try
            {
                drop.CloseAndDelete();
            }
            catch (IOException ex)
            {
                // Recovery drops it at the next start: it begins past the end of the kept segment.
                message = $"partition {_owner.Name}: could not delete {drop.LogPath} ({ex.Message}); the next start removes it";
            }
        }

        SubtractBytes(keep.Size - keep.CompletedSize);
        keep.ReopenAtCompleted();
        keep.TxnIndex.TruncateTo(_owner.Tails.Completed); // ABORT markers that were reserved and never published
        _active = keep;
        _owner.Tails.Truncate(_owner.Tails.Completed);
        return dropped;
    }

    /// <summary>Releases every segment's tail (nothing in flight); with <paramref name="trim"/> cuts padding first.</summary>
    internal void CloseTailsLocked(bool trim, ref string? message)
    {
        foreach (Segment s in _segments)
        {
            if (s.Tail is not null)
            {
                ReleaseTailLocked(s, trim, ref message);
            }
        }
    }

    /// <summary>
    /// Drops <paramref name="segment"/>'s tail (its chunks, O_DIRECT descriptor and recent bytes); with
    /// <paramref name="trim"/> and no round in flight, first cuts the zero padding so the file ends where the log does.
    /// </summary>
    internal void ReleaseTailLocked(Segment segment, bool trim, ref string? message)
    {
        DirectTail tail = segment.Tail!;
        if (trim && !tail.RoundInFlight)
        {
            try
            {
                tail.TrimPadding();
            }
            catch (IOException ex)
            {
                // Harmless for the data: recovery walks the batches and cuts the zeros at the next start.
                message = $"partition {_owner.Name}: could not cut the zero padding after the last batch of {segment.Name} ({ex.Message}); the next start truncates it";
            }
        }

        tail.Dispose();
        segment.Tail = null;
    }

    /// <summary>
    /// Cuts the zero padding of an idle direct tail before its descriptors close: a segment sealed later without a tail
    /// must end where its log does. If that fails everything stays open and the next try waits until
    /// <paramref name="retryAtMs"/>.
    /// </summary>
    private bool TrimIdleTailLocked(Segment segment, long retryAtMs, ref string? message)
    {
        if (segment.Tail is not { } tail)
        {
            return true;
        }

        try
        {
            tail.TrimPadding();
            return true;
        }
        catch (IOException ex)
        {
            _noIdleReleaseBeforeMs = retryAtMs;
            message = $"partition {_owner.Name}: could not cut the zero padding after the last batch of {segment.Name} ({ex.Message}); its descriptors stay open and the cut is tried again later";
            return false;
        }
    }
}
