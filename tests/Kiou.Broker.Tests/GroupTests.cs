using System.Diagnostics;
using Confluent.Kafka;
using Confluent.Kafka.Admin;

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

    int Generation(TestBroker broker, string group)
    {
        var g = broker.Broker.Groups.Find(group)!;
        lock (g)
            return g.GenerationId;
    }

    [Fact]
    public async Task Cooperative_sticky_fourth_consumer_rebalances_incrementally()
    {
        await using var broker = GroupSupport.StartBroker();
        const string topic = "coop";
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 6);
        var config = () => GroupSupport.Config(broker.Bootstrap, "coop-group", PartitionAssignmentStrategy.CooperativeSticky);
        var consumers = Enumerable.Range(0, 3).Select(i => new RunningConsumer($"c{i}", config(), topic)).ToList();
        try
        {
            await AssertBalanced([.. consumers], 6, 2);
            var before = consumers.ToDictionary(c => c.Name, c => c.Assignment);
            var revokedBefore = consumers.ToDictionary(c => c.Name, c => c.Revoked.Count);
            int generationBefore = Generation(broker, "coop-group");
            var fourth = new RunningConsumer("c3", config(), topic);
            consumers.Add(fourth);
            await GroupSupport.WaitUntil(() => fourth.Assignment.Length == 1 && consumers.Sum(c => c.Assignment.Length) == 6
                && consumers.SelectMany(c => c.Assignment).Distinct().Count() == 6, "the fourth consumer gets a partition");
            // Incremental: each old member only lost what moved; what it kept was never revoked. Cooperative
            // rebalancing takes two generations (revoke, then assign).
            var revoked = consumers.Take(3).SelectMany(c => c.Revoked.Skip(revokedBefore[c.Name])).Select(tp => tp.Partition.Value).ToList();
            Assert.Equal(fourth.Assignment, revoked.ToArray()); // exactly the partition that moved, nothing else
            foreach (var c in consumers.Take(3))
                Assert.Subset(before[c.Name].ToHashSet(), c.Assignment.ToHashSet());
            Assert.True(Generation(broker, "coop-group") >= generationBefore + 2, "a cooperative rebalance is two generations");
        }
        finally
        {
            foreach (var c in consumers)
                c.Dispose();
        }
    }

    static Process StartKcatMember(TestBroker broker, string group, string topic, List<string> lines)
    {
        var psi = new ProcessStartInfo("kcat",
            $"-b {broker.Bootstrap} -G {group} -u -q -f %k\\n -X session.timeout.ms=3000 -X heartbeat.interval.ms=300 " +
            $"-X partition.assignment.strategy=range -X enable.auto.commit=false -X auto.offset.reset=earliest {topic}")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (lines)
                    lines.Add(e.Data);
            }
        };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    [Fact]
    public async Task Leaving_and_killed_members_hand_their_partitions_over_without_losing_records()
    {
        await using var broker = GroupSupport.StartBroker();
        const string topic = "handover";
        const string group = "handover-group";
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 6);
        ConsumerConfig Config()
        {
            var c = GroupSupport.Config(broker.Bootstrap, group);
            c.EnableAutoCommit = true;
            c.AutoCommitIntervalMs = 200;
            return c;
        }
        var consumers = Enumerable.Range(0, 3).Select(i => new RunningConsumer($"c{i}", Config(), topic)).ToArray();
        var kcatLines = new List<string>();
        using var kcat = StartKcatMember(broker, group, topic, kcatLines);
        const int total = 3000;
        using var producer = Clients.Producer(broker.Bootstrap, Acks.All);
        var producing = Task.Run(async () =>
        {
            for (int i = 0; i < total; i++)
            {
                producer.Produce(new TopicPartition(topic, i % 6), new Message<byte[]?, byte[]?> { Key = System.Text.Encoding.UTF8.GetBytes(i.ToString()) });
                if (i % 100 == 0)
                    await Task.Delay(100);
            }
            producer.Flush(TimeSpan.FromSeconds(30));
        });
        try
        {
            // Four members: the kcat process holds what the three consumers do not.
            await GroupSupport.WaitUntil(() => Describe(broker, group) is { State: ConsumerGroupState.Stable, Members.Count: 4 }
                && consumers.Sum(c => c.Assignment.Length) is > 0 and < 6, "four members share the partitions");
            kcat.Kill(); // SIGKILL: no LeaveGroup, no goodbye; only the session timeout tells the broker
            await GroupSupport.WaitUntil(() => consumers.Sum(c => c.Assignment.Length) == 6
                && Describe(broker, group) is { State: ConsumerGroupState.Stable, Members.Count: 3 }, "the killed member's partitions move to the others");
            Assert.Contains("session timeout", broker.LogText.ToString());
            consumers[2].Close(); // LeaveGroup
            await GroupSupport.WaitUntil(() => consumers[0].Assignment.Length + consumers[1].Assignment.Length == 6
                && Describe(broker, group) is { State: ConsumerGroupState.Stable, Members.Count: 2 }, "the leaving member's partitions move to the others");
            Assert.Contains("left the group", broker.LogText.ToString());
            await producing;
            var seen = new HashSet<string>();
            await GroupSupport.WaitUntil(() =>
            {
                foreach (var c in consumers)
                {
                    foreach (var r in c.Records)
                        seen.Add(r.Message.Key!);
                }
                return seen.Count == total;
            }, $"every record is consumed at least once");
            Assert.Equal(Enumerable.Range(0, total).Select(i => i.ToString()).ToHashSet(), seen);
        }
        finally
        {
            if (!kcat.HasExited)
                kcat.Kill();
            foreach (var c in consumers)
                c.Dispose();
        }
    }

    static ConsumerGroupDescription? Describe(TestBroker broker, string group)
    {
        try
        {
            using var admin = Clients.Admin(broker.Bootstrap);
            return admin.DescribeConsumerGroupsAsync([group]).GetAwaiter().GetResult().ConsumerGroupDescriptions.Single();
        }
        catch (KafkaException)
        {
            return null;
        }
    }

    [Fact]
    public async Task Committed_offsets_survive_a_restart_and_a_new_consumer_resumes_exactly_there()
    {
        await using var broker = GroupSupport.StartBroker();
        const string topic = "resume";
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 3);
        using (var producer = Clients.Producer(broker.Bootstrap, Acks.All))
        {
            for (int i = 0; i < 300; i++)
                producer.Produce(new TopicPartition(topic, i % 3), new Message<byte[]?, byte[]?> { Value = [(byte)i] });
            producer.Flush(TimeSpan.FromSeconds(30));
        }
        var committed = new Dictionary<int, long> { [0] = 17, [1] = 42, [2] = 99 };
        using (var consumer = new RunningConsumer("first", GroupSupport.Config(broker.Bootstrap, "resume-group"), topic))
        {
            await GroupSupport.WaitUntil(() => consumer.Assignment.Length == 3, "the consumer owns every partition");
            consumer.CommitPositions(committed.Select(kv => new TopicPartitionOffset(topic, kv.Key, kv.Value)));
            consumer.Close();
        }
        await broker.RestartAsync();
        var config = GroupSupport.Config(broker.Bootstrap, "resume-group");
        config.AutoOffsetReset = AutoOffsetReset.Error; // no committed offset would fail loudly instead of silently resetting
        using var resumed = new RunningConsumer("resumed", config, topic);
        await GroupSupport.WaitUntil(() => resumed.Records.Select(r => r.Partition.Value).Distinct().Count() == 3, "records from every partition");
        foreach (var (partition, offset) in committed)
            Assert.Equal(offset, resumed.Records.First(r => r.Partition.Value == partition).Offset.Value);
        Assert.Null(resumed.Failure);
    }

    [Fact]
    public async Task Static_member_restarted_within_its_session_timeout_keeps_its_partitions_without_a_rebalance()
    {
        await using var broker = GroupSupport.StartBroker();
        const string topic = "static";
        const string group = "static-group";
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 4);
        ConsumerConfig Config(string instance)
        {
            var c = GroupSupport.Config(broker.Bootstrap, group, sessionTimeoutMs: 15000);
            c.GroupInstanceId = instance;
            return c;
        }
        using var a = new RunningConsumer("a", Config("instance-a"), topic);
        var b = new RunningConsumer("b", Config("instance-b"), topic);
        try
        {
            await AssertBalanced([a, b], 4, 2);
            int generation = Generation(broker, group);
            int aChanges = a.AssignmentChanges;
            var bPartitions = b.Assignment;
            b.Dispose(); // a static member sends no LeaveGroup when it closes
            b = new RunningConsumer("b again", Config("instance-b"), topic);
            await GroupSupport.WaitUntil(() => b.Assignment.Length == 2, "the restarted static member gets its partitions");
            Assert.Equal(bPartitions, b.Assignment);
            Assert.Equal(generation, Generation(broker, group));
            Assert.Equal(aChanges, a.AssignmentChanges);
            Assert.Equal(2, a.Assignment.Length);
            Assert.Contains("static member 'instance-b' rejoined", broker.LogText.ToString());
        }
        finally
        {
            b.Dispose();
        }
    }

    static async Task<Confluent.Kafka.Admin.ConsumerGroupDescription> DescribeAsync(TestBroker broker, string group)
    {
        using var admin = Clients.Admin(broker.Bootstrap);
        var result = await admin.DescribeConsumerGroupsAsync([group]);
        return result.ConsumerGroupDescriptions.Single();
    }
}
