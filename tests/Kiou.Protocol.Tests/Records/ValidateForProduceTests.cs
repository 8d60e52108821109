using System.Buffers.Binary;
using Kiou.Protocol.Records;
using Kiou.Testing;

namespace Kiou.Protocol.Tests.Records;

public class ValidateForProduceTests
{
    private const int MaxBytes = 1048588;
    private const short Corrupt = RecordErrorCodes.CorruptMessage;
    private const short Invalid = RecordErrorCodes.InvalidRecord;

    private static byte[] Example() => (byte[])BatchBuilder.WorkedExampleBytes.Clone();

    private static short Validate(ReadOnlySpan<byte> records, int max = MaxBytes) => RecordBatch.ValidateForProduce(records, max, out _);

    [Fact]
    public void ValidBatch_ReturnsZero()
    {
        Assert.Equal(0, Validate(Example()));
        Assert.Equal(0, Validate(BatchBuilder.Simple(100)));
    }

    [Fact]
    public void Idempotent_BatchNeedsSequence()
    {
        Assert.Equal(0, Validate(BatchBuilder.Build([new TestRecord(0, null, [1])], producerId: 5, producerEpoch: 0, baseSequence: 0)));
        Assert.Equal(Invalid, Validate(BatchBuilder.Build([new TestRecord(0, null, [1])], producerId: 5, producerEpoch: 0, baseSequence: -1)));
    }

    [Fact]
    public void CorruptCrc_EveryCoveredByte()
    {
        byte[] original = Example();
        for (int i = RecordBatch.CrcStart; i < original.Length; i++)
        {
            byte[] b = Example();
            b[i] ^= 0x40;
            Assert.Equal(Corrupt, Validate(b));
        }

        byte[] crc = Example();
        crc[20] ^= 0x01;
        Assert.Equal(Corrupt, Validate(crc));
    }

    [Fact]
    public void OutsideCrc_BaseOffsetNonZero_IsInvalidRecord()
    {
        byte[] b = Example();
        RecordBatch.SetBaseOffset(b, 5);
        Assert.Equal(Invalid, Validate(b));
    }

    [Fact]
    public void LeaderEpochPlaceholder_IsAccepted()
    {
        byte[] b = Example();
        RecordBatch.SetPartitionLeaderEpoch(b, -1);
        Assert.Equal(0, Validate(b));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(16)]
    [InlineData(17)]
    [InlineData(60)]
    [InlineData(61)]
    [InlineData(89)]
    public void Truncated_IsCorrupt(int length)
    {
        Assert.Equal(Corrupt, Validate(Example().AsSpan(0, length)));
    }

    [Fact]
    public void BatchLength_TooSmallOrTooLarge_IsCorrupt()
    {
        byte[] small = Example();
        BinaryPrimitives.WriteInt32BigEndian(small.AsSpan(8), 48);
        Assert.Equal(Corrupt, Validate(small));

        byte[] large = Example();
        BinaryPrimitives.WriteInt32BigEndian(large.AsSpan(8), 79);
        Assert.Equal(Corrupt, Validate(large));

        byte[] negative = Example();
        BinaryPrimitives.WriteInt32BigEndian(negative.AsSpan(8), -1);
        Assert.Equal(Corrupt, Validate(negative));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(3)]
    public void BadMagic_IsInvalidRecord(byte magic)
    {
        byte[] b = Example();
        b[16] = magic;
        Assert.Equal(Invalid, Validate(b));
    }

    [Fact]
    public void LegacyMessageSet_ShorterThanV2Header_IsInvalidRecord()
    {
        // magic 1 message: offset, size, crc, magic 1, attributes, timestamp, key -1, value "a"
        var legacy = new byte[12 + 4 + 1 + 1 + 8 + 4 + 5];
        BinaryPrimitives.WriteInt32BigEndian(legacy.AsSpan(8), legacy.Length - 12);
        legacy[16] = 1;
        Assert.Equal(Invalid, Validate(legacy));
    }

    [Fact]
    public void Oversize_IsMessageTooLarge()
    {
        byte[] b = Example();
        Assert.Equal(RecordErrorCodes.MessageTooLarge, Validate(b, 89));
        Assert.Equal(0, Validate(b, 90));
    }

