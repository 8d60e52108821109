using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Kiou.Compression;
using Kiou.Protocol.Records;
using Kiou.Storage.Producers;

namespace Kiou.Storage.Cleaner;

/// <summary>Broker-wide cleaner settings (README settings table, docs/design/compaction.md).</summary>
public sealed record LogCleanerSettings
{
    /// <summary>KIOU_LOG_CLEANER_ENABLE (Kafka's log.cleaner.enable).</summary>
    public bool Enable { get; init; } = true;

    /// <summary>KIOU_LOG_CLEANER_DEDUPE_BUFFER_SIZE (log.cleaner.dedupe.buffer.size): the offset map's memory.</summary>
    public int DedupeBufferBytes { get; init; } = 32 << 20;

    /// <summary>KIOU_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND (log.cleaner.io.max.bytes.per.second): reads plus writes.</summary>
    public long IoMaxBytesPerSecond { get; init; } = 32L << 20;

    /// <summary>Kafka's log.cleaner.io.buffer.size: the read chunk and the write buffer.</summary>
    public int IoBufferBytes { get; init; } = 512 << 10;

    /// <summary>KIOU_LOG_CLEANER_BACKOFF_MS (log.cleaner.backoff.ms): the pause when no partition needs cleaning.</summary>
    public long BackoffMs { get; init; } = 15_000;

    /// <summary>Test seam (KIOU_TEST_CLEANER_SWAP_DELAY_MS): a pause at each step of a swap (one of them under the
    /// partition lock, holding appends), so a test can kill the broker there. Never set in production.</summary>
    public int TestSwapDelayMs { get; init; }
}

/// <summary>One partition's cleaner statistics (read by any thread; metrics are another issue).</summary>
public sealed class CleanerStats
{
    private long _bytesRead;
    private long _bytesWritten;
    private long _cleanings;
    private long _errors;

    public long BytesRead => Interlocked.Read(ref _bytesRead);

    public long BytesWritten => Interlocked.Read(ref _bytesWritten);

    /// <summary>Completed cleanings.</summary>
    public long Cleanings => Interlocked.Read(ref _cleanings);

    public long Errors => Interlocked.Read(ref _errors);

    /// <summary>The dirty ratio seen when the partition was last considered.</summary>
    public double DirtyRatio { get; internal set; }

    /// <summary>Unix ms of the last completed cleaning, -1 if none.</summary>
    public long LastCleanMs { get; internal set; } = -1;

    public long LastDurationMs { get; internal set; }

    /// <summary>Offset below which the log is clean (the checkpoint).</summary>
    public long CleanedUpTo { get; internal set; }

    public string? LastError { get; internal set; }

    internal void AddRead(long n) => Interlocked.Add(ref _bytesRead, n);

    internal void AddWritten(long n) => Interlocked.Add(ref _bytesWritten, n);

    internal void Cleaned() => Interlocked.Increment(ref _cleanings);

    internal void Failed() => Interlocked.Increment(ref _errors);
}

/// <summary>
/// Kafka's log cleaner: one low-priority background thread that picks the compacted partition with the dirtiest log
/// (dirty ratio ≥ min.cleanable.dirty.ratio, or a record older than max.compaction.lag.ms), builds a key → latest offset
/// map of its dirty section, rewrites its sealed segments group by group keeping the latest record per key, and swaps
/// them in crash-safely. Progress is kept in <see cref="CleanerCheckpoint"/>. Design: docs/design/compaction.md.
/// </summary>
public sealed class LogCleaner : IDisposable
{
    private readonly string _dataDir;
    private LogCleanerSettings _settings;
    private readonly Func<IEnumerable<PartitionLog>> _partitions;
    private readonly TimeProvider _time;
    private readonly Action<string> _info;
    private readonly Action<string> _warn;
    private OffsetMap? _map;
    private int _mapBytes;
    private readonly BatchFilter _filter = new();
    private readonly Dictionary<(string, int), long> _checkpoints;
    private readonly ConcurrentDictionary<string, CleanerStats> _stats = new(StringComparer.Ordinal);
    private readonly HashSet<PartitionLog> _uncleanable = new(ReferenceEqualityComparer.Instance);
    private readonly ManualResetEventSlim _stop = new();
    private readonly AutoResetEvent _reconfigured = new(false);
    private readonly object _passLock = new();
    private Thread? _thread;
    private byte[] _readBuffer;
    private long _throttleStartTicks;
    private long _throttleBytes;

