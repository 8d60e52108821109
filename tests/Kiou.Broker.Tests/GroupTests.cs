using Confluent.Kafka;

namespace Kiou.Broker.Tests;

/// <summary>Consumer groups with Confluent.Kafka (librdkafka) members: assignment, rebalances, handover.</summary>
public sealed class GroupTests
{
    static async Task AssertBalanced(RunningConsumer[] consumers, int partitions, int each)
    {
        await GroupSupport.WaitUntil(() =>
        {
            var all = consumers.SelectMany(c => c.Assignment).ToList();
            return consumers.All(c => c.Assignment.Length == each) && all.Distinct().Count() == partitions && all.Count == partitions;
        }, $"{consumers.Length} consumers hold {each} partitions each: " + string.Join(" | ", consumers.Select(c => string.Join(",", c.Assignment))));
    }

    [Theory]
    [InlineData(PartitionAssignmentStrategy.Range)]
    [InlineData(PartitionAssignmentStrategy.RoundRobin)]
    public async Task Three_consumers_on_six_partitions_get_two_each(PartitionAssignmentStrategy strategy)
    {
        await using var broker = GroupSupport.StartBroker();
        string topic = "six-" + strategy;
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 6);
        string group = "g-" + strategy;
        var consumers = Enumerable.Range(0, 3)
            .Select(i => new RunningConsumer($"c{i}", GroupSupport.Config(broker.Bootstrap, group, strategy), topic))
            .ToArray();
        try
        {
            await AssertBalanced(consumers, 6, 2);
            var description = await DescribeAsync(broker, group);
            Assert.Equal(ConsumerGroupState.Stable, description.State);
            Assert.Equal(strategy == PartitionAssignmentStrategy.Range ? "range" : "roundrobin", description.PartitionAssignor);
            Assert.Equal(3, description.Members.Count);
            Assert.All(description.Members, m => Assert.Equal(2, m.Assignment.TopicPartitions.Count));
        }
        finally
        {
            foreach (var c in consumers)
                c.Dispose();
        }
    }

    static async Task<Confluent.Kafka.Admin.ConsumerGroupDescription> DescribeAsync(TestBroker broker, string group)
    {
        using var admin = Clients.Admin(broker.Bootstrap);
        var result = await admin.DescribeConsumerGroupsAsync([group]);
        return result.ConsumerGroupDescriptions.Single();
    }
}
