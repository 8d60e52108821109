using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using Kiou.Compression;
using Kiou.Protocol.Records;
using Microsoft.Win32.SafeHandles;

namespace Kiou.Cli;

/// <summary>
/// bin/dump-log.sh, after Kafka's kafka-dump-log.sh (DumpLogSegments): reads a partition's files offline, no broker,
/// and prints them in Kafka's format: the batches of a <c>.log</c> segment (with --deep-iteration their records,
/// with --print-data-log keys and payloads), the entries of <c>.index</c>, <c>.timeindex</c> and <c>.txnindex</c>.
/// --verify prints no dump but every problem, with file, position and offset, and exits 1 if there is one.
/// </summary>
/// <remarks>
/// KIOU's files have Kafka's layouts (docs/design/storage.md): a segment is RecordBatch v2 batches back to back; an
/// index entry is (offset − segment base INT32, position INT32) pointing at the START of a batch (Kafka's points at a
/// batch by its last offset); a time index entry is (max timestamp so far INT64, offset − base INT32) naming the
/// batch that first reached it; a txnindex entry is 34 bytes (version INT16, producerId, firstOffset, lastOffset,
/// lastStableOffset INT64). The files are parsed here from those layouts rather than through Kiou.Storage, whose
/// types are internal and which brings the io_uring layer.
/// Every byte is untrusted: lengths are checked against the file before anything is read, a batch is loaded whole
/// only up to --max-message-size (its CRC is computed in chunks whatever its size), decompression is bounded, and
/// the index checks walk the log alongside the entries, so memory does not grow with the file.
/// </remarks>
public static class DumpLogTool
{
    static readonly Flag[] Flags =
    [
        new("files", "comma-separated .log, .index, .timeindex and .txnindex files", "FILES"),
        new("deep-iteration", "print each record of each batch (compressed batches are decompressed)"),
        new("print-data-log", "print each record with its key and payload as UTF-8 (implies --deep-iteration)"),
        new("verify", "print no dump: check CRCs, offsets, records and index entries, print each problem; exit 1 if any"),
        new("verify-index-only", "--verify for the index files only (the .log files are dumped)"),
        new("index-sanity-check", "check only the structure of the index files (sizes, order), not against the log"),
        new("allow-gaps", "--verify: offset gaps between batches are no problem (a compacted topic's cleaner leaves them)"),
        new("max-message-size", $"largest batch loaded whole to read its records (default {DefaultMaxMessageBytes}); larger ones get header and CRC checks only", "BYTES"),
    ];

    // Kafka's default for --max-message-size.
    const int DefaultMaxMessageBytes = 5 * 1024 * 1024;

    // 64 KiB: the chunk in which a batch's CRC is computed when it is not loaded whole.
    const int ChunkBytes = 64 * 1024;

    // KIOU's O_DIRECT appends write whole pages: an unclean stop can leave less than a page of zeros after the last
    // batch of the active segment, which the next start cuts (docs/design/io_uring.md).
    const int PageBytes = 4096;

    public static int Run(string[] args)
    {
        var o = Options.Parse(args, "bin/dump-log.sh --files FILE[,FILE...] [--deep-iteration] [--print-data-log] [--verify]",
            "Prints a partition's segment and index files, read offline (Kafka's kafka-dump-log.sh); --verify checks them.", Flags);
        if (o is null)
            return Program.ExitOk;
        var files = o.Required("files").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (files.Length == 0)
            throw o.Fail("--files names no file");
        if (o.Has("verify") && (o.Has("deep-iteration") || o.Has("print-data-log")))
            throw o.Fail("--verify prints no dump: it does not go with --deep-iteration or --print-data-log");
        int maxBytes = o.Int("max-message-size", DefaultMaxMessageBytes, 1024, int.MaxValue);
        var dump = new Dump(o, maxBytes);
        try
        {
            foreach (var path in files)
                dump.File(path);
        }
        finally
        {
            dump.Out.Flush();
        }
        if (dump.Unreadable > 0)
            return Program.ExitFailed;
        return dump.Problems > 0 && (o.Has("verify") || o.Has("verify-index-only") || o.Has("index-sanity-check")) ? Program.ExitFailed : Program.ExitOk;
    }

