using System.Runtime.InteropServices;
using System.Text;

namespace Kiou.Protocol.Tests.Primitives;

public class KafkaReaderTests
{
    private static KafkaReader Reader(string hex) => new(TestPaths.Hex(hex));

    [Fact]
    public void FixedWidthIntegersAreBigEndian()
    {
        var r = Reader("7f  8001  01020304  0102030405060708  fffe  fffffffe  01  00  02");
        Assert.Equal(127, r.ReadInt8());
        Assert.Equal(unchecked((short)0x8001), r.ReadInt16());
        Assert.Equal(0x01020304, r.ReadInt32());
        Assert.Equal(0x0102030405060708L, r.ReadInt64());
        Assert.Equal(0xfffe, r.ReadUInt16());
        Assert.Equal(0xfffffffeu, r.ReadUInt32());
        Assert.True(r.ReadBool());
        Assert.False(r.ReadBool());
        Assert.True(r.ReadBool()); // any non-zero byte is true
        Assert.False(r.Failed);
        Assert.Equal(0, r.Remaining);
    }

    [Fact]
    public void Float64IsBigEndianIeee754()
    {
        var r = Reader("3ff8000000000000");
        Assert.Equal(1.5, r.ReadFloat64());
        Assert.False(r.Failed);
    }

    [Fact]
    public void UuidIsMostSignificantByteFirst()
    {
        var r = Reader("00112233445566778899aabbccddeeff");
        Assert.Equal(Guid.Parse("00112233-4455-6677-8899-aabbccddeeff"), r.ReadUuid());
        Assert.False(r.Failed);
    }

    [Theory]
    [InlineData("00", 0u)]
    [InlineData("7f", 127u)]
    [InlineData("8001", 128u)]
    [InlineData("ac02", 300u)]
    [InlineData("ffff03", 65535u)]
    [InlineData("ffffffff0f", uint.MaxValue)]
    public void UnsignedVarInt(string hex, uint expected)
    {
        var r = Reader(hex);
        Assert.Equal(expected, r.ReadUnsignedVarInt());
        Assert.False(r.Failed);
        Assert.Equal(0, r.Remaining);
    }

    [Theory]
    [InlineData("00", 0)]
    [InlineData("01", -1)]
    [InlineData("02", 1)]
    [InlineData("03", -2)]
    [InlineData("7e", 63)]
    [InlineData("7f", -64)]
    [InlineData("8001", 64)]
    [InlineData("feffffff0f", int.MaxValue)]
    [InlineData("ffffffff0f", int.MinValue)]
    public void VarIntIsZigZag(string hex, int expected)
    {
        var r = Reader(hex);
        Assert.Equal(expected, r.ReadVarInt());
        Assert.False(r.Failed);
        Assert.Equal(0, r.Remaining);
    }

    [Theory]
    [InlineData("00", 0L)]
    [InlineData("01", -1L)]
    [InlineData("02", 1L)]
    [InlineData("8001", 64L)]
    [InlineData("feffffffffffffffff01", long.MaxValue)]
    [InlineData("ffffffffffffffffff01", long.MinValue)]
    public void VarLongIsZigZag(string hex, long expected)
    {
        var r = Reader(hex);
        Assert.Equal(expected, r.ReadVarLong());
        Assert.False(r.Failed);
        Assert.Equal(0, r.Remaining);
    }

    [Theory]
    [InlineData("808080808000")] // 6 bytes
    [InlineData("8080808080")] // 5th byte still says "more"
    [InlineData("80")] // truncated
    [InlineData("")]
    public void OverlongOrTruncatedUnsignedVarIntFails(string hex)
    {
        var r = Reader(hex);
        Assert.Equal(0u, r.ReadUnsignedVarInt());
        Assert.True(r.Failed);
    }

    [Theory]
    [InlineData("808080808000")]
    [InlineData("80")]
    public void OverlongOrTruncatedVarIntFails(string hex)
    {
        var r = Reader(hex);
        Assert.Equal(0, r.ReadVarInt());
        Assert.True(r.Failed);
    }

    [Theory]
    [InlineData("8080808080808080808000")] // 11 bytes
    [InlineData("80808080808080808080")] // 10th byte still says "more"
    [InlineData("8080")]
    public void OverlongOrTruncatedVarLongFails(string hex)
    {
        var r = Reader(hex);
        Assert.Equal(0L, r.ReadVarLong());
        Assert.True(r.Failed);
    }

