using System.Globalization;
using Kiou.IoUring.Interop;
using Kiou.Protocol.Records;

namespace Kiou.Storage.Producers;

/// <summary>
/// Hands out producer ids that are never reused, across restarts and crashes, the way Kafka's controller does with
/// ProducerIdsRecord: ids are reserved a block of <see cref="BlockSize"/> at a time, and the end of the reserved
/// range is written durably (temporary file, fdatasync, rename, directory fsync) before any id of the block is
/// handed out. A restart continues at the end of the last reserved block; ids of a block not used up are skipped.
/// </summary>
/// <remarks>
/// <para>File <see cref="FileName"/> in the data directory, one line of text:
/// <c>1 &lt;end of reserved ids&gt; &lt;CRC-32C of the text before it, 8 hex digits&gt;\n</c>, at most
/// <see cref="MaxFileBytes"/> bytes.</para>
/// <para>When the file is missing (first start, or lost) or damaged (set aside as <c>&lt;name&gt;.damaged-N</c> with
/// a warning), the next block starts at a floor derived from the wall clock, <see cref="FloorPerMs"/> ids per
/// millisecond since the Unix epoch. Ids handed out earlier are below it unless, since the file was first written,
/// more than that many ids per millisecond were handed out on average or the clock went back: a damaged file
/// therefore never makes the broker reuse ids, and never stops it from starting.</para>
/// <para>Thread-safe; <see cref="Allocate"/> blocks on the file write once per block. A failed write throws
/// <see cref="IOException"/> and hands out nothing; the next call tries again.</para>
/// </remarks>
public sealed class ProducerIdAllocator
{
    public const string FileName = "producer-ids";

    /// <summary>Kafka's ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE.</summary>
    public const long BlockSize = 1000;

    /// <summary>A thousand ids per millisecond: a floor near 1.8e15 today, leaving room for millennia below long.MaxValue.</summary>
    public const long FloorPerMs = 1000;

    private const int MaxFileBytes = 64;
    private const int Version = 1;

    private readonly Lock _lock = new();
    private readonly string _path;
    private readonly string _directory;
    private long _next;
    private long _reservedEnd;

    private ProducerIdAllocator(string directory, long start)
    {
        _directory = directory;
        _path = Path.Combine(directory, FileName);
        _next = start;
        _reservedEnd = start;
    }

    /// <summary>The id the next <see cref="Allocate"/> returns (for tests and logs).</summary>
    public long NextId
    {
        get
        {
            lock (_lock)
            {
                return _next;
            }
        }
    }

    /// <summary>The end (exclusive) of the ids reserved on disk.</summary>
    public long ReservedEnd
    {
        get
        {
            lock (_lock)
            {
                return _reservedEnd;
            }
        }
    }

    /// <summary>
    /// Reads the reservation file in <paramref name="directory"/>; nothing is written until the first id is needed.
    /// </summary>
    public static ProducerIdAllocator Open(string directory, long nowMs, Action<string> log, Action<string> warn)
    {
        Directory.CreateDirectory(directory);
        string path = Path.Combine(directory, FileName);
        long floor = Math.Max(0, nowMs) * FloorPerMs;
        if (!File.Exists(path))
        {
            log($"producer ids: no {path} yet; the first block starts at {floor} (time-based)");
            return new ProducerIdAllocator(directory, floor);
        }

        string? problem;
        long end = -1;
        try
        {
            byte[]? bytes = SmallFiles.ReadAllBytes(path, MaxFileBytes);
            problem = bytes is null ? $"it is larger than {MaxFileBytes} bytes" : TryParse(bytes, out end);
        }
        catch (IOException ex)
        {
            problem = $"it could not be read ({ex.Message})";
        }

        if (problem is null)
        {
            log($"producer ids: continuing after the reserved block ending at {end} ({path})");
            return new ProducerIdAllocator(directory, end);
        }

        string aside = path + ".damaged";
        for (int n = 1; File.Exists(aside); n++)
        {
            aside = string.Create(CultureInfo.InvariantCulture, $"{path}.damaged-{n}");
        }

        File.Move(path, aside);
        SyncDirectory(directory);
        warn($"producer ids: {path} is damaged ({problem}); it was moved to {aside}, and new producer ids start at the time-based floor {floor}, "
            + "above any id handed out before unless the clock went back. Check the clock and the disk");
        return new ProducerIdAllocator(directory, floor);
    }

    /// <summary>A producer id never handed out before; reserves (and persists) a new block first when needed.</summary>
    public long Allocate()
    {
        lock (_lock)
        {
            if (_next == _reservedEnd)
            {
                if (_reservedEnd > long.MaxValue - BlockSize)
                {
                    throw new IOException($"producer ids: the id space is exhausted ({_reservedEnd}); {_path} must not be edited by hand");
                }

                long end = _reservedEnd + BlockSize;
                Persist(end);
                _reservedEnd = end;
            }

            return _next++;
        }
    }

    private void Persist(long end)
    {
        string body = string.Create(CultureInfo.InvariantCulture, $"{Version} {end}");
        uint crc = Crc32C.Compute(System.Text.Encoding.ASCII.GetBytes(body));
        string text = string.Create(CultureInfo.InvariantCulture, $"{body} {crc:x8}\n");
        SmallFiles.WriteAtomically(_path, System.Text.Encoding.ASCII.GetBytes(text));
        SyncDirectory(_directory);
    }

    /// <summary>Null when the file checks out (with the reserved end), otherwise what is wrong.</summary>
    private static string? TryParse(byte[] bytes, out long end)
    {
        end = -1;
        string text = System.Text.Encoding.ASCII.GetString(bytes);
        if (!text.EndsWith('\n'))
        {
            return "it does not end with a newline";
        }

        string[] parts = text[..^1].Split(' ');
        if (parts.Length != 3)
        {
            return $"it has {parts.Length} fields, not 3";
        }

        string body = parts[0] + " " + parts[1];
        if (!uint.TryParse(parts[2], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out uint crc) || parts[2].Length != 8)
        {
            return "its checksum is not 8 hex digits";
        }

        if (Crc32C.Compute(System.Text.Encoding.ASCII.GetBytes(body)) != crc)
        {
            return "its checksum does not match";
        }

        if (parts[0] != "1")
        {
            return $"it has version {parts[0]}, not 1";
        }

        if (!long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out end) || end <= 0)
        {
            end = -1;
            return "its reserved end is not a positive number";
        }

        return null;
    }

    private static void SyncDirectory(string directory)
    {
        int rc = FileSync.SyncDirectory(directory);
        if (rc < 0)
        {
            throw new IOException($"fsync of directory {directory} failed: {ErrnoNames.Describe(rc)}", -rc);
        }
    }
}