    /// <summary>The header of one batch of a segment and where it lies.</summary>
    readonly record struct Batch(long Position, BatchHeader Header, long ProducerId, short ProducerEpoch, int BaseSequence, int PartitionLeaderEpoch);

    /// <summary>
    /// Walks a segment's batches by their headers. <see cref="Next"/> returns false at the end of the file or at the
    /// first header that cannot be read, then <see cref="Stop"/> says why (null at a clean end).
    /// </summary>
    sealed class SegmentWalker(SafeFileHandle file, long length)
    {
        readonly byte[] _header = new byte[RecordBatch.HeaderSize];

        public long Length { get; } = length;

        public long Position { get; private set; }

        public string? Stop { get; private set; }

        /// <summary>The base offset in the header where the walk stopped, when that header was whole enough to trust it; else -1.</summary>
        public long StopOffset { get; private set; } = -1;

        /// <summary>Bytes of zero padding found after the last batch (less than a page), not a problem.</summary>
        public long Padding { get; private set; }

        public bool Next(out Batch batch)
        {
            batch = default;
            long left = Length - Position;
            if (left == 0 || Stop is not null)
                return false;
            int n = (int)Math.Min(left, RecordBatch.HeaderSize);
            ReadAt(file, Position, _header.AsSpan(0, n));
            if (left < PageBytes && AllZero(Position, left))
            {
                Padding = left;
                return false;
            }
            if (n < RecordBatch.HeaderSize)
                return Fail($"truncated: {left} bytes after the last batch, fewer than a batch header ({RecordBatch.HeaderSize}): a torn write");
            var h = _header.AsSpan();
            if (RecordBatch.Magic(h) != RecordBatch.CurrentMagic)
                return Fail($"bad header: magic {RecordBatch.Magic(h)} is not 2; the next batch cannot be found, {left} bytes from here not read");
            int batchLength = RecordBatch.BatchLength(h);
            if (batchLength < RecordBatch.HeaderSize - RecordBatch.LogOverhead || batchLength > int.MaxValue - RecordBatch.LogOverhead)
                return Fail($"bad header: batch length {batchLength} is impossible; the next batch cannot be found, {left} bytes from here not read");
            if (batchLength + (long)RecordBatch.LogOverhead > left)
            {
                StopOffset = RecordBatch.BaseOffset(h);
                return Fail($"truncated: the batch at offset {RecordBatch.BaseOffset(h)} declares {batchLength + (long)RecordBatch.LogOverhead} bytes, only {left} are left in the file (a torn write)");
            }
            if (!RecordBatch.TryReadHeader(h, out BatchHeader header))
                return Fail($"bad header: lastOffsetDelta {RecordBatch.LastOffsetDelta(h)} is negative; the next batch cannot be found, {left} bytes from here not read");
            batch = new Batch(Position, header, RecordBatch.ProducerId(h), RecordBatch.ProducerEpoch(h), RecordBatch.BaseSequence(h), RecordBatch.PartitionLeaderEpoch(h));
            Position += header.TotalSize;
            return true;
        }

        bool Fail(string why)
        {
            Stop = why;
            return false;
        }

        bool AllZero(long position, long count)
        {
            Span<byte> chunk = stackalloc byte[PageBytes];
            var part = chunk[..(int)count];
            ReadAt(file, position, part);
            return !part.ContainsAnyExcept((byte)0);
        }
    }

    static void ReadAt(SafeFileHandle file, long position, Span<byte> into)
    {
        while (into.Length > 0)
        {
            int n = RandomAccess.Read(file, into, position);
            if (n <= 0)
                throw new IOException($"the file ended at position {position} while it was read (did it shrink?)");
            into = into[n..];
            position += n;
        }
    }

