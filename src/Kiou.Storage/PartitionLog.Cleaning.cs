using Kiou.IoUring.Interop;
using Kiou.Storage.Cleaner;
using Kiou.Storage.Producers;
using Microsoft.Win32.SafeHandles;

namespace Kiou.Storage;

/// <summary>What the log cleaner may work on in one partition, captured under the lock (docs/design/compaction.md).</summary>
internal sealed class CleanerView
{
    /// <summary>Sealed, durable segments from the log start, all below the first uncleanable offset, without a hole between them.</summary>
    public required Segment[] Cleanable { get; init; }

    public required long LogStart { get; init; }

    public required long FirstUncleanable { get; init; }

    /// <summary>Bytes of the segments from the log start up to the first uncleanable offset (all of them, including the active one's share).</summary>
    public required long[] Sizes { get; init; }

    public required LogConfig Config { get; init; }

    public List<AbortedTxn> Aborted { get; init; } = [];

    public Dictionary<long, long> ProducerLastOffsets { get; init; } = [];

    /// <summary>Where cleaning ends: the end of the last cleanable segment, else the log start.</summary>
    public long CleanEnd => Cleanable.Length > 0 ? Cleanable[^1].SealedEnd : LogStart;
}

/// <summary>The partition side of the log cleaner: what it may clean, and the swap of cleaned segments (docs/design/compaction.md).</summary>
public sealed partial class PartitionLog
{
    /// <summary>Test seam: called at each step of the cleaner's swap ("swap", "deleted", "final"); a throw stops it there, as a crash would.</summary>
    internal Action<string>? CleanerSwapHook { get; set; }

    /// <summary>
    /// Kafka's first uncleanable offset and the segments below it: the active segment, the first unstable offset
    /// (an open transaction), the high watermark and the first segment still within min.compaction.lag.ms bound it.
    /// Null when the log is closing.
    /// </summary>
    internal CleanerView? CleanerSnapshot(long nowMs, bool withTransactions)
    {
        lock (Lock)
        {
            if (Closing)
            {
                return null;
            }

            LogConfig config = Config;
            Segment active = Segments.Active;
            long firstUncleanable = Math.Min(active.BaseOffset, Tails.Completed);
            firstUncleanable = Math.Min(firstUncleanable, Producers.FirstUnstableOffset);
            if (config.MinCompactionLagMs > 0)
            {
                for (int i = 0; i < Segments.Count; i++)
                {
                    Segment s = Segments[i];
                    long newest = s.MaxTimestamp >= 0 ? s.MaxTimestamp : s.LastAppendMs;
                    if (newest > nowMs - config.MinCompactionLagMs)
                    {
                        firstUncleanable = Math.Min(firstUncleanable, s.BaseOffset);
                        break;
                    }
                }
            }

            var cleanable = new List<Segment>();
            var sizes = new List<long>();
            for (int i = 0; i < Segments.Count; i++)
            {
                Segment s = Segments[i];
                if (s.BaseOffset >= firstUncleanable)
                {
                    break;
                }

                sizes.Add(s.Size);
                bool usable = s != active && s.SealedEnd <= firstUncleanable && s.FullyFlushed && s.IndexFilesCurrent
                    && !s.IndexWriteInProgress && !s.DeletePending && cleanable.Count == i;
                if (usable)
                {
                    cleanable.Add(s);
                    if (s.SealedEnd != Segments[i + 1].BaseOffset)
                    {
                        usable = false; // a hole left by damage: nothing after it is merged with what is before it
                    }
                }

                if (!usable)
                {
                    break;
                }
            }

            var view = new CleanerView
            {
                Cleanable = cleanable.ToArray(),
                LogStart = Tails.LogStart,
                FirstUncleanable = firstUncleanable,
                Sizes = sizes.ToArray(),
                Config = config,
            };
            if (withTransactions)
            {
                // From every segment, as Kafka's collectAbortedTransactions: a transaction whose data is cleanable may
                // have its ABORT marker in a later segment, even the active one, and its data must not count as committed.
                long cleanEnd = view.CleanEnd;
                for (int i = 0; i < Segments.Count; i++)
                {
                    TransactionIndex index = Segments[i].TxnIndex;
                    for (int j = 0; j < index.Count; j++)
                    {
                        if (index[j].FirstOffset < cleanEnd)
                        {
                            view.Aborted.Add(index[j]);
                        }
                    }
                }

                foreach (ProducerStateEntry e in Producers.ActiveProducers.Values)
                {
                    if (e.LastDataOffset >= 0)
                    {
                        view.ProducerLastOffsets[e.ProducerId] = e.LastDataOffset;
                    }
                }
            }

            return view;
        }
    }

