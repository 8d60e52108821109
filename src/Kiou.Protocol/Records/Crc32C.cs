using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.InteropServices;

namespace Kiou.Protocol.Records;

/// <summary>
/// CRC-32C (Castagnoli), the checksum of RecordBatch v2: reflected polynomial 0x82F63B78, initial value
/// 0xFFFFFFFF, final XOR 0xFFFFFFFF. Check value: CRC-32C("123456789") = 0xE3069283 (README §5.1).
/// </summary>
/// <remarks>
/// <see cref="BitOperations.Crc32C(uint, ulong)"/> is only the accumulation step (hardware crc32 where the CPU
/// has it). The reflected CRC consumes bytes in memory order, so 8-byte chunks are read little-endian.
/// Thread-safe, allocation-free.
/// <para>Speed (docs/design/request-path.md): one <c>crc32</c> instruction takes 3 cycles but a new one can start
/// every cycle, so a single dependency chain runs at a third of the possible rate. Long inputs are therefore taken in
/// rounds of three adjacent blocks of <see cref="Block"/> bytes, one chain each, and the three results combined:
/// the raw (un-inverted) register is linear, so <c>R(s, A‖B‖C) = Z(Z(R(s, A)) ⊕ R(0, B)) ⊕ R(0, C)</c>, where
/// <c>Z</c> is "append <see cref="Block"/> zero bytes", a fixed linear map done with four 256-entry tables.</para>
/// </remarks>
public static class Crc32C
{
    /// <summary>Bytes per block of a three-way round.</summary>
    private const int Block = 2048;

    // Z(x) = R(x, Block zero bytes) = ZeroTable[0][x & 0xff] ^ ZeroTable[1][(x >> 8) & 0xff] ^ ... (GF(2)-linear in x).
    private static readonly uint[] ZeroTable = BuildZeroTable();

    /// <summary>The complete CRC-32C of <paramref name="data"/>.</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => ~Append(0xFFFFFFFFu, data);

    /// <summary>
    /// One accumulation step over <paramref name="data"/>, without the initial value or final inversion:
    /// <c>~Append(Append(0xFFFFFFFF, a), b) == Compute(a + b)</c>.
    /// </summary>
    public static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        if (BitConverter.IsLittleEndian)
        {
            uint[] z = ZeroTable;
            while (data.Length >= 3 * Block)
            {
                ReadOnlySpan<ulong> a = MemoryMarshal.Cast<byte, ulong>(data[..Block]);
                ReadOnlySpan<ulong> b = MemoryMarshal.Cast<byte, ulong>(data.Slice(Block, Block));
                ReadOnlySpan<ulong> c = MemoryMarshal.Cast<byte, ulong>(data.Slice(2 * Block, Block));
                uint ca = crc, cb = 0, cc = 0;
                for (int i = 0; i < a.Length; i++)
                {
                    ca = BitOperations.Crc32C(ca, a[i]);
                    cb = BitOperations.Crc32C(cb, b[i]);
                    cc = BitOperations.Crc32C(cc, c[i]);
                }

                crc = Shift(z, Shift(z, ca) ^ cb) ^ cc;
                data = data[(3 * Block)..];
            }
        }

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

    private static uint Shift(uint[] z, uint x) =>
        z[x & 0xff] ^ z[256 + ((x >> 8) & 0xff)] ^ z[512 + ((x >> 16) & 0xff)] ^ z[768 + (x >> 24)];

    private static uint[] BuildZeroTable()
    {
        // Z of each single bit, by running the register over Block zero bytes; then every byte value by linearity.
        Span<uint> basis = stackalloc uint[32];
        for (int bit = 0; bit < 32; bit++)
        {
            uint r = 1u << bit;
            for (int i = 0; i < Block / 8; i++)
            {
                r = BitOperations.Crc32C(r, 0UL);
            }

            basis[bit] = r;
        }

        var table = new uint[4 * 256];
        for (int k = 0; k < 4; k++)
        {
            for (int v = 0; v < 256; v++)
            {
                uint r = 0;
                for (int i = 0; i < 8; i++)
                {
                    if ((v & (1 << i)) != 0)
                    {
                        r ^= basis[(8 * k) + i];
                    }
                }

                table[(256 * k) + v] = r;
            }
        }

        return table;
    }
}