    public LogCleaner(string dataDir, LogCleanerSettings settings, Func<IEnumerable<PartitionLog>> partitions, TimeProvider time, Action<string> info, Action<string> warn)
    {
        _dataDir = dataDir;
        _settings = settings;
        _partitions = partitions;
        _time = time;
        _info = info;
        _warn = warn;
        _readBuffer = new byte[Math.Max(settings.IoBufferBytes, RecordBatch.HeaderSize)];
        _checkpoints = CleanerCheckpoint.Read(dataDir, time.GetUtcNow().ToUnixTimeMilliseconds(), warn);
    }

    /// <summary>The settings in effect (replaced whole by <see cref="Reconfigure"/>).</summary>
    public LogCleanerSettings Settings => Volatile.Read(ref _settings);

    /// <summary>
    /// Dynamic broker configs (Kafka's LogCleaner.reconfigure): the throttle applies from the next chunk, the backoff
    /// at once (a pause under way ends), the dedupe buffer at the next cleaning.
    /// </summary>
    public void Reconfigure(long ioMaxBytesPerSecond, long backoffMs, int dedupeBufferBytes)
    {
        var current = Volatile.Read(ref _settings);
        if (current.IoMaxBytesPerSecond == ioMaxBytesPerSecond && current.BackoffMs == backoffMs && current.DedupeBufferBytes == dedupeBufferBytes)
        {
            return;
        }

        Volatile.Write(ref _settings, current with { IoMaxBytesPerSecond = ioMaxBytesPerSecond, BackoffMs = backoffMs, DedupeBufferBytes = dedupeBufferBytes });
        _reconfigured.Set();
    }

    /// <summary>Per partition ("topic-partition") statistics.</summary>
    public IReadOnlyDictionary<string, CleanerStats> Stats => _stats;

    /// <summary>Starts the background thread (once).</summary>
    public void Start()
    {
        if (_thread is not null)
        {
            return;
        }

        _thread = new Thread(Loop) { IsBackground = true, Name = "kiou-log-cleaner", Priority = ThreadPriority.Lowest };
        _thread.Start();
    }

    private void Loop()
    {
        while (!_stop.IsSet)
        {
            bool cleaned;
            try
            {
                cleaned = CleanOnce();
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                _warn($"log cleaner: unexpected error ({ex.GetType().Name}: {ex.Message}); it goes on after {Settings.BackoffMs} ms");
                cleaned = false;
            }

            if (!cleaned)
            {
                // A new backoff ends the pause under way, as Kafka's reconfigure restarts the cleaner threads.
                WaitHandle.WaitAny([_stop.WaitHandle, _reconfigured], TimeSpan.FromMilliseconds(Settings.BackoffMs));
            }
        }
    }

    /// <summary>Picks the dirtiest eligible partition and cleans it; false when none needed it.</summary>
    public bool CleanOnce()
    {
        lock (_passLock)
        {
            long now = _time.GetUtcNow().ToUnixTimeMilliseconds();
            PartitionLog? best = null;
            double bestRatio = -1;
            foreach (PartitionLog log in _partitions())
            {
                if (!log.Config.Compact || _uncleanable.Contains(log))
                {
                    continue;
                }

                CleanerView? view = log.CleanerSnapshot(now, withTransactions: false);
                if (view is null || view.Cleanable.Length == 0)
                {
                    continue;
                }

                long firstDirty = FirstDirty(log, view);
                long cleanBytes = 0;
                long dirtyBytes = 0;
                for (int i = 0; i < view.Cleanable.Length; i++)
                {
                    if (view.Cleanable[i].SealedEnd <= firstDirty)
                    {
                        cleanBytes += view.Sizes[i];
                    }
                    else
                    {
                        dirtyBytes += view.Sizes[i];
                    }
                }

                double ratio = cleanBytes + dirtyBytes == 0 ? 0 : (double)dirtyBytes / (cleanBytes + dirtyBytes);
                StatsOf(log).DirtyRatio = ratio;
                bool due = dirtyBytes > 0 && (ratio >= view.Config.MinCleanableDirtyRatio || MaxLagPassed(log, view, firstDirty, now));
                if (due && ratio > bestRatio)
                {
                    best = log;
                    bestRatio = ratio;
                }
            }

            if (best is null)
            {
                return false;
            }

            return Clean(best, now);
        }
    }

