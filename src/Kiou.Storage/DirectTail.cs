using System.Collections.Concurrent;
using System.Diagnostics;
using Kiou.IoUring;
using Kiou.Storage.Devices;
using Microsoft.Win32.SafeHandles;

namespace Kiou.Storage;

/// <summary>
/// Write-behind for the active segment when the device writes with O_DIRECT: each append reserves its region of
/// page-aligned chunks under the partition lock, copies its bytes in outside the lock (the region is its own), and one
/// round of page-aligned writes at a time carries everything copied so far to the file through its own O_DIRECT
/// descriptor.
/// </summary>
/// <remarks>
/// <para>Why: buffered io_uring writes on ext4 are executed by an io-wq worker that copies into new page-cache
/// pages; an O_DIRECT write of whole pages skips the page cache (measured here: 1 MiB O_DIRECT writes cost a
/// tenth of the CPU of buffered ones). Small O_DIRECT writes wait for the disk, so appends are not written one by
/// one: while a round is in flight, later appends accumulate behind it and the next round writes them all (up to
/// <see cref="MaxRoundBytes"/>), so the write size grows with the load by itself and an idle partition still gets
/// its append written at once.</para>
/// <para>The partial last page: a round starts at the page holding <see cref="Written"/> and ends at the page
/// boundary after the staged bytes, zero-padded. The next round rewrites that page with the same leading bytes
/// plus the new ones, so bytes once written never change on disk, whatever a crash tears. The file may
/// therefore be longer than the log by less than a page of zeros: the padding is cut when the segment is sealed
/// (before its final flush) and at close; after a crash, recovery truncates it as a torn tail.</para>
/// <para>Reads keep using the segment's buffered descriptor (sendfile, pread): Linux keeps the page cache
/// coherent with O_DIRECT writes (written ranges are invalidated when the write completes, which is before the
/// completion is seen here and so before the bytes are published).</para>
/// <para>Owner: the partition lock guards every member; the device calls <see cref="OnWriteDone"/> on its
/// thread, which hands the piece to the log, which takes the lock. The one exception is the copy of a reserved
/// region (<see cref="StagingRegion"/>), done by its appender without the lock: the chunks it writes are rented before
/// the reservation and released only once a round covering them completes, which needs the copy done first.
/// Memory: chunks of <see cref="ChunkSize"/> from a shared pool, handed to the broker's <see cref="ReadCache"/> (or
/// back to the pool when it is off) as soon as their bytes are written; an idle tail keeps only a copy of its partial
/// page (its partial chunk goes to the read cache too, and the next append takes it back if it is still there).</para>
/// </remarks>
internal sealed class DirectTail : ILogDeviceCallback
{
    public const int PageSize = 4096;
    public const int ChunkSize = 64 << 10;
    public const int MaxRoundBytes = 960 << 10; // with the partial first chunk at most 16 pieces: one IORING_OP_WRITEV
    private const int MaxPieces = (MaxRoundBytes / ChunkSize) + 1;

    /// <summary>
    /// Rounds with fewer staged bytes than this are written buffered (through the segment's normal descriptor, exact
    /// bytes, no padding): one small O_DIRECT write waits for the device and, when it extends the file, for ext4's
    /// journal, which measured here as p50 1 ms and p99 6 to 20 ms end to end at 10,000 records/s, against 0.3 ms and
    /// 5 ms buffered. Larger rounds, where O_DIRECT saves the page-cache copy, go direct. Linux keeps the two coherent:
    /// an O_DIRECT write first writes back and drops the cached pages it covers.
    /// </summary>
    public const int DirectMinRoundBytes = 128 << 10;