    /// <summary>Reads an index file's fixed-size entries in order, a chunk of whole entries at a time.</summary>
    sealed class EntryReader(SafeFileHandle file, long length, int entrySize)
    {
        readonly byte[] _chunk = new byte[ChunkBytes / entrySize * entrySize];
        long _chunkStart = -1;
        int _chunkLength;

        public long Count { get; } = length / entrySize;

        public ReadOnlySpan<byte> this[long i]
        {
            get
            {
                long position = i * entrySize;
                if (_chunkStart < 0 || position < _chunkStart || position + entrySize > _chunkStart + _chunkLength)
                {
                    _chunkStart = position;
                    _chunkLength = (int)Math.Min(_chunk.Length, Count * entrySize - position);
                    ReadAt(file, position, _chunk.AsSpan(0, _chunkLength));
                }
                return _chunk.AsSpan((int)(position - _chunkStart), entrySize);
            }
        }
    }

    /// <summary>CRC-32C of bytes [21, end) of the batch, read in chunks.</summary>
    static uint ComputeCrc(SafeFileHandle file, Batch b, byte[] chunk)
    {
        uint crc = 0xFFFFFFFFu;
        long position = b.Position + RecordBatch.CrcStart;
        long end = b.Position + b.Header.TotalSize;
        while (position < end)
        {
            int n = (int)Math.Min(chunk.Length, end - position);
            ReadAt(file, position, chunk.AsSpan(0, n));
            crc = Crc32C.Append(crc, chunk.AsSpan(0, n));
            position += n;
        }
        return ~crc;
    }

    static string Codec(CompressionType c) => c switch
    {
        CompressionType.None => "none",
        CompressionType.Gzip => "gzip",
        CompressionType.Snappy => "snappy",
        CompressionType.Lz4 => "lz4",
        CompressionType.Zstd => "zstd",
        _ => $"unknown({(int)c})",
    };

    static string N(long v) => v.ToString(CultureInfo.InvariantCulture);

    /// <summary>Kafka's sequence arithmetic: -1 stays -1, otherwise it wraps at int.MaxValue.</summary>
    static int Sequence(int baseSequence, int delta) =>
        baseSequence < 0 ? -1 : (int)(((long)baseSequence + delta) % ((long)int.MaxValue + 1));

    sealed class Dump(Options o, int maxBytes)
    {
        public readonly StreamWriter Out = new(Console.OpenStandardOutput(), new UTF8Encoding(false), 1 << 16) { AutoFlush = false, NewLine = "\n" };

        readonly bool _verify = o.Has("verify");
        readonly bool _verifyIndex = o.Has("verify") || o.Has("verify-index-only");
        readonly bool _sanityOnly = o.Has("index-sanity-check");
        readonly bool _deep = o.Has("deep-iteration") || o.Has("print-data-log");
        readonly bool _data = o.Has("print-data-log");
        readonly bool _allowGaps = o.Has("allow-gaps");
        readonly byte[] _chunk = new byte[ChunkBytes];
        string _path = "";
        int _fileProblems;

        public int Problems { get; private set; }

        public int Unreadable { get; private set; }

        /// <summary>A problem: one line on standard output under --verify (it is the output), else on standard error.</summary>
        void Problem(long position, long offset, string what)
        {
            Problems++;
            _fileProblems++;
            string line = $"{_path}: position {N(position)}" + (offset >= 0 ? $" offset {N(offset)}" : "") + $": {what}";
            if (_verify || (_verifyIndex && !_path.EndsWith(".log", StringComparison.Ordinal)))
                Out.WriteLine(line);
            else
            {
                Out.Flush();
                Console.Error.WriteLine(line);
            }
        }

