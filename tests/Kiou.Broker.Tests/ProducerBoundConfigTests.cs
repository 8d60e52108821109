using Kiou.Broker.Controller;
using Kiou.Broker.Hosting;
using Kiou.Broker.Logs;
using Kiou.Storage.Devices;

namespace Kiou.Broker.Tests;

/// <summary>KIOU_MAX_PRODUCERS_PER_PARTITION: read and checked like the other settings, and carried into each partition's LogConfig.</summary>
public sealed class ProducerBoundConfigTests
{
    [Fact]
    public void The_setting_is_read_with_its_default_and_bad_values_are_refused_naming_it()
    {
        Assert.Equal(100_000, BrokerConfig.FromEnvironment(_ => null).MaxProducersPerPartition);
        Assert.Equal(1, BrokerConfig.FromEnvironment(k => k == "KIOU_MAX_PRODUCERS_PER_PARTITION" ? "1" : null).MaxProducersPerPartition);
        Assert.Equal(250, BrokerConfig.FromEnvironment(k => k == "KIOU_MAX_PRODUCERS_PER_PARTITION" ? "250" : null).MaxProducersPerPartition);
        foreach (string bad in new[] { "0", "-5", "ten", "1.5", "99999999999" })
        {
            var e = Assert.Throws<ConfigException>(() => BrokerConfig.FromEnvironment(k => k == "KIOU_MAX_PRODUCERS_PER_PARTITION" ? bad : null));
            Assert.Contains("KIOU_MAX_PRODUCERS_PER_PARTITION=" + bad, e.Message);
        }
    }

    [Fact]
    public async Task The_setting_reaches_each_partitions_log_config()
    {
        string dataDir = Path.Combine(Path.GetTempPath(), "kiou-producer-bound-" + Guid.NewGuid().ToString("N"));
        try
        {
            var config = new BrokerConfig { DataDir = dataDir, MaxProducersPerPartition = 7 };
            await using (var logs = new LogManager(config, new SyncLogDevice(), TimeProvider.System, new Log(TextWriter.Null)))
            {
                logs.OpenTopic(new TopicInfo("bound", Guid.NewGuid(), 2, new Dictionary<string, string>()));
                Assert.Equal(7, logs.Get("bound", 0)!.Config.MaxProducersPerPartition);
                Assert.Equal(7, logs.Get("bound", 1)!.Config.MaxProducersPerPartition);
            }
        }
        finally
        {
            Directory.Delete(dataDir, recursive: true);
        }
    }
}
