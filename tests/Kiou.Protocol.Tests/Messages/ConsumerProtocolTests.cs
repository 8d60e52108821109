using Kiou.Protocol.Messages;

namespace Kiou.Protocol.Tests.Messages;

public class ConsumerProtocolTests
{
    [Fact]
    public void SubscriptionAsLibrdkafkaSendsIt()
    {
        // v3: topics ["t"], user data null, owned partitions [], generation -1, rack null.
        byte[] bytes = TestPaths.Hex("0003" + "00000001 0001 74" + "ffffffff" + "00000000" + "ffffffff" + "ffff");
        ConsumerProtocolSubscription? sub = ConsumerProtocolSubscription.Parse(bytes, out short version);
        Assert.NotNull(sub);
        Assert.Equal(3, version);
        Assert.Equal(["t"], sub.Topics);
        Assert.Null(sub.UserData);
        Assert.Equal(-1, sub.GenerationId);
        Assert.Null(sub.RackId);

        using var writer = new KafkaWriter();
        sub.WriteWithVersion(writer, version);
        Assert.Equal(bytes, writer.WrittenSpan.ToArray());
    }

    [Fact]
    public void NewerVersionsParseWithTheNewestKnownLayout()
    {
        var assignment = new ConsumerProtocolAssignment
        {
            AssignedPartitions = { new ConsumerProtocolAssignment.TopicPartition { Topic = "t", Partitions = { 0, 2 } } },
        };
        using var writer = new KafkaWriter();
        writer.WriteInt16(9);
        assignment.Write(writer, ConsumerProtocolAssignment.HighestSupportedVersion);
        writer.WriteInt32(12345); // a field some future version appended

        ConsumerProtocolAssignment? parsed = ConsumerProtocolAssignment.Parse(writer.WrittenMemory, out short version);
        Assert.Equal(9, version);
        Assert.NotNull(parsed);
        Assert.Equal([0, 2], Assert.Single(parsed.AssignedPartitions).Partitions);
    }

    [Theory]
    [InlineData("")]
    [InlineData("00")]
    [InlineData("ffff 00000000")] // negative version
    [InlineData("0000 00000005")] // count beyond the bytes
    public void MalformedPayloadsGiveNull(string hex)
    {
        Assert.Null(ConsumerProtocolAssignment.Parse(TestPaths.Hex(hex), out _));
        Assert.Null(ConsumerProtocolSubscription.Parse(TestPaths.Hex(hex), out _));
    }
}
