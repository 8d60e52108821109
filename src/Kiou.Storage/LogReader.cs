using System.Buffers;
using System.Diagnostics;
using Kiou.Protocol.Records;

namespace Kiou.Storage;

/// <summary>
/// Reads of one partition's log: batches by offset (copied and CRC-checked, or as a file region for sendfile),
/// <see cref="BytesAvailable"/> for fetch waits, lookups by timestamp, and the rebuild of a segment's indexes when
/// they contradict its log.
/// </summary>
/// <remarks>
/// Any thread. Each read takes the partition lock only to find its segment and capture the completed size
/// (never past <see cref="LogTails.Completed"/>), then reads the file outside it; a segment deleted meanwhile by
/// retention shows up as <see cref="ObjectDisposedException"/> and the lookup is repeated.
/// </remarks>
internal sealed class LogReader(PartitionLog owner)
{
    private readonly PartitionLog _owner = owner;
    private readonly HashSet<Segment> _indexesRebuilt = new();
    private long _corruptWarnMs = long.MinValue;
    private int _corruptWarnsSuppressed;

    /// <summary>
    /// Whole batches from the one containing <paramref name="offset"/>, never past the high watermark, from one
    /// segment, at most <paramref name="maxBytes"/> in total; with <paramref name="minOneBatch"/> the first batch
    /// is returned whole even if larger. Offsets between the high watermark and the log end offset (in flight)
    /// give an empty result, as in Kafka; below the log start or above the log end offset give
    /// <see cref="ReadError.OffsetOutOfRange"/>; an offset in a hole left by damage, or a batch whose header (or, when
    /// read into memory, CRC) is bad, gives <see cref="ReadError.Corrupt"/> and a rate-limited warning (batches before
    /// a bad one are returned). Dispose the result.
    /// With <paramref name="zeroCopy"/> the bytes are not read: the result's records are a <see cref="FileRecords"/>
    /// region of the segment file (for sendfile), cut at batch boundaries found through the offset index.
    /// <paramref name="maxOffset"/> (exclusive, a batch boundary such as the last stable offset) stops the read earlier
    /// than the high watermark: read_committed fetches.
    /// When the batches from the offset's to the end of a sealed, complete segment hold no records (the cleaner's
    /// closing batch, a producer's last sequence), the read goes on at the next segment: the result starts past the
    /// offset (as Kafka's may on compacted topics), or is empty at the high watermark or bound.
    /// </summary>
    public ReadResult Read(long offset, int maxBytes, bool minOneBatch, bool zeroCopy = false, long maxOffset = long.MaxValue)
    {
        for (int attempt = 0; ; attempt++)
        {
            Segment segment;
            int indexPosition = 0;
            long indexBase = 0;
            int limit;
            long limitOffset;
            long hw;
            long logStart;
            (long Start, long End) hole = default;
            long bound = -1;
            int boundIndexPosition = 0;
            long boundIndexBase = 0;
            bool skippable;
            lock (_owner.Lock)
            {
                ObjectDisposedException.ThrowIf(_owner.Closed, _owner);
                hw = _owner.Tails.Completed;
                logStart = _owner.Tails.LogStart;
                if (offset < logStart || offset > _owner.Tails.Reserved)
                {
                    return new ReadResult(ReadError.OffsetOutOfRange, hw, logStart, null, 0);
                }

                if (offset >= hw || offset >= maxOffset)
                {
                    return new ReadResult(ReadError.None, hw, logStart, null, 0);
                }

                segment = _owner.Segments.FindLocked(offset);
                if (segment.Sealed && offset >= segment.SealedEnd)
                {
                    hole = (segment.SealedEnd, _owner.Segments.NextBaseLocked(segment));
                }
                else
                {
                    (int rel, indexPosition) = segment.Index.Lookup(offset - segment.BaseOffset);
                    indexBase = segment.BaseOffset + rel;
                }

                limit = segment.CompletedSize;
                limitOffset = segment.CompletedEnd;
                if (maxOffset < segment.CompletedEnd && hole.End == 0)
                {
                    bound = maxOffset;
                    (int boundRel, boundIndexPosition) = segment.Index.Lookup(bound - segment.BaseOffset);
                    boundIndexBase = segment.BaseOffset + boundRel;
                }

                // A sealed segment read to its end with a later segment: its closing batches may be skipped.
                skippable = hole.End == 0 && bound < 0 && segment.Sealed && segment.CompletedEnd == segment.SealedEnd
                    && segment != _owner.Segments[_owner.Segments.Count - 1];
            }

            if (hole.End > 0)
            {
                WarnCorrupt(offset, $"offsets {hole.Start}..{hole.End - 1} were lost to damage found at recovery (see {Path.Combine(_owner.Segments.Directory, Recovery.QuarantineDirectory)}); consumers must seek to offset {hole.End}");
                return new ReadResult(ReadError.Corrupt, hw, logStart, null, 0);
            }

            try
            {
                if (bound >= 0 && FindBatch(segment, bound, ref boundIndexPosition, ref boundIndexBase, limit, -1, out int boundPosition, out BatchHeader boundBatch))
                {
                    if (boundBatch.BaseOffset <= offset)
                    {
                        return new ReadResult(ReadError.None, hw, logStart, null, 0); // the offset's batch reaches the bound
                    }

                    limit = boundPosition; // the batch holding the bound is not returned
                    limitOffset = boundBatch.BaseOffset;
                }

                ReadResult? result = zeroCopy
                    ? RegionFromSegment(segment, offset, indexPosition, indexBase, limit, limitOffset, maxBytes, minOneBatch, hw, logStart, skippable)
                    : ReadFromSegment(segment, offset, indexPosition, indexBase, limit, maxBytes, minOneBatch, hw, logStart, skippable);
                if (result is not null)
                {
                    return result;
                }

                // Only batches without records up to the segment's end (a cleaned segment's closing batch, a
                // producer's last sequence): clients see nothing in them, and some (kafka-python) fail on a response
                // holding nothing else. Read on from the end of the segment, as a fetch may start past its offset.
                offset = segment.SealedEnd;
                attempt = -1;
            }
            catch (ObjectDisposedException) when (attempt < 3)
            {
                // Retention deleted the segment after the lookup: look again (now out of range).
            }
            catch (IOException ex)
            {
                // A bad header or CRC (a StorageException without an errno) or a file shorter than the log says:
                // never served, never fatal for the connection or other partitions; a failed open or read (EMFILE,
                // EIO, a segment file gone) is a storage error.
                bool corrupt = ex is EndOfStreamException || (ex is StorageException { Errno: 0, InnerException: null });
                WarnCorrupt(offset, $"{ex.Message} The next offset known to start a batch is {NextBatchAfter(segment, offset)}: consumers can seek there", corrupt ? "CORRUPT_MESSAGE" : "KAFKA_STORAGE_ERROR");
                return new ReadResult(corrupt ? ReadError.Corrupt : ReadError.StorageError, hw, logStart, null, 0);
            }
        }
    }