    [Fact]
    public void TrailingGarbage_IsCorrupt()
    {
        byte[] b = Example();
        foreach (int extra in new[] { 1, 11, 12, 60, 100 })
        {
            var withGarbage = new byte[b.Length + extra];
            b.CopyTo(withGarbage, 0);
            withGarbage.AsSpan(b.Length).Fill(0x33);
            Assert.Equal(Corrupt, Validate(withGarbage));
        }
    }

    [Fact]
    public void TwoBatches_IsInvalidRecord()
    {
        byte[] b = Example();
        var two = new byte[b.Length * 2];
        b.CopyTo(two, 0);
        b.CopyTo(two, b.Length);
        Assert.Equal(Invalid, Validate(two));
    }

    [Fact]
    public void RecordsCountZero_IsInvalidRecord()
    {
        byte[] b = BatchBuilder.Build([], lastOffsetDelta: 0);
        Assert.Equal(Invalid, Validate(b));
    }

    [Fact]
    public void LastOffsetDelta_NotCountMinusOne_IsInvalidRecord()
    {
        byte[] b = BatchBuilder.Build([new TestRecord(0, null, [1]), new TestRecord(0, null, [2])], lastOffsetDelta: 2);
        Assert.Equal(Invalid, Validate(b));
        byte[] negative = BatchBuilder.Build([new TestRecord(0, null, [1])], lastOffsetDelta: -1);
        Assert.Equal(Invalid, Validate(negative));
    }

    [Fact]
    public void RecordsCount_MoreThanRecords_IsInvalidRecord()
    {
        // Header says 3 records (lastOffsetDelta 2), the bytes hold 2.
        byte[] b = BatchBuilder.Build([new TestRecord(0, null, [1]), new TestRecord(0, null, [2])], lastOffsetDelta: 2, recordsCount: 3);
        Assert.Equal(Invalid, Validate(b));
    }

    [Fact]
    public void RecordsCount_FewerThanRecords_IsInvalidRecord()
    {
        // Header says 1 record, the bytes hold 2: leftover bytes after the counted records.
        byte[] b = BatchBuilder.Build([new TestRecord(0, null, [1]), new TestRecord(0, null, [2])], lastOffsetDelta: 0, recordsCount: 1);
        Assert.Equal(Invalid, Validate(b));
    }

    [Fact]
    public void WrongOffsetDelta_IsInvalidRecord()
    {
        byte[] b = BatchBuilder.Build([new TestRecord(0, null, [1]), new TestRecord(0, null, [2]) { OffsetDelta = 2 }]);
        Assert.Equal(Invalid, Validate(b));
        byte[] first = BatchBuilder.Build([new TestRecord(0, null, [1]) { OffsetDelta = 1 }]);
        Assert.Equal(Invalid, Validate(first));
    }

    [Fact]
    public void RecordLength_Overruns_IsInvalidRecord()
    {
        byte[] b = Example();
        b[61] = 0x40; // record 0 length 32, more than the 29 bytes left
        BatchBuilder.FixCrc(b);
        Assert.Equal(Invalid, Validate(b));
    }

    [Fact]
    public void RecordLength_DisagreesWithContents_IsInvalidRecord()
    {
        byte[] b = Example();
        b[61] = 0x1e; // record 0 length 15 instead of 16
        BatchBuilder.FixCrc(b);
        Assert.Equal(Invalid, Validate(b));
    }

    [Fact]
    public void KeyLength_Overruns_IsInvalidRecord()
    {
        byte[] b = Example();
        b[65] = 0x7e; // key length 63
        BatchBuilder.FixCrc(b);
        Assert.Equal(Invalid, Validate(b));
    }

    [Fact]
    public void NegativeKeyLengthBelowMinusOne_IsInvalidRecord()
    {
        byte[] b = Example();
        b[65] = 0x03; // key length -2
        BatchBuilder.FixCrc(b);
        Assert.Equal(Invalid, Validate(b));
    }