    [Fact]
    public void TruncatedFixedWidthReadsFail()
    {
        var r = Reader("010203");
        Assert.Equal(0, r.ReadInt32());
        Assert.True(r.Failed);
        Assert.Equal(0, r.Position);

        Assert.True(Failed("", (ref KafkaReader x) => x.ReadInt8()));
        Assert.True(Failed("01", (ref KafkaReader x) => x.ReadInt16()));
        Assert.True(Failed("01", (ref KafkaReader x) => x.ReadUInt16()));
        Assert.True(Failed("010203", (ref KafkaReader x) => x.ReadUInt32()));
        Assert.True(Failed("01020304050607", (ref KafkaReader x) => x.ReadInt64()));
        Assert.True(Failed("01020304050607", (ref KafkaReader x) => x.ReadFloat64()));
        Assert.True(Failed("", (ref KafkaReader x) => x.ReadBool()));
        Assert.True(Failed("00112233445566778899aabbccddee", (ref KafkaReader x) => x.ReadUuid()));
    }

    [Fact]
    public void FailureIsStickyAndReadsReturnDefaults()
    {
        var r = Reader("01 0002 0000000a 000161");
        r.ReadInt16(); // consumes 01 00: fine
        Assert.False(r.Failed);
        r.Fail();
        Assert.True(r.Failed);
        int before = r.Position;
        Assert.Equal(0, r.ReadInt32());
        Assert.Equal(string.Empty, r.ReadString());
        Assert.Null(r.ReadNullableString());
        Assert.Null(r.ReadRecords(compact: false));
        Assert.Equal(0, r.ReadArrayCount(compact: false));
        Assert.Equal(0u, r.ReadUnsignedVarInt());
        Assert.Equal(before, r.Position);
        Assert.True(r.Failed);
    }

    [Fact]
    public void StringsCountUtf8Bytes()
    {
        byte[] utf8 = Encoding.UTF8.GetBytes("héllo€");
        Assert.Equal(9, utf8.Length);
        var w = new List<byte> { 0, 9 };
        w.AddRange(utf8);
        w.Add(10); // compact length 9 + 1
        w.AddRange(utf8);
        var r = new KafkaReader(w.ToArray());
        Assert.Equal("héllo€", r.ReadString());
        Assert.Equal("héllo€", r.ReadCompactString());
        Assert.False(r.Failed);
        Assert.Equal(0, r.Remaining);
    }

    [Fact]
    public void NullableStrings()
    {
        var r = Reader("ffff 00 0000 01");
        Assert.Null(r.ReadNullableString());
        Assert.Null(r.ReadCompactNullableString());
        Assert.Equal(string.Empty, r.ReadNullableString());
        Assert.Equal(string.Empty, r.ReadCompactNullableString());
        Assert.False(r.Failed);
        Assert.Equal(0, r.Remaining);
    }

    [Theory]
    [InlineData("ffff")] // null for a non-nullable STRING
    [InlineData("fffe")] // negative length
    [InlineData("0005 61626364")] // length beyond the frame
    [InlineData("00")] // truncated length
    public void BadStringFails(string hex)
    {
        var r = Reader(hex);
        Assert.Equal(string.Empty, r.ReadString());
        Assert.True(r.Failed);
    }

    [Theory]
    [InlineData("fffe")]
    [InlineData("0005 61626364")]
    public void BadNullableStringFails(string hex)
    {
        var r = Reader(hex);
        Assert.Null(r.ReadNullableString());
        Assert.True(r.Failed);
    }

    [Theory]
    [InlineData("00")] // null for a non-nullable COMPACT_STRING
    [InlineData("06 6162")] // 5 bytes announced, 2 present
    [InlineData("ffffffff0f")] // length + 1 above int.MaxValue
    [InlineData("8080808080")] // bad varint
    public void BadCompactStringFails(string hex)
    {
        var r = Reader(hex);
        Assert.Equal(string.Empty, r.ReadCompactString());
        Assert.True(r.Failed);
    }