    /// <summary>Where a reader can go on after damage at <paramref name="offset"/>: the next index entry, else the next segment.</summary>
    private long NextBatchAfter(Segment segment, long offset)
    {
        lock (_owner.Lock)
        {
            OffsetIndex index = segment.Index;
            for (int i = 0; i < index.Count; i++)
            {
                long entry = segment.BaseOffset + index[i].RelativeOffset;
                if (entry > offset)
                {
                    return entry;
                }
            }

            int at = _owner.Segments.IndexOf(segment);
            return at >= 0 && at + 1 < _owner.Segments.Count ? _owner.Segments[at + 1].BaseOffset : Math.Max(offset + 1, segment.CompletedEnd);
        }
    }

    /// <summary>
    /// <see cref="Segment.TryFindBatch"/> from an index entry; when the log contradicts the entry but reads from the
    /// segment start, the index was damaged (index files carry no checksum): the segment's indexes are rebuilt from
    /// its headers, once, and the search repeats from the start.
    /// </summary>
    private bool FindBatch(Segment segment, long offset, ref int position, ref long expected, int limit, long minMaxTimestamp, out int batchPosition, out BatchHeader header)
    {
        try
        {
            return segment.TryFindBatch(offset, position, expected, limit, minMaxTimestamp, out batchPosition, out header);
        }
        catch (StorageException) when ((position != 0 || expected != segment.BaseOffset) && TryRebuildIndexes(segment))
        {
            position = 0;
            expected = segment.BaseOffset;
            return segment.TryFindBatch(offset, 0, segment.BaseOffset, limit, minMaxTimestamp, out batchPosition, out header);
        }
    }

