using System.Diagnostics;
using Kiou.IoUring;

namespace Kiou.Storage;

/// <summary>
/// Recently written log bytes kept in memory, broker-wide, under one byte budget (KIOU_READ_CACHE_BYTES): the
/// O_DIRECT write-behind's chunks (<see cref="DirectTail"/>) stay here once their round is written instead of going
/// back to the pool, so a consumer a little behind the producer reads them from memory and not from the device
/// (O_DIRECT writes leave nothing in the page cache). Oldest written first out; see docs/design/read-cache.md.
/// </summary>
/// <remarks>
/// <para>Contents: whole chunks of <see cref="DirectTail.ChunkSize"/> bytes by segment and page-aligned file position
/// (sorted per segment), each with the length of its leading bytes that are written (a chunk handed over when its
/// tail went idle holds less than a chunk; a later, longer copy at the same position replaces it, and a chunk of the
/// next tail may start inside it: overlapping bytes are equal). Bytes below a written position never
/// change while the segment lives, except by truncation, which drops the segment's chunks first
/// (<see cref="Drop"/>, also called when a segment closes: deletion, compaction's replacement, shutdown). Readers
/// never ask past the completed tail they captured, so bytes written but not yet published are never served.</para>
/// <para>Threads: chunks come in under the owning partition's lock (round completions); reads come from any thread.
/// One lock, <c>_lock</c>, guards every member except the counters (Interlocked); a read copies out under it, so an
/// evicted chunk is never reused while it is being read. Memory is the chunks held, counted whole.</para>
/// </remarks>
public sealed class ReadCache
{
    /// <summary>Enough for a consumer 64 MiB behind two producers' partitions, within the broker's RSS targets.</summary>
    public const long DefaultCapacityBytes = 80L << 20;

    /// <summary>Chunks written longer ago than this are freed (<see cref="EvictOlderThan"/>): an idle broker gives its memory back.</summary>
    public const long MaxAgeMs = 60_000;

    /// <summary>A partition read within this long keeps its written bytes here (<see cref="ReaderInterest"/>): long
    /// enough for a consumer restarted or rebalanced to find them, short enough that a partition read once long ago
    /// does not keep filling the cache.</summary>
    public const long ReaderWindowMs = 300_000;

    private const int ChunkSize = DirectTail.ChunkSize;

    private readonly object _lock = new();
    private Entry? _oldest;
    private Entry? _newest;
    private Entry? _spare; // recycled entries, linked through Newer: admitting allocates nothing in steady state
    private long _bytes;
    private int _count;
    private long _hitBytes;
    private long _missBytes;
    private long _evictedBytes;

    public ReadCache(long capacityBytes = DefaultCapacityBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(capacityBytes);
        CapacityBytes = capacityBytes;
    }

    /// <summary>The budget; below one chunk nothing is kept (0: off).</summary>
    public long CapacityBytes { get; }

    public bool Enabled => CapacityBytes >= ChunkSize;

    /// <summary>Memory held by chunks now.</summary>
    public long SizeBytes => Interlocked.Read(ref _bytes);

    /// <summary>Chunks held now.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>Fetched bytes served from this cache (or the newest bytes of a tail) since start.</summary>
    public long HitBytes => Interlocked.Read(ref _hitBytes);

    /// <summary>Fetched bytes read from the segment files (sendfile or pread) since start.</summary>
    public long MissBytes => Interlocked.Read(ref _missBytes);

    /// <summary>Chunk bytes evicted to stay within the budget since start (not those dropped by truncation or deletion).</summary>
    public long EvictedBytes => Interlocked.Read(ref _evictedBytes);

    internal void CountHit(int bytes) => Interlocked.Add(ref _hitBytes, bytes);

    internal void CountMiss(int bytes) => Interlocked.Add(ref _missBytes, bytes);