    // A ring of chunks by file position: slot (_head + i) holds [_windowStart + i * ChunkSize, + ChunkSize). Grown by
    // replacing the array, so a copier holding the old one still finds its (unchanged) chunks in it.
    private AlignedBuffer?[] _slots = new AlignedBuffer?[4];
    private int _head;
    private int _chunkCount;
    private readonly byte[] _page = new byte[PageSize];
    private readonly Action<DirectTail, int> _onPiece;
    private readonly (long Position, ReadOnlyMemory<byte> Data)[] _pieces = new (long, ReadOnlyMemory<byte>)[MaxPieces];
    private SafeFileHandle _roundHandle = null!;
    private long _windowStart;
    private bool _pageValid;
    private long _roundEnd;
    private int _outstanding;
    private int _roundErrno;
    private bool _disposed;

    private readonly int _directMinRoundBytes;

    // The partition's readers: written chunks go to the read cache only while someone reads the partition.
    private readonly ReaderInterest? _readers;

    private DirectTail(Segment segment, long position, SafeFileHandle handle, int directMinRoundBytes, Action<DirectTail, int> onPiece, ReaderInterest? readers)
    {
        _directMinRoundBytes = directMinRoundBytes;
        _readers = readers;
        Segment = segment;
        Handle = handle;
        _onPiece = onPiece;
        Staged = position;
        Copied = position;
        Written = position;
        Recent = new RecentBytes(position);
    }

    public Segment Segment { get; }

    /// <summary>The newest copied bytes, for tail fetches (filled by <see cref="AdvanceCopied"/>).</summary>
    public RecentBytes Recent { get; }

    /// <summary>The segment file opened O_WRONLY | O_DIRECT; every write of this tail goes through it.</summary>
    public SafeFileHandle Handle { get; }

    /// <summary>File position after the last byte reserved by an append (its copy may still be under way).</summary>
    public long Staged { get; private set; }

    /// <summary>File position below which every reserved byte is copied in: rounds never go past it.</summary>
    public long Copied { get; private set; }

    /// <summary>Sequence of the first append not yet marked written by a finished round (the log's bookkeeping).</summary>
    public long NextToMark { get; set; }

    /// <summary>File position below which every byte is written (a round covering it has completed).</summary>
    public long Written { get; private set; }

    public bool RoundInFlight => _outstanding > 0;

    /// <summary>A round failed: this tail writes nothing more; the log truncates and makes a new one.</summary>
    public bool Broken { get; private set; }

    public int PieceCount { get; private set; }

    /// <summary>Chunks held (for tests and assertions).</summary>
    public int ChunkCount => _chunkCount;

    /// <summary>
    /// A tail for <paramref name="segment"/> whose file holds exactly <paramref name="position"/> bytes (nothing in
    /// flight), or null with the errno when the file cannot be opened with O_DIRECT (EINVAL: the file system does
    /// not support it).
    /// </summary>
    public static DirectTail? TryOpen(Segment segment, long position, ILogDevice device, Action<DirectTail, int> onPiece, out int errno, ReaderInterest? readers = null)
    {
        SafeFileHandle? handle = device.TryOpenDirect(segment.LogPath, out errno);
        return handle is null ? null : new DirectTail(segment, position, handle, device.DirectMinRoundBytes, onPiece, readers);
    }

    /// <summary>
    /// Reads the partial page at <see cref="Staged"/> from the file now rather than at the first <see cref="Stage"/>
    /// (which runs after the append's reservation); throws what the read throws.
    /// </summary>
    public void LoadPartialPage()
    {
        if (_chunkCount == 0 && !_pageValid)
        {
            Rebase();
        }
    }

    /// <summary>
    /// Rents what an append of <paramref name="length"/> bytes at <see cref="Staged"/> needs (the partial page, chunks,
    /// ring slots). Throws what renting or reading throws, with nothing reserved: the caller then fails the append.
    /// </summary>
    public void Prepare(int length)
    {
        Debug.Assert(!_disposed && !Broken, "staging into a closed tail");
        if (_chunkCount == 0)
        {
            Rebase();
        }

        long last = Staged + Math.Max(length, 1) - 1;
        int needed = (int)((last - _windowStart) / ChunkSize) + 1;
        while (_chunkCount < needed)
        {
            AlignedBuffer chunk = ChunkPool.Rent();
            if (_chunkCount == _slots.Length)
            {
                Grow();
            }

            _slots[(_head + _chunkCount) & (_slots.Length - 1)] = chunk;
            _chunkCount++;
        }
    }

