using Confluent.Kafka;
using Confluent.Kafka.Admin;

namespace Kiou.Broker.Tests;

/// <summary>Topic administration through librdkafka's AdminClient, on both listeners.</summary>
public sealed class AdminTests
{
    [Fact]
    public async Task Topics_are_created_described_altered_grown_and_deleted_through_either_listener()
    {
        await using var broker = TestBroker.Start();
        using (var admin = Clients.Admin(broker.ControllerBootstrap))
        {
            await admin.CreateTopicsAsync([new TopicSpecification
            {
                Name = "orders",
                NumPartitions = 3,
                ReplicationFactor = 1,
                Configs = new() { ["retention.ms"] = "3600000", ["message.timestamp.type"] = "LogAppendTime" },
            }]);
        }
        using var adminB = Clients.Admin(broker.Bootstrap);
        var md = adminB.GetMetadata("orders", TimeSpan.FromSeconds(10));
        var t = Assert.Single(md.Topics);
        Assert.Equal(ErrorCode.NoError, t.Error.Code);
        Assert.Equal(3, t.Partitions.Count);
        Assert.All(t.Partitions, p => Assert.Equal(md.Brokers[0].BrokerId, p.Leader));
        Assert.Equal(broker.Broker.BrokerEndPoint.Port, md.Brokers[0].Port);

        var described = await adminB.DescribeConfigsAsync([new ConfigResource { Type = ResourceType.Topic, Name = "orders" }]);
        var entries = described[0].Entries;
        Assert.Equal("3600000", entries["retention.ms"].Value);
        Assert.False(entries["retention.ms"].IsDefault);
        Assert.Equal("1073741824", entries["segment.bytes"].Value);
        Assert.True(entries["segment.bytes"].IsDefault);
        Assert.Equal("LogAppendTime", entries["message.timestamp.type"].Value);

        await adminB.IncrementalAlterConfigsAsync(new Dictionary<ConfigResource, List<ConfigEntry>>
        {
            [new ConfigResource { Type = ResourceType.Topic, Name = "orders" }] =
                [new ConfigEntry { Name = "retention.ms", Value = "7200000", IncrementalOperation = AlterConfigOpType.Set }],
        });
        described = await adminB.DescribeConfigsAsync([new ConfigResource { Type = ResourceType.Topic, Name = "orders" }]);
        Assert.Equal("7200000", described[0].Entries["retention.ms"].Value);

        await adminB.CreatePartitionsAsync([new PartitionsSpecification { Topic = "orders", IncreaseTo = 5 }]);
        Assert.Equal(5, adminB.GetMetadata("orders", TimeSpan.FromSeconds(10)).Topics[0].Partitions.Count);
        var shrink = await Assert.ThrowsAsync<CreatePartitionsException>(() => adminB.CreatePartitionsAsync([new PartitionsSpecification { Topic = "orders", IncreaseTo = 2 }]));
        Assert.Equal(ErrorCode.InvalidPartitions, shrink.Results[0].Error.Code);

        await adminB.DeleteTopicsAsync(["orders"]);
        var after = adminB.GetMetadata(TimeSpan.FromSeconds(10));
        Assert.DoesNotContain(after.Topics, x => x.Topic == "orders");
        Assert.False(Directory.Exists(Path.Combine(broker.DataDir, "orders-0")));
    }

    [Theory]
    [InlineData("bad name", 1, 1, ErrorCode.TopicException)]
    [InlineData("..", 1, 1, ErrorCode.TopicException)]
    [InlineData("ok-but-rf3", 1, 3, ErrorCode.InvalidReplicationFactor)]
    [InlineData("zero-partitions", 0, 1, ErrorCode.InvalidPartitions)]
    public async Task Bad_topic_requests_get_kafkas_error_codes(string name, int partitions, short rf, ErrorCode expected)
    {
        await using var broker = TestBroker.Start();
        using var admin = Clients.Admin(broker.Bootstrap);
        var e = await Assert.ThrowsAsync<CreateTopicsException>(() =>
            admin.CreateTopicsAsync([new TopicSpecification { Name = name, NumPartitions = partitions, ReplicationFactor = rf }]));
        Assert.Equal(expected, e.Results[0].Error.Code);
    }