    /// <summary>
    /// Takes <paramref name="chunk"/>, whose first <paramref name="length"/> bytes are written at file position
    /// <paramref name="chunkStart"/> of <paramref name="segment"/> (under the partition lock). False: not taken (off, the
    /// segment closed, or a longer copy is held), the caller returns it to the pool.
    /// </summary>
    internal bool Admit(Segment segment, long chunkStart, AlignedBuffer chunk, int length)
    {
        Debug.Assert(length <= ChunkSize, "admitting more than a chunk");
        if (!Enabled || length <= 0)
        {
            return false;
        }

        lock (_lock)
        {
            if (segment.IsClosed)
            {
                return false; // Drop has run or runs after this: nothing of a closed segment may stay
            }

            List<Entry> chunks = segment.CachedChunks ??= new List<Entry>();
            int at = Floor(chunks, chunkStart);
            if (at >= 0 && chunks[at].Start == chunkStart)
            {
                Entry held = chunks[at];
                if (held.Length >= length)
                {
                    return false;
                }

                // A longer copy of the same chunk: the held one is a prefix of it.
                DirectTail.ChunkPool.Return(held.Chunk!);
                held.Chunk = chunk;
                held.Length = length;
                Unlink(held);
                Link(held);
                return true;
            }

            Entry entry = _spare ?? new Entry();
            _spare = entry == _spare ? entry.Newer : _spare;
            entry.Segment = segment;
            entry.Start = chunkStart;
            entry.Chunk = chunk;
            entry.Length = length;
            chunks.Insert(at + 1, entry); // chunks come in file order: the end, as a rule
            Link(entry);
            _bytes += ChunkSize;
            _count++;
            while (_bytes > CapacityBytes && _oldest is { } oldest)
            {
                Remove(oldest);
                _evictedBytes += ChunkSize;
            }

            return true;
        }
    }

    /// <summary>Forgets every chunk of <paramref name="segment"/> (truncated, closed or deleted).</summary>
    internal void Drop(Segment segment)
    {
        lock (_lock)
        {
            // The segment's own list, last first (Remove clears it when it empties).
            while (segment.CachedChunks is { Count: > 0 } chunks)
            {
                Remove(chunks[^1]);
            }
        }
    }

    /// <summary>
    /// Hands back the chunk of <paramref name="segment"/> whose written bytes end exactly at <paramref name="end"/> with
    /// room after them (an idle tail's partial chunk), for the tail to append into again (under the partition lock);
    /// null if none is held. Its bytes are then served from the tail's newest bytes or the file until it comes back.
    /// </summary>
    internal (long Start, AlignedBuffer Chunk)? TakeBack(Segment segment, long end)
    {
        if (segment.CachedChunks is null)
        {
            return null; // read without the lock: a hint; only this partition's lock holder adds its chunks
        }

        lock (_lock)
        {
            if (segment.CachedChunks is not { } chunks)
            {
                return null;
            }

            int i = Floor(chunks, end - 1);
            if (i < 0 || chunks[i].Start + chunks[i].Length != end || chunks[i].Length >= ChunkSize || chunks[i].Start % DirectTail.PageSize != 0)
            {
                return null;
            }

            Entry entry = chunks[i];
            AlignedBuffer chunk = entry.Chunk!;
            entry.Chunk = null; // kept by the tail, not returned to the pool
            long start = entry.Start;
            Remove(entry);
            return (start, chunk);
        }
    }

    /// <summary>
    /// Copies the bytes of <paramref name="segment"/> from <paramref name="position"/> into
    /// <paramref name="destination"/> for as long as they are held without a gap; returns how many (0: not held).
    /// </summary>
    internal int CopyHeld(Segment segment, long position, Span<byte> destination)
    {
        if (!Enabled)
        {
            return 0;
        }

        int done = 0;
        lock (_lock)
        {
            if (segment.CachedChunks is not { } chunks)
            {
                return 0;
            }

            while (done < destination.Length)
            {
                long at = position + done;
                int i = Floor(chunks, at);
                if (i < 0 || chunks[i].Start + chunks[i].Length <= at)
                {
                    break;
                }

                Entry entry = chunks[i];
                int offset = (int)(at - entry.Start);

                int n = Math.Min(entry.Length - offset, destination.Length - done);
                entry.Chunk!.GetSpan().Slice(offset, n).CopyTo(destination[done..]);
                done += n;
            }
        }

        return done;
    }

    /// <summary>Copies [position, + destination.Length) only if all of it is held.</summary>
    internal bool TryRead(Segment segment, long position, Span<byte> destination)
    {
        if (!Enabled || segment.CachedChunks is null)
        {
            return false; // read without the lock: a hint, CopyHeld decides
        }

        return CopyHeld(segment, position, destination) == destination.Length;
    }

