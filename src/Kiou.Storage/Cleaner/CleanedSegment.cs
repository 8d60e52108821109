using Kiou.IoUring.Interop;
using Kiou.Protocol.Records;
using Kiou.Storage.Producers;
using Microsoft.Win32.SafeHandles;

namespace Kiou.Storage.Cleaner;

/// <summary>
/// The new segment the cleaner writes for one group of old segments: <c>&lt;base&gt;.log.cleaned</c> (and its index
/// files), named by the group's first base offset. Indexes are built as <see cref="Segment.OnPublished"/> builds them.
/// <see cref="Seal"/> fsyncs the files and renames them to <c>.swap</c>.
/// </summary>
internal sealed class CleanedSegment : IDisposable
{
    public const string CleanedSuffix = ".cleaned";
    public const string SwapSuffix = ".swap";
    public const string DeletedSuffix = ".deleted";

    private readonly string _directory;
    private readonly int _indexIntervalBytes;
    private readonly byte[] _buffer;
    private SafeFileHandle? _handle;
    private int _buffered;
    private long _maxTimestamp = -1;
    private long _offsetOfMaxTimestamp = -1;

    public CleanedSegment(string directory, long baseOffset, int indexIntervalBytes, int bufferBytes)
    {
        _directory = directory;
        BaseOffset = baseOffset;
        _indexIntervalBytes = indexIntervalBytes;
        _buffer = new byte[bufferBytes];
        EndOffset = baseOffset;
        _handle = File.OpenHandle(CleanedPath(".log"), FileMode.Create, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
    }

    public long BaseOffset { get; }

    public OffsetIndex Index { get; } = new();

    public TimeIndex TimeIndex { get; } = new();

    public TransactionIndex TxnIndex { get; } = new();

    public int Size { get; private set; }

    public long EndOffset { get; private set; }

    public long LastBatchBase { get; private set; } = -1;

    public int LastBatchPosition { get; private set; } = -1;

    public int BytesSinceIndexEntry { get; private set; }

    public int Batches { get; private set; }

    /// <summary>Bytes written to disk so far (the rate limit counts them).</summary>
    public long BytesFlushed { get; private set; }

    public string CleanedPath(string extension) => Path.Combine(_directory, Segment.FileName(BaseOffset) + extension + CleanedSuffix);

    public string SwapPath(string extension) => Path.Combine(_directory, Segment.FileName(BaseOffset) + extension + SwapSuffix);

    /// <summary>Appends one whole batch (offsets increasing; holes allowed).</summary>
    public void Append(ReadOnlySpan<byte> batch)
    {
        RecordBatch.TryReadHeader(batch, out BatchHeader h);
        if (h.NextOffset - BaseOffset > int.MaxValue || (long)Size + batch.Length > int.MaxValue)
        {
            throw new CleanerCorruptionException($"batch at offset {h.BaseOffset} does not fit a segment based at {BaseOffset}");
        }

        int position = Size;
        if (h.MaxTimestamp > _maxTimestamp)
        {
            _maxTimestamp = h.MaxTimestamp;
            _offsetOfMaxTimestamp = h.BaseOffset;
        }

        int relative = (int)(h.BaseOffset - BaseOffset);
        if (BytesSinceIndexEntry >= _indexIntervalBytes && (Index.Count > 0 || position > 0))
        {
            Index.Append(relative, position);
            if (_maxTimestamp >= 0)
            {
                TimeIndex.MaybeAppend(_maxTimestamp, (int)(_offsetOfMaxTimestamp - BaseOffset));
            }

            BytesSinceIndexEntry = 0;
        }

        BytesSinceIndexEntry += batch.Length;
        LastBatchBase = h.BaseOffset;
        LastBatchPosition = position;
        EndOffset = h.NextOffset;
        Size += batch.Length;
        Batches++;
        while (batch.Length > 0)
        {
            if (_buffered == _buffer.Length)
            {
                FlushBuffer();
            }

            int n = Math.Min(batch.Length, _buffer.Length - _buffered);
            batch[..n].CopyTo(_buffer.AsSpan(_buffered));
            _buffered += n;
            batch = batch[n..];
        }
    }

    /// <summary>Writes what is buffered; returns the bytes written.</summary>
    public int FlushBuffer()
    {
        int n = _buffered;
        if (n > 0)
        {
            RandomAccess.Write(_handle!, _buffer.AsSpan(0, n), BytesFlushed);
            BytesFlushed += n;
            _buffered = 0;
        }

        return n;
    }

    /// <summary>Finishes the files: log and indexes fsync'ed under <c>.cleaned</c>, then renamed to <c>.swap</c> (log last), directory fsync'ed.</summary>
    public void Seal()
    {
        FlushBuffer();
        if (_maxTimestamp >= 0)
        {
            TimeIndex.MaybeAppend(_maxTimestamp, (int)(_offsetOfMaxTimestamp - BaseOffset));
        }

        Sync(_handle!, CleanedPath(".log"));
        _handle!.Dispose();
        _handle = null;
        WriteSynced(CleanedPath(".index"), Index.Serialize());
        WriteSynced(CleanedPath(".timeindex"), TimeIndex.Serialize());
        bool txn = TxnIndex.Count > 0;
        if (txn)
        {
            WriteSynced(CleanedPath(TransactionIndex.Suffix), TxnIndex.Serialize());
        }

        foreach (string extension in txn ? new[] { ".index", ".timeindex", TransactionIndex.Suffix, ".log" } : new[] { ".index", ".timeindex", ".log" })
        {
            File.Move(CleanedPath(extension), SwapPath(extension), overwrite: true);
        }

        int rc = FileSync.SyncDirectory(_directory);
        if (rc < 0)
        {
            throw new IOException($"fsync of directory {_directory} failed: {ErrnoNames.Describe(rc)}", -rc);
        }
    }

    private static void WriteSynced(string path, byte[] bytes)
    {
        using SafeFileHandle h = File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite, FileShare.None);
        RandomAccess.Write(h, bytes, 0);
        Sync(h, path);
    }

    private static void Sync(SafeFileHandle handle, string path)
    {
        int rc = FileSync.DataSync(handle);
        if (rc < 0)
        {
            throw new IOException($"fdatasync of {path} failed: {ErrnoNames.Describe(rc)}", -rc);
        }
    }

    /// <summary>Removes whatever was written (a cleaning that stopped before its swap).</summary>
    public void Discard()
    {
        _handle?.Dispose();
        _handle = null;
        foreach (string extension in new[] { ".log", ".index", ".timeindex", TransactionIndex.Suffix })
        {
            File.Delete(CleanedPath(extension));
            File.Delete(SwapPath(extension));
        }
    }

    public void Dispose() => _handle?.Dispose();
}