    /// <summary>Cleans one partition now whatever its dirty ratio (tests, and <see cref="CleanOnce"/>); false if nothing was cleaned.</summary>
    internal bool Clean(PartitionLog log, long now)
    {
        lock (_passLock)
        {
            CleanerStats stats = StatsOf(log);
            try
            {
                return CleanPartition(log, now, stats);
            }
            catch (CleanerCorruptionException ex)
            {
                stats.Failed();
                stats.LastError = ex.Message;
                _uncleanable.Add(log);
                _warn($"log cleaner: partition {log.Topic}-{log.Partition} is not cleaned any more until the broker restarts: {ex.Message}. Its segment files were left untouched; check the disk (dmesg) and the segment named");
                return false;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or StorageException)
            {
                stats.Failed();
                stats.LastError = ex.Message;
                _warn($"log cleaner: cleaning partition {log.Topic}-{log.Partition} failed ({ex.Message}); files written for it were removed, the old segments stay, and it is tried again later");
                return false;
            }
            catch (ObjectDisposedException)
            {
                return false; // closed or deleted meanwhile
            }
        }
    }

    private CleanerStats StatsOf(PartitionLog log) => _stats.GetOrAdd($"{log.Topic}-{log.Partition}", static _ => new CleanerStats());

    private long FirstDirty(PartitionLog log, CleanerView view)
    {
        long first = _checkpoints.TryGetValue((log.Topic, log.Partition), out long c) ? c : view.LogStart;
        return first < view.LogStart || first > view.FirstUncleanable ? view.LogStart : first;
    }

    /// <summary>max.compaction.lag.ms: the first dirty batch is older than that.</summary>
    private bool MaxLagPassed(PartitionLog log, CleanerView view, long firstDirty, long now)
    {
        if (view.Config.MaxCompactionLagMs == long.MaxValue)
        {
            return false;
        }

        foreach (Segment s in view.Cleanable)
        {
            if (s.SealedEnd <= firstDirty)
            {
                continue;
            }

            Span<byte> header = stackalloc byte[RecordBatch.HeaderSize];
            try
            {
                if (s.CompletedSize < RecordBatch.HeaderSize)
                {
                    return false;
                }

                s.ReadExactly(0, header);
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException)
            {
                return false;
            }

            long first = RecordBatch.MaxTimestamp(header);
            _ = log;
            return first >= 0 && now - first > view.Config.MaxCompactionLagMs;
        }

        return false;
    }