    /// <summary>
    /// Rebuilds a segment's in-memory indexes by walking its batch headers (at most once per segment while open; the
    /// bytes published meanwhile are walked under the lock) and deletes its index files so the next start rebuilds
    /// them too. False if the walk meets damage in the log itself.
    /// </summary>
    private bool TryRebuildIndexes(Segment segment)
    {
        int limit;
        lock (_owner.Lock)
        {
            if (!_indexesRebuilt.Add(segment))
            {
                return false;
            }

            limit = segment.CompletedSize;
        }

        int interval = _owner.Config.IndexIntervalBytes;
        var index = new OffsetIndex();
        var timeIndex = new TimeIndex();
        int p = 0;
        int sinceEntry = 0;
        long expected = segment.BaseOffset;
        long maxTimestamp = -1;
        int maxRelative = -1;
        if (!Walk(limit))
        {
            return false;
        }

        bool sealedSegment;
        lock (_owner.Lock)
        {
            if (!Walk(segment.CompletedSize) || expected != segment.CompletedEnd)
            {
                return false;
            }

            if (maxTimestamp >= 0 && segment.Sealed && segment.CompletedEnd == segment.SealedEnd)
            {
                timeIndex.MaybeAppend(maxTimestamp, maxRelative); // as FinishTimeIndex
            }

            segment.ReplaceIndexes(index, timeIndex, sinceEntry);
            sealedSegment = segment.Sealed;
            if (sealedSegment)
            {
                segment.IndexFilesCurrent = false;
            }
        }

        if (sealedSegment)
        {
            try
            {
                segment.DeleteIndexFiles();
            }
            catch (IOException)
            {
                // The next start finds them inconsistent or not: either way reads stay right in this process.
            }
        }

        _owner.Warn($"partition {_owner.Name}: the offset index of {segment.Name} contradicts its log (damaged: index files carry no checksum); rebuilt the indexes from the log"
            + (sealedSegment ? " and removed the files, so the next start rebuilds them as well" : string.Empty) + ". The records are intact");
        return true;

        // As Segment.OnPublished: max timestamp first, then an entry every interval bytes.
        bool Walk(int end)
        {
            Span<byte> bytes = stackalloc byte[RecordBatch.HeaderSize];
            while (p < end)
            {
                if (end - p < RecordBatch.HeaderSize)
                {
                    return false;
                }

                segment.ReadExactly(p, bytes);
                if (!RecordBatch.TryReadHeader(bytes, out BatchHeader h) || h.BaseOffset < expected || h.TotalSize > end - p)
                {
                    return false;
                }

                if (h.MaxTimestamp > maxTimestamp)
                {
                    maxTimestamp = h.MaxTimestamp;
                    maxRelative = checked((int)(h.BaseOffset - segment.BaseOffset));
                }

                if (sinceEntry >= interval && (index.Count > 0 || p > 0))
                {
                    index.Append(checked((int)(h.BaseOffset - segment.BaseOffset)), p);
                    if (maxTimestamp >= 0)
                    {
                        timeIndex.MaybeAppend(maxTimestamp, maxRelative);
                    }

                    sinceEntry = 0;
                }

                sinceEntry += h.TotalSize;
                expected = h.NextOffset;
                p += h.TotalSize;
            }

            return true;
        }
    }

    // One line per partition per 10 s: a consumer retrying at a damaged offset must not flood the log.
    private const long CorruptWarnIntervalMs = 10_000;

    /// <summary>Reports a read that met damaged data, at most once per <see cref="CorruptWarnIntervalMs"/>, counting the rest.</summary>
    private void WarnCorrupt(long offset, string what, string answer = "CORRUPT_MESSAGE")
    {
        long now = _owner.NowMs();
        long last = Volatile.Read(ref _corruptWarnMs);
        if ((last != long.MinValue && now - last < CorruptWarnIntervalMs) || Interlocked.CompareExchange(ref _corruptWarnMs, now, last) != last)
        {
            Interlocked.Increment(ref _corruptWarnsSuppressed);
            return;
        }

        int suppressed = Interlocked.Exchange(ref _corruptWarnsSuppressed, 0);
        string more = suppressed > 0 ? $" ({suppressed} more such reads since the last report)" : string.Empty;
        string met = answer == "CORRUPT_MESSAGE" ? "met damaged data" : "failed";
        _owner.Warn($"partition {_owner.Name}: a read at offset {offset} {met} and was answered with {answer}{more}: {what}");
    }