    [Fact]
    public async Task Long_names_existing_topics_bad_configs_and_validate_only_are_handled()
    {
        await using var broker = TestBroker.Start();
        using var admin = Clients.Admin(broker.Bootstrap);
        var tooLong = await Assert.ThrowsAsync<CreateTopicsException>(() =>
            admin.CreateTopicsAsync([new TopicSpecification { Name = new string('a', 250), NumPartitions = 1, ReplicationFactor = 1 }]));
        Assert.Equal(ErrorCode.TopicException, tooLong.Results[0].Error.Code);
        await admin.CreateTopicsAsync([new TopicSpecification { Name = new string('a', 249), NumPartitions = 1, ReplicationFactor = 1 }]);

        await admin.CreateTopicsAsync([new TopicSpecification { Name = "dup", NumPartitions = 1, ReplicationFactor = 1 }]);
        var exists = await Assert.ThrowsAsync<CreateTopicsException>(() =>
            admin.CreateTopicsAsync([new TopicSpecification { Name = "dup", NumPartitions = 1, ReplicationFactor = 1 }]));
        Assert.Equal(ErrorCode.TopicAlreadyExists, exists.Results[0].Error.Code);

        var badConfig = await Assert.ThrowsAsync<CreateTopicsException>(() =>
            admin.CreateTopicsAsync([new TopicSpecification { Name = "cfg", NumPartitions = 1, ReplicationFactor = 1, Configs = new() { ["retention.ms"] = "soon" } }]));
        Assert.Equal(ErrorCode.InvalidConfig, badConfig.Results[0].Error.Code);
        var unknownConfig = await Assert.ThrowsAsync<CreateTopicsException>(() =>
            admin.CreateTopicsAsync([new TopicSpecification { Name = "cfg", NumPartitions = 1, ReplicationFactor = 1, Configs = new() { ["no.such.config"] = "1" } }]));
        Assert.Equal(ErrorCode.InvalidConfig, unknownConfig.Results[0].Error.Code);

        await admin.CreateTopicsAsync([new TopicSpecification { Name = "dry", NumPartitions = 2, ReplicationFactor = 1 }], new CreateTopicsOptions { ValidateOnly = true });
        var md = admin.GetMetadata(TimeSpan.FromSeconds(10));
        Assert.DoesNotContain(md.Topics, t => t.Topic == "dry");
    }

    [Fact]
    public async Task Topics_ids_and_configs_survive_a_restart_and_auto_creation_follows_the_setting()
    {
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, "kept", 4, new() { ["retention.bytes"] = "1048576" });
        // A producer asks for auto-creation in its Metadata request (librdkafka's producer does).
        using (var producer = Clients.Producer(broker.Bootstrap, Acks.Leader))
        {
            var r = await producer.ProduceAsync("auto-made", new Message<byte[]?, byte[]?> { Value = [1, 2, 3] });
            Assert.Equal(0, r.Offset.Value);
        }
        await broker.RestartAsync();
        using var admin = Clients.Admin(broker.Bootstrap);
        var md = admin.GetMetadata(TimeSpan.FromSeconds(10));
        Assert.Equal(4, md.Topics.Single(t => t.Topic == "kept").Partitions.Count);
        Assert.Single(md.Topics.Single(t => t.Topic == "auto-made").Partitions);
        var cfg = await admin.DescribeConfigsAsync([new ConfigResource { Type = ResourceType.Topic, Name = "kept" }]);
        Assert.Equal("1048576", cfg[0].Entries["retention.bytes"].Value);
    }

    [Fact]
    public async Task Auto_creation_can_be_switched_off()
    {
        await using var broker = TestBroker.Start(c => c with { AutoCreateTopics = false });
        using var producer = Clients.Producer(broker.Bootstrap, Acks.Leader, configure: c => c.MessageTimeoutMs = 3000);
        var e = await Assert.ThrowsAsync<ProduceException<byte[]?, byte[]?>>(() =>
            producer.ProduceAsync("never-made", new Message<byte[]?, byte[]?> { Value = [1] }));
        Assert.True(e.Error.Code is ErrorCode.Local_UnknownTopic or ErrorCode.UnknownTopicOrPart or ErrorCode.Local_MsgTimedOut, e.Error.ToString());
        Assert.Null(broker.Broker.Controller.Find("never-made"));
    }
}
