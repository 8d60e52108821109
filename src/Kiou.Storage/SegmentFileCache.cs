using Microsoft.Win32.SafeHandles;

namespace Kiou.Storage;

/// <summary>
/// The broker-wide bounded set of open descriptors of sealed segments (KIOU_MAX_OPEN_SEGMENT_FILES). A sealed,
/// durable segment holds no descriptor of its own: a read takes a <see cref="SegmentFileLease"/>, which opens the
/// file here on a miss and evicts the least recently used descriptor beyond <see cref="Capacity"/>.
/// </summary>
/// <remarks>
/// Threads: any. One short lock guards the recency list; open(2) runs outside it. Eviction disposes the
/// <see cref="SafeFileHandle"/>, which closes the descriptor only once every lease (and every zero-copy
/// <see cref="FileRecords"/>, which takes its own reference) has released it: a read or sendfile in flight never
/// loses its file. So the open count can exceed the capacity by the reads in flight on evicted files, no more.
/// Active segments being written and sealed ones with writes or flushes still to finish keep their own descriptor
/// outside this cache (<see cref="Segment.Handle"/>); an idle active segment hands its descriptor here too
/// (<see cref="PartitionLog.ReleaseIdleDescriptors"/>) and reopens its own at the next append.
/// </remarks>
public sealed class SegmentFileCache
{
    /// <summary>A quarter of the usual 4,096 soft limit of a service: room for sockets and active segments.</summary>
    public const int DefaultCapacity = 1024;

    private readonly object _lock = new();
    private readonly LinkedList<Segment> _recent = new(); // least recently used first
    private long _opens;
    private long _evictions;

    public SegmentFileCache(int capacity = DefaultCapacity, ReadCache? reads = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
        Reads = reads ?? new ReadCache();
    }

    public int Capacity { get; }

    /// <summary>The broker-wide cache of recently written bytes (KIOU_READ_CACHE_BYTES), shared like the descriptors.</summary>
    public ReadCache Reads { get; }

    /// <summary>Descriptors the cache holds now (evicted ones still leased are not counted).</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _recent.Count;
            }
        }
    }

    /// <summary>Files opened on a miss since start: for tests and diagnostics.</summary>
    public long Opens => Interlocked.Read(ref _opens);

    public long Evictions => Interlocked.Read(ref _evictions);

    /// <summary>
    /// A referenced descriptor of <paramref name="segment"/>'s file, opened on a miss. Throws
    /// <see cref="ObjectDisposedException"/> when the segment was closed or deleted meanwhile (callers look again),
    /// and <see cref="StorageException"/> when the open fails (EMFILE, ENFILE, a vanished file): an error for this
    /// read only.
    /// </summary>
    internal SafeFileHandle Acquire(Segment segment)
    {
        lock (_lock)
        {
            if (TryReferenceLocked(segment) is { } cached)
            {
                return cached;
            }
        }

        SafeFileHandle opened = Open(segment);
        SafeFileHandle? evicted = null;
        List<SafeFileHandle>? more = null;
        try
        {
            lock (_lock)
            {
                if (segment.IsClosed)
                {
                    opened.Dispose();
                    throw new ObjectDisposedException(segment.Name, $"{segment.Name} was closed while it was being opened");
                }

                if (TryReferenceLocked(segment) is { } raced)
                {
                    opened.Dispose();
                    return raced;
                }

                AddLocked(segment, opened);
                Interlocked.Increment(ref _opens);
                while (_recent.Count > Capacity)
                {
                    SafeFileHandle victim = RemoveLocked(_recent.First!.Value);
                    Interlocked.Increment(ref _evictions);
                    if (evicted is null)
                    {
                        evicted = victim;
                    }
                    else
                    {
                        (more ??= []).Add(victim);
                    }
                }

                bool added = false;
                opened.DangerousAddRef(ref added);
                return opened;
            }
        }
        finally
        {
            // Outside the lock: a handle no lease holds closes its descriptor right here.
            evicted?.Dispose();
            if (more is not null)
            {
                foreach (SafeFileHandle h in more)
                {
                    h.Dispose();
                }
            }
        }
    }

    /// <summary>Takes over the descriptor a segment kept while it was active (no reopen for the first reads).</summary>
    internal void Adopt(Segment segment, SafeFileHandle handle)
    {
        SafeFileHandle? evicted = null;
        lock (_lock)
        {
            if (segment.IsClosed || segment.CacheNode.List is not null)
            {
                evicted = handle;
            }
            else
            {
                AddLocked(segment, handle);
                if (_recent.Count > Capacity)
                {
                    evicted = RemoveLocked(_recent.First!.Value);
                    Interlocked.Increment(ref _evictions);
                }
            }
        }

        evicted?.Dispose();
    }

    /// <summary>Closes the segment's cached descriptor, if any (segment closed or deleted).</summary>
    internal void Remove(Segment segment)
    {
        SafeFileHandle? handle = null;
        lock (_lock)
        {
            if (segment.CacheNode.List is not null)
            {
                handle = RemoveLocked(segment);
            }
        }

        handle?.Dispose();
    }

    /// <summary>Opens a read-only descriptor of a sealed segment's file.</summary>
    internal static SafeFileHandle Open(Segment segment)
    {
        try
        {
            return File.OpenHandle(segment.LogPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            if (segment.IsClosed)
            {
                throw new ObjectDisposedException(segment.Name, $"{segment.Name} was deleted while it was being opened");
            }

            int errno = ErrnoNames.FromException(ex);
            throw new StorageException($"cannot open {segment.LogPath} to read it: {ex.Message} ({ErrnoNames.Describe(errno)}); {ErrnoNames.Advice(errno)}", errno, ex);
        }
    }

    private SafeFileHandle? TryReferenceLocked(Segment segment)
    {
        if (segment.CachedHandle is not { } handle)
        {
            return null;
        }

        // Disposed only after removal under this lock, so a handle found here is still open.
        bool added = false;
        handle.DangerousAddRef(ref added);
        _recent.Remove(segment.CacheNode);
        _recent.AddLast(segment.CacheNode);
        return handle;
    }

    private void AddLocked(Segment segment, SafeFileHandle handle)
    {
        segment.CachedHandle = handle;
        _recent.AddLast(segment.CacheNode);
    }

    private SafeFileHandle RemoveLocked(Segment segment)
    {
        SafeFileHandle handle = segment.CachedHandle!;
        segment.CachedHandle = null;
        _recent.Remove(segment.CacheNode);
        return handle;
    }
}

/// <summary>
/// A referenced descriptor of a segment file for one read; <see cref="Dispose"/> exactly once (a <c>using</c>).
/// The descriptor stays open until then, even if the cache evicts it or retention deletes the segment.
/// </summary>
internal readonly struct SegmentFileLease : IDisposable
{
    private readonly bool _owned;

    /// <param name="owned">The lease opened the file itself (no cache attached): disposing closes it.</param>
    internal SegmentFileLease(SafeFileHandle handle, bool owned)
    {
        Handle = handle;
        _owned = owned;
    }

    public SafeFileHandle Handle { get; }

    public void Dispose()
    {
        if (_owned)
        {
            Handle.Dispose();
        }
        else
        {
            Handle.DangerousRelease();
        }
    }
}