    /// <summary>
    /// Reserves [<paramref name="position"/>, + <paramref name="length"/>) after <see cref="Prepare"/>; the caller copies
    /// into the returned region without the lock, then reports it with <see cref="AdvanceCopied"/> (in order).
    /// </summary>
    public StagingRegion Reserve(long position, int length)
    {
        if (position != Staged)
        {
            throw new InvalidOperationException($"{Segment.Name}: append at position {position} but the staged tail is at {Staged}");
        }

        (int slot, int offset) = Locate(position);
        Debug.Assert(position + length <= _windowStart + ((long)_chunkCount * ChunkSize), "reserving past the prepared chunks");
        Staged = position + length;
        return new StagingRegion(_slots, slot, offset);
    }

    /// <summary>
    /// Every byte below <paramref name="end"/> is copied in (under the lock, by whoever finished the copy that closed the
    /// gap): rounds may now carry it, and the newest of it goes to <see cref="Recent"/>.
    /// </summary>
    public void AdvanceCopied(long end)
    {
        Debug.Assert(end > Copied && end <= Staged, "copied end out of order");
        long from = Math.Max(Copied, end - RecentBytes.Capacity);
        if (from > Copied)
        {
            Recent.Skip(from);
        }

        for (long pos = from; pos < end;)
        {
            (int slot, int offset) = Locate(pos);
            int n = (int)Math.Min(ChunkSize - offset, end - pos);
            Recent.Append(pos, _slots[slot]!.GetSpan().Slice(offset, n));
            pos += n;
        }

        Copied = end;
    }

    /// <summary>
    /// Starts a round if none is in flight and bytes are staged: fills the pieces (page-aligned, at most
    /// <see cref="MaxRoundBytes"/>) the caller then issues, outside the lock, with <see cref="GetPiece"/>.
    /// </summary>
    public bool TryStartRound()
    {
        if (_outstanding > 0 || Broken || _disposed || Copied == Written)
        {
            return false;
        }

        bool direct = Copied - Written >= _directMinRoundBytes;
        long start = direct ? AlignDown(Written) : Written;
        long dataEnd = Math.Min(Copied, start + MaxRoundBytes);
        if (direct && dataEnd < Staged && dataEnd % PageSize != 0)
        {
            // The rest of that page belongs to a copy under way: padding would overwrite it. Stop at the page
            // boundary, or leave the round to that copy, which starts one when it lands.
            dataEnd = AlignDown(dataEnd);
            if (dataEnd <= Written)
            {
                return false;
            }
        }

        long end = direct ? AlignUp(dataEnd) : dataEnd;
        if (direct && end > dataEnd)
        {
            // The padding after the last staged byte goes to disk as zeros (recycled chunks hold old bytes).
            (int index, int offset) = Locate(dataEnd);
            _slots[index]!.GetSpan().Slice(offset, (int)(end - dataEnd)).Clear();
        }

        int count = 0;
        for (long pos = start; pos < end;)
        {
            (int index, int offset) = Locate(pos);
            int length = (int)Math.Min(ChunkSize - offset, end - pos);
            _pieces[count++] = (pos, _slots[index]!.Memory.Slice(offset, length));
            pos += length;
        }

        PieceCount = count;
        _roundHandle = direct ? Handle : Segment.Handle;
        RoundIsDirect = direct;
        if (direct)
        {
            DirectRounds++;
        }
        else
        {
            BufferedRounds++;
        }

        _outstanding = count;
        _roundErrno = 0;
        _roundEnd = dataEnd;
        return true;
    }

    /// <summary>Piece <paramref name="index"/> of the round just started, and the descriptor to write it to.</summary>
    public (SafeFileHandle File, long Position, ReadOnlyMemory<byte> Data) GetPiece(int index) => (_roundHandle, _pieces[index].Position, _pieces[index].Data);

    /// <summary>The round just started goes through the O_DIRECT descriptor (else the segment's buffered one).</summary>
    public bool RoundIsDirect { get; private set; }