    private bool CleanPartition(PartitionLog log, long now, CleanerStats stats)
    {
        long started = Stopwatch.GetTimestamp();
        CleanerView? view = log.CleanerSnapshot(now, withTransactions: true);
        if (view is null || view.Cleanable.Length == 0)
        {
            return false;
        }

        LogConfig config = view.Config;
        long firstDirty = FirstDirty(log, view);
        long cleanEnd = view.CleanEnd;
        int decompressedMax = BatchDecompressor.DecompressedBytesMax(config.MaxMessageBytes);
        int maxBatchBytes = Math.Max(config.MaxMessageBytes, 1 << 20) + RecordBatch.HeaderSize;
        long bytesRead = 0;

        // 1. The offset map of the dirty section, up to where it fills (allocated at the first cleaning: a broker
        // without compacted topics does not pay for it).
        var settings = Settings;
        if (_map is not null && _mapBytes != settings.DedupeBufferBytes)
        {
            _map = null; // log.cleaner.dedupe.buffer.size changed: the next map has the new size
        }

        OffsetMap map = _map ??= new OffsetMap(_mapBytes = settings.DedupeBufferBytes);
        map.Clear();
        long mapEnd = firstDirty;
        bool full = false;
        var mapTxns = new CleanedTransactions([.. view.Aborted]);
        DecompressedRecords decompressed = default;
        foreach (Segment segment in view.Cleanable)
        {
            if (segment.SealedEnd <= firstDirty || full)
            {
                continue;
            }

            var reader = new SegmentBatches(segment, this, maxBatchBytes);
            while (reader.TryNext(out ReadOnlyMemory<byte> memory, out BatchHeader header))
            {
                if (header.NextOffset <= firstDirty)
                {
                    continue;
                }

                ReadOnlySpan<byte> batch = memory.Span;
                if (header.Attributes is var a && (a & 0x20) != 0)
                {
                    mapTxns.OnControlBatchRead(batch, header);
                    mapEnd = header.NextOffset;
                    continue;
                }

                if (mapTxns.OnBatchRead(header, RecordBatch.ProducerId(batch), (a & 0x10) != 0))
                {
                    mapEnd = header.NextOffset;
                    continue;
                }

                int count = RecordBatch.RecordsCount(batch);
                if (map.Count + (long)count > map.Capacity)
                {
                    full = true;
                    break;
                }

                ReadOnlySpan<byte> area;
                try
                {
                    if (header.Codec == CompressionType.None)
                    {
                        area = batch[RecordBatch.HeaderSize..];
                    }
                    else
                    {
                        if (header.Codec > CompressionType.Zstd
                            || BatchDecompressor.Decompress(header.Codec, memory[RecordBatch.HeaderSize..], decompressedMax, out decompressed, out string? error) != DecompressStatus.Ok)
                        {
                            throw new CleanerCorruptionException($"{segment.Name}: the batch at offset {header.BaseOffset} does not decompress");
                        }

                        area = decompressed.Span;
                    }

                    var cursor = new RecordCursor(area, count);
                    while (cursor.MoveNext())
                    {
                        if (cursor.KeyLength >= 0)
                        {
                            map.Put(cursor.Key, header.BaseOffset + cursor.OffsetDelta);
                        }
                    }

                    if (cursor.Error != 0)
                    {
                        throw new CleanerCorruptionException($"{segment.Name}: the records of the batch at offset {header.BaseOffset} do not parse");
                    }
                }
                finally
                {
                    decompressed.Dispose();
                    decompressed = default;
                }

                mapEnd = header.NextOffset;
            }

            bytesRead += reader.BytesRead;
        }

        if (full && mapEnd <= firstDirty)
        {
            throw new CleanerCorruptionException($"the dedupe buffer (log.cleaner.dedupe.buffer.size, KIOU_LOG_CLEANER_DEDUPE_BUFFER_SIZE={_mapBytes}) cannot hold the keys of one batch at offset {firstDirty}; raise it");
        }

        if (!full)
        {
            mapEnd = cleanEnd;
        }

        // 2. Segments from the log start, rewritten into new segments of at most segment.bytes. Kafka groups them by
        // their sizes before cleaning; here a segment joins the current new one while what is written so far plus its
        // size still fits, so segments that shrank a lot merge instead of leaving tiny segments behind.
        var toClean = view.Cleanable.Where(s => s.BaseOffset < mapEnd).ToArray();
        int maxBytes = config.SegmentBytesEffective;
        _filter.Map = map;
        _filter.MapEnd = mapEnd;
        _filter.NowMs = now;
        _filter.DeleteRetentionMs = config.DeleteRetentionMs;
        _filter.DecompressedBytesMax = decompressedMax;
        _filter.ProducerLastOffsets = view.ProducerLastOffsets;
        var txns = new CleanedTransactions([.. view.Aborted]);
        _filter.Transactions = txns;
        long before = 0;
        long after = 0;
        int swapped = 0;
        int next = 0;
        while (next < toClean.Length && !_stop.IsSet)
        {
            var group = new List<Segment>();
            var cleaned = new CleanedSegment(Path.GetDirectoryName(toClean[next].LogPath)!, toClean[next].BaseOffset, config.IndexIntervalBytes, _settings.IoBufferBytes);
            txns.CleanedIndex = cleaned.TxnIndex;
            bool ok = false;
            try
            {
                bool changed = false;
                long groupBytes = 0;
                while (next < toClean.Length)
                {
                    Segment segment = toClean[next++];
                    group.Add(segment);
                    groupBytes += segment.CompletedSize;

                    // Whether the next segment joins is decided at this one's last batch, from what is written so far:
                    // the last batch of a new segment must keep its offset range to the segment's end.
                    bool last = true;
                    var reader = new SegmentBatches(segment, this, maxBatchBytes);
                    long flushed = cleaned.BytesFlushed;
                    while (reader.TryNext(out ReadOnlyMemory<byte> memory, out BatchHeader header))
                    {
                        bool keepRange = false;
                        if (header.NextOffset == segment.SealedEnd)
                        {
                            last = next == toClean.Length
                                || (long)cleaned.Size + header.TotalSize + toClean[next].CompletedSize > maxBytes
                                || toClean[next].SealedEnd - cleaned.BaseOffset > int.MaxValue;
                            keepRange = last;
                        }

                        FilterOutcome outcome = _filter.Filter(memory, header, keepRange, out _, out _);
                        if (outcome == FilterOutcome.Copy)
                        {
                            cleaned.Append(memory.Span[..header.TotalSize]);
                        }
                        else
                        {
                            changed = true;
                            if (outcome == FilterOutcome.Rewritten)
                            {
                                cleaned.Append(_filter.Output);
                            }
                        }

                        Throttle(cleaned.BytesFlushed - flushed);
                        flushed = cleaned.BytesFlushed;
                    }

                    bytesRead += reader.BytesRead;
                    if (last)
                    {
                        break;
                    }
                }

                changed |= group.Count > 1;
                if (!changed || cleaned.Batches == 0 || cleaned.EndOffset != group[^1].SealedEnd)
                {
                    continue; // nothing to gain, or (never expected) a range the swap could not cover
                }

                cleaned.Seal();
                stats.AddWritten(cleaned.Size);
                if (!log.SwapCleaned([.. group], cleaned, _settings.TestSwapDelayMs > 0 ? _ => _stop.Wait(_settings.TestSwapDelayMs) : null))
                {
                    continue;
                }

                ok = true;
                swapped += group.Count;
                before += groupBytes;
                after += cleaned.Size;
            }
            finally
            {
                cleaned.Dispose();
                if (!ok)
                {
                    cleaned.Discard();
                }
            }
        }

        stats.AddRead(bytesRead);
        if (_stop.IsSet)
        {
            return swapped > 0;
        }

        _checkpoints[(log.Topic, log.Partition)] = mapEnd;
        WriteCheckpoints();
        double seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        stats.CleanedUpTo = mapEnd;
        stats.LastCleanMs = now;
        stats.LastDurationMs = (long)(seconds * 1000);
        stats.Cleaned();
        _info(string.Create(CultureInfo.InvariantCulture,
            $"log cleaner: cleaned partition {log.Topic}-{log.Partition} up to offset {mapEnd}: {swapped} segment(s) rewritten, {before} -> {after} bytes, dirty ratio {stats.DirtyRatio:F2}, {seconds:F2} s, {(seconds > 0 ? bytesRead / seconds / (1 << 20) : 0):F1} MB/s read"));
        return true;
    }

