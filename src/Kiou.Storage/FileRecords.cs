using System.Buffers;
using Microsoft.Win32.SafeHandles;

namespace Kiou.Storage;

/// <summary>
/// Whole batches of a segment file as a region (file, position, length), for the zero-copy fetch path: a connection
/// that finds these behind a response's records sends them with sendfile(2) straight from the page cache
/// (docs/design/request-path.md). The region never extends past the completed tail it was cut at.
/// </summary>
/// <remarks>
/// <para>The region holds a reference on the segment's file handle (DangerousAddRef) until it is disposed, so the fd
/// stays open, and the bytes readable, even when retention deletes the segment (the file is unlinked, its data
/// stays until the last descriptor closes) or the log closes while a response is still being sent.</para>
/// <para>Code that reads the bytes as memory (<see cref="GetSpan"/>) gets them read from the file into a pooled
/// buffer on first use: correct, but a copy; the connection avoids that.</para>
/// </remarks>
public sealed class FileRecords : MemoryManager<byte>
{
    private readonly SafeFileHandle _file;
    private byte[]? _copy;
    private int _released;

    /// <summary>Takes a reference on <paramref name="file"/>; throws <see cref="ObjectDisposedException"/> when it is closed already.</summary>
    internal FileRecords(SafeFileHandle file, long position, int length, string segmentName, long baseOffset = -1, long endOffset = -1)
    {
        BaseOffset = baseOffset;
        EndOffset = endOffset;
        bool added = false;
        file.DangerousAddRef(ref added);
        _file = file;
        Position = position;
        Length = length;
        SegmentName = segmentName;
    }

    /// <summary>The segment file; valid until <see cref="IDisposable.Dispose"/>.</summary>
    public SafeFileHandle File => _file;

    /// <summary>File position of the first batch.</summary>
    public long Position { get; }

    public int Length { get; }

    /// <summary>The first batch's base offset, or -1 when not known.</summary>
    public long BaseOffset { get; }

    /// <summary>The offset after the last batch, or -1 when not known: with <see cref="BaseOffset"/>, the offsets the
    /// region spans (its records, less the holes compaction leaves), without reading it.</summary>
    public long EndOffset { get; }

    /// <summary>For log lines: the segment's file name.</summary>
    public string SegmentName { get; }

    /// <summary>The region as memory, without reading it (<see cref="MemoryManager{T}.Memory"/> would call <see cref="GetSpan"/>).</summary>
    public ReadOnlyMemory<byte> AsMemory() => CreateMemory(Length);

    /// <summary>True once the bytes were read into memory (someone used <see cref="GetSpan"/>): for tests.</summary>
    internal bool WasCopied => _copy is not null;

    public override Span<byte> GetSpan()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _released) != 0, this);
        if (_copy is null)
        {
            byte[] copy = ArrayPool<byte>.Shared.Rent(Math.Max(Length, 1));
            int done = 0;
            while (done < Length)
            {
                int n = RandomAccess.Read(_file, copy.AsSpan(done, Length - done), Position + done);
                if (n <= 0)
                {
                    ArrayPool<byte>.Shared.Return(copy);
                    throw new EndOfStreamException($"{SegmentName}: the file ended at position {Position + done}, inside bytes being fetched (truncated while a fetch was in flight)");
                }

                done += n;
            }

            _copy = copy;
        }

        return _copy.AsSpan(0, Length);
    }

    public override MemoryHandle Pin(int elementIndex = 0) => throw new NotSupportedException("file-backed records cannot be pinned");

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing)
    {
        if (Interlocked.Exchange(ref _released, 1) != 0)
        {
            return;
        }

        _file.DangerousRelease();
        byte[]? copy = _copy;
        _copy = null;
        if (copy is not null)
        {
            ArrayPool<byte>.Shared.Return(copy);
        }
    }
}
