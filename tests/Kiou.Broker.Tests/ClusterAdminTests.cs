using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Kiou.Protocol.Messages;
using static Kiou.Broker.Tests.RawWire;

namespace Kiou.Broker.Tests;

/// <summary>
/// Authorized operations (every one of the resource type, as Kafka answers without an authorizer) from Confluent.Kafka's
/// admin client; ElectLeaders from it too; DescribeLogDirs and DescribeTopicPartitions, which it does not send, on the
/// wire with KIOU's codecs.
/// </summary>
public sealed class ClusterAdminTests
{
    static readonly AclOperation[] TopicOps =
        [AclOperation.Read, AclOperation.Write, AclOperation.Create, AclOperation.Delete, AclOperation.Alter, AclOperation.Describe, AclOperation.DescribeConfigs, AclOperation.AlterConfigs];

    static readonly AclOperation[] ClusterOps =
        [AclOperation.Create, AclOperation.Alter, AclOperation.Describe, AclOperation.ClusterAction, AclOperation.DescribeConfigs, AclOperation.AlterConfigs, AclOperation.IdempotentWrite];

    static readonly AclOperation[] GroupOps = [AclOperation.Read, AclOperation.Delete, AclOperation.Describe];

    [Fact]
    public async Task Cluster_topic_and_group_authorized_operations_are_every_operation_of_the_resource_type()
    {
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, "ops", 2);
        using (var consumer = Clients.Consumer(broker.Bootstrap, group: "ops-group"))
        {
            consumer.Commit([new TopicPartitionOffset("ops", 0, 0)]);
        }
        using var admin = Clients.Admin(broker.Bootstrap);

        var cluster = await admin.DescribeClusterAsync(new DescribeClusterOptions { IncludeAuthorizedOperations = true });
        Assert.Equal(ClusterOps.Order(), cluster.AuthorizedOperations.Order());

        var topics = await admin.DescribeTopicsAsync(TopicCollection.OfTopicNames(["ops"]), new DescribeTopicsOptions { IncludeAuthorizedOperations = true });
        var topic = Assert.Single(topics.TopicDescriptions);
        Assert.Equal(TopicOps.Order(), topic.AuthorizedOperations.Order());

        var groups = await admin.DescribeConsumerGroupsAsync(["ops-group"], new DescribeConsumerGroupsOptions { IncludeAuthorizedOperations = true });
        Assert.Equal(GroupOps.Order(), Assert.Single(groups.ConsumerGroupDescriptions).AuthorizedOperations.Order());

