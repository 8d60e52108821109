using Confluent.Kafka;
using Confluent.Kafka.Admin;

namespace Kiou.Broker.Tests;

/// <summary>
/// Confluent.Kafka (librdkafka) clients configured for tests: quick failure, no auto commit; producers with acks=all
/// are idempotent, as Kafka's clients are by default (tests of the plain path turn it off in <c>configure</c>).
/// </summary>
public static class Clients
{
    public static IAdminClient Admin(string bootstrap) =>
        new AdminClientBuilder(new AdminClientConfig { BootstrapServers = bootstrap, SocketTimeoutMs = 10000 }).Build();

    public static IProducer<byte[]?, byte[]?> Producer(string bootstrap, Acks acks, CompressionType compression = CompressionType.None,
        Action<ProducerConfig>? configure = null)
    {
        var config = new ProducerConfig
        {
            BootstrapServers = bootstrap,
            Acks = acks,
            CompressionType = compression,
            LingerMs = 5,
            MessageTimeoutMs = 30000,
            EnableIdempotence = acks == Acks.All, // librdkafka refuses idempotence with other acks
        };
        configure?.Invoke(config);
        return new ProducerBuilder<byte[]?, byte[]?>(config).Build();
    }

    public static IConsumer<byte[]?, byte[]?> Consumer(string bootstrap, string group = "kiou-tests", IsolationLevel isolation = IsolationLevel.ReadCommitted) =>
        new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
        {
            BootstrapServers = bootstrap,
            GroupId = group,
            IsolationLevel = isolation, // librdkafka's default, spelled out
            EnableAutoCommit = false,
            EnablePartitionEof = true,
            AutoOffsetReset = AutoOffsetReset.Error,
            CheckCrcs = true,
        }).Build();

    public static async Task CreateTopicAsync(string bootstrap, string topic, int partitions, Dictionary<string, string>? configs = null)
    {
        using var admin = Admin(bootstrap);
        await admin.CreateTopicsAsync([new TopicSpecification { Name = topic, NumPartitions = partitions, ReplicationFactor = 1, Configs = configs }]);
    }

    /// <summary>Reads every record of the partitions from the beginning to the end (EOF on each), in order.</summary>
    public static List<ConsumeResult<byte[]?, byte[]?>> ReadAll(string bootstrap, string topic, int partitions, TimeSpan? timeout = null,
        IsolationLevel isolation = IsolationLevel.ReadCommitted)
    {
        using var consumer = Consumer(bootstrap, isolation: isolation);
        consumer.Assign(Enumerable.Range(0, partitions).Select(p => new TopicPartitionOffset(topic, p, Offset.Beginning)));
        var results = new List<ConsumeResult<byte[]?, byte[]?>>();
        var eof = new HashSet<int>();
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(60));
        while (eof.Count < partitions)
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"consumed {results.Count} records; partitions at EOF: {string.Join(",", eof)}");
            var r = consumer.Consume(TimeSpan.FromMilliseconds(500));
            if (r is null)
                continue;
            if (r.IsPartitionEOF)
            {
                eof.Add(r.Partition.Value);
                continue;
            }
            eof.Remove(r.Partition.Value);
            results.Add(r);
        }
        consumer.Close();
        return results;
    }
}
