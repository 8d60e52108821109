using System.Buffers;

namespace Kiou.Protocol.Tests.Primitives;

public class KafkaWriterTests
{
    private static string Hex(KafkaWriter w) => Convert.ToHexString(w.WrittenSpan).ToLowerInvariant();

    [Fact]
    public void FixedWidthIntegersAreBigEndian()
    {
        using var w = new KafkaWriter();
        w.WriteInt8(-1);
        w.WriteInt16(0x0102);
        w.WriteInt32(0x01020304);
        w.WriteInt64(0x0102030405060708);
        w.WriteUInt16(0xfffe);
        w.WriteUInt32(0xfffffffe);
        w.WriteBool(true);
        w.WriteBool(false);
        w.WriteFloat64(1.5);
        Assert.Equal("ff" + "0102" + "01020304" + "0102030405060708" + "fffe" + "fffffffe" + "01" + "00" + "3ff8000000000000", Hex(w));
        Assert.Equal(w.WrittenSpan.Length, w.Length);
    }

    [Fact]
    public void UuidIsMostSignificantByteFirst()
    {
        using var w = new KafkaWriter();
        w.WriteUuid(Guid.Parse("00112233-4455-6677-8899-aabbccddeeff"));
        Assert.Equal("00112233445566778899aabbccddeeff", Hex(w));
    }

    [Theory]
    [InlineData(0u, "00")]
    [InlineData(127u, "7f")]
    [InlineData(128u, "8001")]
    [InlineData(300u, "ac02")]
    [InlineData(uint.MaxValue, "ffffffff0f")]
    public void UnsignedVarInt(uint value, string hex)
    {
        using var w = new KafkaWriter();
        w.WriteUnsignedVarInt(value);
        Assert.Equal(hex, Hex(w));
        Assert.Equal(hex.Length / 2, KafkaWriter.SizeOfUnsignedVarInt(value));
    }

    [Theory]
    [InlineData(0, "00")]
    [InlineData(-1, "01")]
    [InlineData(1, "02")]
    [InlineData(-2, "03")]
    [InlineData(63, "7e")]
    [InlineData(-64, "7f")]
    [InlineData(64, "8001")]
    [InlineData(int.MaxValue, "feffffff0f")]
    [InlineData(int.MinValue, "ffffffff0f")]
    public void VarIntIsZigZag(int value, string hex)
    {
        using var w = new KafkaWriter();
        w.WriteVarInt(value);
        Assert.Equal(hex, Hex(w));
    }

    [Theory]
    [InlineData(0L, "00")]
    [InlineData(-1L, "01")]
    [InlineData(64L, "8001")]
    [InlineData(long.MaxValue, "feffffffffffffffff01")]
    [InlineData(long.MinValue, "ffffffffffffffffff01")]
    public void VarLongIsZigZag(long value, string hex)
    {
        using var w = new KafkaWriter();
        w.WriteVarLong(value);
        Assert.Equal(hex, Hex(w));
    }

    [Fact]
    public void StringsAndBytes()
    {
        using var w = new KafkaWriter();
        w.WriteString("hé");
        w.WriteNullableString(null);
        w.WriteCompactString("hé");
        w.WriteCompactNullableString(null);
        w.WriteCompactNullableString("");
        w.WriteBytes(new byte[] { 1, 2 });
        w.WriteNullableBytes(null);
        w.WriteCompactBytes(new byte[] { 3 });
        w.WriteCompactNullableBytes(null);
        Assert.Equal("000368c3a9" + "ffff" + "0468c3a9" + "00" + "01" + "000000020102" + "ffffffff" + "0203" + "00", Hex(w));
    }

    [Fact]
    public void CompactSelectorsMatchTheExplicitMethods()
    {
        using var a = new KafkaWriter();
        using var b = new KafkaWriter();
        foreach (bool compact in new[] { false, true })
        {
            a.WriteString("x", compact);
            a.WriteNullableString(null, compact);
            a.WriteBytes(new byte[] { 9 }, compact);
            a.WriteNullableBytes(null, compact);
        }
        b.WriteString("x");
        b.WriteNullableString(null);
        b.WriteBytes(new byte[] { 9 });
        b.WriteNullableBytes(null);
        b.WriteCompactString("x");
        b.WriteCompactNullableString(null);
        b.WriteCompactBytes(new byte[] { 9 });
        b.WriteCompactNullableBytes(null);
        Assert.Equal(Hex(b), Hex(a));
    }

    [Fact]
    public void StringLongerThanInt16Throws()
    {
        using var w = new KafkaWriter();
        Assert.Throws<ArgumentException>(() => w.WriteString(new string('x', 32768)));
        w.WriteString(new string('x', 32767));
        Assert.Equal(32769, w.Length);
    }

