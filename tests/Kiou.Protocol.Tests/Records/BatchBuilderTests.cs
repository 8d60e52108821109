using Kiou.Protocol.Records;
using Kiou.Testing;

namespace Kiou.Protocol.Tests.Records;

public class BatchBuilderTests
{
    [Fact]
    public void Builder_ReproducesWorkedExample_ByteForByte()
    {
        byte[] built = BatchBuilder.WorkedExample();
        Assert.Equal(90, built.Length);
        Assert.Equal(Convert.ToHexString(BatchBuilder.WorkedExampleBytes), Convert.ToHexString(built));
    }

    [Fact]
    public void WorkedExample_ValidatesForProduce()
    {
        short error = RecordBatch.ValidateForProduce(BatchBuilder.WorkedExampleBytes, 1048588, out BatchInfo info);
        Assert.Equal(0, error);
        Assert.Equal(90, info.SizeBytes);
        Assert.Equal(2, info.RecordsCount);
        Assert.Equal(1, info.LastOffsetDelta);
        Assert.Equal(1700000000000, info.BaseTimestamp);
        Assert.Equal(1700000000005, info.MaxTimestamp);
        Assert.Equal(1700000000005, info.RecordsMaxTimestamp);
        Assert.Equal(CompressionType.None, info.Codec);
        Assert.Equal(TimestampType.CreateTime, info.TimestampType);
        Assert.False(info.IsTransactional);
        Assert.Equal(-1, info.ProducerId);
        Assert.Equal(-1, info.ProducerEpoch);
        Assert.Equal(-1, info.BaseSequence);
    }
}
