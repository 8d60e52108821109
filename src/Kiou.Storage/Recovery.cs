using System.Buffers;
using System.Globalization;
using Kiou.IoUring.Interop;
using Kiou.Protocol.Records;

namespace Kiou.Storage;

/// <summary>
/// Loads a partition directory at open: segments in base-offset order, their indexes from disk when consistent,
/// otherwise rebuilt by scanning the log batch by batch (header bounds, CRC-32C, dense increasing offsets) and
/// truncating at the first torn or corrupt batch. A torn batch is never served.
/// </summary>
/// <remarks>
/// What is scanned with CRCs:
/// <list type="bullet">
/// <item>the last (active) segment, unless the clean-shutdown marker names it with its exact length;</item>
/// <item>any sealed segment whose index files are missing or inconsistent.</item>
/// </list>
/// A sealed segment with consistent indexes is trusted: it was fdatasync'ed before its index files were written.
/// Still, the headers after its last index entry are walked, so the segment must end exactly at the next
/// segment's base offset. If a segment is cut short (or offsets do not line up), every later segment is dropped:
/// offsets stay dense. Runs on the opening thread, before the log is shared.
/// </remarks>
internal static class Recovery
{
    public const string CleanShutdownMarker = ".kiou-clean-shutdown";
    private const int ScanBufferBytes = 1 << 20; // 1 MiB sequential reads

    public static List<Segment> Load(string directory, string partitionName, int indexIntervalBytes, long nowMs, Action<string> log)
    {
        (long Base, long Length)? clean = ReadAndDeleteCleanMarker(directory);

        foreach (string temp in Directory.EnumerateFiles(directory, "*.tmp"))
        {
            File.Delete(temp);
        }

        var bases = new List<long>();
        foreach (string path in Directory.EnumerateFiles(directory, "*.log"))
        {
            if (Segment.TryParseFileName(Path.GetFileName(path), out long b))
            {
                bases.Add(b);
            }
        }

        bases.Sort();
        DeleteOrphanIndexes(directory, bases);

        var segments = new List<Segment>();
        for (int i = 0; i < bases.Count; i++)
        {
            bool isLast = i == bases.Count - 1;
            long? nextBase = isLast ? null : bases[i + 1];
            var segment = Segment.OpenExisting(directory, bases[i]);
            segment.LastAppendMs = nowMs;
            segments.Add(segment);

            long fileLength = segment.FileLength();
            if (fileLength > int.MaxValue)
            {
                throw new StorageException($"partition {partitionName}: {segment.LogPath} is {fileLength} bytes, more than a segment may hold (2 GiB); it was not written by Kiou.");
            }

            bool trustIndexes = !isLast || (clean is { } c && c.Base == segment.BaseOffset && c.Length == fileLength);
            string reason = "the last segment after an unclean stop";
            bool loaded = trustIndexes && TryLoadIndexed(segment, (int)fileLength, nextBase, out reason);
            if (!loaded)
            {
                if (!isLast || trustIndexes)
                {
                    log($"partition {partitionName}: rebuilding the indexes of {segment.Name} ({reason})");
                }

                ScanAndTruncate(segment, (int)fileLength, indexIntervalBytes, nowMs, partitionName, log);
            }

            if (!isLast)
            {
                if (segment.CompletedEnd != nextBase)
                {
                    DropFrom(bases, i + 1, directory, partitionName,
                        $"{segment.Name} now ends at offset {segment.CompletedEnd} but the next segment starts at {nextBase}", segment.CompletedEnd, log);
                    break;
                }

                segment.SealRecovered();
                if (!loaded)
                {
                    segment.FinishTimeIndex();
                    TryWriteIndexFiles(segment, partitionName, log);
                }
                else
                {
                    segment.IndexFilesCurrent = true;
                }
            }
        }

        if (segments.Count > 0)
        {
            // The active segment's index files go stale with the first append; remove them so a crash before the
            // next roll or clean close leads to a full scan, never to a stale index trusted on a sealed segment.
            Segment active = segments[^1];
            active.DeleteIndexFiles();
            active.IndexFilesCurrent = false;
            active.RollBaseMs = nowMs;
            if (active.CompletedSize > 0)
            {
                Span<byte> header = stackalloc byte[RecordBatch.HeaderSize];
                active.ReadExactly(0, header);
                long firstTimestamp = RecordBatch.MaxTimestamp(header);
                if (firstTimestamp >= 0 && firstTimestamp < nowMs)
                {
                    active.RollBaseMs = firstTimestamp; // Kafka measures segment.ms from the first batch's timestamp
                }
            }
        }

        return segments;
    }

    public static void WriteCleanMarker(string directory, long activeBase, long activeLength)
    {
        string path = Path.Combine(directory, CleanShutdownMarker);
        string text = string.Create(CultureInfo.InvariantCulture, $"{activeBase} {activeLength}\n");
        string temp = path + ".tmp";
        File.WriteAllText(temp, text);
        File.Move(temp, path, overwrite: true);
        FileSync.SyncDirectory(directory);
    }

