using System.Buffers;
using System.Buffers.Binary;
using System.IO.Compression;
using K4os.Compression.LZ4;
using K4os.Compression.LZ4.Streams;
using Kiou.Protocol.Records;
using ZstdSharp;

namespace Kiou.Compression;

/// <summary>
/// Compresses a batch's records area the way Kafka's broker does when it rewrites a batch (the log cleaner): gzip,
/// snappy in snappy-java's framing, LZ4 frames of independent 64 KiB blocks (what Java's KafkaLZ4BlockInputStream
/// reads), zstd level 3. One allocation per batch, none per record.
/// </summary>
public static class BatchCompressor
{
    private const int SnappyBlockBytes = 32 * 1024; // snappy-java's default block size

    private static ReadOnlySpan<byte> XerialHeader => [0x82, (byte)'S', (byte)'N', (byte)'A', (byte)'P', (byte)'P', (byte)'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1];

    private static readonly LZ4EncoderSettings Lz4Settings = new()
    {
        ChainBlocks = false,
        BlockSize = 64 * 1024,
        ContentChecksum = false,
        BlockChecksum = false,
        CompressionLevel = LZ4Level.L00_FAST,
    };

    [ThreadStatic]
    private static Compressor? t_zstd;

    /// <summary>The compressed bytes of <paramref name="records"/> with <paramref name="codec"/>.</summary>
    public static byte[] Compress(CompressionType codec, ReadOnlySpan<byte> records)
    {
        switch (codec)
        {
            case CompressionType.Gzip:
                {
                    var output = new MemoryStream(records.Length / 2 + 64);
                    using (var gzip = new GZipStream(output, CompressionLevel.Fastest, leaveOpen: true))
                    {
                        gzip.Write(records);
                    }

                    return output.ToArray();
                }

            case CompressionType.Snappy:
                {
                    var output = new ArrayBufferWriter<byte>(records.Length / 2 + 64);
                    output.Write(XerialHeader);
                    for (int at = 0; at < records.Length; at += SnappyBlockBytes)
                    {
                        ReadOnlySpan<byte> block = records.Slice(at, Math.Min(SnappyBlockBytes, records.Length - at));
                        Span<byte> length = output.GetSpan(4 + Snappier.Snappy.GetMaxCompressedLength(block.Length));
                        int written = Snappier.Snappy.Compress(block, length[4..]);
                        BinaryPrimitives.WriteInt32BigEndian(length, written);
                        output.Advance(4 + written);
                    }

                    return output.WrittenSpan.ToArray();
                }

            case CompressionType.Lz4:
                return LZ4Frame.Encode(records, new ArrayBufferWriter<byte>(records.Length / 2 + 64), Lz4Settings).WrittenSpan.ToArray();

            case CompressionType.Zstd:
                {
                    var zstd = t_zstd ??= new Compressor(3);
                    return zstd.Wrap(records).ToArray();
                }

            default:
                throw new ArgumentOutOfRangeException(nameof(codec), codec, "not a compression codec");
        }
    }
}
