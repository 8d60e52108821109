using System.Buffers;
using System.Diagnostics;
using Kiou.IoUring.Interop;
using Kiou.Protocol.Records;
using Kiou.Storage.Producers;
using Microsoft.Win32.SafeHandles;

namespace Kiou.Storage;

/// <summary>
/// One segment of a partition log: the <c>.log</c> file holding whole RecordBatch v2 batches back to back, and its
/// in-memory <see cref="OffsetIndex"/> and <see cref="TimeIndex"/>. Files are named by the base offset padded to
/// 20 digits.
/// </summary>
/// <remarks>
/// Lifecycle: created at roll (or loaded by <see cref="Recovery"/>), active while appends go to it, sealed at
/// the next roll (<see cref="SealedEnd"/> fixed), its index files written once its bytes are durable, deleted by
/// retention. Once sealed and durable it gives its descriptor to the broker's bounded <see cref="SegmentFileCache"/>
/// and reads lease one from there (<see cref="AcquireHandle"/>); an idle active segment does the same and reopens it
/// at its next append. All mutable fields are guarded by the owning
/// <see cref="PartitionLog"/>'s lock; the file is read without it, never past <see cref="CompletedSize"/> as captured
/// under the lock.
/// Sizes and positions are int32: segment.bytes is capped at int.MaxValue.
/// </remarks>
internal sealed class Segment
{
    private const int ScanChunkBytes = 8192; // two pages: a few small batches' headers per read

    private Segment(string directory, long baseOffset, SafeFileHandle handle)
    {
        BaseOffset = baseOffset;
        string name = FileName(baseOffset);
        LogPath = Path.Combine(directory, name + ".log");
        IndexPath = Path.Combine(directory, name + ".index");
        TimeIndexPath = Path.Combine(directory, name + ".timeindex");
        TxnIndexPath = Path.Combine(directory, name + TransactionIndex.Suffix);
        _pinned = handle;
        CacheNode = new LinkedListNode<Segment>(this);
        CompletedEnd = baseOffset;
        ReservedEnd = baseOffset;
        FlushedEnd = baseOffset;
    }

    public long BaseOffset { get; }

    public string LogPath { get; }

    public string IndexPath { get; }

    public string TimeIndexPath { get; }

    /// <summary>The aborted-transaction index file (Kafka's <c>.txnindex</c>), present only when it has entries.</summary>
    public string TxnIndexPath { get; }

    /// <summary>Aborted transactions whose ABORT marker is in this segment (under the partition lock).</summary>
    public TransactionIndex TxnIndex { get; set; } = new();

    /// <summary>Set by recovery when <see cref="TxnIndex"/> must be rebuilt from the log (missing after a scan, or damaged).</summary>
    public bool TxnIndexNeedsRebuild { get; set; }

    public string Name => Path.GetFileName(LogPath);

