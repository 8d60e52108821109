using System.Buffers;
using System.Globalization;
using Kiou.IoUring.Interop;
using Kiou.Protocol.Records;
using Kiou.Storage.Producers;
using Microsoft.Win32.SafeHandles;

namespace Kiou.Storage;

/// <summary>
/// Loads a partition directory at open: segments in base-offset order, their indexes from disk when consistent,
/// otherwise rebuilt by scanning the log batch by batch (header bounds, CRC-32C, dense increasing offsets). A torn
/// or corrupt batch is never served. Rationale and file names: docs/design/recovery.md.
/// </summary>
/// <remarks>
/// Kafka's rule, around the recovery point (the offset below which every batch was fdatasync'ed, kept in
/// <see cref="RecoveryPointFile"/>):
/// <list type="bullet">
/// <item>What lies at or after the recovery point is the unflushed tail: it is scanned with CRCs and cut at its
/// first bad batch (or hole). The cut bytes, and whole later segment files, are set aside in
/// <see cref="QuarantineDirectory"/> as <c>&lt;name&gt;.truncated-&lt;position&gt;</c>, never deleted.</item>
/// <item>Below the recovery point the data was durable: damage there is corruption, not a torn write. The damaged
/// file is moved to the quarantine as <c>&lt;name&gt;.damaged-&lt;time&gt;</c>, its intact prefix is copied back as
/// the segment, batches after a bad CRC (whose header still gives its length) are copied back as a segment of
/// their own, and every later segment stays. The offsets in between are a hole: reads there answer
/// <see cref="ReadError.Corrupt"/>.</item>
/// <item>Sealed segments below the recovery point with consistent index files are trusted: only the headers after
/// their last index entry are walked. Missing or inconsistent index files are rebuilt by a full scan.</item>
/// </list>
/// Everything that drops or sets aside bytes is reported through the warn callback. Runs on the opening thread,
/// before the log is shared.
/// </remarks>
internal static class Recovery
{
    public const string CleanShutdownMarker = ".kiou-clean-shutdown";
    public const string RecoveryPointFile = ".kiou-recovery-point";

    /// <summary>The recovery point and the clean marker are one short line; anything larger is damage.</summary>
    private const int MarkerMaxBytes = 4096;
    public const string QuarantineDirectory = "quarantine";
    private const int ScanBufferBytes = 1 << 20; // 1 MiB sequential reads