    [Fact]
    public void RecordLevelFailures_NameTheRecord()
    {
        // KIP-467: the produce response carries the index of the record at fault and Kafka's message.
        byte[] offsets = BatchBuilder.Build([new TestRecord(0, null, [1]), new TestRecord(0, null, [2]) { OffsetDelta = 5 }]);
        Assert.Equal(Invalid, RecordBatch.ValidateForProduce(offsets, MaxBytes, out _, out RecordsVerdict verdict));
        Assert.Equal(1, verdict.RecordIndex);
        Assert.Equal("Inner record offset delta 5 of record 1 should be 1", verdict.Message);

        byte[] short3 = BatchBuilder.Build([new TestRecord(0, null, [1])], lastOffsetDelta: 2, recordsCount: 3);
        Assert.Equal(Invalid, RecordBatch.ValidateForProduce(short3, MaxBytes, out _, out verdict));
        Assert.Equal(1, verdict.RecordIndex);
        Assert.Contains("premature EOF", verdict.Message);

        Assert.Equal(0, RecordBatch.ValidateForProduce(BatchBuilder.Simple(3), MaxBytes, out BatchInfo info, out verdict));
        Assert.True(verdict.IsOk);
        Assert.Null(verdict.Message);
        Assert.Equal(BatchBuilder.DefaultBaseTimestamp + 2, info.RecordsMaxTimestamp);
    }

    [Fact]
    public void ControlBatch_IsInvalidRecord()
    {
        byte[] b = BatchBuilder.Build([new TestRecord(0, [0, 0, 0, 1], [0, 0, 0, 0, 0, 0])], attributes: 0x30, producerId: 1, producerEpoch: 0, baseSequence: 0);
        Assert.Equal(Invalid, Validate(b));
    }

    [Theory]
    [InlineData(5)]
    [InlineData(6)]
    [InlineData(7)]
    public void UnknownCodec_IsUnsupportedCompression(short codec)
    {
        byte[] b = BatchBuilder.Build([new TestRecord(0, null, [1])], attributes: codec);
        Assert.Equal(RecordErrorCodes.UnsupportedCompressionType, Validate(b));
    }

    [Fact]
    public void CompressedBatch_RecordsAreNotWalked()
    {
        // A gzip batch whose payload is opaque: only the header checks apply.
        byte[] b = BatchBuilder.Build([new TestRecord(0, null, [1, 2, 3])], attributes: 1);
        b[61] = 0xFF;
        BatchBuilder.FixCrc(b);
        Assert.Equal(0, RecordBatch.ValidateForProduce(b, MaxBytes, out BatchInfo info));
        Assert.Equal(CompressionType.Gzip, info.Codec);
        Assert.Equal(-1, info.RecordsMaxTimestamp);
    }

    [Fact]
    public void LogAppendTimeBit_ReportedForCaller()
    {
        byte[] b = BatchBuilder.Build([new TestRecord(0, null, [1])], attributes: 0x08);
        Assert.Equal(0, RecordBatch.ValidateForProduce(b, MaxBytes, out BatchInfo info));
        Assert.Equal(TimestampType.LogAppendTime, info.TimestampType);
    }

    [Fact]
    public void Validate_DoesNotAllocate()
    {
        byte[] b = BatchBuilder.Simple(50);
        RecordBatch.ValidateForProduce(b, MaxBytes, out _);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            RecordBatch.ValidateForProduce(b, MaxBytes, out _);
        }

        Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread());
    }

    [Fact]
    public void RandomMutations_NeverThrow()
    {
        var rng = new Random(12345);
        byte[] original = BatchBuilder.Simple(5);
        for (int i = 0; i < 20000; i++)
        {
            byte[] b = (byte[])original.Clone();
            int flips = rng.Next(1, 4);
            for (int f = 0; f < flips; f++)
            {
                b[rng.Next(b.Length)] = (byte)rng.Next(256);
            }

            if (rng.Next(2) == 0)
            {
                BatchBuilder.FixCrc(b);
            }

            int length = rng.Next(4) == 0 ? rng.Next(b.Length + 1) : b.Length;
            RecordBatch.ValidateForProduce(b.AsSpan(0, length), MaxBytes, out _);
        }
    }
}