        public void File(string path)
        {
            _path = path;
            _fileProblems = 0;
            string suffix = Path.GetExtension(path);
            if (suffix is not (".log" or ".index" or ".timeindex" or ".txnindex"))
            {
                Out.Flush();
                Console.Error.WriteLine($"Ignoring unknown file {path}");
                return;
            }
            if (!Segment.TryParseBase(path, out long baseOffset))
            {
                Out.Flush();
                Console.Error.WriteLine($"dump-log: {path}: the name is not a base offset of 20 digits (e.g. 00000000000000001234{suffix}); read with base offset 0");
            }
            if (!_verify)
                Out.WriteLine($"Dumping {path}");
            try
            {
                using var file = System.IO.File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                long length = RandomAccess.GetLength(file);
                switch (suffix)
                {
                    case ".log":
                        Log(file, length, baseOffset);
                        break;
                    case ".index":
                        Index(file, length, baseOffset);
                        break;
                    case ".timeindex":
                        TimeIndex(file, length, baseOffset);
                        break;
                    default:
                        TxnIndex(file, length);
                        break;
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Out.Flush();
                Console.Error.WriteLine($"dump-log: cannot read {path}: {e.Message}");
                Unreadable++;
            }
        }

        void Log(SafeFileHandle file, long length, long baseOffset)
        {
            if (!_verify)
                Out.WriteLine($"Log starting offset: {N(baseOffset)}");
            var walker = new SegmentWalker(file, length);
            long next = -1, first = -1, last = -1;
            int batches = 0;
            while (walker.Next(out var b))
            {
                var h = b.Header;
                batches++;
                if (first < 0)
                    first = h.BaseOffset;
                last = h.LastOffset;
                uint crc = ComputeCrc(file, b, _chunk);
                bool valid = crc == h.Crc;
                if (!valid)
                    Problem(b.Position, h.BaseOffset, $"CRC-32C mismatch: stored {N(h.Crc)}, computed {N(crc)} over {N(h.TotalSize)} bytes (damaged batch, offsets {N(h.BaseOffset)}..{N(h.LastOffset)})");
                if (next < 0 && h.BaseOffset < baseOffset)
                    Problem(b.Position, h.BaseOffset, $"the first batch starts below the segment's base offset {N(baseOffset)} (the file name)");
                else if (next >= 0 && h.BaseOffset < next)
                    Problem(b.Position, h.BaseOffset, $"offsets go back: this batch starts at {N(h.BaseOffset)}, the previous one ended at {N(next - 1)} (overlap)");
                else if (next >= 0 && h.BaseOffset > next && !_allowGaps)
                    Problem(b.Position, h.BaseOffset, $"offset gap: offsets {N(next)}..{N(h.BaseOffset - 1)} are missing (a compacted topic's cleaner leaves gaps: --allow-gaps)");
                next = Math.Max(next, h.NextOffset);
                if (!_verify)
                    PrintBatch(b, valid);
                if (_deep || _verify)
                    Records(file, b);
            }
            if (walker.Stop is { } stop)
                Problem(walker.Position, walker.StopOffset >= 0 ? walker.StopOffset : next, stop);
            if (walker.Padding > 0 && !_verify)
                Out.WriteLine($"{N(walker.Padding)} bytes of zero padding after the last batch (O_DIRECT page padding, cut at the next start)");
            if (walker.Stop is not null && !_verify)
                Out.WriteLine($"Found {N(length - walker.Position)} invalid bytes at the end of {Path.GetFileName(_path)}");
            if (_verify)
                Summary(batches == 0 ? $"{N(batches)} batches, {N(length)} bytes" : $"{N(batches)} batches, offsets {N(first)}..{N(last)}, {N(length)} bytes");
        }

        void Summary(string what) =>
            Out.WriteLine($"{_path}: {what}: " + (_fileProblems == 0 ? "OK" : $"{_fileProblems} problem{(_fileProblems == 1 ? "" : "s")}"));

        void PrintBatch(Batch b, bool valid)
        {
            var h = b.Header;
            bool transactional = (h.Attributes & 0x10) != 0, control = (h.Attributes & 0x20) != 0;
            string horizon = (h.Attributes & 0x40) != 0 ? $"OptionalLong[{N(h.BaseTimestamp)}]" : "OptionalLong.empty";
            Out.WriteLine($"baseOffset: {N(h.BaseOffset)} lastOffset: {N(h.LastOffset)} count: {N(h.RecordsCount)} baseSequence: {N(b.BaseSequence)} " +
                $"lastSequence: {N(Sequence(b.BaseSequence, h.LastOffsetDelta))} producerId: {N(b.ProducerId)} producerEpoch: {N(b.ProducerEpoch)} " +
                $"partitionLeaderEpoch: {N(b.PartitionLeaderEpoch)} isTransactional: {Bool(transactional)} isControl: {Bool(control)} deleteHorizonMs: {horizon} " +
                $"position: {N(b.Position)} {h.TimestampType}: {N(h.MaxTimestamp)} size: {N(h.TotalSize)} magic: 2 compresscodec: {Codec(h.Codec)} " +
                $"crc: {N(h.Crc)} isvalid: {Bool(valid)}");
        }

        static string Bool(bool b) => b ? "true" : "false";

        /// <summary>Walks (and unless --verify prints) the records of a batch; a record that does not parse is a problem.</summary>
        void Records(SafeFileHandle file, Batch b)
        {
            var h = b.Header;
            if (h.TotalSize > maxBytes)
            {
                Out.Flush();
                Console.Error.WriteLine($"{_path}: position {N(b.Position)} offset {N(h.BaseOffset)}: records not read: the batch's {N(h.TotalSize)} bytes are more than --max-message-size {N(maxBytes)}");
                return;
            }
            byte[] batch = ArrayPool<byte>.Shared.Rent(h.TotalSize);
            DecompressedRecords decompressed = default;
            try
            {
                ReadAt(file, b.Position, batch.AsSpan(0, h.TotalSize));
                ReadOnlySpan<byte> area = batch.AsSpan(RecordBatch.HeaderSize, h.TotalSize - RecordBatch.HeaderSize);
                if (h.Codec != CompressionType.None)
                {
                    if (h.Codec > CompressionType.Zstd)
                    {
                        Problem(b.Position, h.BaseOffset, $"unknown compression codec {(int)h.Codec}: records not read");
                        return;
                    }
                    var status = BatchDecompressor.Decompress(h.Codec, batch.AsMemory(RecordBatch.HeaderSize, h.TotalSize - RecordBatch.HeaderSize),
                        BatchDecompressor.DecompressedBytesMax(maxBytes), out decompressed, out string? error);
                    if (status != DecompressStatus.Ok)
                    {
                        Problem(b.Position, h.BaseOffset, status == DecompressStatus.TooLarge
                            ? $"{Codec(h.Codec)} records decompress to more than {N(BatchDecompressor.DecompressedBytesMax(maxBytes))} bytes: not read"
                            : $"{Codec(h.Codec)} records do not decompress ({error ?? "corrupt data"})");
                        return;
                    }
                    area = decompressed.Span;
                }
                WalkRecords(b, area);
            }
            finally
            {
                decompressed.Dispose();
                ArrayPool<byte>.Shared.Return(batch);
            }
        }

        void WalkRecords(Batch b, ReadOnlySpan<byte> area)
        {
            var h = b.Header;
            bool control = (h.Attributes & 0x20) != 0;
            bool logAppendTime = h.TimestampType == TimestampType.LogAppendTime;
            var cursor = new RecordCursor(area, h.RecordsCount);
            int start = 0, lastDelta = -1;
            while (cursor.MoveNext())
            {
                int delta = cursor.OffsetDelta;
                if (delta <= lastDelta || delta > h.LastOffsetDelta)
                    Problem(b.Position, h.BaseOffset + delta, $"record {N(cursor.Index)} has offset delta {N(delta)}, not above {N(lastDelta)} and within the batch's {N(h.LastOffsetDelta)}");
                lastDelta = delta;
                if (!_verify)
                {
                    long ts = logAppendTime ? h.MaxTimestamp : h.BaseTimestamp + cursor.TimestampDelta;
                    var line = new StringBuilder();
                    line.Append("| offset: ").Append(N(h.BaseOffset + delta)).Append(' ').Append(h.TimestampType.ToString()).Append(": ").Append(N(ts))
                        .Append(" keySize: ").Append(N(cursor.KeyLength)).Append(" valueSize: ").Append(N(cursor.ValueLength))
                        .Append(" sequence: ").Append(N(Sequence(b.BaseSequence, delta))).Append(" headerKeys: [");
                    HeaderKeys(area.Slice(start, cursor.SizeBytes), cursor.HeaderCount, line);
                    line.Append(']');
                    if (control)
                        ControlRecord(cursor.Key, cursor.KeyLength, cursor.Value, line);
                    else if (_data)
                    {
                        if (cursor.KeyLength >= 0)
                            line.Append(" key: ").Append(Encoding.UTF8.GetString(cursor.Key));
                        if (cursor.ValueLength >= 0)
                            line.Append(" payload: ").Append(Encoding.UTF8.GetString(cursor.Value));
                    }
                    Out.WriteLine(line.ToString());
                }
                start += cursor.SizeBytes;
            }
            if (cursor.Error != 0)
                Problem(b.Position, h.BaseOffset, $"record {N(cursor.Index + 1)} of {N(h.RecordsCount)} does not parse (bad length or varint)");
            else if (!cursor.IsAtEnd)
                Problem(b.Position, h.BaseOffset, $"{N(area.Length - start)} bytes after the batch's {N(h.RecordsCount)} records");
        }

        /// <summary>The header keys of one record (its bytes from the length prefix), already checked by RecordCursor.</summary>
        static void HeaderKeys(ReadOnlySpan<byte> record, int headerCount, StringBuilder into)
        {
            int p = 0;
            if (!RecordCursor.TryReadVarint(record, ref p, out _))
                return;
            p++; // attributes
            if (!RecordCursor.TryReadVarlong(record, ref p, out _) || !RecordCursor.TryReadVarint(record, ref p, out _))
                return;
            for (int field = 0; field < 2; field++)
            {
                if (!RecordCursor.TryReadVarint(record, ref p, out int len))
                    return;
                p += Math.Max(len, 0);
            }
            if (!RecordCursor.TryReadVarint(record, ref p, out _))
                return;
            for (int i = 0; i < headerCount; i++)
            {
                if (!RecordCursor.TryReadVarint(record, ref p, out int kl) || kl < 0 || kl > record.Length - p)
                    return;
                if (i > 0)
                    into.Append(',');
                into.Append(Encoding.UTF8.GetString(record.Slice(p, kl)));
                p += kl;
                if (!RecordCursor.TryReadVarint(record, ref p, out int vl) || vl > record.Length - p)
                    return;
                p += Math.Max(vl, 0);
            }
        }

        /// <summary>Kafka's control records: key (version INT16, type INT16); ABORT/COMMIT values (version INT16, coordinatorEpoch INT32).</summary>
        static void ControlRecord(ReadOnlySpan<byte> key, int keyLength, ReadOnlySpan<byte> value, StringBuilder into)
        {
            if (keyLength < 4)
            {
                into.Append(" controlType: UNKNOWN(-1)");
                return;
            }
            short type = BinaryPrimitives.ReadInt16BigEndian(key[2..]);
            if (type is 0 or 1 && value.Length >= 6)
                into.Append(" endTxnMarker: ").Append(type == 0 ? "ABORT" : "COMMIT").Append(" coordinatorEpoch: ").Append(N(BinaryPrimitives.ReadInt32BigEndian(value[2..])));
            else
                into.Append(" controlType: ").Append(type switch { 0 => "ABORT", 1 => "COMMIT", 2 => "LEADER_CHANGE", _ => "UNKNOWN" }).Append('(').Append(N(type)).Append(')');
        }

        /// <summary>The segment next to an index file, walked alongside its entries; null when it is not there.</summary>
        SegmentWalker? Sibling(string path, out SafeFileHandle? handle)
        {
            handle = null;
            string log = Path.ChangeExtension(path, ".log");
            if (_sanityOnly || !System.IO.File.Exists(log))
            {
                if (!_sanityOnly)
                {
                    Out.Flush();
                    Console.Error.WriteLine($"{path}: no {Path.GetFileName(log)} next to it: entries not checked against the log");
                }
                return null;
            }
            handle = System.IO.File.OpenHandle(log, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            return new SegmentWalker(handle, RandomAccess.GetLength(handle));
        }

        /// <summary>Advances <paramref name="log"/> to the first batch at or after <paramref name="position"/>.</summary>
        static bool SeekPosition(SegmentWalker log, ref Batch current, ref bool have, long position)
        {
            while (!have || current.Position < position)
            {
                if (!log.Next(out current))
                    return have = false;
                have = true;
            }
            return true;
        }

        static bool SeekOffset(SegmentWalker log, ref Batch current, ref bool have, long offset)
        {
            while (!have || current.Header.BaseOffset < offset)
            {
                if (!log.Next(out current))
                    return have = false;
                have = true;
            }
            return true;
        }

        void Index(SafeFileHandle file, long length, long baseOffset)
        {
            const int entry = 8;
            if (length % entry != 0)
                Problem(length - length % entry, -1, $"size {N(length)} is not a multiple of {entry}: the last entry is torn");
            var entries = new EntryReader(file, length, entry);
            long count = entries.Count;
            if (count == 0 && !_verifyIndex && !_sanityOnly)
                Out.WriteLine($"{_path} is empty.");
            var log = Sibling(_path, out var handle);
            using var _ = handle;
            Batch current = default;
            bool have = false;
            long prevRel = -1, prevPos = -1;
            for (long i = 0; i < count; i++)
            {
                var bytes = entries[i];
                int rel = BinaryPrimitives.ReadInt32BigEndian(bytes);
                int pos = BinaryPrimitives.ReadInt32BigEndian(bytes[4..]);
                long offset = baseOffset + rel;
                if (!_verifyIndex && !_sanityOnly)
                    Out.WriteLine($"offset: {N(offset)} position: {N(pos)}");
                if (rel < 0 || pos < 0)
                    Problem(i * entry, offset, $"entry {N(i)} ({N(rel)}, {N(pos)}) is negative");
                else if (rel <= prevRel || pos <= prevPos)
                    Problem(i * entry, offset, $"entry {N(i)} (offset {N(offset)}, position {N(pos)}) does not follow (offset {N(baseOffset + prevRel)}, position {N(prevPos)}): offsets and positions must increase");
                else if (log is not null)
                {
                    if (!SeekPosition(log, ref current, ref have, pos))
                        Problem(i * entry, offset, $"entry {N(i)} points at position {N(pos)}, past the last readable batch of the log (which ends at {N(log.Position)} of {N(log.Length)} bytes)");
                    else if (current.Position != pos)
                        Problem(i * entry, offset, $"entry {N(i)} points at position {N(pos)}, which is not the start of a batch (the next batch starts at {N(current.Position)})");
                    else if (current.Header.BaseOffset != offset)
                        Problem(i * entry, offset, $"entry {N(i)} says offset {N(offset)} at position {N(pos)}, the log has the batch of offset {N(current.Header.BaseOffset)} there");
                }
                if (rel >= 0 && pos >= 0)
                {
                    prevRel = Math.Max(prevRel, rel);
                    prevPos = Math.Max(prevPos, pos);
                }
            }
            IndexSummary(count);
        }

        void IndexSummary(long count)
        {
            if (_sanityOnly && _fileProblems == 0)
                Out.WriteLine($"{_path} passed sanity check.");
            else if (_verifyIndex)
                Summary($"{N(count)} entries");
        }

        void TimeIndex(SafeFileHandle file, long length, long baseOffset)
        {
            const int entry = 12;
            if (length % entry != 0)
                Problem(length - length % entry, -1, $"size {N(length)} is not a multiple of {entry}: the last entry is torn");
            var entries = new EntryReader(file, length, entry);
            long count = entries.Count;
            if (count == 0 && !_verifyIndex && !_sanityOnly)
                Out.WriteLine($"{_path} is empty.");
            var log = Sibling(_path, out var handle);
            using var _ = handle;
            Batch current = default;
            bool have = false;
            long prevTs = -1, prevRel = -1;
            for (long i = 0; i < count; i++)
            {
                var bytes = entries[i];
                long ts = BinaryPrimitives.ReadInt64BigEndian(bytes);
                int rel = BinaryPrimitives.ReadInt32BigEndian(bytes[8..]);
                long offset = baseOffset + rel;
                if (!_verifyIndex && !_sanityOnly)
                    Out.WriteLine($"timestamp: {N(ts)} offset: {N(offset)}");
                if (ts < 0 || rel < 0)
                    Problem(i * entry, offset, $"entry {N(i)} ({N(ts)}, {N(rel)}) is negative");
                else if (ts <= prevTs || rel < prevRel)
                    Problem(i * entry, offset, $"entry {N(i)} (timestamp {N(ts)}, offset {N(offset)}) does not follow (timestamp {N(prevTs)}, offset {N(baseOffset + prevRel)}): timestamps must increase, offsets not decrease");
                else if (log is not null)
                {
                    if (!SeekOffset(log, ref current, ref have, offset))
                        Problem(i * entry, offset, $"entry {N(i)} names offset {N(offset)}, past the last readable batch of the log");
                    else if (current.Header.BaseOffset != offset)
                        Problem(i * entry, offset, $"entry {N(i)} names offset {N(offset)}, which is not the start of a batch in the log (next batch starts at {N(current.Header.BaseOffset)})");
                    else if (current.Header.MaxTimestamp != ts)
                        Problem(i * entry, offset, $"entry {N(i)} says timestamp {N(ts)}, the batch at offset {N(offset)} has max timestamp {N(current.Header.MaxTimestamp)}");
                }
                if (ts >= 0 && rel >= 0)
                {
                    prevTs = Math.Max(prevTs, ts);
                    prevRel = Math.Max(prevRel, rel);
                }
            }
            IndexSummary(count);
        }

        void TxnIndex(SafeFileHandle file, long length)
        {
            const int entry = 34;
            if (length % entry != 0)
                Problem(length - length % entry, -1, $"size {N(length)} is not a multiple of {entry}: the last entry is torn");
            var entries = new EntryReader(file, length, entry);
            long count = entries.Count;
            long prevLast = -1;
            for (long i = 0; i < count; i++)
            {
                var bytes = entries[i];
                short version = BinaryPrimitives.ReadInt16BigEndian(bytes);
                long pid = BinaryPrimitives.ReadInt64BigEndian(bytes[2..]);
                long firstOffset = BinaryPrimitives.ReadInt64BigEndian(bytes[10..]);
                long lastOffset = BinaryPrimitives.ReadInt64BigEndian(bytes[18..]);
                long lso = BinaryPrimitives.ReadInt64BigEndian(bytes[26..]);
                if (!_verifyIndex && !_sanityOnly)
                    Out.WriteLine($"version: {N(version)} producerId: {N(pid)} firstOffset: {N(firstOffset)} lastOffset: {N(lastOffset)} lastStableOffset: {N(lso)}");
                if (version != 0)
                    Problem(i * entry, lastOffset, $"entry {N(i)} has version {N(version)}, not 0");
                else if (firstOffset > lastOffset || lastOffset <= prevLast)
                    Problem(i * entry, lastOffset, $"entry {N(i)} (offsets {N(firstOffset)}..{N(lastOffset)}) is out of order: markers' offsets must increase");
                prevLast = Math.Max(prevLast, lastOffset);
            }
            IndexSummary(count);
        }
    }

    static class Segment
    {
        /// <summary>The base offset in a segment file's name (20 digits); 0 when the name has none.</summary>
        public static bool TryParseBase(string path, out long baseOffset)
        {
            string stem = Path.GetFileNameWithoutExtension(path);
            if (stem.Length == 20 && long.TryParse(stem, NumberStyles.None, CultureInfo.InvariantCulture, out baseOffset))
                return true;
            baseOffset = 0;
            return false;
        }
    }
}
