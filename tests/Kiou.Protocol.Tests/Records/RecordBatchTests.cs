using System.Buffers.Binary;
using Kiou.Protocol.Records;
using Kiou.Testing;

namespace Kiou.Protocol.Tests.Records;

public class RecordBatchTests
{
    private static byte[] Example() => (byte[])BatchBuilder.WorkedExampleBytes.Clone();

    [Fact]
    public void Accessors_ReadWorkedExample()
    {
        byte[] b = Example();
        Assert.Equal(0, RecordBatch.BaseOffset(b));
        Assert.Equal(78, RecordBatch.BatchLength(b));
        Assert.Equal(90, RecordBatch.TotalSize(b));
        Assert.Equal(0, RecordBatch.PartitionLeaderEpoch(b));
        Assert.Equal(2, RecordBatch.Magic(b));
        Assert.Equal(0xb1267df6u, RecordBatch.Crc(b));
        Assert.Equal(0, RecordBatch.Attributes(b));
        Assert.Equal(CompressionType.None, RecordBatch.CompressionCodec(b));
        Assert.Equal(TimestampType.CreateTime, RecordBatch.TimestampType(b));
        Assert.False(RecordBatch.IsTransactional(b));
        Assert.False(RecordBatch.IsControl(b));
        Assert.Equal(1, RecordBatch.LastOffsetDelta(b));
        Assert.Equal(1700000000000, RecordBatch.BaseTimestamp(b));
        Assert.Equal(1700000000005, RecordBatch.MaxTimestamp(b));
        Assert.Equal(-1, RecordBatch.ProducerId(b));
        Assert.Equal(-1, RecordBatch.ProducerEpoch(b));
        Assert.Equal(-1, RecordBatch.BaseSequence(b));
        Assert.Equal(2, RecordBatch.RecordsCount(b));
        Assert.True(RecordBatch.IsCrcValid(b));
    }

    [Fact]
    public void AttributeBits_Decode()
    {
        byte[] b = BatchBuilder.Build([new TestRecord(0, null, [1])], attributes: 0x08 | 0x10 | 0x20 | 0x03);
        Assert.Equal(CompressionType.Lz4, RecordBatch.CompressionCodec(b));
        Assert.Equal(TimestampType.LogAppendTime, RecordBatch.TimestampType(b));
        Assert.True(RecordBatch.IsTransactional(b));
        Assert.True(RecordBatch.IsControl(b));
    }

    [Fact]
    public void SetBaseOffsetAndEpoch_LeaveCrcValid()
    {
        byte[] b = Example();
        RecordBatch.SetBaseOffset(b, 123456789012);
        RecordBatch.SetPartitionLeaderEpoch(b, 7);
        Assert.Equal(123456789012, RecordBatch.BaseOffset(b));
        Assert.Equal(123456789013, RecordBatch.LastOffset(b));
        Assert.Equal(7, RecordBatch.PartitionLeaderEpoch(b));
        Assert.Equal(0xb1267df6u, RecordBatch.Crc(b));
        Assert.True(RecordBatch.IsCrcValid(b));
    }

    [Fact]
    public void StampLogAppendTime_SetsBitMaxTimestampAndCrc()
    {
        byte[] b = Example();
        RecordBatch.StampLogAppendTime(b, 1800000000000);
        Assert.Equal(TimestampType.LogAppendTime, RecordBatch.TimestampType(b));
        Assert.Equal(1800000000000, RecordBatch.MaxTimestamp(b));
        Assert.Equal(1700000000000, RecordBatch.BaseTimestamp(b));
        Assert.NotEqual(0xb1267df6u, RecordBatch.Crc(b));
        Assert.True(RecordBatch.IsCrcValid(b));
        // Record bytes untouched.
        Assert.True(b.AsSpan(61).SequenceEqual(BatchBuilder.WorkedExampleBytes.AsSpan(61)));
    }

    [Fact]
    public void StampLogAppendTime_IgnoresBytesAfterTheBatch()
    {
        var buffer = new byte[100];
        Example().CopyTo(buffer, 0);
        buffer[95] = 0xEE;
        RecordBatch.StampLogAppendTime(buffer, 5);
        Assert.True(RecordBatch.IsCrcValid(buffer.AsSpan(0, 90)));
        Assert.True(RecordBatch.IsCrcValid(buffer));
    }