        // Not asked for: none reported.
        var plain = await admin.DescribeClusterAsync();
        Assert.True(plain.AuthorizedOperations is null || plain.AuthorizedOperations.Count == 0);
    }

    [Fact]
    public async Task ElectLeaders_answers_election_not_needed_and_unknown_partitions()
    {
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, "elect", 2);
        using var admin = Clients.Admin(broker.Bootstrap);
        List<TopicPartitionError> results;
        try
        {
            results = (await admin.ElectLeadersAsync(ElectionType.Preferred, [new TopicPartition("elect", 0), new TopicPartition("elect", 1), new TopicPartition("elect", 7), new TopicPartition("nope", 0)])).TopicPartitions;
        }
        catch (ElectLeadersException e)
        {
            results = e.Results.TopicPartitions;
        }
        Assert.Equal(4, results.Count);
        Assert.Equal(ErrorCode.ElectionNotNeeded, results.Single(r => r.Topic == "elect" && r.Partition == 0).Error.Code);
        Assert.Equal(ErrorCode.ElectionNotNeeded, results.Single(r => r.Topic == "elect" && r.Partition == 1).Error.Code);
        Assert.Equal(ErrorCode.UnknownTopicOrPart, results.Single(r => r.Topic == "elect" && r.Partition == 7).Error.Code);
        Assert.Equal(ErrorCode.UnknownTopicOrPart, results.Single(r => r.Topic == "nope").Error.Code);
    }

    [Fact]
    public async Task DescribeLogDirs_reports_the_data_dir_with_each_partitions_size()
    {
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, "dirs", 2);
        using (var producer = Clients.Producer(broker.Bootstrap, Acks.All))
        {
            for (int i = 0; i < 10; i++)
                await producer.ProduceAsync(new TopicPartition("dirs", 1), new Message<byte[]?, byte[]?> { Value = new byte[1000] });
        }
        using var s = await ConnectAsync(broker.Broker.BrokerEndPoint);
        var all = await SendAsync<DescribeLogDirsResponse>(s, new DescribeLogDirsRequest { Topics = null }, DescribeLogDirsRequest.ApiKey, 4, 1);
        Assert.Equal(0, all.ErrorCode);
        var dir = Assert.Single(all.Results);
        Assert.Equal(Path.GetFullPath(broker.DataDir), dir.LogDir);
        Assert.True(dir.TotalBytes > 0 && dir.UsableBytes > 0 && dir.UsableBytes <= dir.TotalBytes, $"total {dir.TotalBytes} usable {dir.UsableBytes}");
        var topic = Assert.Single(dir.Topics, t => t.Name == "dirs");
        Assert.Equal([0, 1], topic.Partitions.Select(p => p.PartitionIndex).Order());
        Assert.Equal(0, topic.Partitions.Single(p => p.PartitionIndex == 0).PartitionSize);
        long size1 = topic.Partitions.Single(p => p.PartitionIndex == 1).PartitionSize;
        Assert.InRange(size1, 10_000, 20_000);
        Assert.All(topic.Partitions, p => Assert.Equal(0, p.OffsetLag));

        var some = await SendAsync<DescribeLogDirsResponse>(s, new DescribeLogDirsRequest
        {
            Topics = [new() { Topic = "dirs", Partitions = [1, 5] }, new() { Topic = "missing", Partitions = [0] }],
        }, DescribeLogDirsRequest.ApiKey, 1, 2);
        var only = Assert.Single(Assert.Single(some.Results).Topics);
        Assert.Equal("dirs", only.Name);
        Assert.Equal(1, Assert.Single(only.Partitions).PartitionIndex);
    }

    [Fact]
    public async Task DescribeTopicPartitions_pages_with_a_cursor_and_names_unknown_topics()
    {
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, "dtp-a", 3);
        await Clients.CreateTopicAsync(broker.Bootstrap, "dtp-b", 2);
        using var s = await ConnectAsync(broker.Broker.BrokerEndPoint);
        var request = new DescribeTopicPartitionsRequest
        {
            Topics = [new() { Name = "dtp-b" }, new() { Name = "dtp-a" }, new() { Name = "dtp-zzz" }],
            ResponsePartitionLimit = 2,
        };
        var seen = new List<(string, int)>();
        var page = await SendAsync<DescribeTopicPartitionsResponse>(s, request, DescribeTopicPartitionsRequest.ApiKey, 0, 1);
        var a = Assert.Single(page.Topics);
        Assert.Equal("dtp-a", a.Name);
        Assert.NotEqual(Guid.Empty, a.TopicId);
        Assert.Equal([0, 1], a.Partitions.Select(p => p.PartitionIndex));
        Assert.Equal(("dtp-a", 2), (page.NextCursor!.TopicName, page.NextCursor.PartitionIndex));
        Assert.All(a.Partitions, p => Assert.Equal(broker.Broker.Config.NodeId, p.LeaderId));
        int correlation = 2;
        while (page.NextCursor is { } next)
        {
            seen.AddRange(page.Topics.Where(t => t.ErrorCode == 0).SelectMany(t => t.Partitions.Select(p => (t.Name!, p.PartitionIndex))));
            request.Cursor = new DescribeTopicPartitionsRequest.CursorData { TopicName = next.TopicName, PartitionIndex = next.PartitionIndex };
            page = await SendAsync<DescribeTopicPartitionsResponse>(s, request, DescribeTopicPartitionsRequest.ApiKey, 0, correlation++);
            Assert.True(page.Topics.Sum(t => t.Partitions.Count) <= 2);
        }
        seen.AddRange(page.Topics.Where(t => t.ErrorCode == 0).SelectMany(t => t.Partitions.Select(p => (t.Name!, p.PartitionIndex))));
        Assert.Equal([("dtp-a", 0), ("dtp-a", 1), ("dtp-a", 2), ("dtp-b", 0), ("dtp-b", 1)], seen);
        var unknown = Assert.Single(page.Topics, t => t.Name == "dtp-zzz");
        Assert.Equal(3, unknown.ErrorCode);

        // A cursor naming a topic outside the list is INVALID_REQUEST, as Kafka answers.
        request.Cursor = new DescribeTopicPartitionsRequest.CursorData { TopicName = "dtp-c", PartitionIndex = 0 };
        var bad = await SendAsync<DescribeTopicPartitionsResponse>(s, request, DescribeTopicPartitionsRequest.ApiKey, 0, correlation++);
        Assert.All(bad.Topics, t => Assert.Equal(42, t.ErrorCode));

        var all = await SendAsync<DescribeTopicPartitionsResponse>(s, new DescribeTopicPartitionsRequest(), DescribeTopicPartitionsRequest.ApiKey, 0, correlation++);
        Assert.Null(all.NextCursor);
        Assert.Contains(all.Topics, t => t.Name == "dtp-a" && t.Partitions.Count == 3);
        Assert.Contains(all.Topics, t => t.Name == "dtp-b" && t.Partitions.Count == 2);
    }
}