    [Fact]
    public void BytesAreCopiesAndNullableBytesMayBeNull()
    {
        byte[] frame = TestPaths.Hex("00000002 abcd  ffffffff  03 0102  00  01");
        var r = new KafkaReader(frame);
        byte[] bytes = r.ReadBytes();
        Assert.Equal(new byte[] { 0xab, 0xcd }, bytes);
        frame[4] = 0; // a copy: later changes to the frame do not show
        Assert.Equal(0xab, bytes[0]);
        Assert.Null(r.ReadNullableBytes());
        Assert.Equal(new byte[] { 1, 2 }, r.ReadCompactBytes());
        Assert.Null(r.ReadCompactNullableBytes());
        Assert.Empty(r.ReadCompactNullableBytes()!);
        Assert.False(r.Failed);
        Assert.Equal(0, r.Remaining);
    }

    [Theory]
    [InlineData("ffffffff")] // null for non-nullable BYTES
    [InlineData("fffffffe")]
    [InlineData("7fffffff 00")] // huge length: must fail, not allocate
    public void BadBytesFail(string hex)
    {
        var r = Reader(hex);
        Assert.Empty(r.ReadBytes());
        Assert.True(r.Failed);
    }

    [Fact]
    public void BadCompactBytesFail()
    {
        var r = Reader("00");
        Assert.Empty(r.ReadCompactBytes());
        Assert.True(r.Failed);
        r = Reader("ffffffff07");
        Assert.Null(r.ReadCompactNullableBytes());
        Assert.True(r.Failed);
    }

    [Fact]
    public void RecordsAreASliceOfTheFrameNotACopy()
    {
        byte[] frame = TestPaths.Hex("ff 00000003 aabbcc 04 010203");
        var r = new KafkaReader(frame);
        r.Skip(1);
        ReadOnlyMemory<byte>? records = r.ReadRecords(compact: false);
        Assert.NotNull(records);
        Assert.True(MemoryMarshal.TryGetArray(records.Value, out ArraySegment<byte> segment));
        Assert.Same(frame, segment.Array);
        Assert.Equal(5, segment.Offset);
        Assert.Equal(3, segment.Count);
        ReadOnlyMemory<byte>? compact = r.ReadRecords(compact: true);
        Assert.Equal(new byte[] { 1, 2, 3 }, compact!.Value.ToArray());
        Assert.False(r.Failed);
    }

    [Fact]
    public void RecordsNullAndEmpty()
    {
        var r = Reader("ffffffff 00000000 00 01");
        Assert.Null(r.ReadRecords(compact: false));
        ReadOnlyMemory<byte>? empty = r.ReadRecords(compact: false);
        Assert.NotNull(empty);
        Assert.Equal(0, empty.Value.Length);
        Assert.Null(r.ReadRecords(compact: true));
        Assert.Equal(0, r.ReadRecords(compact: true)!.Value.Length);
        Assert.False(r.Failed);
    }

    [Theory]
    [InlineData("fffffffe", false)]
    [InlineData("00000010 00", false)]
    [InlineData("7fffffff", false)]
    [InlineData("ff", true)] // truncated varint
    [InlineData("05 0102", true)]
    public void BadRecordsFail(string hex, bool compact)
    {
        var r = Reader(hex);
        Assert.Null(r.ReadRecords(compact));
        Assert.True(r.Failed);
    }

    [Fact]
    public void ArrayCounts()
    {
        var r = Reader("ffffffff 00000002 0000 00 03 0000");
        Assert.Equal(-1, r.ReadArrayCount(compact: false));
        Assert.Equal(2, r.ReadArrayCount(compact: false));
        r.Skip(2);
        Assert.Equal(-1, r.ReadArrayCount(compact: true));
        Assert.Equal(2, r.ReadArrayCount(compact: true));
        Assert.False(r.Failed);
    }

    [Theory]
    [InlineData("7fffffff", false)] // count larger than the bytes remaining: no huge allocation downstream
    [InlineData("00000002 00", false)]
    [InlineData("fffffffe", false)] // negative, not -1
    [InlineData("80000000", false)]
    [InlineData("ffffffff0f", true)]
    [InlineData("03 00", true)]
    [InlineData("000000", false)] // truncated
    public void BadArrayCountFails(string hex, bool compact)
    {
        var r = Reader(hex);
        Assert.Equal(0, r.ReadArrayCount(compact));
        Assert.True(r.Failed);
    }