    /// <summary>
    /// The segment's own read-write descriptor, for writes, flushes, truncation and recovery: kept while the segment
    /// has writes or flushes to finish, then handed to the <see cref="SegmentFileCache"/> (<see cref="ReleaseHandle"/>):
    /// once sealed and durable, or, for the active segment, once idle (<see cref="PartitionLog.ReleaseIdleDescriptors"/>).
    /// Reopened here if something needs it after that (under the partition lock). Reads use <see cref="AcquireHandle"/>.
    /// </summary>
    public SafeFileHandle Handle
    {
        get
        {
            if (Volatile.Read(ref _pinned) is { } pinned)
            {
                return pinned;
            }

            ObjectDisposedException.ThrowIf(IsClosed, this);
            var opened = File.OpenHandle(LogPath, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
            SafeFileHandle? raced = Interlocked.CompareExchange(ref _pinned, opened, null);
            if (raced is not null)
            {
                opened.Dispose();
                return raced;
            }

            return opened;
        }
    }

    private SafeFileHandle? _pinned;

    /// <summary>True while <see cref="Handle"/> is open (read without the lock: a hint).</summary>
    public bool HoldsHandle => Volatile.Read(ref _pinned) is not null;

    /// <summary>Where reads open the file once <see cref="Handle"/> is released; null: each read opens its own.</summary>
    public SegmentFileCache? Files { get; set; }

    /// <summary>Closed or deleted: no more reads.</summary>
    public bool IsClosed => Volatile.Read(ref _closed);

    private bool _closed;

    /// <summary>The cache's descriptor of this segment and its place in the recency list (guarded by the cache's lock).</summary>
    internal SafeFileHandle? CachedHandle { get; set; }

    internal LinkedListNode<Segment> CacheNode { get; }

    /// <summary>This segment's chunks in the <see cref="ReadCache"/>, by file position (guarded by the read cache's lock).</summary>
    internal List<ReadCache.Entry>? CachedChunks { get; set; }

    /// <summary>The read cache this segment's written chunks go to, if any.</summary>
    public ReadCache? Reads => Files?.Reads;

    /// <summary>Forgets this segment's bytes in the read cache: call before its file's bytes change (truncation).</summary>
    public void DropCached() => Files?.Reads.Drop(this);

    /// <summary>The O_DIRECT write-behind while this segment takes direct appends (see <see cref="DirectTail"/>). Set
    /// under the partition lock; read without it (through <see cref="Recent"/>) by fetches.</summary>
    public DirectTail? Tail
    {
        get => Volatile.Read(ref _tail);
        set => Volatile.Write(ref _tail, value);
    }

    private DirectTail? _tail;

    /// <summary>The newest bytes of a direct segment, served to tail fetches from memory (see <see cref="RecentBytes"/>).</summary>
    public RecentBytes? Recent => Tail?.Recent;

    /// <summary>Opening the file with O_DIRECT failed once: this segment's appends stay buffered.</summary>
    public bool DirectUnavailable { get; set; }

    /// <summary>File bytes handed out to appenders (reserved); the next write goes here.</summary>
    public int Size { get; set; }

    /// <summary>File bytes below which every write has completed and been published.</summary>
    public int CompletedSize { get; set; }

    /// <summary>Offset after the last published batch in this segment.</summary>
    public long CompletedEnd { get; set; }

    /// <summary>Offset after the last reserved batch in this segment.</summary>
    public long ReservedEnd { get; set; }

    /// <summary>Offset below which this segment's bytes are covered by a finished fdatasync.</summary>
    public long FlushedEnd { get; set; }

    /// <summary>Set at roll: no more appends; the segment ends at <see cref="SealedEnd"/>.</summary>
    public bool Sealed { get; private set; }

    public long SealedEnd { get; private set; } = -1;

    /// <summary>True once the index files on disk match the in-memory indexes (loaded, or written after sealing).</summary>
    public bool IndexFilesCurrent { get; set; }

    public bool IndexWriteInProgress { get; set; }

    /// <summary>Removed by retention while its index files were being written: the writer deletes the files when done.</summary>
    public bool DeletePending { get; set; }

    public OffsetIndex Index { get; private set; } = new();

    public TimeIndex TimeIndex { get; private set; } = new();

    public int BytesSinceIndexEntry { get; set; }

    /// <summary>Largest batch maxTimestamp published in this segment, -1 if none.</summary>
    public long MaxTimestamp { get; private set; } = -1;

    /// <summary>Base offset of the first batch that reached <see cref="MaxTimestamp"/>, -1 if none.</summary>
    public long OffsetOfMaxTimestamp { get; private set; } = -1;

    /// <summary>Clock time (TimeProvider) the segment.ms roll is measured from.</summary>
    public long RollBaseMs { get; set; }

    /// <summary>Clock time of the last publish (or of loading): retention's fallback when batches carry no timestamps.</summary>
    public long LastAppendMs { get; set; }

    /// <summary>Base offset and position of the last published batch, for cheap lookups at the tail.</summary>
    public long LastBatchBaseOffset { get; private set; } = -1;

    public int LastBatchPosition { get; private set; } = -1;

    public bool FullyFlushed => Sealed && CompletedEnd == SealedEnd && FlushedEnd == SealedEnd;

    public static string FileName(long baseOffset) => baseOffset.ToString("D20", System.Globalization.CultureInfo.InvariantCulture);

    public static bool TryParseFileName(string fileName, out long baseOffset)
    {
        baseOffset = -1;
        string stem = Path.GetFileNameWithoutExtension(fileName);
        return stem.Length == 20
            && long.TryParse(stem, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out baseOffset);
    }

    private const int EMFILE = 24;

    /// <summary>Creates a new, empty segment file (fails if one exists: a stale file would hold other data; fails with
    /// EMFILE within the descriptors kept free for the runtime, <see cref="Kiou.IoUring.Interop.DescriptorLimit.Headroom"/>).</summary>
    public static Segment Create(string directory, long baseOffset, long nowMs)
    {
        string path = Path.Combine(directory, FileName(baseOffset) + ".log");
        var handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        if (Kiou.IoUring.Interop.DescriptorLimit.InHeadroom(handle))
        {
            handle.Dispose();
            File.Delete(path);
            throw new IOException($"Too many open files : '{path}' (the last {Kiou.IoUring.Interop.DescriptorLimit.Headroom} of {Kiou.IoUring.Interop.DescriptorLimit.Soft} descriptors are kept for the broker's threads)", EMFILE);
        }

        return new Segment(directory, baseOffset, handle) { RollBaseMs = nowMs, LastAppendMs = nowMs };
    }

    /// <summary>A segment written by the log cleaner, over its already open file (still named <c>.swap</c> when opened).</summary>
    public static Segment FromCleaned(string directory, long baseOffset, SafeFileHandle handle) => new(directory, baseOffset, handle);

    public static Segment OpenExisting(string directory, long baseOffset)
    {
        string path = Path.Combine(directory, FileName(baseOffset) + ".log");
        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        return new Segment(directory, baseOffset, handle);
    }

    public long FileLength() => RandomAccess.GetLength(Handle);

    /// <summary>
    /// Records a published batch (offset order, under the lock): index entries every interval bytes, time index
    /// max-so-far, completed tails. Same rule as Kafka's LogSegment.append: the max timestamp is updated first,
    /// then an entry pointing at this batch is added if more than the interval has passed since the last one.
    /// </summary>
    public void OnPublished(long baseOffset, long nextOffset, int position, int size, long maxTimestamp, int indexIntervalBytes, long nowMs)
    {
        Debug.Assert(baseOffset >= CompletedEnd, "publish out of order"); // above it: a hole left by the cleaner
        Debug.Assert(position == CompletedSize, "publish at a gap in the file");
        Debug.Assert(nextOffset > baseOffset, "empty offset range");
        if (maxTimestamp > MaxTimestamp)
        {
            MaxTimestamp = maxTimestamp;
            OffsetOfMaxTimestamp = baseOffset;
        }

        int relative = checked((int)(baseOffset - BaseOffset));
        if (BytesSinceIndexEntry >= indexIntervalBytes && (Index.Count > 0 || position > 0))
        {
            Index.Append(relative, position);
            if (MaxTimestamp >= 0)
            {
                TimeIndex.MaybeAppend(MaxTimestamp, checked((int)(OffsetOfMaxTimestamp - BaseOffset)));
            }

            BytesSinceIndexEntry = 0;
        }

        BytesSinceIndexEntry += size;
        CompletedSize = position + size;
        CompletedEnd = nextOffset;
        LastBatchBaseOffset = baseOffset;
        LastBatchPosition = position;
        LastAppendMs = nowMs;
    }

    /// <summary>Adds the final time index entry so its last entry is the segment's max timestamp (seal, close).</summary>
    public void FinishTimeIndex()
    {
        if (MaxTimestamp >= 0)
        {
            TimeIndex.MaybeAppend(MaxTimestamp, checked((int)(OffsetOfMaxTimestamp - BaseOffset)));
        }
    }

    public void Seal()
    {
        Debug.Assert(!Sealed, "sealed twice");
        Sealed = true;
        SealedEnd = ReservedEnd;
    }

    /// <summary>After an I/O error: forget reservations past the completed tail and take appends again.</summary>
    public void ReopenAtCompleted()
    {
        Sealed = false;
        SealedEnd = -1;
        Size = CompletedSize;
        ReservedEnd = CompletedEnd;
        IndexFilesCurrent = false;
        IndexWriteInProgress = false;
    }

    /// <summary>Used by recovery: replaces the indexes with ones loaded from disk and the stats they imply.</summary>
    public void SetLoadedState(OffsetIndex index, TimeIndex timeIndex, int size, long endOffset, long lastBatchBase, int lastBatchPosition, int bytesSinceIndexEntry)
    {
        Index = index;
        TimeIndex = timeIndex;
        Size = size;
        CompletedSize = size;
        CompletedEnd = endOffset;
        ReservedEnd = endOffset;
        FlushedEnd = endOffset;
        LastBatchBaseOffset = lastBatchBase;
        LastBatchPosition = lastBatchPosition;
        BytesSinceIndexEntry = bytesSinceIndexEntry;
        if (timeIndex.Count > 0)
        {
            MaxTimestamp = timeIndex.LastTimestamp;
            OffsetOfMaxTimestamp = BaseOffset + timeIndex.LastRelativeOffset;
        }
    }

    /// <summary>Replaces indexes found to contradict the log with ones rebuilt from it (under the partition lock).</summary>
    public void ReplaceIndexes(OffsetIndex index, TimeIndex timeIndex, int bytesSinceIndexEntry)
    {
        Index = index;
        TimeIndex = timeIndex;
        BytesSinceIndexEntry = bytesSinceIndexEntry;
    }

    /// <summary>Used by recovery: marks the segment sealed at its recovered end (every segment but the last).</summary>
    public void SealRecovered()
    {
        Sealed = true;
        SealedEnd = CompletedEnd;
        FlushedEnd = CompletedEnd;
    }

    /// <summary>Used by recovery's full scan: reset to empty before replaying batches through <see cref="OnPublished"/>.</summary>
    public void ResetForScan()
    {
        Index = new OffsetIndex();
        TimeIndex = new TimeIndex();
        Size = 0;
        CompletedSize = 0;
        CompletedEnd = BaseOffset;
        ReservedEnd = BaseOffset;
        FlushedEnd = BaseOffset;
        MaxTimestamp = -1;
        OffsetOfMaxTimestamp = -1;
        BytesSinceIndexEntry = 0;
        LastBatchBaseOffset = -1;
        LastBatchPosition = -1;
    }

    /// <summary>
    /// Writes <c>.txnindex</c>, <c>.index</c> and <c>.timeindex</c> from the in-memory indexes: each to a temporary file, fsync'ed,
    /// then renamed over the old one, so a crash leaves either the old file, the new one, or none.
    /// Call only when the indexes no longer change (sealed and published, or closing).
    /// </summary>
    public void WriteIndexFiles()
    {
        // First, and its rename durable before .index exists: trusted index files without a .txnindex mean "no abort",
        // and a crash before .index is written leads to a full scan, which rebuilds this one too.
        if (WriteTxnIndexFile())
        {
            string directory = Path.GetDirectoryName(LogPath)!;
            int rc = FileSync.SyncDirectory(directory);
            if (rc < 0)
            {
                throw new IOException($"fsync of directory {directory} failed: {ErrnoNames.Describe(rc)}", -rc);
            }
        }

        SmallFiles.WriteAtomically(IndexPath, Index.Serialize());
        SmallFiles.WriteAtomically(TimeIndexPath, TimeIndex.Serialize());
    }

    /// <summary>
    /// Writes <c>.txnindex</c> when it has entries and removes it when it has none, as Kafka creates it only for aborted
    /// transactions: a segment whose other index files are trusted and which has no <c>.txnindex</c> has no abort.
    /// Returns true when a file was written or removed.
    /// </summary>
    public bool WriteTxnIndexFile()
    {
        byte[] bytes = TxnIndex.Serialize(); // sealed or closing: no marker is appended to it any more
        if (bytes.Length > 0)
        {
            SmallFiles.WriteAtomically(TxnIndexPath, bytes);
            return true;
        }

        if (!File.Exists(TxnIndexPath))
        {
            return false;
        }

        File.Delete(TxnIndexPath);
        return true;
    }

    public void DeleteIndexFiles()
    {
        File.Delete(IndexPath);
        File.Delete(TimeIndexPath);
        File.Delete(TxnIndexPath);
    }

    /// <summary>Closes the file and removes the segment's three files.</summary>
    public void CloseAndDelete()
    {
        Close();
        File.Delete(LogPath);
        DeleteIndexFiles();
    }

    /// <summary>Closes the segment's descriptors; reads in flight keep theirs until they release them.</summary>
    public void Close()
    {
        Volatile.Write(ref _closed, true);
        Interlocked.Exchange(ref _pinned, null)?.Dispose();
        Files?.Remove(this);
        DropCached(); // after closing: a chunk admitted from here on is refused
    }

    /// <summary>
    /// Gives up <see cref="Handle"/> once the segment is sealed and durable: the descriptor goes to the cache (which
    /// may close it at once), or is closed when no cache is attached. Reads in flight keep it until they finish.
    /// </summary>
    public void ReleaseHandle()
    {
        SafeFileHandle? pinned = Interlocked.Exchange(ref _pinned, null);
        if (pinned is null)
        {
            return;
        }

        if (Files is { } files)
        {
            files.Adopt(this, pinned);
        }
        else
        {
            pinned.Dispose();
        }
    }

    /// <summary>
    /// A referenced descriptor for one read (a <c>using</c>): the segment's own while it holds one, else the cache's,
    /// opened on a miss. Throws <see cref="ObjectDisposedException"/> once the segment is closed or deleted, and
    /// <see cref="StorageException"/> when the file cannot be opened (EMFILE, ENFILE): that read fails, nothing else.
    /// </summary>
    public SegmentFileLease AcquireHandle()
    {
        if (Volatile.Read(ref _pinned) is { } pinned)
        {
            bool added = false;
            try
            {
                pinned.DangerousAddRef(ref added);
                return new SegmentFileLease(pinned, owned: false);
            }
            catch (ObjectDisposedException) when (!IsClosed)
            {
                // Released to the cache and evicted meanwhile: take the cache's path.
            }
        }

        ObjectDisposedException.ThrowIf(IsClosed, this);
        return Files is { } files
            ? new SegmentFileLease(files.Acquire(this), owned: false)
            : new SegmentFileLease(SegmentFileCache.Open(this), owned: true);
    }

    /// <summary>How far past a read from the file the kernel is asked to read on: a few device requests in flight.</summary>
    public const int ReadAheadBytes = 8 << 20;

    private long _readAheadEnd; // where the last WILLNEED ended: a hint, any thread

    /// <summary>
    /// Before [<paramref name="position"/>, <paramref name="end"/>) is read from the file: asks the kernel to read it and
    /// <see cref="ReadAheadBytes"/> beyond into the page cache in the background (POSIX_FADV_WILLNEED), again only once the
    /// reads have used half of that, so a consumer catching up keeps the device busy instead of waiting for one
    /// readahead window at a time. Costs nothing when the pages are cached; an error only loses the hint.
    /// </summary>
    public void ReadAhead(SafeFileHandle handle, long position, long end)
    {
        long target = end + ReadAheadBytes;
        long advised = Volatile.Read(ref _readAheadEnd);
        if (advised >= end + (ReadAheadBytes / 2) && advised - ReadAheadBytes <= end)
        {
            return;
        }

        long from = advised > position && advised < target ? advised : position;
        Volatile.Write(ref _readAheadEnd, target);
        FileAdvice.WillNeed(handle, from, target - from);
    }

    /// <summary>Reads exactly <paramref name="destination"/>.Length bytes at <paramref name="position"/>, or throws.</summary>
    public void ReadExactly(long position, Span<byte> destination)
    {
        if (Recent is { } recent && recent.TryRead(position, destination))
        {
            return;
        }

        if (Reads is { } reads && reads.TryRead(this, position, destination))
        {
            return;
        }

        using SegmentFileLease lease = AcquireHandle();
        while (destination.Length > 0)
        {
            int n = RandomAccess.Read(lease.Handle, destination, position);
            if (n <= 0)
            {
                throw new EndOfStreamException($"{Name}: unexpected end of file at position {position}");
            }

            destination = destination[n..];
            position += n;
        }
    }

    /// <summary>
    /// Scans batch headers forward from <paramref name="position"/> (a batch start holding
    /// <paramref name="expectedBaseOffset"/>) up to <paramref name="limit"/>, for the batch that contains
    /// <paramref name="offset"/> or, with <paramref name="minMaxTimestamp"/> ≥ 0, the first batch at or after it
    /// whose maxTimestamp reaches that value. False if the limit comes first. Headers that contradict the log
    /// (bad magic, a length past the limit, a base offset other than the one expected) throw
    /// <see cref="StorageException"/>: such bytes are never served.
    /// </summary>
    public bool TryFindBatch(long offset, int position, long expectedBaseOffset, int limit, long minMaxTimestamp, out int batchPosition, out BatchHeader header)
    {
        byte[] chunk = ArrayPool<byte>.Shared.Rent(ScanChunkBytes);
        try
        {
            long chunkStart = 0;
            int chunkLength = 0;
            int p = position;
            long expected = expectedBaseOffset;
            while (p < limit)
            {
                if (limit - p < RecordBatch.HeaderSize)
                {
                    throw Corrupt(p, $"only {limit - p} bytes left where a batch header was expected");
                }

                if (p < chunkStart || p + RecordBatch.HeaderSize > chunkStart + chunkLength)
                {
                    chunkStart = p;
                    chunkLength = Math.Min(ScanChunkBytes, limit - p);
                    ReadExactly(chunkStart, chunk.AsSpan(0, chunkLength));
                }

                ReadOnlySpan<byte> at = chunk.AsSpan((int)(p - chunkStart), RecordBatch.HeaderSize);
                if (!RecordBatch.TryReadHeader(at, out header))
                {
                    throw Corrupt(p, "invalid batch header");
                }

                if (header.BaseOffset < expected || header.TotalSize > limit - p)
                {
                    throw Corrupt(p, $"batch at base offset {header.BaseOffset} (expected {expected}), {header.TotalSize} bytes with {limit - p} left");
                }

                bool contains = header.NextOffset > offset;
                if (contains && (minMaxTimestamp < 0 || header.MaxTimestamp >= minMaxTimestamp))
                {
                    batchPosition = p;
                    return true;
                }

                expected = header.NextOffset;
                p += header.TotalSize;
            }

            batchPosition = -1;
            header = default;
            return false;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
    }

    /// <summary>
    /// The end of the last whole batch at or below <paramref name="end"/>, walking headers from
    /// <paramref name="position"/> (a batch start holding <paramref name="expectedBaseOffset"/>); start from an index
    /// entry near <paramref name="end"/> so that only a few headers are read. Contradicting headers throw, as in
    /// <see cref="TryFindBatch"/>.
    /// </summary>
    public int WholeBatchesEnd(int position, long expectedBaseOffset, int end) => WholeBatchesEnd(position, expectedBaseOffset, end, out _);

    /// <param name="nextOffset">The offset after the last whole batch (<paramref name="expectedBaseOffset"/> if none).</param>
    public int WholeBatchesEnd(int position, long expectedBaseOffset, int end, out long nextOffset)
    {
        Span<byte> header = stackalloc byte[RecordBatch.HeaderSize];
        int p = position;
        long expected = expectedBaseOffset;
        while (end - p >= RecordBatch.HeaderSize)
        {
            ReadExactly(p, header);
            if (!RecordBatch.TryReadHeader(header, out BatchHeader h) || h.BaseOffset < expected)
            {
                throw Corrupt(p, $"batch header does not follow offset {expected}");
            }

            if (h.TotalSize > end - p)
            {
                break;
            }

            p += h.TotalSize;
            expected = h.NextOffset;
        }

        nextOffset = expected;
        return p;
    }

    public StorageException Corrupt(long position, string what) =>
        new($"{Name} is corrupt at position {position}: {what}. These bytes are never served; check the disk (dmesg). To have the damage set aside, stop the broker and delete {Path.GetFileName(IndexPath)}: the next start rescans the segment, moves it to quarantine/ and keeps its intact part and every other segment.");
}
