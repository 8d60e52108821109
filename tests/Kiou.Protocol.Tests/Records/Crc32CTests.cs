using Kiou.Protocol.Records;
using Kiou.Testing;

namespace Kiou.Protocol.Tests.Records;

public class Crc32CTests
{
    [Fact]
    public void CheckValue_123456789()
    {
        Assert.Equal(0xE3069283u, Crc32C.Compute("123456789"u8));
    }

    [Fact]
    public void Empty_IsZero()
    {
        Assert.Equal(0u, Crc32C.Compute(ReadOnlySpan<byte>.Empty));
    }

    [Fact]
    public void AppendInPieces_EqualsWhole()
    {
        var data = new byte[1000];
        for (int i = 0; i < data.Length; i++)
        {
            data[i] = (byte)(i * 31 + 7);
        }

        uint whole = Crc32C.Compute(data);
        for (int split = 0; split <= 17; split++)
        {
            uint crc = Crc32C.Append(0xFFFFFFFFu, data.AsSpan(0, split));
            crc = Crc32C.Append(crc, data.AsSpan(split));
            Assert.Equal(whole, ~crc);
        }
    }

    [Fact]
    public void MatchesBitwiseReference_AllTailLengths()
    {
        var data = new byte[40];
        for (int i = 0; i < data.Length; i++)
        {
            data[i] = (byte)(0xA5 ^ (i * 13));
        }

        for (int length = 0; length <= data.Length; length++)
        {
            Assert.Equal(Reference(data.AsSpan(0, length)), Crc32C.Compute(data.AsSpan(0, length)));
        }
    }

    [Fact]
    public void MatchesBitwiseReference_AcrossThreeWayRounds()
    {
        // Lengths around the three-way round size (3 x 2048 bytes), at odd offsets, pieces included.
        var rng = new Random(6);
        var data = new byte[40_000];
        rng.NextBytes(data);
        foreach (int length in new[] { 6143, 6144, 6145, 6151, 12288, 12289, 16384, 20000, 39_000 })
        {
            for (int offset = 0; offset < 3; offset++)
            {
                ReadOnlySpan<byte> part = data.AsSpan(offset, length);
                Assert.Equal(Reference(part), Crc32C.Compute(part));
                int cut = rng.Next(0, length);
                Assert.Equal(Reference(part), ~Crc32C.Append(Crc32C.Append(0xFFFFFFFFu, part[..cut]), part[cut..]));
            }
        }
    }

    [Fact]
    public void WorkedExample_Crc()
    {
        Assert.Equal(0xb1267df6u, Crc32C.Compute(BatchBuilder.WorkedExampleBytes.AsSpan(21)));
    }

    private static uint Reference(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++)
            {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F63B78 : crc >> 1;
            }
        }

        return ~crc;
    }
}