    private void WriteCheckpoints()
    {
        var live = new HashSet<(string, int)>();
        foreach (PartitionLog p in _partitions())
        {
            live.Add((p.Topic, p.Partition));
        }

        foreach (var key in _checkpoints.Keys.Where(k => !live.Contains(k)).ToList())
        {
            _checkpoints.Remove(key);
        }

        try
        {
            CleanerCheckpoint.Write(_dataDir, _checkpoints);
        }
        catch (IOException ex)
        {
            _warn($"log cleaner: could not write {Path.Combine(_dataDir, CleanerCheckpoint.FileName)} ({ex.Message}); after a restart partitions are cleaned again from their log start");
        }
    }

    /// <summary>Sleeps as long as needed to keep reads plus writes under KIOU_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND.</summary>
    private void Throttle(long bytes)
    {
        long limit = Settings.IoMaxBytesPerSecond;
        if (bytes <= 0 || limit <= 0 || limit == long.MaxValue)
        {
            return;
        }

        long nowTicks = Stopwatch.GetTimestamp();
        if (_throttleStartTicks == 0 || Stopwatch.GetElapsedTime(_throttleStartTicks, nowTicks).TotalSeconds > 1)
        {
            _throttleStartTicks = nowTicks;
            _throttleBytes = 0;
        }

        _throttleBytes += bytes;
        double due = (double)_throttleBytes / limit;
        double elapsed = Stopwatch.GetElapsedTime(_throttleStartTicks, nowTicks).TotalSeconds;
        if (due > elapsed)
        {
            _stop.Wait(TimeSpan.FromSeconds(due - elapsed));
        }
    }