    /// <summary>
    /// Log bytes from the start of the batch containing <paramref name="offset"/> up to the high watermark; 0 at or past
    /// it, or at or past <paramref name="maxOffset"/> (the last stable offset, for read_committed). Below that bound the
    /// count still runs to the high watermark: an overestimate, so a woken read_committed fetch may read, find less than
    /// its minimum and park again, but never sleeps through committed bytes.
    /// </summary>
    public long BytesAvailable(long offset, long maxOffset = long.MaxValue)
    {
        if (offset >= maxOffset)
        {
            return 0;
        }

        for (int attempt = 0; ; attempt++)
        {
            Segment segment;
            int indexPosition;
            long indexBase;
            int limit;
            long later = 0;
            bool skippable;
            lock (_owner.Lock)
            {
                if (_owner.Closed || offset < _owner.Tails.LogStart || offset >= _owner.Tails.Completed)
                {
                    return 0;
                }

                segment = _owner.Segments.FindLocked(offset);
                if (segment.Sealed && offset >= segment.SealedEnd)
                {
                    return 0; // a hole: nothing to wait for
                }

                int i = _owner.Segments.IndexOf(segment);
                for (int j = i + 1; j < _owner.Segments.Count; j++)
                {
                    later += _owner.Segments[j].CompletedSize;
                }

                limit = segment.CompletedSize;
                skippable = segment.Sealed && segment.CompletedEnd == segment.SealedEnd && i + 1 < _owner.Segments.Count;
                if (!skippable && segment.LastBatchBaseOffset >= 0 && offset >= segment.LastBatchBaseOffset)
                {
                    return limit - segment.LastBatchPosition + later;
                }

                (int rel, indexPosition) = segment.Index.Lookup(offset - segment.BaseOffset);
                indexBase = segment.BaseOffset + rel;
            }

            try
            {
                if (!segment.TryFindBatch(offset, indexPosition, indexBase, limit, -1, out int batchPosition, out BatchHeader first))
                {
                    throw segment.Corrupt(indexPosition, $"offset {offset} not found below the high watermark");
                }

                if (skippable && first.RecordsCount == 0 && OnlyEmptyBatchesToLimit(segment, batchPosition, first, limit))
                {
                    return later; // Read skips them: a fetch waiting here must not wake for them
                }

                return limit - batchPosition + later;
            }
            catch (ObjectDisposedException) when (attempt < 3)
            {
            }
            catch (IOException)
            {
                return 0; // damaged: Read answers it
            }
        }
    }

    /// <summary>
    /// ListOffsets by timestamp (README §7.4): the first offset below the high watermark whose record timestamp is
    /// ≥ <paramref name="timestamp"/>, with that timestamp; (-1, -1) if none. Goes through the time index, then
    /// walks batch headers. Exact for uncompressed batches (their records are walked). A compressed batch is not
    /// decompressed: the answer is its base offset, with its baseTimestamp if that already reaches the target,
    /// else its maxTimestamp. With LogAppendTime every record has the batch's maxTimestamp, so the answer is the
    /// batch's base offset.
    /// </summary>
    public (long Offset, long Timestamp) LookupByTimestamp(long timestamp)
    {
        int segmentIndex = 0;
        while (true)
        {
            Segment segment;
            int indexPosition;
            long indexBase;
            int limit;
            lock (_owner.Lock)
            {
                ObjectDisposedException.ThrowIf(_owner.Closed, _owner);
                while (segmentIndex < _owner.Segments.Count && _owner.Segments[segmentIndex].MaxTimestamp < timestamp)
                {
                    segmentIndex++;
                }

                if (segmentIndex >= _owner.Segments.Count)
                {
                    return (-1, -1);
                }

                segment = _owner.Segments[segmentIndex];
                int startRelative = segment.TimeIndex.Lookup(timestamp);
                (int rel, indexPosition) = segment.Index.Lookup(startRelative);
                indexBase = segment.BaseOffset + rel;
                limit = segment.CompletedSize;
                segmentIndex++;
            }

            try
            {
                int position = indexPosition;
                long expected = indexBase;
                while (FindBatch(segment, expected, ref position, ref expected, limit, timestamp, out int batchPosition, out BatchHeader h))
                {
                    if (ResolveTimestamp(segment, batchPosition, h, timestamp, out long offset, out long found))
                    {
                        // Records that DeleteRecords put below the log start are never an answer (Kafka searches from it).
                        return (Math.Max(offset, _owner.Tails.LogStart), found);
                    }

                    // The header's maxTimestamp overstated the records: keep looking.
                    position = batchPosition + h.TotalSize;
                    expected = h.NextOffset;
                }
            }
            catch (ObjectDisposedException)
            {
                // Deleted by retention meanwhile: continue with the next segment.
            }
            catch (IOException ex)
            {
                WarnCorrupt(indexBase, ex.Message, "the next segment's first match"); // damaged: look in the next segment
            }
        }
    }

