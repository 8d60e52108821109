using System.Buffers.Binary;
using System.Globalization;
using Kiou.Protocol.Records;

namespace Kiou.Storage.Producers;

/// <summary>
/// Kafka's producer snapshot file (ProducerStateManager.writeSnapshot/readSnapshot, schema ProducerSnapshot.json),
/// named <c>&lt;20-digit offset&gt;.snapshot</c> where the offset is the end (exclusive) of the log it describes.
/// </summary>
/// <remarks>
/// Layout, big-endian, version 1 only:
/// <code>
/// int16  version = 1
/// uint32 crc      CRC-32C of every byte after it (count and entries)
/// int32  count
/// count x { int64 producerId, int16 epoch, int32 lastSequence, int64 lastOffset, int32 offsetDelta,
///           int64 timestamp, int32 coordinatorEpoch, int64 currentTxnFirstOffset }   46 bytes each
/// </code>
/// Only each producer's last batch is stored (lastOffset -1 when it has none), as in Kafka: after loading a snapshot
/// the duplicate window holds one batch until the log after it is replayed. A file is untrusted: its length must be
/// exactly what the count says, no more than <see cref="MaxFileBytes"/>, and the CRC must match.
/// </remarks>
public static class ProducerSnapshot
{
    public const string Suffix = ".snapshot";
    public const short Version = 1;
    public const int HeaderSize = 10;
    public const int EntrySize = 46;
    private const int CrcPosition = 2;
    private const int CountPosition = 6;

    /// <summary>256 MiB: a little under six million producer ids on one partition; larger is damage.</summary>
    public const int MaxFileBytes = 256 << 20;

    public static string FileName(long offset) => offset.ToString("D20", CultureInfo.InvariantCulture) + Suffix;

    /// <summary>True for <c>&lt;20 digits&gt;.snapshot</c>.</summary>
    public static bool TryParseFileName(string name, out long offset)
    {
        offset = -1;
        if (name.Length != 20 + Suffix.Length || !name.EndsWith(Suffix, StringComparison.Ordinal))
        {
            return false;
        }

        ReadOnlySpan<char> digits = name.AsSpan(0, 20);
        foreach (char c in digits)
        {
            if (c is < '0' or > '9')
            {
                return false;
            }
        }

        return long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out offset);
    }

    public static byte[] Serialize(IReadOnlyCollection<ProducerStateEntry> entries)
    {
        byte[] bytes = new byte[HeaderSize + (entries.Count * EntrySize)];
        BinaryPrimitives.WriteInt16BigEndian(bytes, Version);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(CountPosition), entries.Count);
        int p = HeaderSize;
        foreach (ProducerStateEntry e in entries)
        {
            Span<byte> s = bytes.AsSpan(p, EntrySize);
            BinaryPrimitives.WriteInt64BigEndian(s, e.ProducerId);
            BinaryPrimitives.WriteInt16BigEndian(s[8..], e.ProducerEpoch);
            BinaryPrimitives.WriteInt32BigEndian(s[10..], e.LastSequence);
            BinaryPrimitives.WriteInt64BigEndian(s[14..], e.LastDataOffset);
            BinaryPrimitives.WriteInt32BigEndian(s[22..], e.LastOffsetDelta);
            BinaryPrimitives.WriteInt64BigEndian(s[26..], e.LastTimestamp);
            BinaryPrimitives.WriteInt32BigEndian(s[34..], e.CoordinatorEpoch);
            BinaryPrimitives.WriteInt64BigEndian(s[38..], e.CurrentTxnFirstOffset);
            p += EntrySize;
        }

        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(CrcPosition), Crc32C.Compute(bytes.AsSpan(CountPosition)));
        return bytes;
    }

    /// <summary>
    /// Decodes a snapshot whose end offset is <paramref name="snapshotOffset"/>, or returns null with what is wrong
    /// in <paramref name="problem"/>. Beyond Kafka's version and CRC checks, an entry must have a producer id, a
    /// last offset below the snapshot's, and a delta that fits in it.
    /// </summary>
    public static List<ProducerStateEntry>? Decode(ReadOnlySpan<byte> bytes, long snapshotOffset, out string problem)
    {
        if (bytes.Length < HeaderSize)
        {
            problem = $"it is {bytes.Length} bytes long, shorter than the {HeaderSize}-byte header";
            return null;
        }

        short version = BinaryPrimitives.ReadInt16BigEndian(bytes);
        if (version != Version)
        {
            problem = $"it has version {version}, not {Version}";
            return null;
        }

        int count = BinaryPrimitives.ReadInt32BigEndian(bytes[CountPosition..]);
        if (count < 0 || (long)count * EntrySize != bytes.Length - HeaderSize)
        {
            problem = $"it says {count} entries but is {bytes.Length} bytes long";
            return null;
        }

        uint stored = BinaryPrimitives.ReadUInt32BigEndian(bytes[CrcPosition..]);
        uint computed = Crc32C.Compute(bytes[CountPosition..]);
        if (stored != computed)
        {
            problem = $"its CRC-32C is {computed:x8}, the file says {stored:x8}";
            return null;
        }

        var entries = new List<ProducerStateEntry>(count);
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> s = bytes.Slice(HeaderSize + (i * EntrySize), EntrySize);
            long producerId = BinaryPrimitives.ReadInt64BigEndian(s);
            short epoch = BinaryPrimitives.ReadInt16BigEndian(s[8..]);
            int lastSequence = BinaryPrimitives.ReadInt32BigEndian(s[10..]);
            long lastOffset = BinaryPrimitives.ReadInt64BigEndian(s[14..]);
            int offsetDelta = BinaryPrimitives.ReadInt32BigEndian(s[22..]);
            long timestamp = BinaryPrimitives.ReadInt64BigEndian(s[26..]);
            int coordinatorEpoch = BinaryPrimitives.ReadInt32BigEndian(s[34..]);
            long txnFirstOffset = BinaryPrimitives.ReadInt64BigEndian(s[38..]);
            if (producerId < 0 || lastOffset < -1 || lastOffset >= snapshotOffset || offsetDelta < 0 || (lastOffset >= 0 && offsetDelta > lastOffset) || txnFirstOffset >= snapshotOffset)
            {
                problem = $"entry {i} (producer {producerId}, last offset {lastOffset}, offset delta {offsetDelta}, transaction first offset {txnFirstOffset}) does not fit a log ending at offset {snapshotOffset}";
                return null;
            }

            var entry = new ProducerStateEntry(producerId, epoch, coordinatorEpoch, timestamp, txnFirstOffset >= 0 ? txnFirstOffset : -1);
            if (lastOffset >= 0)
            {
                entry.AddBatch(epoch, lastSequence, lastOffset, offsetDelta, timestamp);
            }

            entries.Add(entry);
        }

        problem = "";
        return entries;
    }

    /// <summary>Reads and decodes a snapshot file; null (with the problem) when it is too large or does not decode.</summary>
    public static List<ProducerStateEntry>? Read(string path, long snapshotOffset, out string problem)
    {
        byte[]? bytes = SmallFiles.ReadAllBytes(path, MaxFileBytes);
        if (bytes is null)
        {
            problem = $"it is larger than {MaxFileBytes} bytes";
            return null;
        }

        return Decode(bytes, snapshotOffset, out problem);
    }
}