    public void Dispose()
    {
        _stop.Set();
        _thread?.Join();
    }

    /// <summary>
    /// Walks the whole batches of a sealed segment with positional reads in chunks of the I/O buffer (grown only for a
    /// larger batch, up to max.message.bytes): every header, offset order and CRC-32C is checked, as bytes from disk are
    /// untrusted; anything wrong stops the partition's cleaning.
    /// </summary>
    private sealed class SegmentBatches(Segment segment, LogCleaner owner, int maxBatchBytes)
    {
        private int _position;
        private long _chunkStart;
        private int _chunkLength;
        private long _expected = segment.BaseOffset;

        public long BytesRead { get; private set; }

        public bool TryNext(out ReadOnlyMemory<byte> batch, out BatchHeader header)
        {
            int limit = segment.CompletedSize;
            batch = default;
            header = default;
            if (_position >= limit)
            {
                return false;
            }

            if (limit - _position < RecordBatch.HeaderSize)
            {
                throw new CleanerCorruptionException($"{segment.Name}: {limit - _position} stray bytes at position {_position}");
            }

            Ensure(RecordBatch.HeaderSize, limit);
            ReadOnlySpan<byte> at = owner._readBuffer.AsSpan((int)(_position - _chunkStart));
            if (!RecordBatch.TryReadHeader(at, out header) || header.BaseOffset < _expected || header.TotalSize > limit - _position || header.NextOffset > segment.SealedEnd)
            {
                throw new CleanerCorruptionException($"{segment.Name}: invalid batch header at position {_position} (expected an offset from {_expected})");
            }

            if (header.TotalSize > maxBatchBytes)
            {
                throw new CleanerCorruptionException($"{segment.Name}: the batch at offset {header.BaseOffset} is {header.TotalSize} bytes, more than max.message.bytes allows the cleaner to read");
            }

            Ensure(header.TotalSize, limit);
            int start = (int)(_position - _chunkStart);
            batch = owner._readBuffer.AsMemory(start, header.TotalSize);
            if (RecordBatch.ComputeCrc(batch.Span) != header.Crc)
            {
                throw new CleanerCorruptionException($"{segment.Name}: the batch at offset {header.BaseOffset} (position {_position}) fails its CRC check");
            }

            _expected = header.NextOffset;
            _position += header.TotalSize;
            return true;
        }

        private void Ensure(int count, int limit)
        {
            if (_position + count <= _chunkStart + _chunkLength)
            {
                return;
            }

            if (count > owner._readBuffer.Length)
            {
                owner._readBuffer = new byte[count];
            }

            _chunkStart = _position;
            _chunkLength = Math.Min(owner._readBuffer.Length, limit - _position);
            segment.ReadExactly(_chunkStart, owner._readBuffer.AsSpan(0, _chunkLength));
            BytesRead += _chunkLength;
            owner.Throttle(_chunkLength);
        }
    }
}