    /// <summary>
    /// ListOffsets -3: the offset and timestamp of the record with the largest timestamp (the first such record);
    /// (-1, -1) if the log holds no timestamped record. Exact for uncompressed batches; for compressed or
    /// LogAppendTime batches, the batch's base offset.
    /// </summary>
    public (long Offset, long Timestamp) MaxTimestampEntry()
    {
        for (int attempt = 0; ; attempt++)
        {
            Segment? best = null;
            int indexPosition;
            long indexBase;
            int limit;
            lock (_owner.Lock)
            {
                ObjectDisposedException.ThrowIf(_owner.Closed, _owner);
                foreach (Segment s in _owner.Segments)
                {
                    if (s.MaxTimestamp >= 0 && (best is null || s.MaxTimestamp > best.MaxTimestamp))
                    {
                        best = s;
                    }
                }

                if (best is null)
                {
                    return (-1, -1);
                }

                (int rel, indexPosition) = best.Index.Lookup(best.OffsetOfMaxTimestamp - best.BaseOffset);
                indexBase = best.BaseOffset + rel;
                limit = best.CompletedSize;
            }

            try
            {
                long target = best.OffsetOfMaxTimestamp;
                long max = best.MaxTimestamp;
                if (!FindBatch(best, target, ref indexPosition, ref indexBase, limit, -1, out int batchPosition, out BatchHeader h))
                {
                    throw best.Corrupt(indexPosition, $"the batch at offset {target} with the max timestamp is missing");
                }

                if (h.Codec == CompressionType.None && h.TimestampType == TimestampType.CreateTime
                    && ResolveTimestamp(best, batchPosition, h, max, out long offset, out long found) && found == max)
                {
                    return (offset, max);
                }

                return (h.BaseOffset, max);
            }
            catch (ObjectDisposedException) when (attempt < 3)
            {
            }
            catch (IOException ex)
            {
                WarnCorrupt(best.OffsetOfMaxTimestamp, ex.Message, "the offset the time index holds");
                return (best.OffsetOfMaxTimestamp, best.MaxTimestamp); // from the time index, not the damaged bytes
            }
        }
    }

    /// <summary>Null when <paramref name="skippable"/> and only batches without records follow to the limit (see <see cref="Read"/>).</summary>
    private ReadResult? RegionFromSegment(Segment segment, long offset, int indexPosition, long indexBase, int limit, long limitOffset, int maxBytes, bool minOneBatch, long hw, long logStart, bool skippable)
    {
        if (!FindBatch(segment, offset, ref indexPosition, ref indexBase, limit, -1, out int batchPosition, out BatchHeader first))
        {
            throw segment.Corrupt(indexPosition, $"offset {offset} not found below the high watermark");
        }

        if (skippable && first.RecordsCount == 0 && OnlyEmptyBatchesToLimit(segment, batchPosition, first, limit))
        {
            return null;
        }

        int end;
        long endOffset;
        if (first.TotalSize > maxBytes)
        {
            if (!minOneBatch)
            {
                return new ReadResult(ReadError.None, hw, logStart, null, 0);
            }

            end = batchPosition + first.TotalSize;
            endOffset = first.NextOffset;
        }
        else if (maxBytes >= limit - batchPosition)
        {
            end = limit; // the completed position captured under the lock is a batch boundary
            endOffset = limitOffset;
        }
        else
        {
            // Cut at the last whole batch below the budget: from the index entry nearest to it, a few headers.
            int budgetEnd = batchPosition + maxBytes;
            int rel;
            int entryPosition;
            lock (_owner.Lock)
            {
                (rel, entryPosition) = segment.Index.LookupByPosition(budgetEnd);
            }

            try
            {
                end = entryPosition > batchPosition
                    ? segment.WholeBatchesEnd(entryPosition, segment.BaseOffset + rel, budgetEnd, out endOffset)
                    : segment.WholeBatchesEnd(batchPosition, first.BaseOffset, budgetEnd, out endOffset);
            }
            catch (StorageException)
            {
                end = batchPosition + first.TotalSize; // a bad header further on: the next fetch meets it
                endOffset = first.NextOffset;
            }
        }

        Debug.Assert(end - batchPosition >= first.TotalSize, "first batch not returned whole");
        Debug.Assert(end <= limit, "region past the completed tail");
        if (FromMemory(segment, batchPosition, end, first, hw, logStart) is { } fromMemory)
        {
            return fromMemory;
        }

        using SegmentFileLease lease = segment.AcquireHandle();
        segment.ReadAhead(lease.Handle, batchPosition, end);
        segment.Reads?.CountMiss(end - batchPosition);
        return new ReadResult(hw, logStart, new FileRecords(lease.Handle, batchPosition, end - batchPosition, segment.Name, first.BaseOffset, endOffset));
    }