    [Fact]
    public void TryReadHeader_NeedsOnlyHeaderBytes()
    {
        byte[] b = Example();
        RecordBatch.SetBaseOffset(b, 40);
        Assert.True(RecordBatch.TryReadHeader(b.AsSpan(0, 61), out long baseOffset, out int totalSize, out int lastDelta, out long maxTs));
        Assert.Equal(40, baseOffset);
        Assert.Equal(90, totalSize);
        Assert.Equal(1, lastDelta);
        Assert.Equal(1700000000005, maxTs);
        Assert.True(RecordBatch.TryReadHeader(b, out BatchHeader h));
        Assert.Equal(42, h.NextOffset);
        Assert.Equal(2, h.RecordsCount);
    }

    [Fact]
    public void TryReadHeader_RejectsShortBadMagicBadLength()
    {
        byte[] b = Example();
        Assert.False(RecordBatch.TryReadHeader(b.AsSpan(0, 60), out _));

        byte[] magic = Example();
        magic[16] = 1;
        Assert.False(RecordBatch.TryReadHeader(magic, out _));

        byte[] small = Example();
        BinaryPrimitives.WriteInt32BigEndian(small.AsSpan(8), 48);
        Assert.False(RecordBatch.TryReadHeader(small, out _));

        byte[] huge = Example();
        BinaryPrimitives.WriteInt32BigEndian(huge.AsSpan(8), int.MaxValue);
        Assert.False(RecordBatch.TryReadHeader(huge, out _));

        byte[] negative = Example();
        BinaryPrimitives.WriteInt32BigEndian(negative.AsSpan(23), -1);
        Assert.False(RecordBatch.TryReadHeader(negative, out _));
    }

    [Fact]
    public void IsCrcValid_FalseWhenTruncatedOrFlipped()
    {
        byte[] b = Example();
        Assert.False(RecordBatch.IsCrcValid(b.AsSpan(0, 89)));
        b[70] ^= 0x01;
        Assert.False(RecordBatch.IsCrcValid(b));
    }

    [Fact]
    public void RecordCursor_WalksWorkedExample()
    {
        var cursor = RecordCursor.ForBatch(BatchBuilder.WorkedExampleBytes);
        Assert.True(cursor.MoveNext());
        Assert.Equal(0, cursor.Index);
        Assert.Equal(0, cursor.OffsetDelta);
        Assert.Equal(0, cursor.TimestampDelta);
        Assert.True(cursor.Key.SequenceEqual("k"u8));
        Assert.True(cursor.Value.SequenceEqual("hello"u8));
        Assert.Equal(1, cursor.HeaderCount);
        Assert.Equal(17, cursor.SizeBytes);
        Assert.True(cursor.MoveNext());
        Assert.Equal(1, cursor.OffsetDelta);
        Assert.Equal(5, cursor.TimestampDelta);
        Assert.Equal(-1, cursor.KeyLength);
        Assert.True(cursor.Value.SequenceEqual("world"u8));
        Assert.Equal(0, cursor.HeaderCount);
        Assert.False(cursor.MoveNext());
        Assert.Equal(0, cursor.Error);
        Assert.True(cursor.IsAtEnd);
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
    public void Varint_Decodes(string hex, int expected)
    {
        byte[] bytes = Convert.FromHexString(hex);
        int p = 0;
        Assert.True(RecordCursor.TryReadVarint(bytes, ref p, out int value));
        Assert.Equal(expected, value);
        Assert.Equal(bytes.Length, p);
    }

    [Theory]
    [InlineData("")]
    [InlineData("80")]
    [InlineData("ffffffffff01")]
    public void Varint_RejectsTruncatedOrTooLong(string hex)
    {
        int p = 0;
        Assert.False(RecordCursor.TryReadVarint(Convert.FromHexString(hex), ref p, out _));
        Assert.Equal(0, p);
    }

    [Fact]
    public void Varlong_Decodes()
    {
        var list = new List<byte>();
        BatchBuilder.WriteVarlong(list, long.MinValue);
        BatchBuilder.WriteVarlong(list, 1234567890123);
        int p = 0;
        Assert.True(RecordCursor.TryReadVarlong(list.ToArray(), ref p, out long a));
        Assert.True(RecordCursor.TryReadVarlong(list.ToArray(), ref p, out long b));
        Assert.Equal(long.MinValue, a);
        Assert.Equal(1234567890123, b);
        Assert.Equal(list.Count, p);
    }
}
