using Confluent.Kafka;
using Confluent.Kafka.Admin;

namespace Kiou.Broker.Tests;

/// <summary>The group admin APIs end to end through Confluent.Kafka's AdminClient (what bin/consumer-groups.sh uses).</summary>
public sealed class GroupAdminTests
{
    [Fact]
    public async Task Describe_list_alter_and_delete_offsets_and_groups_through_the_admin_client()
    {
        await using var broker = GroupSupport.StartBroker();
        await broker.Broker.Groups.Loading;
        const string topic = "admin-groups";
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 2);
        await Clients.CreateTopicAsync(broker.Bootstrap, "other", 1);
        using var admin = Clients.Admin(broker.Bootstrap);
        var timeout = TimeSpan.FromSeconds(20);

        // An offsets-only group: AlterConsumerGroupOffsets commits with generation -1 and no member id.
        var altered = await admin.AlterConsumerGroupOffsetsAsync([
            new ConsumerGroupTopicPartitionOffsets("offsets-only", [new TopicPartitionOffset(topic, 0, 5), new TopicPartitionOffset(topic, 1, 7), new TopicPartitionOffset("other", 0, 3)]),
        ]);
        Assert.All(altered.Single().Partitions, p => Assert.Equal(ErrorCode.NoError, p.Error.Code));
        var listed = await admin.ListConsumerGroupOffsetsAsync([new ConsumerGroupTopicPartitions("offsets-only", null)]);
        Assert.Equal(new[] { (topic, 0, 5L), (topic, 1, 7L), ("other", 0, 3L) },
            listed.Single().Partitions.Select(p => (p.Topic, p.Partition.Value, p.Offset.Value)).OrderBy(x => x.Topic).ThenBy(x => x.Item2));

        // An active group.
        using var consumer = new RunningConsumer("active", GroupSupport.Config(broker.Bootstrap, "active-group"), topic);
        await GroupSupport.WaitUntil(() => consumer.Assignment.Length == 2, "the consumer owns both partitions");

        var described = await admin.DescribeConsumerGroupsAsync(["active-group", "offsets-only", "never-heard-of"]);
        var active = described.ConsumerGroupDescriptions.Single(d => d.GroupId == "active-group");
        Assert.Equal(ConsumerGroupState.Stable, active.State);
        Assert.Equal("range", active.PartitionAssignor);
        var member = Assert.Single(active.Members);
        Assert.Equal(consumer.MemberId, member.ConsumerId);
        Assert.Equal(new[] { 0, 1 }, member.Assignment.TopicPartitions.Select(tp => tp.Partition.Value).Order());
        Assert.StartsWith("/127.0.0.1", member.Host);
        Assert.Equal(ConsumerGroupState.Empty, described.ConsumerGroupDescriptions.Single(d => d.GroupId == "offsets-only").State);
        Assert.Equal(ConsumerGroupState.Dead, described.ConsumerGroupDescriptions.Single(d => d.GroupId == "never-heard-of").State);

        var all = await admin.ListConsumerGroupsAsync(new ListConsumerGroupsOptions { RequestTimeout = timeout });
        Assert.Contains(all.Valid, g => g.GroupId == "active-group" && g.State == ConsumerGroupState.Stable);
        Assert.Contains(all.Valid, g => g.GroupId == "offsets-only" && g.State == ConsumerGroupState.Empty);
        var stableOnly = await admin.ListConsumerGroupsAsync(new ListConsumerGroupsOptions { MatchStates = [ConsumerGroupState.Stable], RequestTimeout = timeout });
        Assert.Equal(new[] { "active-group" }, stableOnly.Valid.Select(g => g.GroupId));

        // Offsets of a topic the active group subscribes to cannot be deleted; of another topic they can.
        var subscribed = await Assert.ThrowsAsync<DeleteConsumerGroupOffsetsException>(() =>
            admin.DeleteConsumerGroupOffsetsAsync("active-group", [new TopicPartition(topic, 0)]));
        Assert.Equal(ErrorCode.GroupSubscribedToTopic, subscribed.Result.Partitions.Single().Error.Code);
        var deleted = await admin.DeleteConsumerGroupOffsetsAsync("offsets-only", [new TopicPartition("other", 0)]);
        Assert.Equal(new TopicPartition("other", 0), deleted.Partitions.Single());
        listed = await admin.ListConsumerGroupOffsetsAsync([new ConsumerGroupTopicPartitions("offsets-only", [new TopicPartition("other", 0), new TopicPartition(topic, 1)])]);
        Assert.Equal(Offset.Unset, listed.Single().Partitions.Single(p => p.Topic == "other").Offset);
        Assert.Equal(7, listed.Single().Partitions.Single(p => p.Topic == topic).Offset.Value);

        // A group with members cannot be deleted; an empty one can, offsets and all.
        var nonEmpty = await Assert.ThrowsAsync<DeleteGroupsException>(() => admin.DeleteGroupsAsync(["active-group"]));
        Assert.Equal(ErrorCode.NonEmptyGroup, nonEmpty.Results.Single().Error.Code);
        await admin.DeleteGroupsAsync(["offsets-only"]);
        var unknown = await Assert.ThrowsAsync<DeleteGroupsException>(() => admin.DeleteGroupsAsync(["offsets-only"]));
        Assert.Equal(ErrorCode.GroupIdNotFound, unknown.Results.Single().Error.Code);
        listed = await admin.ListConsumerGroupOffsetsAsync([new ConsumerGroupTopicPartitions("offsets-only", [new TopicPartition(topic, 0)])]);
        Assert.Equal(Offset.Unset, listed.Single().Partitions[0].Offset);

        // After the consumer leaves, its group is Empty and can go too; the deletion survives a restart.
        consumer.Close();
        await GroupSupport.WaitUntil(() => admin.DescribeConsumerGroupsAsync(["active-group"]).GetAwaiter().GetResult()
            .ConsumerGroupDescriptions.Single().State == ConsumerGroupState.Empty, "the group is empty after its member left");
        await admin.DeleteGroupsAsync(["active-group"]);
        await broker.RestartAsync();
        await broker.Broker.Groups.Loading;
        using var again = Clients.Admin(broker.Bootstrap);
        var after = await again.ListConsumerGroupsAsync(new ListConsumerGroupsOptions { RequestTimeout = timeout });
        Assert.DoesNotContain(after.Valid, g => g.GroupId is "active-group" or "offsets-only");
    }

    [Fact]
    public async Task The_offsets_topic_is_listed_as_internal_and_find_coordinator_names_this_broker()
    {
        await using var broker = GroupSupport.StartBroker();
        await broker.Broker.Groups.Loading;
        using var admin = Clients.Admin(broker.Bootstrap);
        await Clients.CreateTopicAsync(broker.Bootstrap, "t", 1);
        await admin.AlterConsumerGroupOffsetsAsync([new ConsumerGroupTopicPartitionOffsets("g", [new TopicPartitionOffset("t", 0, 1)])]);
        var metadata = admin.GetMetadata(TimeSpan.FromSeconds(10));
        Assert.Equal(["__consumer_offsets", "t"], metadata.Topics.Select(t => t.Topic).Order(StringComparer.Ordinal));
        Assert.False(File.Exists(Path.Combine(broker.DataDir, "__consumer_offsets", "groups.log")));
    }
}