    private const int MemoryReadMaxBytes = 1 << 20;

    /// <summary>
    /// The whole batches of [<paramref name="batchPosition"/>, <paramref name="end"/>) that are in memory without a gap
    /// from the start, copied: from the read cache, then the tail's newest bytes (written with O_DIRECT, these are not in
    /// the page cache: a copy from memory beats a disk read), up to <see cref="MemoryReadMaxBytes"/> or the first batch.
    /// Null when not even the first batch is held.
    /// </summary>
    private static ReadResult? FromMemory(Segment segment, int batchPosition, int end, BatchHeader first, long hw, long logStart)
    {
        ReadCache? reads = segment.Reads;
        RecentBytes? recent = segment.Recent;
        int length = end - batchPosition;
        bool cached = reads is { Enabled: true } && segment.CachedChunks is not null; // a hint: CopyHeld decides
        if (!cached && (recent is null || !recent.Covers(batchPosition, end)))
        {
            return null;
        }

        // At most MemoryReadMaxBytes (or the first batch) per read: pooled buffers stay small.
        int want = Math.Min(length, Math.Max(MemoryReadMaxBytes, first.TotalSize));
        byte[] buffer = ArrayPool<byte>.Shared.Rent(want);
        int held = cached ? reads!.CopyHeld(segment, batchPosition, buffer.AsSpan(0, want)) : 0;
        if (held < want && recent is not null && recent.TryRead(batchPosition + held, buffer.AsSpan(held, want - held)))
        {
            held = want;
        }

        if (held < length && held >= first.TotalSize)
        {
            // The rest is on disk only: serve the batches held (the next fetch asks for the rest), cut at the last
            // whole one, found from the copied headers.
            int p = first.TotalSize;
            while (held - p >= RecordBatch.HeaderSize && RecordBatch.TryReadHeader(buffer.AsSpan(p, held - p), out BatchHeader h) && h.TotalSize > 0 && h.TotalSize <= held - p)
            {
                p += h.TotalSize;
            }

            held = length = p;
        }

        if (held < length || held == 0)
        {
            ArrayPool<byte>.Shared.Return(buffer);
            return null;
        }

        reads?.CountHit(length);
        return new ReadResult(ReadError.None, hw, logStart, buffer, length);
    }