    [Fact]
    public void SliceAndSkip()
    {
        var r = Reader("01020304");
        Assert.Equal(new byte[] { 1, 2 }, r.ReadSlice(2).ToArray());
        r.Skip(1);
        Assert.Equal(3, r.Position);
        Assert.Equal(1, r.Remaining);
        Assert.False(r.Failed);

        r = Reader("0102");
        Assert.True(r.ReadSlice(-1).IsEmpty);
        Assert.True(r.Failed);
        r = Reader("0102");
        Assert.True(r.ReadSlice(3).IsEmpty);
        Assert.True(r.Failed);
        r = Reader("0102");
        r.Skip(-5);
        Assert.True(r.Failed);
        r = Reader("0102");
        r.Skip(3);
        Assert.True(r.Failed);
    }

    [Fact]
    public void SkipTaggedFieldsSkipsByLength()
    {
        // 2 fields: tag 0 with 3 bytes, tag 5 with 0 bytes; then an INT8 after the buffer.
        var r = Reader("02 00 03 aabbcc 05 00 7f");
        r.SkipTaggedFields();
        Assert.False(r.Failed);
        Assert.Equal(127, r.ReadInt8());
        Assert.Equal(0, r.Remaining);

        r = Reader("00");
        r.SkipTaggedFields();
        Assert.False(r.Failed);
        Assert.Equal(0, r.Remaining);
    }

    [Theory]
    [InlineData("")] // no count at all
    [InlineData("05 0000")] // count larger than the bytes remaining
    [InlineData("01 00 05 aabb")] // field size beyond the frame
    [InlineData("01 00 ffffffff0f")] // field size above int.MaxValue
    [InlineData("01 8080808080 00")] // bad tag varint
    public void BadTaggedFieldsFail(string hex)
    {
        var r = Reader(hex);
        r.SkipTaggedFields();
        Assert.True(r.Failed);
    }

    [Fact]
    public void TaggedFieldReaderIsBoundedToThePayload()
    {
        var r = Reader("01 02 02 0007 ff");
        Assert.Equal(1, r.ReadTagCount());
        KafkaReader field = r.ReadTaggedField(out uint tag);
        Assert.Equal(2u, tag);
        Assert.Equal(2, field.Remaining);
        Assert.Equal(7, field.ReadInt16());
        r.EndTaggedField(in field);
        Assert.False(r.Failed);
        Assert.Equal(255, (byte)r.ReadInt8());

        r = Reader("01 02 02 0007");
        r.ReadTagCount();
        field = r.ReadTaggedField(out _);
        field.ReadInt8(); // leaves one byte unread
        r.EndTaggedField(in field);
        Assert.True(r.Failed);

        r = Reader("01 02 01 00");
        r.ReadTagCount();
        field = r.ReadTaggedField(out _);
        field.ReadInt32(); // reads past the payload
        Assert.True(field.Failed);
        r.EndTaggedField(in field);
        Assert.True(r.Failed);
    }

    [Fact]
    public void DefaultReaderFailsOnAnyRead()
    {
        KafkaReader r = default;
        Assert.Equal(0, r.Remaining);
        Assert.Equal(0, r.ReadInt32());
        Assert.True(r.Failed);
    }

    [Fact]
    public void FixedWidthAndVarintReadsDoNotAllocate()
    {
        byte[] frame = TestPaths.Hex("0001 00000002 0000000000000003 ac02 7f 00112233445566778899aabbccddeeff 00000000 00");
        Run(frame); // warm up (JIT)
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++)
            Run(frame);
        Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread());

        static void Run(byte[] frame)
        {
            var r = new KafkaReader(frame);
            r.ReadInt16();
            r.ReadInt32();
            r.ReadInt64();
            r.ReadUnsignedVarInt();
            r.ReadVarInt();
            r.ReadUuid();
            r.ReadRecords(compact: false);
            r.SkipTaggedFields();
            Assert.False(r.Failed);
        }
    }

    private delegate void ReadAction(ref KafkaReader reader);

    private static bool Failed(string hex, ReadAction read)
    {
        var r = Reader(hex);
        read(ref r);
        return r.Failed;
    }
}