    /// <summary>
    /// The marker holds the active segment's base offset and length at the clean close. It is trusted only if the
    /// file still has exactly that length, so a marker whose deletion was lost in a crash cannot hide later,
    /// unsynced appends.
    /// </summary>
    private static (long, long)? ReadAndDeleteCleanMarker(string directory)
    {
        string path = Path.Combine(directory, CleanShutdownMarker);
        if (!File.Exists(path))
        {
            return null;
        }

        string text = File.ReadAllText(path);
        File.Delete(path);
        string[] parts = text.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length == 2
            && long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out long b)
            && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out long length))
        {
            return (b, length);
        }

        return null;
    }

    private static void DeleteOrphanIndexes(string directory, List<long> bases)
    {
        foreach (string pattern in new[] { "*.index", "*.timeindex" })
        {
            foreach (string path in Directory.EnumerateFiles(directory, pattern))
            {
                if (Segment.TryParseFileName(Path.GetFileName(path), out long b) && bases.BinarySearch(b) < 0)
                {
                    File.Delete(path);
                }
            }
        }
    }

    private static void DropFrom(List<long> bases, int firstDropped, string directory, string partitionName, string why, long endOffset, Action<string> log)
    {
        long droppedBytes = 0;
        for (int j = firstDropped; j < bases.Count; j++)
        {
            string logPath = Path.Combine(directory, Segment.FileName(bases[j]) + ".log");
            droppedBytes += new FileInfo(logPath).Length;
            File.Delete(logPath);
            File.Delete(Path.Combine(directory, Segment.FileName(bases[j]) + ".index"));
            File.Delete(Path.Combine(directory, Segment.FileName(bases[j]) + ".timeindex"));
        }

        FileSync.SyncDirectory(directory);
        log($"partition {partitionName}: deleted {bases.Count - firstDropped} later segment(s) from offset {bases[firstDropped]} ({droppedBytes} bytes) because {why}; offsets must stay dense, so the log now ends at offset {endOffset}");
    }

    private static void TryWriteIndexFiles(Segment segment, string partitionName, Action<string> log)
    {
        try
        {
            segment.WriteIndexFiles();
            segment.IndexFilesCurrent = true;
        }
        catch (IOException ex)
        {
            log($"partition {partitionName}: could not write the index files of {segment.Name} ({ex.Message}); they will be rebuilt at the next start");
        }
    }

    /// <summary>
    /// Loads the index files of a segment and checks them against the log: sizes, ordering, ranges, and a header
    /// walk from the last offset index entry to the end of the file (dense offsets, ending exactly at the file's
    /// length and, for sealed segments, at the next segment's base).
    /// </summary>
    private static bool TryLoadIndexed(Segment segment, int fileLength, long? nextBase, out string reason)
    {
        if (!File.Exists(segment.IndexPath) || !File.Exists(segment.TimeIndexPath))
        {
            reason = "index file missing";
            return false;
        }

        long relativeLimit = nextBase is { } n ? n - segment.BaseOffset : (long)int.MaxValue + 1;
        if (!OffsetIndex.TryLoad(File.ReadAllBytes(segment.IndexPath), relativeLimit, Math.Max(fileLength, 1), out OffsetIndex index, out reason))
        {
            reason = "offset index: " + reason;
            return false;
        }

        if (!TimeIndex.TryLoad(File.ReadAllBytes(segment.TimeIndexPath), relativeLimit, out TimeIndex timeIndex, out reason))
        {
            reason = "time index: " + reason;
            return false;
        }

        if (fileLength == 0 && (index.Count > 0 || timeIndex.Count > 0))
        {
            reason = "index entries for an empty log";
            return false;
        }

        // Walk the headers after the last index entry.
        int position = index.LastPosition;
        long expected = segment.BaseOffset + index.LastRelativeOffset;
        long lastBase = -1;
        int lastPosition = -1;
        long tailMaxTimestamp = -1;
        Span<byte> header = stackalloc byte[RecordBatch.HeaderSize];
        while (position < fileLength)
        {
            if (fileLength - position < RecordBatch.HeaderSize)
            {
                reason = $"{fileLength - position} stray bytes at position {position}";
                return false;
            }

            segment.ReadExactly(position, header);
            if (!RecordBatch.TryReadHeader(header, out BatchHeader h) || h.BaseOffset != expected || h.TotalSize > fileLength - position)
            {
                reason = $"batch at position {position} does not follow the index (expected offset {expected})";
                return false;
            }

            lastBase = h.BaseOffset;
            lastPosition = position;
            tailMaxTimestamp = Math.Max(tailMaxTimestamp, h.MaxTimestamp);
            expected = h.NextOffset;
            position += h.TotalSize;
        }

        if (nextBase is { } next && expected != next)
        {
            reason = $"log ends at offset {expected} but the next segment starts at {next}";
            return false;
        }

        if (timeIndex.Count > 0 && segment.BaseOffset + timeIndex.LastRelativeOffset >= expected)
        {
            reason = "time index points past the end of the log";
            return false;
        }

        if (tailMaxTimestamp > timeIndex.LastTimestamp)
        {
            reason = "time index is behind the log";
            return false;
        }

        int bytesSinceEntry = index.Count == 0 ? fileLength : fileLength - index.LastPosition;
        segment.SetLoadedState(index, timeIndex, fileLength, expected, lastBase, lastPosition, bytesSinceEntry);
        reason = string.Empty;
        return true;
    }

    /// <summary>
    /// Replays the whole segment: each batch's header bounds, base offset (dense from the segment base) and CRC;
    /// rebuilds both indexes; truncates the file at the first bad batch, with one log line naming the partition,
    /// file, position and bytes dropped.
    /// </summary>
    private static void ScanAndTruncate(Segment segment, int fileLength, int indexIntervalBytes, long nowMs, string partitionName, Action<string> log)
    {
        segment.ResetForScan();
        byte[] buffer = ArrayPool<byte>.Shared.Rent(Math.Min(ScanBufferBytes, Math.Max(fileLength, RecordBatch.HeaderSize)));
        long chunkStart = 0;
        int chunkLength = 0;
        int position = 0;
        long expected = segment.BaseOffset;
        string? problem = null;
        bool torn = false;
        try
        {
            while (position < fileLength)
            {
                int left = fileLength - position;
                if (left < RecordBatch.HeaderSize)
                {
                    problem = $"only {left} bytes of a batch header were written";
                    torn = true;
                    break;
                }

                Ensure(RecordBatch.HeaderSize);
                ReadOnlySpan<byte> at = buffer.AsSpan((int)(position - chunkStart));
                if (!RecordBatch.TryReadHeader(at, out BatchHeader h))
                {
                    problem = "the batch header is invalid (magic or length)";
                    break;
                }

                if (h.TotalSize > left)
                {
                    problem = $"the batch at offset {h.BaseOffset} claims {h.TotalSize} bytes but only {left} were written";
                    torn = true;
                    break;
                }

                if (h.BaseOffset != expected || h.NextOffset - segment.BaseOffset > int.MaxValue)
                {
                    problem = $"the batch has base offset {h.BaseOffset} where {expected} was expected";
                    break;
                }

                Ensure(h.TotalSize);
                ReadOnlySpan<byte> batch = buffer.AsSpan((int)(position - chunkStart), h.TotalSize);
                if (RecordBatch.ComputeCrc(batch) != h.Crc)
                {
                    problem = $"the batch at offset {h.BaseOffset} fails its CRC check";
                    break;
                }

                segment.OnPublished(h.BaseOffset, h.NextOffset, position, h.TotalSize, h.MaxTimestamp, indexIntervalBytes, nowMs);
                expected = h.NextOffset;
                position += h.TotalSize;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        segment.Size = position;
        segment.ReservedEnd = segment.CompletedEnd;
        segment.FlushedEnd = segment.CompletedEnd;

        int dropped = fileLength - position;
        bool padding = problem is not null && dropped > 0 && dropped < DirectTail.PageSize && IsAllZero(segment, position, dropped);
        if (problem is not null)
        {
            RandomAccess.SetLength(segment.Handle, position);
        }

        // What the scan read may exist only in the page cache (a process crash before the roll flush): make it
        // durable before it is reported as such.
        int rc = FileSync.DataSync(segment.Handle);
        if (rc < 0)
        {
            throw new StorageException($"partition {partitionName}: fdatasync of {segment.LogPath} failed during recovery with {ErrnoNames.Describe(rc)}; {ErrnoNames.Advice(rc)}", -rc);
        }

        if (problem is not null)
        {
            string what = padding
                ? $"cut {dropped} bytes of zero padding after the last batch of {segment.Name} (O_DIRECT appends write whole pages; a stop without a clean close leaves the padding)"
                : torn
                ? $"truncated torn tail of {segment.Name} at position {position} (dropped {dropped} bytes); the last batch was incomplete after an unclean stop: {problem}"
                : $"truncated {segment.Name} at position {position} (dropped {dropped} bytes): {problem}; nothing from there on is served";
            log($"partition {partitionName}: {what}");
        }

        static bool IsAllZero(Segment segment, int position, int count)
        {
            Span<byte> bytes = stackalloc byte[DirectTail.PageSize];
            segment.ReadExactly(position, bytes[..count]);
            return !bytes[..count].ContainsAnyExcept((byte)0);
        }

        void Ensure(int count)
        {
            if (position + count <= chunkStart + chunkLength)
            {
                return;
            }

            if (count > buffer.Length)
            {
                ArrayPool<byte>.Shared.Return(buffer);
                buffer = ArrayPool<byte>.Shared.Rent(count);
            }

            chunkStart = position;
            chunkLength = Math.Min(buffer.Length, fileLength - position);
            segment.ReadExactly(chunkStart, buffer.AsSpan(0, chunkLength));
        }
    }
}
