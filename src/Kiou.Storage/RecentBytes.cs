namespace Kiou.Storage;

/// <summary>
/// The newest bytes appended to an O_DIRECT segment, kept in memory so that consumers at the tail read them from here
/// and not from the device: an O_DIRECT write drops the page-cache pages it covers, so without this every tail fetch
/// would be a disk read (measured: end-to-end latency p50 1.9 ms instead of 0.3 ms at 10,000 records/s).
/// </summary>
/// <remarks>
/// A ring of <see cref="Capacity"/> bytes holding the file range [max(floor, end - capacity), end). Appended under the
/// partition lock in file order as appends' copies land (bytes that never change once copied; readers never ask past
/// the completed tail, so bytes copied but not yet written are never served). Read outside the partition lock by fetches; one small
/// lock of its own guards the copies. Dropped (the segment's reference cleared) with the segment's tail; a reader that
/// still holds it reads bytes below the completed tail, which stay valid.
/// </remarks>
internal sealed class RecentBytes
{
    public const int Capacity = 32 << 10;

    private readonly byte[] _ring = new byte[Capacity];
    private readonly object _gate = new();
    private readonly long _floor;
    private long _end;

    public RecentBytes(long position)
    {
        _floor = position;
        _end = position;
    }

    /// <summary>Adds the bytes at <paramref name="position"/>, which must be where the last append ended.</summary>
    public void Append(long position, ReadOnlySpan<byte> data)
    {
        lock (_gate)
        {
            if (position != _end)
            {
                throw new InvalidOperationException($"recent bytes end at {_end}, append at {position}");
            }

            _end = position + data.Length;
            if (data.Length > Capacity)
            {
                position += data.Length - Capacity;
                data = data[^Capacity..];
            }

            int at = (int)(position % Capacity);
            int first = Math.Min(Capacity - at, data.Length);
            data[..first].CopyTo(_ring.AsSpan(at));
            data[first..].CopyTo(_ring);
        }
    }

    /// <summary>
    /// Moves the end to <paramref name="position"/> without bytes, before appending the last <see cref="Capacity"/>
    /// bytes of a longer run: what is held below the old end stays valid, nothing asks between the two.
    /// </summary>
    public void Skip(long position)
    {
        lock (_gate)
        {
            if (position < _end)
            {
                throw new InvalidOperationException($"recent bytes end at {_end}, skip back to {position}");
            }

            _end = position;
        }
    }

    /// <summary>True when [position, end) is held.</summary>
    public bool Covers(long position, long end)
    {
        lock (_gate)
        {
            return position >= Math.Max(_floor, _end - Capacity) && end <= _end;
        }
    }

    /// <summary>Copies [position, position + destination.Length) if it is all held; false otherwise (read the file).</summary>
    public bool TryRead(long position, Span<byte> destination)
    {
        lock (_gate)
        {
            if (position < Math.Max(_floor, _end - Capacity) || position + destination.Length > _end)
            {
                return false;
            }

            int at = (int)(position % Capacity);
            int first = Math.Min(Capacity - at, destination.Length);
            _ring.AsSpan(at, first).CopyTo(destination);
            _ring.AsSpan(0, destination.Length - first).CopyTo(destination[first..]);
            return true;
        }
    }
}
