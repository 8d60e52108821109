using System.Text.Json;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Kiou.Broker.Groups;

namespace Kiou.Broker.Tests;

/// <summary>
/// __consumer_offsets as Kafka's tools see it, with real clients: kcat reads it and its records decode with Kafka's
/// schemas by an independent decoder (tests/compat/consumer_offsets_decode.py); Metadata lists it as internal and a
/// consumer fetches it; an old groups.log is migrated into it once, and a real client finds its committed offsets.
/// </summary>
public sealed class ConsumerOffsetsTopicTests
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    /// <summary>Java's String.hashCode, written here again so the mapping is checked against Kafka's, not the broker's.</summary>
    static int KafkaPartitionFor(string group, int partitions)
    {
        int h = 0;
        foreach (char c in group)
            h = unchecked((31 * h) + c);
        return (h == int.MinValue ? 0 : Math.Abs(h)) % partitions;
    }

    static List<JsonElement> Decode(string bootstrap)
    {
        var run = ChildProcess.Run("/usr/bin/python3", [Path.Combine(CompatTests.CompatDir, "consumer_offsets_decode.py"), bootstrap], timeoutMs: 90_000);
        Assert.True(run.ExitCode == 0, $"exit code {run.ExitCode}\nstdout:\n{run.Stdout}\nstderr:\n{run.Stderr}");
        return run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
    }

    static string Str(JsonElement e, string a, string b) => e.GetProperty(a).GetProperty(b).GetString()!;

    static long Num(JsonElement e, string a, string b) => e.GetProperty(a).GetProperty(b).GetInt64();

    [Fact]
    public async Task Kcat_reads_committed_offsets_and_group_metadata_that_decode_with_Kafkas_schemas()
    {
        await using var broker = GroupSupport.StartBroker();
        await broker.Broker.Groups.Loading;
        await Clients.CreateTopicAsync(broker.Bootstrap, "lagged", 2);
        using (var consumer = new ConsumerBuilder<byte[]?, byte[]?>(GroupSupport.Config(broker.Bootstrap, "lag-group")).Build())
        {
            consumer.Subscribe("lagged");
            var deadline = DateTime.UtcNow + Timeout;
            while (consumer.Assignment.Count < 2)
            {
                Assert.True(DateTime.UtcNow < deadline, "the consumer got no assignment");
                consumer.Consume(TimeSpan.FromMilliseconds(100));
            }
            consumer.Commit([new TopicPartitionOffset("lagged", 0, 5), new TopicPartitionOffset("lagged", 1, 9)]);
            consumer.Close();
        }
        // kafka-python commits with metadata, which Confluent.Kafka's API cannot set.
        var python = ChildProcess.Run("/usr/bin/python3", ["-c",
            "import sys\nfrom kafka import KafkaConsumer, TopicPartition\nfrom kafka.structs import OffsetAndMetadata\n" +
            "c = KafkaConsumer(bootstrap_servers=sys.argv[1], group_id='meta-group', enable_auto_commit=False)\n" +
            "c.commit({TopicPartition('lagged', 1): OffsetAndMetadata(11, 'meta-x')})\nc.close()\n", broker.Bootstrap], timeoutMs: 60_000);
        Assert.True(python.ExitCode == 0, python.Stderr);

        var records = Decode(broker.Bootstrap);
        int partitions = broker.Broker.Groups.Store.Partitions;
        var commits = records.Where(r => r.GetProperty("key_type").GetString() == "OffsetCommitKey").ToList();
        foreach (var (group, partition, offset, metadata) in new[] { ("lag-group", 0, 5L, ""), ("lag-group", 1, 9L, ""), ("meta-group", 1, 11L, "meta-x") })
        {
            var r = commits.Last(r => Str(r, "key", "group") == group && Str(r, "key", "topic") == "lagged" && Num(r, "key", "partition") == partition);
            Assert.Equal(1, r.GetProperty("key_version").GetInt32());
            Assert.Equal(3, r.GetProperty("value_version").GetInt32());
            Assert.Equal(offset, Num(r, "value", "offset"));
            Assert.Equal(metadata, Str(r, "value", "metadata"));
            Assert.True(Num(r, "value", "commitTimestamp") > 1_600_000_000_000);
            Assert.Equal(KafkaPartitionFor(group, partitions), r.GetProperty("partition").GetInt32());
        }
        var metadataRecords = records.Where(r => r.GetProperty("key_type").GetString() == "GroupMetadataKey" && Str(r, "key", "group") == "lag-group").ToList();
        Assert.NotEmpty(metadataRecords);
        Assert.All(metadataRecords, r => Assert.Equal(2, r.GetProperty("key_version").GetInt32()));
        Assert.All(metadataRecords, r => Assert.Equal(3, r.GetProperty("value_version").GetInt32()));
        var stable = metadataRecords.First(r => r.GetProperty("value").GetProperty("members").GetArrayLength() == 1);
        Assert.Equal("consumer", Str(stable, "value", "protocolType"));
        Assert.Equal("range", Str(stable, "value", "protocol"));
        Assert.True(Num(stable, "value", "generation") >= 1);
        var member = stable.GetProperty("value").GetProperty("members")[0];
        Assert.Equal(Str(stable, "value", "leader"), member.GetProperty("memberId").GetString());
        Assert.Equal(6000, member.GetProperty("sessionTimeout").GetInt32());
        Assert.NotEqual("", member.GetProperty("assignment").GetString());
        // After the member left: the group is Empty, generation kept, no members.
        var last = metadataRecords[^1];
        Assert.Equal(0, last.GetProperty("value").GetProperty("members").GetArrayLength());
        Assert.Equal(KafkaPartitionFor("lag-group", partitions), last.GetProperty("partition").GetInt32());
    }

    [Fact]
    public async Task Metadata_lists_it_as_internal_and_a_consumer_fetches_it()
    {
        await using var broker = GroupSupport.StartBroker();
        await broker.Broker.Groups.Loading;
        await Clients.CreateTopicAsync(broker.Bootstrap, "t", 1);
        using var admin = Clients.Admin(broker.Bootstrap);
        await admin.AlterConsumerGroupOffsetsAsync([new ConsumerGroupTopicPartitionOffsets("fetched-group", [new TopicPartitionOffset("t", 0, 1234)])]);

        var described = await admin.DescribeTopicsAsync(TopicCollection.OfTopicNames([OffsetsTopic.TopicName]));
        var topic = Assert.Single(described.TopicDescriptions);
        Assert.True(topic.IsInternal);
        Assert.Equal(GroupSettings.DefaultOffsetsTopicPartitions, topic.Partitions.Count);
        Assert.Contains(admin.GetMetadata(Timeout).Topics, t => t.Topic == OffsetsTopic.TopicName);
        Assert.False(File.Exists(Path.Combine(broker.DataDir, "__consumer_offsets", "groups.log")));

        int partition = KafkaPartitionFor("fetched-group", topic.Partitions.Count);
        var records = Clients.ReadAll(broker.Bootstrap, OffsetsTopic.TopicName, topic.Partitions.Count);
        var record = Assert.Single(records, r => r.Partition.Value == partition);
        Assert.Equal(OffsetsTopic.OffsetKey("fetched-group", "t", 0), record.Message.Key);
        Assert.Equal(1234, System.Buffers.Binary.BinaryPrimitives.ReadInt64BigEndian(record.Message.Value.AsSpan(2)));

        // Clients read it but cannot write it, as Kafka refuses appends to internal topics (INVALID_TOPIC_EXCEPTION).
        using var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = broker.Bootstrap, MessageTimeoutMs = 10000 }).Build();
        var e = await Assert.ThrowsAsync<ProduceException<byte[], byte[]>>(() => producer.ProduceAsync(new TopicPartition(OffsetsTopic.TopicName, partition),
            new Message<byte[], byte[]> { Key = OffsetsTopic.OffsetKey("fetched-group", "t", 0), Value = record.Message.Value! }));
        Assert.Equal(ErrorCode.TopicException, e.Error.Code);
        Assert.Equal(records.Count, Clients.ReadAll(broker.Bootstrap, OffsetsTopic.TopicName, topic.Partitions.Count).Count);
    }

    [Fact]
    public async Task The_partition_count_setting_is_used_when_the_topic_is_created_and_an_existing_topic_keeps_its_count()
    {
        Assert.Equal(GroupSettings.DefaultOffsetsTopicPartitions, Hosting.BrokerConfig.FromEnvironment(_ => null).Groups.OffsetsTopicPartitions);
        Assert.Equal(7, Hosting.BrokerConfig.FromEnvironment(k => k == "KIOU_OFFSETS_TOPIC_NUM_PARTITIONS" ? "7" : null).Groups.OffsetsTopicPartitions);
        Assert.Throws<Hosting.ConfigException>(() => Hosting.BrokerConfig.FromEnvironment(k => k == "KIOU_OFFSETS_TOPIC_NUM_PARTITIONS" ? "0" : null));

        int count = 7;
        await using var broker = GroupSupport.StartBroker(more: c => c with { Groups = c.Groups with { OffsetsTopicPartitions = count } });
        await broker.Broker.Groups.Loading;
        await Clients.CreateTopicAsync(broker.Bootstrap, "t", 1);
        Assert.Null(broker.Broker.Controller.Find(OffsetsTopic.TopicName)); // created on first use
        using (var admin = Clients.Admin(broker.Bootstrap))
            await admin.AlterConsumerGroupOffsetsAsync([new ConsumerGroupTopicPartitionOffsets("counted", [new TopicPartitionOffset("t", 0, 3)])]);
        Assert.Equal(7, broker.Broker.Controller.Find(OffsetsTopic.TopicName)!.Partitions);
        var records = Clients.ReadAll(broker.Bootstrap, OffsetsTopic.TopicName, 7);
        Assert.Equal(KafkaPartitionFor("counted", 7), Assert.Single(records).Partition.Value);

        count = 2;
        await broker.RestartAsync();
        await broker.Broker.Groups.Loading;
        Assert.Equal(7, broker.Broker.Controller.Find(OffsetsTopic.TopicName)!.Partitions);
        Assert.Equal(7, broker.Broker.Groups.Store.Partitions);
        using var consumer = new ConsumerBuilder<byte[]?, byte[]?>(GroupSupport.Config(broker.Bootstrap, "counted")).Build();
        Assert.Equal(3, consumer.Committed([new TopicPartition("t", 0)], Timeout).Single().Offset.Value);
    }

    [Fact]
    public async Task An_old_groups_log_is_migrated_once_and_a_client_reads_its_committed_offsets()
    {
        string dir = Path.Combine(Path.GetTempPath(), "kiou-offsets-migration-" + Guid.NewGuid().ToString("N"));
        using (var old = new OldGroupLogWriter(dir))
        {
            old.GroupMetadata(new GroupSnapshot("old-group", "consumer", 4, null, null, 1000, []));
            old.OffsetCommit("old-group", "t", 0, new CommittedOffset(42, -1, "", 1000, -1));
            old.OffsetCommit("old-group", "t", 1, new CommittedOffset(7, -1, "", 1000, -1));
            old.OffsetCommit("old-group", "t", 1, new CommittedOffset(8, -1, "", 1001, -1));
        }
        string path = Path.Combine(dir, "__consumer_offsets", "groups.log");
        await using var broker = GroupSupport.StartBroker(dir);
        await broker.Broker.Groups.Loading;
        await Clients.CreateTopicAsync(broker.Bootstrap, "t", 2);

        void AssertCommitted()
        {
            using var consumer = new ConsumerBuilder<byte[]?, byte[]?>(GroupSupport.Config(broker.Bootstrap, "old-group")).Build();
            var committed = consumer.Committed([new TopicPartition("t", 0), new TopicPartition("t", 1)], Timeout);
            Assert.Equal([42L, 8L], committed.Select(c => c.Offset.Value));
        }

        AssertCommitted();
        using (var admin = Clients.Admin(broker.Bootstrap))
        {
            var group = (await admin.DescribeConsumerGroupsAsync(["old-group"])).ConsumerGroupDescriptions.Single();
            Assert.Equal(ConsumerGroupState.Empty, group.State);
        }
        Assert.False(File.Exists(path));
        Assert.True(File.Exists(path + ".migrated"));
        Assert.Contains("migrated 1 groups, 2 committed offsets and 0 pending transactional offsets from the old offsets log", broker.LogText.ToString());

        await broker.RestartAsync();
        await broker.Broker.Groups.Loading;
        AssertCommitted();
        Assert.Single(broker.LogText.ToString().Split('\n'), l => l.Contains("from the old offsets log", StringComparison.Ordinal));
        Assert.True(File.Exists(path + ".migrated"));
    }
}
