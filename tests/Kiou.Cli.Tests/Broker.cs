using Confluent.Kafka;
using Kiou.Broker.Hosting;

namespace Kiou.Cli.Tests;

/// <summary>An in-process KIOU broker on free ports (broker and controller listeners) with its own data dir.</summary>
public sealed class TestBroker : IAsyncDisposable
{
    public KiouBroker Broker { get; }
    public string DataDir { get; }
    public StringWriter LogText { get; } = new();

    TestBroker(Func<BrokerConfig, BrokerConfig> configure)
    {
        DataDir = Path.Combine(Path.GetTempPath(), "kiou-cli-test-" + Guid.NewGuid().ToString("N"));
        var io = Environment.GetEnvironmentVariable("KIOU_IO") switch { "sync" => "sync", "uring" => "uring", _ => "auto" };
        var config = configure(new BrokerConfig { Port = 0, ControllerPort = 0, DataDir = DataDir, IoMode = io });
        Broker = KiouBroker.Start(config, new Log(TextWriter.Synchronized(LogText), Log.Level.Info));
    }

    public static TestBroker Start(Func<BrokerConfig, BrokerConfig>? configure = null) => new(configure ?? (c => c));

    public string Bootstrap => Broker.BootstrapServers;
    public string ControllerBootstrap => $"{Broker.ControllerEndPoint.Address}:{Broker.ControllerEndPoint.Port}";
    public int ControllerPort => Broker.ControllerEndPoint.Port;

    public async ValueTask DisposeAsync()
    {
        await Broker.DisposeAsync();
        try
        {
            Directory.Delete(DataDir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>Confluent.Kafka clients used to check what the tools did, independently of the tools.</summary>
public static class Check
{
    public static IAdminClient Admin(string bootstrap) =>
        new AdminClientBuilder(new AdminClientConfig { BootstrapServers = bootstrap, SocketTimeoutMs = 10000 }).Build();

    public static void Produce(string bootstrap, string topic, IEnumerable<(string? Key, string Value)> records, int partition = 0)
    {
        using var p = new ProducerBuilder<string?, string>(new ProducerConfig { BootstrapServers = bootstrap, EnableIdempotence = true, LingerMs = 5 }).Build();
        foreach (var (k, v) in records)
            p.Produce(new TopicPartition(topic, partition), new Message<string?, string> { Key = k, Value = v });
        Assert.Equal(0, p.Flush(TimeSpan.FromSeconds(60)));
    }

    /// <summary>Every record of the partition from the beginning to its end, read by a Confluent.Kafka consumer.</summary>
    public static List<ConsumeResult<string?, string?>> ReadAll(string bootstrap, string topic, int partition = 0)
    {
        using var c = new ConsumerBuilder<string?, string?>(new ConsumerConfig
        {
            BootstrapServers = bootstrap,
            GroupId = "check",
            EnableAutoCommit = false,
            EnablePartitionEof = true,
        }).Build();
        c.Assign(new TopicPartitionOffset(topic, partition, Offset.Beginning));
        var list = new List<ConsumeResult<string?, string?>>();
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            var r = c.Consume(500);
            if (r is null)
                continue;
            if (r.IsPartitionEOF)
                return list;
            list.Add(r);
        }
        throw new TimeoutException($"read {list.Count} records of {topic}/{partition}, no end in 60 s");
    }

    public static int Partitions(string bootstrap, string topic)
    {
        using var a = Admin(bootstrap);
        var t = a.GetMetadata(topic, TimeSpan.FromSeconds(10)).Topics.Single();
        return t.Error.Code == ErrorCode.NoError ? t.Partitions.Count : 0;
    }

    public static bool Exists(string bootstrap, string topic)
    {
        using var a = Admin(bootstrap);
        return a.GetMetadata(TimeSpan.FromSeconds(10)).Topics.Any(t => t.Topic == topic && t.Error.Code == ErrorCode.NoError);
    }

    public static Dictionary<int, long> Committed(string bootstrap, string group, string topic)
    {
        using var a = Admin(bootstrap);
        var r = a.ListConsumerGroupOffsetsAsync([new ConsumerGroupTopicPartitions(group, null)]).GetAwaiter().GetResult();
        return r[0].Partitions.Where(p => p.Topic == topic && p.Offset.Value >= 0).ToDictionary(p => p.Partition.Value, p => p.Offset.Value);
    }
}
