using System.Buffers.Binary;
using System.Numerics;

namespace Kiou.Protocol.Records;

/// <summary>
/// CRC-32C (Castagnoli), the checksum of RecordBatch v2: reflected polynomial 0x82F63B78, initial value
/// 0xFFFFFFFF, final XOR 0xFFFFFFFF. Check value: CRC-32C("123456789") = 0xE3069283 (README §5.1).
/// </summary>
/// <remarks>
/// <see cref="BitOperations.Crc32C(uint, ulong)"/> is only the accumulation step (hardware crc32 where the CPU
/// has it). The reflected CRC consumes bytes in memory order, so 8-byte chunks are read little-endian.
/// Thread-safe, allocation-free.
/// </remarks>
public static class Crc32C
{
    /// <summary>The complete CRC-32C of <paramref name="data"/>.</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => ~Append(0xFFFFFFFFu, data);

    /// <summary>
    /// One accumulation step over <paramref name="data"/>, without the initial value or final inversion:
    /// <c>~Append(Append(0xFFFFFFFF, a), b) == Compute(a + b)</c>.
    /// </summary>
    public static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        while (data.Length >= 8)
        {
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[8..];
        }

        if (data.Length >= 4)
        {
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt32LittleEndian(data));
            data = data[4..];
        }

        foreach (byte b in data)
        {
            crc = BitOperations.Crc32C(crc, b);
        }

        return crc;
    }
}