    /// <summary>Null when <paramref name="skippable"/> and only batches without records follow to the limit (see <see cref="Read"/>).</summary>
    private ReadResult? ReadFromSegment(Segment segment, long offset, int indexPosition, long indexBase, int limit, int maxBytes, bool minOneBatch, long hw, long logStart, bool skippable)
    {
        if (!FindBatch(segment, offset, ref indexPosition, ref indexBase, limit, -1, out int batchPosition, out BatchHeader first))
        {
            throw segment.Corrupt(indexPosition, $"offset {offset} not found below the high watermark");
        }

        if (skippable && first.RecordsCount == 0 && OnlyEmptyBatchesToLimit(segment, batchPosition, first, limit))
        {
            return null;
        }

        int length;
        if (first.TotalSize > maxBytes)
        {
            if (!minOneBatch)
            {
                return new ReadResult(ReadError.None, hw, logStart, null, 0);
            }

            length = first.TotalSize;
        }
        else
        {
            length = Math.Min(maxBytes, limit - batchPosition);
        }

        byte[] buffer = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            if (segment.Reads is { } reads)
            {
                if (reads.TryRead(segment, batchPosition, buffer.AsSpan(0, length)))
                {
                    reads.CountHit(length);
                }
                else
                {
                    using (SegmentFileLease lease = segment.AcquireHandle())
                    {
                        segment.ReadAhead(lease.Handle, batchPosition, batchPosition + length);
                    }

                    reads.CountMiss(length);
                    segment.ReadExactly(batchPosition, buffer.AsSpan(0, length));
                }
            }
            else
            {
                segment.ReadExactly(batchPosition, buffer.AsSpan(0, length));
            }

            // Keep whole batches only, re-checking each header and CRC on the way (data-protecting: in Release too).
            // A bad batch after the first ends the result; the next read starts at it and gets the error.
            int p = 0;
            long expected = first.BaseOffset;
            while (length - p >= RecordBatch.HeaderSize)
            {
                if (!RecordBatch.TryReadHeader(buffer.AsSpan(p, length - p), out BatchHeader h) || h.BaseOffset < expected)
                {
                    if (p > 0)
                    {
                        break;
                    }

                    throw segment.Corrupt(batchPosition + p, $"batch header does not follow offset {expected}");
                }

                if (h.TotalSize > length - p)
                {
                    break;
                }

                if (RecordBatch.ComputeCrc(buffer.AsSpan(p, h.TotalSize)) != h.Crc)
                {
                    if (p > 0)
                    {
                        break;
                    }

                    throw segment.Corrupt(batchPosition, $"the batch at offsets {h.BaseOffset}..{h.NextOffset - 1} fails its CRC check");
                }

                p += h.TotalSize;
                expected = h.NextOffset;
            }

            Debug.Assert(p >= first.TotalSize, "first batch not returned whole");
            return new ReadResult(ReadError.None, hw, logStart, buffer, p);
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(buffer);
            throw;
        }
    }

    /// <summary>
    /// Whether the batches from <paramref name="first"/> (at <paramref name="position"/>, without records) to
    /// <paramref name="limit"/> all hold no records. Walks headers only past the first, stopping at the first batch with
    /// records; the usual case, the segment's last batch, reads nothing.
    /// </summary>
    private static bool OnlyEmptyBatchesToLimit(Segment segment, int position, BatchHeader first, int limit)
    {
        Span<byte> bytes = stackalloc byte[RecordBatch.HeaderSize];
        int p = position + first.TotalSize;
        long expected = first.NextOffset;
        while (p < limit)
        {
            if (limit - p < RecordBatch.HeaderSize)
            {
                return false; // damaged: the normal read answers it
            }

            segment.ReadExactly(p, bytes);
            if (!RecordBatch.TryReadHeader(bytes, out BatchHeader h) || h.BaseOffset < expected || h.TotalSize > limit - p || h.RecordsCount != 0)
            {
                return false;
            }

            expected = h.NextOffset;
            p += h.TotalSize;
        }

        return true;
    }

    /// <summary>The first record of the batch at <paramref name="batchPosition"/> with timestamp ≥ target (see <see cref="LookupByTimestamp"/>).</summary>
    private static bool ResolveTimestamp(Segment segment, int batchPosition, BatchHeader h, long target, out long offset, out long timestamp)
    {
        if (h.TimestampType == TimestampType.LogAppendTime)
        {
            offset = h.BaseOffset;
            timestamp = h.MaxTimestamp;
            return h.MaxTimestamp >= target;
        }

        if (h.Codec != CompressionType.None)
        {
            offset = h.BaseOffset;
            timestamp = h.BaseTimestamp >= target ? h.BaseTimestamp : h.MaxTimestamp;
            return h.MaxTimestamp >= target;
        }

        byte[] buffer = ArrayPool<byte>.Shared.Rent(h.TotalSize);
        try
        {
            segment.ReadExactly(batchPosition, buffer.AsSpan(0, h.TotalSize));
            var cursor = RecordCursor.ForBatch(buffer.AsSpan(0, h.TotalSize));
            while (cursor.MoveNext())
            {
                long recordTimestamp = h.BaseTimestamp + cursor.TimestampDelta;
                if (recordTimestamp >= target)
                {
                    offset = h.BaseOffset + cursor.OffsetDelta;
                    timestamp = recordTimestamp;
                    return true;
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        offset = -1;
        timestamp = -1;
        return false;
    }
}
