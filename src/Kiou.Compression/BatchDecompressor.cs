using System.Buffers;
using System.Buffers.Binary;
using System.IO.Compression;
using K4os.Compression.LZ4.Streams;
using Kiou.Protocol.Records;
using Snappier;
using ZstdSharp;

namespace Kiou.Compression;

/// <summary>How a decompression ended.</summary>
public enum DecompressStatus : byte
{
    Ok,

    /// <summary>The payload is not valid data of its codec, or ends early.</summary>
    Corrupt,

    /// <summary>The payload decompresses to more than the bound it was given (a zip bomb, or a batch too big to check).</summary>
    TooLarge,
}

/// <summary>
/// Decompressed records of one batch in a buffer rented from <see cref="ArrayPool{T}.Shared"/>; the one who got
/// it from <see cref="BatchDecompressor.Decompress"/> disposes it once, which returns the buffer.
/// </summary>
public struct DecompressedRecords : IDisposable
{
    private byte[]? _buffer;
    private readonly int _length;

    internal DecompressedRecords(byte[] buffer, int length)
    {
        _buffer = buffer;
        _length = length;
    }

    public readonly ReadOnlySpan<byte> Span => _buffer is null ? default : _buffer.AsSpan(0, _length);

    public readonly int Length => _length;

    public void Dispose()
    {
        if (_buffer is not null)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = null;
        }
    }
}

/// <summary>
/// Decompresses the records area of a RecordBatch v2 (the bytes after the 61-byte header) as Kafka's clients write
/// it: gzip (RFC 1952, one member, as Java's GZIPOutputStream, librdkafka and kafka-python write it), snappy (the xerial framing Java clients write, or one raw snappy
/// block, both of which Kafka's SnappyInputStream reads), lz4 (the LZ4 frame format, Kafka's KafkaLZ4BlockInputStream)
/// and zstd (one or more frames). Stateless apart from a per-thread zstd context; safe from any thread.
/// </summary>
/// <remarks>
/// Hostile input: every codec failure, however the library reports it, is <see cref="DecompressStatus.Corrupt"/>,
/// and the output never grows past the bound the caller gives, so a zip bomb costs at most that many bytes of memory
/// and the CPU to produce them.
/// </remarks>
public static class BatchDecompressor
{
    /// <summary>
    /// How much larger than max.message.bytes a batch's records may be once decompressed. Producers fill batches by
    /// their uncompressed size (librdkafka's batch.size and message.max.bytes) or by an estimate near it (Java), so
    /// honest batches stay far below; 32 leaves room for very repetitive data and still bounds a bomb.
    /// </summary>
    public const int DecompressionRatioMax = 32;

    private const int DecompressedBytesMaxLimit = 1 << 30;

    // 16 KiB: a small batch needs one rent; larger ones double from an estimate of the ratio.
    private const int InitialBufferBytes = 16 * 1024;

    private static ReadOnlySpan<byte> XerialMagic => [0x82, (byte)'S', (byte)'N', (byte)'A', (byte)'P', (byte)'P', (byte)'Y', 0];

    // A 10-byte header, an empty deflate block and the 8-byte trailer (CRC-32, size).
    private const int GzipMemberBytesMin = 20;

    // Magic, version and compatible version, as snappy-java's SnappyOutputStream writes them.
    private const int XerialHeaderBytes = 16;

    [ThreadStatic]
    private static Decompressor? t_zstd;

    /// <summary>The broker-wide bound on a batch's decompressed records for a topic's max.message.bytes (README §5.6).</summary>
    public static int DecompressedBytesMax(int maxMessageBytes) =>
        (int)Math.Min((long)Math.Max(maxMessageBytes, 1 << 20) * DecompressionRatioMax, DecompressedBytesMaxLimit);