    /// <param name="savedRecoveryPoint">The recovery point read from disk, null if missing or damaged.</param>
    public static List<Segment> Load(string directory, string partitionName, int indexIntervalBytes, long nowMs, Action<string> log, Action<string> warn, out long? savedRecoveryPoint)
    {
        CleanMarker? clean = ReadAndDeleteCleanMarker(directory);
        long? saved = ReadRecoveryPoint(directory, partitionName, warn);
        savedRecoveryPoint = saved;

        foreach (string temp in Directory.EnumerateFiles(directory, "*.tmp"))
        {
            File.Delete(temp);
        }

        FinishCleanerSwaps(directory, partitionName, nowMs, log, warn);

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

        // Without a (valid) recovery point file, a sealed segment is taken as durable when its index files exist:
        // KIOU fdatasyncs a segment before it writes them, so the first sealed segment without them (a young
        // partition whose first rolls were never flushed before a power loss) starts the unflushed tail.
        long recoveryPoint = saved ?? DurableByIndexFiles(directory, bases);
        if (clean is { End: >= 0 } cm)
        {
            recoveryPoint = Math.Max(recoveryPoint, cm.End);
        }

        var ctx = new Context(directory, partitionName, indexIntervalBytes, nowMs, log, warn);
        var segments = new List<Segment>();
        bool lastCut = false;
        bool quarantined = false;
        for (int i = 0; i < bases.Count; i++)
        {
            quarantined = false;
            bool isLast = i == bases.Count - 1;
            long? nextBase = isLast ? null : bases[i + 1];
            var segment = Segment.OpenExisting(directory, bases[i]);
            segment.LastAppendMs = nowMs;

            long fileLength = segment.FileLength();
            if (fileLength > int.MaxValue)
            {
                throw new StorageException($"partition {partitionName}: {segment.LogPath} is {fileLength} bytes, more than a segment may hold (2 GiB); it was not written by Kiou.");
            }

            bool cleanLast = isLast && clean is { } c && c.Base == segment.BaseOffset && c.Length == fileLength;
            lastCut = isLast && clean is { } c2 && c2.Base == segment.BaseOffset && fileLength < c2.Length;
            bool trustIndexes = isLast ? cleanLast : nextBase <= recoveryPoint;
            string reason = "the last segment after an unclean stop";
            bool loaded = trustIndexes && TryLoadIndexed(segment, (int)fileLength, nextBase, out reason);
            if (!loaded)
            {
                if (!isLast || trustIndexes)
                {
                    log($"partition {partitionName}: rebuilding the indexes of {segment.Name} ({reason})");
                }

                ScanProblem? problem = Scan(segment, (int)fileLength, indexIntervalBytes, nowMs, nextBase);
                if (problem is { } p)
                {
                    if (p.Padding)
                    {
                        RandomAccess.SetLength(segment.Handle, p.Position);
                        log($"partition {partitionName}: cut {fileLength - p.Position} bytes of zero padding after the last batch of {segment.Name} (O_DIRECT appends write whole pages; a stop without a clean close leaves the padding)");
                    }
                    else if (p.Offset >= recoveryPoint)
                    {
                        SetTailAside(ctx, segment, (int)fileLength, p, recoveryPoint);
                        SetLaterAside(ctx, bases, i + 1, $"they follow the truncated tail of {segment.Name}");
                        isLast = true;
                        nextBase = null;
                    }
                    else
                    {
                        segment = Quarantine(ctx, segment, (int)fileLength, p, nextBase, recoveryPoint, bases, i);
                        lastCut = false; // already moved aside
                        quarantined = true;
                        isLast = i == bases.Count - 1;
                        nextBase = isLast ? null : bases[i + 1];
                    }
                }

                DataSync(segment, partitionName);
                segment.TxnIndexNeedsRebuild = true; // from the log, once the producer state is loaded (PartitionLog.Open)
            }
            else
            {
                LoadTxnIndex(segment, fileLength, log);
            }

            segments.Add(segment);
            if (nextBase is { } nb && segment.CompletedEnd < nb)
            {
                if (segment.CompletedEnd >= recoveryPoint)
                {
                    // A hole in the unflushed tail: those writes never reached the disk; what follows them is cut.
                    SetLaterAside(ctx, bases, i + 1, $"{segment.Name} ends at offset {segment.CompletedEnd} but the next segment starts at {nb}, and offsets from {recoveryPoint} on were never flushed");
                    isLast = true;
                }
                else if (!quarantined)
                {
                    warn($"partition {partitionName}: offsets {segment.CompletedEnd}..{nb - 1} are missing: {segment.Name} ends at offset {segment.CompletedEnd} but the next segment starts at {nb} (a segment file was damaged or removed; look in {Path.Combine(directory, QuarantineDirectory)}); "
                        + $"the data was durable (recovery point {recoveryPoint}), so every later segment is kept; fetches in that range get CORRUPT_MESSAGE and consumers must seek to offset {nb}");
                }
            }

            if (!isLast)
            {
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

        if (segments.Count > 0 && segments[^1].CompletedEnd < recoveryPoint)
        {
            // Offsets below the recovery point were durable: a log that ends earlier lost data. Keep the offsets
            // already handed out: the hole stays a hole and appends continue after it.
            Segment last = segments[^1];
            long end = last.CompletedEnd;
            string kept = string.Empty;
            if (lastCut)
            {
                int length = last.CompletedSize;
                Segment? replaced = ReplaceWithPrefix(ctx, last, length, out string aside);
                kept = replaced is null
                    ? $"; {last.Name} is shorter than the clean-shutdown marker recorded and could not be set aside ({aside})"
                    : $"; {last.Name} is shorter than the clean-shutdown marker recorded, so it was moved to {aside} and its {length} intact bytes copied back";
                last = replaced ?? last;
                segments[^1] = last;
            }

            Action<string> report = quarantined ? log : warn; // the quarantine already said what was lost
            report($"partition {partitionName}: DATA LOST: offsets {end}..{recoveryPoint - 1} were durable (recovery point {recoveryPoint}) but the log ends at offset {end}{kept}; "
                + $"fetches in that range get CORRUPT_MESSAGE, consumers must seek to offset {recoveryPoint}, and new appends start there. Check the disk and restore the missing segment from {Path.Combine(directory, QuarantineDirectory)} or a backup if you have one");
            last.SealRecovered();
            last.FinishTimeIndex();
            TryWriteIndexFiles(last, partitionName, log);
            segments.Add(Segment.Create(directory, recoveryPoint, nowMs));
            FileSync.SyncDirectory(directory);
        }
        else if (segments.Count == 0 && recoveryPoint > 0 && saved is not null)
        {
            ctx.Warn($"partition {partitionName}: DATA LOST: no segment file is left, but offsets below {recoveryPoint} were durable (recovery point); new appends start at offset {recoveryPoint}");
            segments.Add(Segment.Create(directory, recoveryPoint, nowMs));
            FileSync.SyncDirectory(directory);
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

    /// <summary>
    /// The log cleaner's files left by a stop (docs/design/compaction.md), as Kafka's LogLoader: <c>.cleaned</c> files are
    /// unfinished and removed. A <c>.log.swap</c> whose batches all check out (CRC, offsets) completes its swap: the
    /// segments it covers (by base offset, live or already renamed <c>.deleted</c>) go and it takes its final name; its
    /// index files are dropped so the scan rebuilds them from the log. A <c>.log.swap</c> that does not check out is moved
    /// to the quarantine and the old segments are kept (those renamed <c>.deleted</c> get their names back). Remaining
    /// <c>.deleted</c> files belong to a finished swap and are removed.
    /// </summary>
    internal static void FinishCleanerSwaps(string directory, string partitionName, long nowMs, Action<string> log, Action<string> warn)
    {
        foreach (string path in Directory.EnumerateFiles(directory, "*" + Cleaner.CleanedSegment.CleanedSuffix))
        {
            File.Delete(path);
        }

        var swaps = new List<long>();
        foreach (string path in Directory.EnumerateFiles(directory, "*.log" + Cleaner.CleanedSegment.SwapSuffix))
        {
            if (Segment.TryParseFileName(Path.GetFileNameWithoutExtension(Path.GetFileName(path)), out long b))
            {
                swaps.Add(b);
            }
        }

        swaps.Sort();
        bool changed = false;
        foreach (long swapBase in swaps)
        {
            string name = Segment.FileName(swapBase);
            string swapPath = Path.Combine(directory, name + ".log" + Cleaner.CleanedSegment.SwapSuffix);
            long? end = ValidateSwap(swapPath, swapBase, out string problem);
            DeleteIndexFiles(directory, name, Cleaner.CleanedSegment.SwapSuffix);
            bool firstOldKept = File.Exists(Path.Combine(directory, name + ".log")) || File.Exists(Path.Combine(directory, name + ".log" + Cleaner.CleanedSegment.DeletedSuffix));
            if (end is not null && !firstOldKept)
            {
                // The segments it was cleaned from were deleted meanwhile (retention): it must not bring them back.
                end = null;
                problem = $"the segment {name}.log it replaces is gone (deleted by retention after the swap was written)";
            }

            if (end is { } e)
            {
                // Every old segment whose base lies in the swap's range is replaced by it.
                foreach (string path in Directory.EnumerateFiles(directory, "*.log*").ToList())
                {
                    string file = Path.GetFileName(path);
                    if (file.EndsWith(Cleaner.CleanedSegment.SwapSuffix, StringComparison.Ordinal) || file.Length < 24 || !Segment.TryParseFileName(file[..20] + ".log", out long b) || b < swapBase || b >= e)
                    {
                        continue;
                    }

                    if (file.EndsWith(".log", StringComparison.Ordinal) || file.EndsWith(".log" + Cleaner.CleanedSegment.DeletedSuffix, StringComparison.Ordinal))
                    {
                        File.Delete(path);
                        DeleteIndexFiles(directory, file[..20], string.Empty);
                        DeleteIndexFiles(directory, file[..20], Cleaner.CleanedSegment.DeletedSuffix);
                    }
                }

                DeleteIndexFiles(directory, name, string.Empty);
                File.Move(swapPath, Path.Combine(directory, name + ".log"), overwrite: true);
                log($"partition {partitionName}: completed the log cleaner's swap of {name}.log (offsets {swapBase}..{e - 1}) interrupted by the last stop; its indexes are rebuilt from the log");
            }
            else
            {
                Directory.CreateDirectory(Path.Combine(directory, QuarantineDirectory));
                string aside = UniquePath(Path.Combine(directory, QuarantineDirectory), $"{name}.log.swap.damaged-{nowMs.ToString(CultureInfo.InvariantCulture)}");
                long length = new FileInfo(swapPath).Length;
                File.Move(swapPath, aside);
                int restored = RestoreDeleted(directory, swapBase);
                warn($"partition {partitionName}: the log cleaner's {name}.log.swap ({length} bytes) is not used: {problem}; it was moved to {aside} and the old segments kept ({restored} file(s) renamed back from .deleted). No data is lost; the cleaner rewrites them again");
            }

            changed = true;
        }

        foreach (string path in Directory.EnumerateFiles(directory, "*" + Cleaner.CleanedSegment.SwapSuffix))
        {
            File.Delete(path); // index files of a swap whose log already has its final name: rebuilt from the log
            string file = Path.GetFileName(path);
            if (file.Length >= 20)
            {
                DeleteIndexFiles(directory, file[..20], string.Empty);
            }

            changed = true;
        }

        foreach (string path in Directory.EnumerateFiles(directory, "*" + Cleaner.CleanedSegment.DeletedSuffix))
        {
            File.Delete(path);
            changed = true;
        }

        if (changed)
        {
            FileSync.SyncDirectory(directory);
        }
    }

    private static void DeleteIndexFiles(string directory, string name, string suffix)
    {
        foreach (string extension in new[] { ".index", ".timeindex", TransactionIndex.Suffix })
        {
            File.Delete(Path.Combine(directory, name + extension + suffix));
        }
    }

    /// <summary>Gives the old segments of an undone swap (from its base up to the next live segment) their names back.</summary>
    private static int RestoreDeleted(string directory, long swapBase)
    {
        long nextLive = long.MaxValue;
        foreach (string path in Directory.EnumerateFiles(directory, "*.log"))
        {
            if (Segment.TryParseFileName(Path.GetFileName(path), out long b) && b > swapBase)
            {
                nextLive = Math.Min(nextLive, b);
            }
        }

        int restored = 0;
        foreach (string path in Directory.EnumerateFiles(directory, "*" + Cleaner.CleanedSegment.DeletedSuffix))
        {
            string file = Path.GetFileName(path);
            string original = path[..^Cleaner.CleanedSegment.DeletedSuffix.Length];
            if (file.Length >= 20 && long.TryParse(file[..20], NumberStyles.None, CultureInfo.InvariantCulture, out long b) && b >= swapBase && b < nextLive && !File.Exists(original))
            {
                File.Move(path, original);
                restored++;
            }
        }

        return restored;
    }

    /// <summary>The end offset of a swap file whose batches all check out (headers, increasing offsets, CRC, exact length), else null.</summary>
    private static long? ValidateSwap(string path, long baseOffset, out string problem)
    {
        using SafeFileHandle handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        long length = RandomAccess.GetLength(handle);
        if (length == 0 || length > int.MaxValue)
        {
            problem = $"it is {length} bytes";
            return null;
        }

        byte[] buffer = ArrayPool<byte>.Shared.Rent(RecordBatch.HeaderSize);
        try
        {
            long position = 0;
            long expected = baseOffset;
            Span<byte> header = stackalloc byte[RecordBatch.HeaderSize];
            while (position < length)
            {
                if (length - position < RecordBatch.HeaderSize || RandomAccess.Read(handle, header, position) != RecordBatch.HeaderSize
                    || !RecordBatch.TryReadHeader(header, out BatchHeader h) || h.BaseOffset < expected || h.TotalSize > length - position)
                {
                    problem = $"no valid batch at position {position}";
                    return null;
                }

                if (buffer.Length < h.TotalSize)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = ArrayPool<byte>.Shared.Rent(h.TotalSize);
                }

                int read = 0;
                while (read < h.TotalSize)
                {
                    int n = RandomAccess.Read(handle, buffer.AsSpan(read, h.TotalSize - read), position + read);
                    if (n <= 0)
                    {
                        problem = $"it ends inside the batch at position {position}";
                        return null;
                    }

                    read += n;
                }

                if (RecordBatch.ComputeCrc(buffer.AsSpan(0, h.TotalSize)) != h.Crc)
                {
                    problem = $"the batch at offset {h.BaseOffset} (position {position}) fails its CRC check";
                    return null;
                }

                expected = h.NextOffset;
                position += h.TotalSize;
            }

            problem = string.Empty;
            return expected;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>What went wrong at <see cref="Position"/> (a batch start holding <see cref="Offset"/>), found by <see cref="Scan"/>.</summary>
    private readonly record struct ScanProblem(int Position, long Offset, string What, bool Torn, bool Padding, int ResumePosition, long ResumeOffset);

    private readonly record struct CleanMarker(long Base, long Length, long End);

    private sealed record Context(string Directory, string Partition, int IndexIntervalBytes, long NowMs, Action<string> Log, Action<string> Warn)
    {
        public string QuarantinePath => Path.Combine(Directory, QuarantineDirectory);
    }

    private static void DataSync(Segment segment, string partitionName)
    {
        // What the scan read may exist only in the page cache (a process crash before the roll flush): make it
        // durable before it is reported as such.
        int rc = FileSync.DataSync(segment.Handle);
        if (rc < 0)
        {
            throw new StorageException($"partition {partitionName}: fdatasync of {segment.LogPath} failed during recovery with {ErrnoNames.Describe(rc)}; {ErrnoNames.Advice(rc)}", -rc);
        }
    }

    /// <summary>
    /// Kafka's rule for the unflushed tail: cut <paramref name="segment"/> at its first bad batch. The cut bytes are
    /// copied to the quarantine first.
    /// </summary>
    private static void SetTailAside(Context ctx, Segment segment, int fileLength, ScanProblem p, long recoveryPoint)
    {
        int dropped = fileLength - p.Position;
        string? aside = null;
        try
        {
            aside = UniquePath(ctx.QuarantinePath, $"{segment.Name}.truncated-{p.Position}");
            CopyRange(segment, p.Position, dropped, aside);
        }
        catch (IOException ex)
        {
            // Cut nothing that cannot be kept: the partition stays closed until there is room.
            TryDelete(aside);
            throw new StorageException($"partition {ctx.Partition}: the unflushed tail of {segment.Name} must be cut at position {p.Position}, offset {p.Offset} ({p.What}), "
                + $"but its {dropped} bytes could not be kept aside in {ctx.QuarantinePath} ({ex.Message}); nothing was changed. Free disk space and restart", ErrnoNames.FromException(ex), ex);
        }

        RandomAccess.SetLength(segment.Handle, p.Position);
        FileSync.SyncDirectory(ctx.QuarantinePath);
        string kind = p.Torn ? "torn tail" : "bad batch";
        ctx.Warn($"partition {ctx.Partition}: truncated {kind} of {segment.Name} at position {p.Position}, offset {p.Offset} (dropped {dropped} bytes, kept aside in {aside}): {p.What}; "
            + $"offsets from {recoveryPoint} on were not yet flushed, so this is taken as an unfinished write and the log now ends at offset {p.Offset}");
    }

    /// <summary>Moves whole segment files from <paramref name="from"/> on into the quarantine (they follow a cut in the unflushed tail).</summary>
    private static void SetLaterAside(Context ctx, List<long> bases, int from, string why)
    {
        if (from >= bases.Count)
        {
            return;
        }

        Directory.CreateDirectory(ctx.QuarantinePath);
        for (int j = from; j < bases.Count; j++)
        {
            string name = Segment.FileName(bases[j]) + ".log";
            string path = Path.Combine(ctx.Directory, name);
            long bytes = new FileInfo(path).Length;
            File.Delete(Path.Combine(ctx.Directory, Segment.FileName(bases[j]) + ".index"));
            File.Delete(Path.Combine(ctx.Directory, Segment.FileName(bases[j]) + ".timeindex"));
            if (bytes == 0)
            {
                // Created by a roll that no write followed: nothing to keep.
                File.Delete(path);
                ctx.Log($"partition {ctx.Partition}: removed the empty {name} because {why}");
                continue;
            }

            string aside = UniquePath(ctx.QuarantinePath, $"{name}.truncated-0");
            File.Move(path, aside);
            ctx.Warn($"partition {ctx.Partition}: set aside {name} (offsets from {bases[j]}, {bytes} bytes) as {aside} because {why}");
        }

        bases.RemoveRange(from, bases.Count - from);
        FileSync.SyncDirectory(ctx.Directory);
        FileSync.SyncDirectory(ctx.QuarantinePath);
    }

    /// <summary>
    /// Damage below the recovery point: move the file to the quarantine, copy its intact prefix back as the segment
    /// and, after a batch whose header is sound but whose CRC fails, the rest as a new segment that
    /// <paramref name="bases"/> then lists next. Returns the segment to use in place of <paramref name="segment"/>.
    /// </summary>
    private static Segment Quarantine(Context ctx, Segment segment, int fileLength, ScanProblem p, long? nextBase, long recoveryPoint, List<long> bases, int index)
    {
        long prefixEnd = segment.CompletedEnd;
        string? suffixTemp = null;
        long suffixBase = -1;
        string? aside = null;
        Segment? replaced = null;
        if (p.ResumePosition > 0 && p.ResumePosition < fileLength && p.ResumeOffset < (nextBase ?? long.MaxValue))
        {
            suffixBase = p.ResumeOffset;
            suffixTemp = Path.Combine(ctx.Directory, Segment.FileName(suffixBase) + ".log.tmp");
            try
            {
                CopyRange(segment, p.ResumePosition, fileLength - p.ResumePosition, suffixTemp);
            }
            catch (IOException ex)
            {
                aside = ex.Message;
            }
        }

        if (aside is null)
        {
            replaced = ReplaceWithPrefix(ctx, segment, p.Position, out aside);
        }

        if (replaced is null)
        {
            TryDelete(suffixTemp);
            // No room (or no permission) for the copies: change nothing on disk, serve the intact prefix in place.
            ctx.Warn($"partition {ctx.Partition}: {segment.Name} is damaged at position {p.Position}, offset {p.Offset}: {p.What}. The data was durable (recovery point {recoveryPoint}), so this is corruption; "
                + $"it could not be set aside ({aside}), so the file is left as it is and only its intact first {p.Position} bytes (offsets {segment.BaseOffset}..{prefixEnd - 1}) are served; "
                + $"later offsets of this segment get CORRUPT_MESSAGE. Free disk space and restart to have it set aside; every later segment is kept");
            return segment;
        }

        long holeEnd = p.ResumePosition > 0 ? p.ResumeOffset : nextBase ?? recoveryPoint;
        string rest = string.Empty;
        if (suffixTemp is not null)
        {
            File.Move(suffixTemp, Path.Combine(ctx.Directory, Segment.FileName(suffixBase) + ".log"));
            FileSync.SyncDirectory(ctx.Directory);
            bases.Insert(index + 1, suffixBase);
            rest = $", and the batches after it (offsets from {suffixBase}, {fileLength - p.ResumePosition} bytes) as {Segment.FileName(suffixBase)}.log";
        }

        string hole = holeEnd > p.Offset ? $"offsets {p.Offset}..{holeEnd - 1} are lost" : $"offsets from {p.Offset} are lost";
        ctx.Warn($"partition {ctx.Partition}: {segment.Name} is damaged at position {p.Position}, offset {p.Offset}: {p.What}. The data was durable (recovery point {recoveryPoint}), so this is corruption, not an unfinished write: "
            + $"moved the file ({fileLength} bytes) to {aside}, copied its intact first {p.Position} bytes (offsets {segment.BaseOffset}..{prefixEnd - 1}) back{rest}; {hole}. "
            + $"Every later segment is kept; fetches in the lost range get CORRUPT_MESSAGE. Check the disk (dmesg)");
        return replaced;
    }

    /// <summary>
    /// Moves <paramref name="segment"/>'s file to the quarantine and puts a copy of its first
    /// <paramref name="length"/> bytes in its place (a crash in between leaves the original in the quarantine and
    /// a temporary file that the next start removes). Returns the reopened, rescanned segment.
    /// </summary>
    private static Segment? ReplaceWithPrefix(Context ctx, Segment segment, int length, out string aside)
    {
        string temp = segment.LogPath + ".tmp";
        try
        {
            aside = UniquePath(ctx.QuarantinePath, $"{segment.Name}.damaged-{DateTimeOffset.FromUnixTimeMilliseconds(ctx.NowMs).UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture)}");
            CopyRange(segment, 0, length, temp);
        }
        catch (IOException ex)
        {
            // Nothing changed yet: the caller keeps the file in place.
            TryDelete(temp);
            aside = ex.Message;
            return null;
        }

        segment.Handle.Dispose();
        File.Move(segment.LogPath, aside);
        File.Move(temp, segment.LogPath);
        segment.DeleteIndexFiles();
        FileSync.SyncDirectory(ctx.Directory);
        FileSync.SyncDirectory(ctx.QuarantinePath);

        Segment replaced = Segment.OpenExisting(ctx.Directory, segment.BaseOffset);
        replaced.LastAppendMs = ctx.NowMs;
        ScanProblem? again = Scan(replaced, length, ctx.IndexIntervalBytes, ctx.NowMs, null);
        if (again is not null)
        {
            throw new StorageException($"partition {ctx.Partition}: the copy of the intact part of {segment.Name} does not read back ({again.Value.What}); check the disk");
        }

        return replaced;
    }

    private static void TryDelete(string? path)
    {
        if (path is null)
        {
            return;
        }

        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // A leftover .tmp is removed at the next start; one in the quarantine only takes room.
        }
    }

    /// <summary>Copies <paramref name="count"/> bytes at <paramref name="position"/> of the segment into a new, fdatasync'ed file.</summary>
    private static void CopyRange(Segment segment, int position, int count, string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(Math.Min(ScanBufferBytes, Math.Max(count, 1)));
        try
        {
            using SafeFileHandle target = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
            int done = 0;
            while (done < count)
            {
                int n = Math.Min(buffer.Length, count - done);
                segment.ReadExactly(position + done, buffer.AsSpan(0, n));
                RandomAccess.Write(target, buffer.AsSpan(0, n), done);
                done += n;
            }

            int rc = FileSync.DataSync(target);
            if (rc < 0)
            {
                throw new IOException($"fdatasync of {path} failed: {ErrnoNames.Describe(rc)}", -rc);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static string UniquePath(string directory, string name)
    {
        Directory.CreateDirectory(directory);
        string path = Path.Combine(directory, name);
        for (int n = 1; File.Exists(path); n++)
        {
            path = Path.Combine(directory, $"{name}-{n}");
        }

        return path;
    }

    public static void WriteCleanMarker(string directory, long activeBase, long activeLength, long endOffset)
    {
        string path = Path.Combine(directory, CleanShutdownMarker);
        string text = string.Create(CultureInfo.InvariantCulture, $"{activeBase} {activeLength} {endOffset}\n");
        string temp = path + ".tmp";
        File.WriteAllText(temp, text);
        File.Move(temp, path, overwrite: true);
        FileSync.SyncDirectory(directory);
    }

    /// <summary>
    /// Persists the recovery point: every batch below <paramref name="offset"/> is covered by a finished fdatasync.
    /// One line, the offset and its CRC-32C, written to a temporary file, fdatasync'ed and renamed.
    /// </summary>
    public static void WriteRecoveryPoint(string directory, long offset)
    {
        string digits = offset.ToString(CultureInfo.InvariantCulture);
        uint crc = Crc32C.Compute(System.Text.Encoding.ASCII.GetBytes(digits));
        byte[] bytes = System.Text.Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{digits} {crc:x8}\n"));
        SmallFiles.WriteAtomically(Path.Combine(directory, RecoveryPointFile), bytes);
        FileSync.SyncDirectory(directory);
    }

    private static long? ReadRecoveryPoint(string directory, string partitionName, Action<string> warn)
    {
        string path = Path.Combine(directory, RecoveryPointFile);
        if (!File.Exists(path))
        {
            return null;
        }

        string text = SmallFiles.ReadAllText(path, MarkerMaxBytes) ?? string.Empty;
        string[] parts = text.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length == 2
            && long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out long offset)
            && uint.TryParse(parts[1], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out uint crc)
            && Crc32C.Compute(System.Text.Encoding.ASCII.GetBytes(parts[0])) == crc)
        {
            return offset;
        }

        warn($"partition {partitionName}: {path} is damaged ({text.Length} bytes that do not check out); every sealed segment is taken as durable, so damage there is set aside rather than truncated, and the file is rewritten after recovery");
        return null;
    }

    /// <summary>
    /// The marker holds the active segment's base offset, its length and the log end offset at the clean close.
    /// The length lets recovery trust the active segment's index files only if the file is unchanged, so a marker
    /// whose deletion was lost in a crash cannot hide later, unsynced appends; a file shorter than recorded is damage.
    /// </summary>
    private static CleanMarker? ReadAndDeleteCleanMarker(string directory)
    {
        string path = Path.Combine(directory, CleanShutdownMarker);
        if (!File.Exists(path))
        {
            return null;
        }

        string text = SmallFiles.ReadAllText(path, MarkerMaxBytes) ?? string.Empty;
        File.Delete(path);
        string[] parts = text.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length is 2 or 3
            && long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out long b)
            && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out long length))
        {
            long end = -1;
            if (parts.Length == 3 && !long.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out end))
            {
                return null;
            }

            return new CleanMarker(b, length, end);
        }

        return null;
    }

    private static long DurableByIndexFiles(string directory, List<long> bases)
    {
        for (int i = 0; i < bases.Count - 1; i++)
        {
            string name = Path.Combine(directory, Segment.FileName(bases[i]));
            if (!File.Exists(name + ".index") || !File.Exists(name + ".timeindex"))
            {
                return bases[i];
            }
        }

        return bases.Count > 0 ? bases[^1] : 0;
    }

    private static void DeleteOrphanIndexes(string directory, List<long> bases)
    {
        foreach (string pattern in new[] { "*.index", "*.timeindex", "*" + TransactionIndex.Suffix })
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

    private static void TryWriteIndexFiles(Segment segment, string partitionName, Action<string> log)
    {
        if (segment.TxnIndexNeedsRebuild)
        {
            // Not before its .txnindex is rebuilt: trusted index files without a .txnindex mean "no aborted transaction".
            return;
        }

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
    /// Loads a segment's <c>.txnindex</c> next to its trusted index files. None means no aborted transaction (Kafka
    /// creates it for the first one); a damaged one (it is derived data) is rebuilt from the log and overwritten.
    /// </summary>
    private static void LoadTxnIndex(Segment segment, long fileLength, Action<string> log)
    {
        segment.TxnIndex = new TransactionIndex();
        if (!File.Exists(segment.TxnIndexPath))
        {
            return;
        }

        string problem;
        try
        {
            byte[]? bytes = SmallFiles.ReadAllBytes(segment.TxnIndexPath, (int)Math.Max(fileLength, 4096));
            TransactionIndex? index = null;
            problem = "it is larger than its log";
            if (bytes is not null && (index = TransactionIndex.Parse(bytes, segment.BaseOffset, segment.CompletedEnd, out problem)) is not null)
            {
                segment.TxnIndex = index;
                return;
            }
        }
        catch (IOException ex)
        {
            problem = $"it could not be read ({ex.Message})";
        }

        log($"partition {segment.Name}: rebuilding the aborted-transaction index {segment.TxnIndexPath} from the log because {problem}");
        segment.TxnIndexNeedsRebuild = true;
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
        // At most one entry (8 or 12 bytes) per batch, and a batch takes more than that: an index larger than its
        // log is not read at all.
        int indexMaxBytes = Math.Max(fileLength, 4096);
        byte[]? offsetIndexBytes = SmallFiles.ReadAllBytes(segment.IndexPath, indexMaxBytes);
        byte[]? timeIndexBytes = SmallFiles.ReadAllBytes(segment.TimeIndexPath, indexMaxBytes);
        if (offsetIndexBytes is null || timeIndexBytes is null)
        {
            reason = "an index file is larger than its log";
            return false;
        }

        if (!OffsetIndex.TryLoad(offsetIndexBytes, relativeLimit, Math.Max(fileLength, 1), out OffsetIndex index, out reason))
        {
            reason = "offset index: " + reason;
            return false;
        }

        if (!TimeIndex.TryLoad(timeIndexBytes, relativeLimit, out TimeIndex timeIndex, out reason))
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
            if (!RecordBatch.TryReadHeader(header, out BatchHeader h) || h.BaseOffset < expected || h.TotalSize > fileLength - position)
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

        // Ending below the next base is a hole, reported by the caller; ending past it is not a log KIOU wrote.
        if (nextBase is { } next && expected > next)
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
    /// Replays the whole segment: each batch's header bounds, base offset (dense from the segment base, below
    /// <paramref name="nextBase"/>) and CRC, rebuilding both indexes for the valid prefix. Returns the first
    /// problem, or null when every byte belongs to a valid batch; changes no file.
    /// </summary>
    private static ScanProblem? Scan(Segment segment, int fileLength, int indexIntervalBytes, long nowMs, long? nextBase)
    {
        segment.ResetForScan();
        byte[] buffer = ArrayPool<byte>.Shared.Rent(Math.Min(ScanBufferBytes, Math.Max(fileLength, RecordBatch.HeaderSize)));
        long chunkStart = 0;
        int chunkLength = 0;
        int position = 0;
        long expected = segment.BaseOffset;
        long limit = nextBase ?? long.MaxValue;
        string? problem = null;
        bool torn = false;
        int resumePosition = -1;
        long resumeOffset = -1;
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

                if (h.BaseOffset < expected || h.NextOffset - segment.BaseOffset > int.MaxValue || h.NextOffset > limit)
                {
                    problem = $"the batch has offsets {h.BaseOffset}..{h.NextOffset - 1} where {expected} was expected" + (h.NextOffset > limit ? $" below the next segment's base {limit}" : string.Empty);
                    break;
                }

                Ensure(h.TotalSize);
                ReadOnlySpan<byte> batch = buffer.AsSpan((int)(position - chunkStart), h.TotalSize);
                if (RecordBatch.ComputeCrc(batch) != h.Crc)
                {
                    problem = $"the batch at offsets {h.BaseOffset}..{h.NextOffset - 1} fails its CRC check";

                    // The header still gives the batch's length and offsets: what follows can be kept.
                    resumePosition = position + h.TotalSize;
                    resumeOffset = h.NextOffset;
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
        if (problem is null)
        {
            return null;
        }

        int dropped = fileLength - position;
        bool padding = dropped > 0 && dropped < DirectTail.PageSize && IsAllZero(segment, position, dropped);
        return new ScanProblem(position, expected, problem, torn, padding, resumePosition, resumeOffset);

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
