namespace Kiou.Storage;

/// <summary>DeleteRecords: a durable log start offset inside the log (Kafka's maybeIncrementLogStartOffset).</summary>
public sealed partial class PartitionLog
{
    // One DeleteRecords writes the checkpoint at a time, so a smaller offset can never be written after a larger one.
    private readonly SemaphoreSlim _logStartGate = new(1, 1);
    private long _checkpointedLogStart;

    /// <summary>
    /// Moves the log start offset up to <paramref name="offset"/> (at most the high watermark) and returns the log start
    /// after it, which is larger when the log started later already. Completes once the new start is durable: the
    /// records below are fdatasync'ed first (the tails keep the start at or below the durable tail) and the start is
    /// written to <see cref="LogStartCheckpoint.FileName"/> before the reads, the producer state and the cleaner see it.
    /// Segments wholly below the new start are then deleted by retention's path.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The offset is negative or above the high watermark.</exception>
    /// <exception cref="StorageException">The flush or the checkpoint write failed, or the log is closed; the start did not move.</exception>
    public async Task<long> DeleteRecordsBeforeAsync(long offset)
    {
        if (offset < 0 || offset > HighWatermark)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"partition {Name}: the offset must be between 0 and the high watermark {HighWatermark}");
        }

        if (offset <= LogStartOffset)
        {
            return LogStartOffset;
        }

        await Flusher.FlushAsync().ConfigureAwait(false);
        await _logStartGate.WaitAsync().ConfigureAwait(false);
        try
        {
            lock (Lock)
            {
                if (Closing || Closed)
                {
                    throw new StorageException($"partition {Name}: the log is closed", 0);
                }

                if (Tails.Durable < offset)
                {
                    throw new StorageException($"partition {Name}: records below offset {offset} are not durable (durable up to {Tails.Durable}), so the log start cannot move there", 0);
                }

                if (offset <= Tails.LogStart)
                {
                    return Tails.LogStart;
                }
            }

            if (offset > _checkpointedLogStart)
            {
                try
                {
                    LogStartCheckpoint.Write(Segments.Directory, Topic, Partition, offset);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    int errno = ErrnoNames.FromException(ex);
                    throw new StorageException($"partition {Name}: cannot write {LogStartCheckpoint.FileName} for log start offset {offset}: {ex.Message}; the log start did not move", errno, ex);
                }

                _checkpointedLogStart = offset;
            }

            long start;
            lock (Lock)
            {
                if (offset > Tails.LogStart)
                {
                    Tails.AdvanceLogStart(offset);
                    Producers.OnLogStartOffsetIncremented(offset);
                    UpdateFirstUnstableOffsetLocked();
                }

                start = Tails.LogStart;
            }

            Info($"partition {Name}: log start offset is now {start} (DeleteRecords up to {offset})");
            Segments.EnforceRetention(NowMs());
            return start;
        }
        finally
        {
            _logStartGate.Release();
        }
    }

    /// <summary>
    /// The log start at open: the checkpointed DeleteRecords offset when it lies inside the log, else the first segment's
    /// base. A start past the recovered end (records below it were lost) becomes the end, with a warning.
    /// </summary>
    private static long InitialLogStart(string directory, string topic, int partition, long firstBase, long end, long nowMs, Action<string> warn)
    {
        long? checkpoint = LogStartCheckpoint.Read(directory, topic, partition, nowMs, warn);
        if (checkpoint is not { } start || start <= firstBase)
        {
            return firstBase;
        }

        if (start > end)
        {
            warn($"partition {topic}-{partition}: {Path.Combine(directory, LogStartCheckpoint.FileName)} says the log starts at offset {start}, past its recovered end {end}; the log starts at {end} and offsets {end}..{start - 1} will be given again. Check the disk (dmesg) and the partition's quarantine directory");
            return end;
        }

        return start;
    }
}