    /// <summary>Rounds written through the O_DIRECT descriptor, and through the buffered one (tests, assertions).</summary>
    public int DirectRounds { get; private set; }

    public int BufferedRounds { get; private set; }

    /// <summary>
    /// Accounts one piece's completion (under the lock). True when it was the round's last: then
    /// <paramref name="errno"/> is 0 and <see cref="Written"/> has advanced, or it is the first piece's error and
    /// the tail is <see cref="Broken"/>.
    /// </summary>
    public bool CompletePiece(int result, out int errno)
    {
        Debug.Assert(_outstanding > 0, "piece completion without a round");
        if (result < 0 && _roundErrno == 0)
        {
            _roundErrno = result;
        }

        errno = 0;
        if (--_outstanding > 0)
        {
            return false;
        }

        errno = _roundErrno;
        if (_disposed)
        {
            ReleaseAll();
            return true;
        }

        if (errno != 0)
        {
            Broken = true;
            return true;
        }

        Written = _roundEnd;
        long keepFrom = AlignDown(Written);
        while (_chunkCount > 0 && _windowStart + ChunkSize <= keepFrom)
        {
            Retire(_slots[_head]!, _windowStart);
            _slots[_head] = null;
            _head = (_head + 1) & (_slots.Length - 1);
            _chunkCount--;
            _windowStart += ChunkSize;
        }

        if (Written == Staged && _chunkCount > 0)
        {
            // Idle: keep only the partial page, so that a thousand quiet partitions hold no chunks.
            int head = (int)(Written - keepFrom);
            (int index, int offset) = Locate(keepFrom);
            _slots[index]!.GetSpan().Slice(offset, head).CopyTo(_page);
            _pageValid = true;
            ReleaseChunks(retire: true);
        }

        return true;
    }

    /// <summary>
    /// A chunk whose bytes below <see cref="Written"/> are on disk leaves the tail: to the read cache, which keeps those
    /// bytes for fetches while the partition has readers (<see cref="ReaderInterest"/>), else back to the pool. An idle tail's partial chunk goes there too, and the next append takes
    /// it back (<see cref="Rebase"/>): so the cache holds the partition's bytes without a gap, and a slow producer reuses
    /// one chunk.
    /// </summary>
    private void Retire(AlignedBuffer chunk, long chunkStart)
    {
        int length = (int)Math.Clamp(Written - chunkStart, 0, ChunkSize);
        if (_readers is not { Recent: true } || Segment.Reads is not { } reads || !reads.Admit(Segment, chunkStart, chunk, length))
        {
            ChunkPool.Return(chunk);
        }
    }

    /// <summary>True once every staged byte is written and nothing is in flight.</summary>
    public bool Idle => _outstanding == 0 && Staged == Written;

    /// <summary>
    /// Cuts the zero padding after the last staged byte (sealed segment once idle, or close), so that the file
    /// ends where the log does. Throws IOException if ftruncate fails.
    /// </summary>
    public void TrimPadding()
    {
        Debug.Assert(_outstanding == 0, "trimming under a round in flight");
        if (Staged % PageSize != 0 && RandomAccess.GetLength(Segment.Handle) > Staged)
        {
            RandomAccess.SetLength(Segment.Handle, Staged);
        }
    }

