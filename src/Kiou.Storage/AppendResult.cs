using System.Buffers;

namespace Kiou.Storage;

/// <summary>
/// Outcome of <see cref="PartitionLog.AppendAsync"/>. <paramref name="LogAppendTimeMs"/> is -1 unless the topic uses
/// LogAppendTime; <paramref name="LogStartOffset"/> is the log start when the append was reserved.
/// </summary>
public readonly record struct AppendResult(long BaseOffset, long LogAppendTimeMs, long LogStartOffset);

public enum ReadError
{
    None = 0,

    /// <summary>offset &lt; LogStartOffset or offset &gt; LogEndOffset (OFFSET_OUT_OF_RANGE, 1).</summary>
    OffsetOutOfRange = 1,

    /// <summary>The offset lies in a hole left by damage, or the batch holding it is damaged (CORRUPT_MESSAGE, 2).</summary>
    Corrupt = 2,

    /// <summary>The segment file could not be read (KAFKA_STORAGE_ERROR, 56).</summary>
    StorageError = 3,
}

/// <summary>
/// Batches returned by <see cref="PartitionLog.Read"/>. <see cref="Records"/> points into a buffer rented from
/// <see cref="ArrayPool{T}.Shared"/>, or, for a zero-copy read, is backed by a <see cref="Storage.FileRecords"/>
/// region of the segment file; the owner disposes once, after the bytes have been written out.
/// </summary>
public sealed class ReadResult : IDisposable
{
    private byte[]? _rented;
    private FileRecords? _file;

    internal ReadResult(long highWatermark, long logStartOffset, FileRecords file)
    {
        Error = ReadError.None;
        HighWatermark = highWatermark;
        LogStartOffset = logStartOffset;
        _file = file;
        Records = file.AsMemory(); // not file.Memory: that reads the bytes
    }

    internal ReadResult(ReadError error, long highWatermark, long logStartOffset, byte[]? rented, int length)
    {
        Error = error;
        HighWatermark = highWatermark;
        LogStartOffset = logStartOffset;
        _rented = rented;
        Records = rented is null ? ReadOnlyMemory<byte>.Empty : new ReadOnlyMemory<byte>(rented, 0, length);
    }

    /// <summary>The file region behind <see cref="Records"/> for a zero-copy read, else null.</summary>
    public FileRecords? FileRecords => _file;

    /// <summary>Whole batches, back to back; empty when there is nothing to return.</summary>
    public ReadOnlyMemory<byte> Records { get; private set; }

    public ReadError Error { get; }

    /// <summary>The high watermark when the read was made.</summary>
    public long HighWatermark { get; }

    public long LogStartOffset { get; }

    public void Dispose()
    {
        byte[]? rented = Interlocked.Exchange(ref _rented, null);
        Records = ReadOnlyMemory<byte>.Empty;
        ((IDisposable?)Interlocked.Exchange(ref _file, null))?.Dispose();
        if (rented is not null)
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }
}