    /// <summary>
    /// Frees chunks written longer than <paramref name="ageMs"/> ago, and then the heap's free pages (an idle broker gives
    /// its memory back); returns how many.
    /// </summary>
    public int EvictOlderThan(long ageMs)
    {
        long before = Environment.TickCount64 - ageMs;
        int freed = 0;
        lock (_lock)
        {
            while (_oldest is { } oldest && oldest.AdmittedMs < before)
            {
                Remove(oldest, free: true);
                _evictedBytes += ChunkSize;
                freed++;
            }
        }

        if (freed > 0)
        {
            Kiou.IoUring.Interop.NativeHeap.Trim(); // freed blocks stay resident in the heap otherwise
        }

        return freed;
    }

    /// <summary>Checks the accounting (tests): the list, the per-segment maps and the byte count agree.</summary>
    internal void CheckInvariants(Action<bool, string> check)
    {
        lock (_lock)
        {
            int n = 0;
            for (Entry? e = _oldest; e is not null; e = e.Newer)
            {
                n++;
                check(!e.Segment!.IsClosed, $"a chunk of {e.Segment.Name}, closed (deleted or replaced), is held");
                check(e.Segment.CachedChunks is { } list && Floor(list, e.Start) is int i && i >= 0 && list[i] == e, "an entry missing from its segment's list");
            }

            check(n == _count, $"list holds {n} chunks, count says {_count}");
            check(_bytes == (long)_count * ChunkSize, $"bytes {_bytes} != {_count} chunks");
            check(_bytes <= Math.Max(CapacityBytes, 0), $"bytes {_bytes} over the budget {CapacityBytes}");
        }
    }

    /// <summary>The index of the last chunk starting at or before <paramref name="position"/>, -1 if none.</summary>
    private static int Floor(List<Entry> chunks, long position)
    {
        int lo = 0;
        int hi = chunks.Count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (chunks[mid].Start <= position)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }

        return hi;
    }

    private void Link(Entry entry)
    {
        entry.AdmittedMs = Environment.TickCount64;
        entry.Older = _newest;
        entry.Newer = null;
        if (_newest is null)
        {
            _oldest = entry;
        }
        else
        {
            _newest.Newer = entry;
        }

        _newest = entry;
    }

    private void Unlink(Entry entry)
    {
        if (entry.Older is null)
        {
            _oldest = entry.Newer;
        }
        else
        {
            entry.Older.Newer = entry.Newer;
        }

        if (entry.Newer is null)
        {
            _newest = entry.Older;
        }
        else
        {
            entry.Newer.Older = entry.Older;
        }

        entry.Older = null;
        entry.Newer = null;
    }

    private void Remove(Entry entry, bool free = false)
    {
        Unlink(entry);
        List<Entry> chunks = entry.Segment!.CachedChunks!;
        chunks.RemoveAt(Floor(chunks, entry.Start));
        if (chunks.Count == 0)
        {
            entry.Segment.CachedChunks = null;
        }

        if (entry.Chunk is null)
        {
            // Taken back by its tail.
        }
        else if (free)
        {
            ((IDisposable)entry.Chunk).Dispose(); // not to the pool, which would keep it
        }
        else
        {
            DirectTail.ChunkPool.Return(entry.Chunk);
        }

        _bytes -= ChunkSize;
        _count--;
        entry.Segment = null;
        entry.Chunk = null;
        entry.Newer = _spare;
        _spare = entry;
    }

    /// <summary>One chunk held: guarded by the cache's lock.</summary>
    internal sealed class Entry
    {
        public Segment? Segment;
        public long Start;
        public AlignedBuffer? Chunk;
        public int Length;
        public long AdmittedMs;
        public Entry? Older;
        public Entry? Newer;
    }
}

/// <summary>
/// When a partition was last read. Its write-behind chunks go to the <see cref="ReadCache"/> only while it has been read
/// within <see cref="ReadCache.ReaderWindowMs"/>: filling the cache touches memory the process has not used before
/// (the kernel zeroes each new page), a cost per byte produced that buys nothing when nobody reads the partition back
/// (docs/design/read-cache.md).
/// </summary>
/// <remarks>Threads: any. Marked by every read, so the clock is stored at most once a second.</remarks>
internal sealed class ReaderInterest(TimeProvider time)
{
    private long _lastMs = long.MinValue / 2;

    public void Mark()
    {
        long now = time.GetUtcNow().ToUnixTimeMilliseconds();
        if (now - Volatile.Read(ref _lastMs) >= 1000)
        {
            Volatile.Write(ref _lastMs, now);
        }
    }

    /// <summary>Read within the window.</summary>
    public bool Recent => time.GetUtcNow().ToUnixTimeMilliseconds() - Volatile.Read(ref _lastMs) <= ReadCache.ReaderWindowMs;
}