    /// <summary>
    /// Decompresses <paramref name="payload"/> into pooled memory of at most <paramref name="decompressedBytesMax"/>
    /// bytes. On <see cref="DecompressStatus.Ok"/> <paramref name="records"/> holds the bytes (dispose it);
    /// otherwise it is empty and <paramref name="error"/> says what the codec found.
    /// </summary>
    public static DecompressStatus Decompress(
        CompressionType codec,
        ReadOnlyMemory<byte> payload,
        int decompressedBytesMax,
        out DecompressedRecords records,
        out string? error)
    {
        if (codec is CompressionType.None or > CompressionType.Zstd)
        {
            throw new ArgumentOutOfRangeException(nameof(codec), codec, "not a compression codec");
        }

        records = default;
        error = null;
        var output = new Output(payload.Length, decompressedBytesMax);
        DecompressStatus status;
        try
        {
            status = codec switch
            {
                CompressionType.Gzip => Gzip(payload, ref output),
                CompressionType.Lz4 => ReadAll(LZ4Stream.Decode(new ReadOnlyMemoryStream(payload), 0, false, false), ref output),
                CompressionType.Snappy => Snappy(payload.Span, ref output),
                _ => Zstd(payload.Span, ref output),
            };
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Each library has its own exceptions for bad data (InvalidDataException, ZstdException, ArgumentException
            // from a length that does not fit, IndexOutOfRangeException from a bad back-reference): all mean corrupt.
            status = DecompressStatus.Corrupt;
            error = e.Message;
        }

        if (status != DecompressStatus.Ok)
        {
            error ??= status == DecompressStatus.TooLarge
                ? $"more than {decompressedBytesMax} bytes once decompressed"
                : "the compressed data ends early";
            output.Release();
            return status;
        }

        records = new DecompressedRecords(output.Buffer, output.Length);
        return DecompressStatus.Ok;
    }

    private static DecompressStatus ReadAll(Stream stream, ref Output output)
    {
        using (stream)
        {
            while (true)
            {
                if (!output.EnsureSpace(1))
                {
                    // Exactly at the limit: fine if the stream ends here.
                    Span<byte> probe = stackalloc byte[1];
                    return stream.Read(probe) == 0 ? DecompressStatus.Ok : DecompressStatus.TooLarge;
                }

                int n = stream.Read(output.Free);
                if (n == 0)
                {
                    return DecompressStatus.Ok;
                }

                output.Length += n;
            }
        }
    }

    private static DecompressStatus Gzip(ReadOnlyMemory<byte> payload, ref Output output)
    {
        var status = ReadAll(new GZipStream(new ReadOnlyMemoryStream(payload), CompressionMode.Decompress), ref output);

        // GZipStream checks the trailer's CRC-32 and size when they are there, but takes a stream cut short anywhere
        // in its last bytes as a clean end; zlib in librdkafka and Java's GZIPInputStream do not. The trailer's
        // size field, the last 4 bytes, must match what came out.
        if (status == DecompressStatus.Ok
            && (payload.Length < GzipMemberBytesMin || BinaryPrimitives.ReadUInt32LittleEndian(payload.Span[^4..]) != (uint)output.Length))
        {
            return DecompressStatus.Corrupt;
        }

        return status;
    }

    private static DecompressStatus Snappy(ReadOnlySpan<byte> payload, ref Output output)
    {
        if (payload.Length < XerialHeaderBytes || !payload[..XerialMagic.Length].SequenceEqual(XerialMagic))
        {
            // No framing: one raw block, as snappy-java's SnappyInputStream also accepts.
            return SnappyBlock(payload, ref output);
        }

        int position = XerialHeaderBytes;
        while (position < payload.Length)
        {
            if (payload.Length - position < 4)
            {
                return DecompressStatus.Corrupt;
            }

            int blockBytes = BinaryPrimitives.ReadInt32BigEndian(payload[position..]);
            position += 4;
            if (blockBytes < 0 || blockBytes > payload.Length - position)
            {
                return DecompressStatus.Corrupt;
            }

            var status = SnappyBlock(payload.Slice(position, blockBytes), ref output);
            if (status != DecompressStatus.Ok)
            {
                return status;
            }

            position += blockBytes;
        }

        return DecompressStatus.Ok;
    }

    private static DecompressStatus SnappyBlock(ReadOnlySpan<byte> block, ref Output output)
    {
        int declared = Snappier.Snappy.GetUncompressedLength(block);
        if (!output.EnsureSpace(declared))
        {
            return DecompressStatus.TooLarge;
        }

        int written = Snappier.Snappy.Decompress(block, output.Free[..declared]);
        if (written != declared)
        {
            return DecompressStatus.Corrupt;
        }

        output.Length += written;
        return DecompressStatus.Ok;
    }

    private static DecompressStatus Zstd(ReadOnlySpan<byte> payload, ref Output output)
    {
        // One-shot decompression into the pooled buffer needs no window buffer inside the context (a frame may
        // declare a window of up to 2 GiB); when the buffer is too small, grow it and start again, so the work
        // done is at most twice the output.
        var zstd = t_zstd ??= new Decompressor();

        // The frame's content size when it has one, else an upper bound from its block count: a first guess only.
        ulong guess = Decompressor.GetDecompressedSize(payload);
        if (!output.EnsureSpace((int)Math.Clamp(guess, 1, (ulong)output.Limit)))
        {
            return DecompressStatus.TooLarge;
        }

        while (true)
        {
            zstd.ResetStream();
            if (zstd.TryUnwrap(payload, output.Free, out int written))
            {
                output.Length += written;
                return DecompressStatus.Ok;
            }

            if (!output.EnsureSpace(output.Free.Length + 1))
            {
                return DecompressStatus.TooLarge;
            }
        }
    }

    /// <summary>A growing pooled buffer capped at <see cref="Limit"/> bytes.</summary>
    private struct Output
    {
        public byte[] Buffer;
        public int Length;
        public readonly int Limit;

        public Output(int payloadBytes, int limit)
        {
            Limit = limit;
            int initial = (int)Math.Clamp((long)payloadBytes * 4, InitialBufferBytes, Math.Max(limit, 1));
            Buffer = ArrayPool<byte>.Shared.Rent(initial);
            Length = 0;
        }

        public readonly Span<byte> Free => Buffer.AsSpan(Length, Math.Min(Buffer.Length, Limit) - Length);

        /// <summary>Makes room for <paramref name="bytes"/> more; false if that would pass the limit.</summary>
        public bool EnsureSpace(int bytes)
        {
            long needed = (long)Length + bytes;
            if (needed > Limit)
            {
                return false;
            }

            if (needed <= Math.Min(Buffer.Length, Limit))
            {
                return true;
            }

            int size = (int)Math.Min(Math.Max(needed, (long)Buffer.Length * 2), Limit);
            byte[] larger = ArrayPool<byte>.Shared.Rent(size);
            Buffer.AsSpan(0, Length).CopyTo(larger);
            ArrayPool<byte>.Shared.Return(Buffer);
            Buffer = larger;
            return true;
        }

        public void Release()
        {
            ArrayPool<byte>.Shared.Return(Buffer);
            Buffer = [];
            Length = 0;
        }
    }
}