    /// <summary>
    /// Kafka's replaceSegments: the cleaned files (named <c>.swap</c>, fsync'ed, their directory entry durable) replace
    /// <paramref name="old"/> under the partition lock. Readers holding an old segment finish on its descriptor; new reads
    /// find the new segment (old ones are closed first, so a lookup that raced retries). Old files are renamed to
    /// <c>.deleted</c> before the swap files take their final names; a crash anywhere leaves a state recovery completes
    /// or undoes (<see cref="Recovery"/>). False when the segments changed meanwhile (retention, close): nothing swapped.
    /// </summary>
    /// <param name="pause">Test only (KIOU_TEST_CLEANER_SWAP_DELAY_MS): called at the same steps as <see cref="CleanerSwapHook"/>.</param>
    internal bool SwapCleaned(Segment[] old, CleanedSegment cleaned, Action<string>? pause = null)
    {
        string directory = Segments.Directory;
        Action<string>? hook = CleanerSwapHook + pause;
        hook?.Invoke("swap");
        var deleted = new List<string>();
        Segment replacement;
        string? renameProblem = null;
        lock (Lock)
        {
            int index = Segments.IndexOf(old[0]);
            bool same = !Closing && index >= 0 && index + old.Length < Segments.Count;
            for (int i = 0; same && i < old.Length; i++)
            {
                Segment s = Segments[index + i];
                same = ReferenceEquals(s, old[i]) && !s.IndexWriteInProgress && !s.DeletePending;
            }

            if (!same)
            {
                return false;
            }

            SafeFileHandle handle = File.OpenHandle(cleaned.SwapPath(".log"), FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
            replacement = Segment.FromCleaned(directory, cleaned.BaseOffset, handle);
            replacement.SetLoadedState(cleaned.Index, cleaned.TimeIndex, cleaned.Size, cleaned.EndOffset, cleaned.LastBatchBase, cleaned.LastBatchPosition, cleaned.BytesSinceIndexEntry);
            replacement.TxnIndex = cleaned.TxnIndex;
            replacement.SealRecovered();
            replacement.IndexFilesCurrent = true;
            replacement.Files = old[0].Files;
            long lastAppend = 0;
            foreach (Segment s in old)
            {
                lastAppend = Math.Max(lastAppend, s.LastAppendMs);
            }

            replacement.LastAppendMs = lastAppend;
            replacement.RollBaseMs = lastAppend;
            Segments.ReplaceLocked(index, old.Length, replacement);
            foreach (Segment s in old)
            {
                s.Close(); // reads that looked it up before retry and find the replacement
            }

            try
            {
                foreach (Segment s in old)
                {
                    foreach (string path in new[] { s.IndexPath, s.TimeIndexPath, s.TxnIndexPath, s.LogPath })
                    {
                        if (File.Exists(path))
                        {
                            File.Move(path, path + CleanedSegment.DeletedSuffix, overwrite: true);
                            deleted.Add(path + CleanedSegment.DeletedSuffix);
                        }
                    }
                }

                hook?.Invoke("deleted");
                foreach (string extension in new[] { ".index", ".timeindex", TransactionIndex.Suffix, ".log" })
                {
                    string swap = cleaned.SwapPath(extension);
                    if (File.Exists(swap))
                    {
                        File.Move(swap, Path.Combine(directory, Segment.FileName(cleaned.BaseOffset) + extension), overwrite: true);
                    }
                }
            }
            catch (IOException ex)
            {
                // The new segment serves from its open descriptor; the files on disk are in a state the next start completes.
                renameProblem = ex.Message;
            }
        }

        int rc = FileSync.SyncDirectory(directory);
        if (renameProblem is not null || rc < 0)
        {
            Warn($"partition {Name}: the cleaned segment {replacement.Name} replaced {old.Length} segment(s) in memory, but renaming its files failed ({renameProblem ?? ErrnoNames.Describe(rc)}); it is served from its open file and the next start completes the swap from the .swap/.deleted files in {directory}");
            return true;
        }

        hook?.Invoke("final");
        replacement.ReleaseHandle();
        foreach (string path in deleted)
        {
            try
            {
                File.Delete(path);
            }
            catch (IOException ex)
            {
                Info($"partition {Name}: could not delete {path} ({ex.Message}); the next start removes it");
            }
        }

        FileSync.SyncDirectory(directory);
        return true;
    }
}