    /// <summary>Releases the chunks and the O_DIRECT descriptor (at once, or when the round in flight ends).</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        if (_outstanding == 0)
        {
            ReleaseAll();
        }
    }

    void ILogDeviceCallback.OnWriteDone(long token, int result) => _onPiece(this, result);

    void ILogDeviceCallback.OnFlushDone(long token, int result) =>
        throw new UnreachableException("a direct tail issues no flushes");

    /// <summary>The ring slot of the chunk holding file position <paramref name="position"/>, and the offset in it.</summary>
    private (int Slot, int Offset) Locate(long position)
    {
        long relative = position - _windowStart;
        return ((_head + (int)(relative / ChunkSize)) & (_slots.Length - 1), (int)(relative % ChunkSize));
    }

    private void Grow()
    {
        var bigger = new AlignedBuffer?[_slots.Length * 2];
        for (int i = 0; i < _chunkCount; i++)
        {
            bigger[i] = _slots[(_head + i) & (_slots.Length - 1)];
        }

        _slots = bigger;
        _head = 0;
    }

    private void Rebase()
    {
        Debug.Assert(_chunkCount == 0, "rebasing a tail that holds chunks");
        if (Segment.Reads?.TakeBack(Segment, Staged) is { } taken)
        {
            // The chunk this tail (or its predecessor) left in the read cache when it went idle, ending at Staged.
            _windowStart = taken.Start;
            _head = 0;
            _slots[0] = taken.Chunk;
            _chunkCount = 1;
            return;
        }

        long windowStart = AlignDown(Staged);
        AlignedBuffer chunk = ChunkPool.Rent();
        int head = (int)(Staged - windowStart);
        if (head > 0)
        {
            Span<byte> target = chunk.GetSpan()[..head];
            if (_pageValid)
            {
                _page.AsSpan(0, head).CopyTo(target);
            }
            else
            {
                // First append after opening or truncation: the partial page comes from the file (coherent with the
                // O_DIRECT writes that put it there). A failed read leaves the tail without chunks, as before.
                try
                {
                    Segment.ReadExactly(windowStart, target);
                }
                catch
                {
                    ChunkPool.Return(chunk);
                    throw;
                }
            }
        }

        _windowStart = windowStart;
        _head = 0;
        _slots[0] = chunk;
        _chunkCount = 1;
    }

    private void ReleaseChunks(bool retire = false)
    {
        for (int i = 0; i < _chunkCount; i++)
        {
            int slot = (_head + i) & (_slots.Length - 1);
            if (retire)
            {
                Retire(_slots[slot]!, _windowStart + ((long)i * ChunkSize));
            }
            else
            {
                ChunkPool.Return(_slots[slot]!);
            }

            _slots[slot] = null;
        }

        _head = 0;
        _chunkCount = 0;
    }

    private void ReleaseAll()
    {
        ReleaseChunks();
        Handle.Dispose();
    }

    public static long AlignDown(long position) => position & ~(long)(PageSize - 1);

    public static long AlignUp(long position) => (position + PageSize - 1) & ~(long)(PageSize - 1);

    /// <summary>
    /// One append's reserved bytes in the chunks, filled by that appender outside the partition lock. Holds the ring
    /// array as it was at the reservation: a later grow copies the slots to a new array and leaves this one unchanged.
    /// </summary>
    internal readonly struct StagingRegion(AlignedBuffer?[] slots, int slot, int offset)
    {
        public void CopyFrom(ReadOnlySpan<byte> data)
        {
            int at = slot;
            int within = offset;
            while (!data.IsEmpty)
            {
                int n = Math.Min(ChunkSize - within, data.Length);
                data[..n].CopyTo(slots[at]!.GetSpan().Slice(within, n));
                data = data[n..];
                at = (at + 1) & (slots.Length - 1);
                within = 0;
            }
        }
    }

    /// <summary>Chunks shared by every tail; a few are kept for reuse, the rest freed.</summary>
    internal static class ChunkPool
    {
        private const int Retained = 512; // up to 32 MiB: freeing and reallocating 64 KiB blocks fragments the native heap (RSS)
        private static readonly ConcurrentBag<AlignedBuffer> Free = new();
        private static int s_free;

        public static AlignedBuffer Rent()
        {
            if (Free.TryTake(out AlignedBuffer? chunk))
            {
                Interlocked.Decrement(ref s_free);
                return chunk;
            }

            return new AlignedBuffer(ChunkSize);
        }

        public static void Return(AlignedBuffer chunk)
        {
            if (Interlocked.Increment(ref s_free) <= Retained)
            {
                Free.Add(chunk);
                return;
            }

            Interlocked.Decrement(ref s_free);
            ((IDisposable)chunk).Dispose();
        }
    }
}