    [Fact]
    public void RecordsAndArrayCounts()
    {
        using var w = new KafkaWriter();
        w.WriteRecords(null, compact: false);
        w.WriteRecords(null, compact: true);
        w.WriteRecords(new byte[] { 0xaa }, compact: false);
        w.WriteRecords(new byte[] { 0xaa }, compact: true);
        w.WriteArrayCount(-1, compact: false);
        w.WriteArrayCount(-1, compact: true);
        w.WriteArrayCount(3, compact: false);
        w.WriteArrayCount(3, compact: true);
        Assert.Equal("ffffffff" + "00" + "00000001aa" + "02aa" + "ffffffff" + "00" + "00000003" + "04", Hex(w));
    }

    [Fact]
    public void ReserveAndPatchASizePrefix()
    {
        using var w = new KafkaWriter();
        int position = w.ReserveInt32();
        w.WriteInt16(7);
        w.PatchInt32(position, w.Length - 4);
        Assert.Equal("00000002" + "0007", Hex(w));
        Assert.Throws<ArgumentOutOfRangeException>(() => w.PatchInt32(3, 0));
    }

    [Fact]
    public void GrowsFromASmallBufferAndResets()
    {
        using var w = new KafkaWriter(initialCapacity: 1);
        for (int i = 0; i < 10_000; i++)
            w.WriteInt32(i);
        Assert.Equal(40_000, w.Length);
        var r = new KafkaReader(w.WrittenMemory);
        for (int i = 0; i < 10_000; i++)
            Assert.Equal(i, r.ReadInt32());
        w.Reset();
        Assert.Equal(0, w.Length);
        w.WriteInt8(5);
        Assert.Equal("05", Hex(w));
    }

    [Fact]
    public void ImplementsIBufferWriter()
    {
        using var w = new KafkaWriter(initialCapacity: 4);
        IBufferWriter<byte> bw = w;
        Span<byte> span = bw.GetSpan(100);
        Assert.True(span.Length >= 100);
        span[0] = 1;
        span[1] = 2;
        bw.Advance(2);
        Memory<byte> memory = bw.GetMemory();
        Assert.True(memory.Length >= 1);
        memory.Span[0] = 3;
        bw.Advance(1);
        Assert.Equal("010203", Hex(w));
        Assert.Throws<ArgumentOutOfRangeException>(() => bw.Advance(-1));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(127)]
    [InlineData(128)] // size needs a 2-byte varint: the payload moves
    [InlineData(20_000)] // 3-byte varint
    public void TaggedFieldSizeIsInsertedBeforeThePayload(int payloadSize)
    {
        using var w = new KafkaWriter(initialCapacity: 16);
        w.WriteInt8(0x11);
        int start = w.BeginTaggedField(300);
        for (int i = 0; i < payloadSize; i++)
            w.WriteInt8((sbyte)(i % 100));
        w.EndTaggedField(start);
        w.WriteInt8(0x22);

        var r = new KafkaReader(w.WrittenMemory);
        Assert.Equal(0x11, r.ReadInt8());
        Assert.Equal(300u, r.ReadUnsignedVarInt());
        Assert.Equal((uint)payloadSize, r.ReadUnsignedVarInt());
        for (int i = 0; i < payloadSize; i++)
            Assert.Equal(i % 100, r.ReadInt8());
        Assert.Equal(0x22, r.ReadInt8());
        Assert.False(r.Failed);
        Assert.Equal(0, r.Remaining);
    }

    [Fact]
    public void WritesDoNotAllocateOnceTheBufferIsLargeEnough()
    {
        using var w = new KafkaWriter(initialCapacity: 4096);
        Guid id = Guid.NewGuid();
        Run(w, id);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++)
            Run(w, id);
        Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread());

        static void Run(KafkaWriter w, Guid id)
        {
            w.Reset();
            int size = w.ReserveInt32();
            w.WriteInt16(1);
            w.WriteInt64(2);
            w.WriteUnsignedVarInt(300);
            w.WriteVarLong(-5);
            w.WriteUuid(id);
            w.WriteCompactString("topic-name");
            w.WriteArrayCount(2, compact: true);
            int start = w.BeginTaggedField(0);
            w.WriteInt32(7);
            w.EndTaggedField(start);
            w.PatchInt32(size, w.Length - 4);
        }
    }

    [Fact]
    public void DisposeReturnsTheBufferAndLaterWritesThrow()
    {
        var w = new KafkaWriter(16);
        w.WriteInt32(1);
        w.Dispose();
        Assert.Equal(0, w.Length);
        Assert.Throws<ObjectDisposedException>(() => w.WriteInt32(1));
        w.Dispose(); // idempotent
    }
}
