using System.Buffers;
using System.Buffers.Binary;
using System.IO.Compression;
using K4os.Compression.LZ4;
using K4os.Compression.LZ4.Streams;
using Kiou.Protocol.Records;
using ZstdSharp;

namespace Kiou.Testing;

/// <summary>
/// Builds compressed RecordBatch v2 bytes for tests with each codec's reference encoder (not KIOU's decoders), good
/// or poisoned. Codec names: gzip, snappy (raw, as librdkafka writes it), snappy-xerial (as Java clients write it),
/// lz4 (frame format), zstd. Shared by Kiou.Compression.Tests and Kiou.Broker.Tests (linked file).
/// </summary>
public static class CompressedBatches
{
    public static CompressionType Codec(string codec) => codec switch
    {
        "gzip" => CompressionType.Gzip,
        "snappy" or "snappy-xerial" => CompressionType.Snappy,
        "lz4" => CompressionType.Lz4,
        "zstd" => CompressionType.Zstd,
        _ => throw new ArgumentOutOfRangeException(nameof(codec), codec, null),
    };

    /// <summary>
    /// <paramref name="uncompressed"/> (a whole batch) with its records area compressed, then passed through
    /// <paramref name="payload"/>; the codec set in the attributes, the length and the CRC made right.
    /// </summary>
    public static byte[] Compressed(string codec, byte[] uncompressed, Func<byte[], byte[]>? payload = null)
    {
        byte[] compressed = Compress(codec, uncompressed[RecordBatch.HeaderSize..]);
        if (payload is not null)
            compressed = payload(compressed);
        byte[] batch = new byte[RecordBatch.HeaderSize + compressed.Length];
        uncompressed.AsSpan(0, RecordBatch.HeaderSize).CopyTo(batch);
        compressed.CopyTo(batch, RecordBatch.HeaderSize);
        BinaryPrimitives.WriteInt32BigEndian(batch.AsSpan(RecordBatch.BatchLengthPosition), batch.Length - RecordBatch.LogOverhead);
        short attributes = (short)((RecordBatch.Attributes(batch) & ~0x07) | (int)Codec(codec));
        BinaryPrimitives.WriteInt16BigEndian(batch.AsSpan(RecordBatch.AttributesPosition), attributes);
        RecordBatch.UpdateCrc(batch);
        return batch;
    }

    public static byte[] Compress(string codec, byte[] data)
    {
        switch (codec)
        {
            case "gzip":
                {
                    var output = new MemoryStream();
                    using (var gzip = new GZipStream(output, CompressionLevel.Fastest, leaveOpen: true))
                        gzip.Write(data);
                    return output.ToArray();
                }
            case "snappy":
                return Snappier.Snappy.CompressToArray(data);
            case "snappy-xerial":
                {
                    // snappy-java's SnappyOutputStream: magic, version 1, compatible version 1, then
                    // [INT32 compressed length][raw snappy block] per 32 KiB of input.
                    var output = new List<byte> { 0x82, (byte)'S', (byte)'N', (byte)'A', (byte)'P', (byte)'P', (byte)'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1 };
                    for (int at = 0; at < data.Length; at += 32 * 1024)
                    {
                        byte[] block = Snappier.Snappy.CompressToArray(data.AsSpan(at, Math.Min(32 * 1024, data.Length - at)));
                        byte[] length = new byte[4];
                        BinaryPrimitives.WriteInt32BigEndian(length, block.Length);
                        output.AddRange(length);
                        output.AddRange(block);
                    }

                    return [.. output];
                }
            case "lz4":
                return LZ4Frame.Encode(data.AsSpan(), new ArrayBufferWriter<byte>(), LZ4Level.L00_FAST).WrittenSpan.ToArray();
            case "zstd":
                {
                    using var zstd = new Compressor(3);
                    return zstd.Wrap(data).ToArray();
                }
            default:
                throw new ArgumentOutOfRangeException(nameof(codec), codec, null);
        }
    }
}
