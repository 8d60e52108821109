using System.Net;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Kiou.Protocol.Messages;
using static Kiou.Broker.Tests.RawWire;
using Wire = Kiou.Broker.Tests.SegmentFilesTests.Wire;

namespace Kiou.Broker.Tests;

/// <summary>
/// Dynamic broker configs from Confluent.Kafka's admin client against a broker child process: a change to this broker
/// or to the cluster default takes effect at once for topics without their own value (a produce above a lowered
/// message.max.bytes is refused), DescribeConfigs reports each value's source and Kafka's synonyms, bad values and
/// static settings are refused with Kafka's sentences, and the values survive a restart. A damaged file is set aside.
/// </summary>
public sealed class DynamicBrokerConfigTests : IDisposable
{
    readonly string _dataDir = Path.Combine(Path.GetTempPath(), "kiou-dynconf-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        try
        {
            Directory.Delete(_dataDir, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }

    static ConfigResource Broker(string name) => new() { Type = ResourceType.Broker, Name = name };

    static ConfigResource Topic(string name) => new() { Type = ResourceType.Topic, Name = name };

    static async Task<Dictionary<string, ConfigEntryResult>> Describe(IAdminClient admin, ConfigResource resource) =>
        (await admin.DescribeConfigsAsync([resource])).Single().Entries;

    static Task Set(IAdminClient admin, ConfigResource resource, params (string Name, string? Value)[] changes) =>
        admin.IncrementalAlterConfigsAsync(new Dictionary<ConfigResource, List<ConfigEntry>>
        {
            [resource] = changes.Select(c => new ConfigEntry
            {
                Name = c.Name,
                Value = c.Value,
                IncrementalOperation = c.Value is null ? AlterConfigOpType.Delete : AlterConfigOpType.Set,
            }).ToList(),
        });

    /// <summary>The cluster default (empty resource name) on the wire: Confluent.Kafka refuses an empty name.</summary>
    static async Task SetDefault(IPEndPoint broker, params (string Name, string? Value)[] changes)
    {
        using var s = await ConnectAsync(broker);
        var request = new IncrementalAlterConfigsRequest
        {
            Resources =
            [
                new()
                {
                    ResourceType = 4,
                    ResourceName = "",
                    Configs = changes.Select(c => new IncrementalAlterConfigsRequest.AlterableConfig { Name = c.Name, Value = c.Value, ConfigOperation = (sbyte)(c.Value is null ? 1 : 0) }).ToList(),
                },
            ],
        };
        var response = await SendAsync<IncrementalAlterConfigsResponse>(s, request, IncrementalAlterConfigsRequest.ApiKey, 1, 1);
        var result = Assert.Single(response.Responses);
        Assert.True(result.ErrorCode == 0, $"{result.ErrorCode}: {result.ErrorMessage}");
    }

    static async Task<List<DescribeConfigsResponse.DescribeConfigsResourceResult>> DescribeDefault(IPEndPoint broker)
    {
        using var s = await ConnectAsync(broker);
        var response = await SendAsync<DescribeConfigsResponse>(s, new DescribeConfigsRequest
        {
            Resources = [new() { ResourceType = 4, ResourceName = "", ConfigurationKeys = null }],
            IncludeSynonyms = true,
        }, DescribeConfigsRequest.ApiKey, 4, 1);
        var result = Assert.Single(response.Results);
        Assert.Equal(0, result.ErrorCode);
        return result.Configs;
    }

    static async Task<ErrorCode> Produce(string bootstrap, string topic, int bytes)
    {
        using var producer = Clients.Producer(bootstrap, Acks.All);
        try
        {
            await producer.ProduceAsync(topic, new Message<byte[]?, byte[]?> { Value = new byte[bytes] });
            return ErrorCode.NoError;
        }
        catch (ProduceException<byte[]?, byte[]?> e)
        {
            return e.Error.Code;
        }
    }

    [Fact]
    public async Task Broker_and_cluster_default_configs_change_at_run_time_report_their_source_and_survive_a_restart()
    {
        int port = BrokerProcess.FreePort();
        using (var broker = BrokerProcess.Start(_dataDir, port: port))
        {
            await Clients.CreateTopicAsync(broker.Bootstrap, "plain", 1);
            await Clients.CreateTopicAsync(broker.Bootstrap, "own", 1, new Dictionary<string, string> { ["max.message.bytes"] = "2000000", ["retention.ms"] = "120000" });
            using var admin = Clients.Admin(broker.Bootstrap);

            var before = await Describe(admin, Broker("1"));
            Assert.Equal("1048588", before["message.max.bytes"].Value);
            Assert.Equal(ConfigSource.DefaultConfig, before["message.max.bytes"].Source);
            Assert.False(before["message.max.bytes"].IsReadOnly);
            Assert.True(before["broker.id"].IsReadOnly);
            Assert.Equal(ErrorCode.NoError, await Produce(broker.Bootstrap, "plain", 20_000));

            await Set(admin, Broker("1"), ("message.max.bytes", "10000"));
            var endPoint = new IPEndPoint(IPAddress.Loopback, port);
            await SetDefault(endPoint, ("log.retention.ms", "3600000"), ("log.segment.bytes", "1048576"));

            // At once, without a restart: topics without their own value follow; "own" keeps its values.
            Assert.Equal(ErrorCode.MsgSizeTooLarge, await Produce(broker.Bootstrap, "plain", 20_000));
            Assert.Equal(ErrorCode.NoError, await Produce(broker.Bootstrap, "own", 20_000));

            var plain = await Describe(admin, Topic("plain"));
            Assert.Equal("10000", plain["max.message.bytes"].Value);
            Assert.Equal(ConfigSource.DynamicBrokerConfig, plain["max.message.bytes"].Source);
            Assert.Equal(("message.max.bytes", "10000", ConfigSource.DynamicBrokerConfig), Tuple(plain["max.message.bytes"].Synonyms[0]));
            Assert.Equal(("message.max.bytes", "1048588", ConfigSource.DefaultConfig), Tuple(plain["max.message.bytes"].Synonyms[^1]));
            Assert.Equal("3600000", plain["retention.ms"].Value);
            Assert.Equal(ConfigSource.DynamicDefaultBrokerConfig, plain["retention.ms"].Source);
            Assert.Equal("1048576", plain["segment.bytes"].Value);
            var own = await Describe(admin, Topic("own"));
            Assert.Equal("120000", own["retention.ms"].Value);
            Assert.Equal(ConfigSource.DynamicTopicConfig, own["retention.ms"].Source);
            Assert.Equal(("retention.ms", "120000", ConfigSource.DynamicTopicConfig), Tuple(own["retention.ms"].Synonyms[0]));
            Assert.Equal(("log.retention.ms", "3600000", ConfigSource.DynamicDefaultBrokerConfig), Tuple(own["retention.ms"].Synonyms[1]));

            var after = await Describe(admin, Broker("1"));
            Assert.Equal("10000", after["message.max.bytes"].Value);
            Assert.Equal(ConfigSource.DynamicBrokerConfig, after["message.max.bytes"].Source);
            Assert.Equal("3600000", after["log.retention.ms"].Value);
            Assert.Equal(ConfigSource.DynamicDefaultBrokerConfig, after["log.retention.ms"].Source);
            var clusterDefault = await DescribeDefault(endPoint);
            Assert.Equal(["log.retention.ms", "log.segment.bytes"], clusterDefault.Select(c => c.Name).Order());
            Assert.All(clusterDefault, c => Assert.Equal(3, c.ConfigSource));

            // Refused as Kafka refuses them (ConfigAdminManager: INVALID_REQUEST with the ConfigException text).
            await AssertRefused(admin, "log.retention.ms", "abc", "Invalid value abc for configuration log.retention.ms: Not a number of type LONG");
            await AssertRefused(admin, "log.segment.bytes", "5", "Invalid value 5 for configuration log.segment.bytes: Value must be at least 14");
            await AssertRefused(admin, "log.cleanup.policy", "shred", "Invalid value shred for configuration log.cleanup.policy: String must be one of: compact, delete");
            await AssertRefused(admin, "broker.id", "5", "Cannot update these configs dynamically: Set(broker.id)");
            Assert.Equal("10000", (await Describe(admin, Broker("1")))["message.max.bytes"].Value);
            Assert.Equal(0, broker.Terminate());
        }

        using (var broker = BrokerProcess.Start(_dataDir, port: port))
        {
            using var admin = Clients.Admin(broker.Bootstrap);
            Assert.Equal(ErrorCode.MsgSizeTooLarge, await Produce(broker.Bootstrap, "plain", 20_000));
            var plain = await Describe(admin, Topic("plain"));
            Assert.Equal("3600000", plain["retention.ms"].Value);
            Assert.Equal(ConfigSource.DynamicDefaultBrokerConfig, plain["retention.ms"].Source);

            // Deleting a dynamic value falls back to the level below.
            await Set(admin, Broker("1"), ("message.max.bytes", null));
            await SetDefault(new IPEndPoint(IPAddress.Loopback, port), ("log.retention.ms", null));
            Assert.Equal(ErrorCode.NoError, await Produce(broker.Bootstrap, "plain", 20_000));
            plain = await Describe(admin, Topic("plain"));
            Assert.Equal("604800000", plain["retention.ms"].Value);
            Assert.Equal(ConfigSource.DefaultConfig, plain["retention.ms"].Source);
            Assert.Equal("1048576", plain["segment.bytes"].Value);
        }
    }

    static (string, string, ConfigSource) Tuple(ConfigSynonym s) => (s.Name, s.Value, s.Source);

    static async Task AssertRefused(IAdminClient admin, string name, string value, string message)
    {
        var e = await Assert.ThrowsAsync<IncrementalAlterConfigsException>(() => Set(admin, Broker("1"), (name, value)));
        Assert.Equal(ErrorCode.InvalidRequest, e.Results[0].Error.Code);
        Assert.Equal(message, e.Results[0].Error.Reason);
    }

    [Fact]
    public async Task A_damaged_dynamic_config_file_is_set_aside_with_a_warning_and_the_broker_starts()
    {
        Directory.CreateDirectory(Path.Combine(_dataDir, "__cluster"));
        string path = Path.Combine(_dataDir, "__cluster", "broker-configs.json");
        File.WriteAllText(path, "{\"Version\":1,\"Default\":{\"log.retention.ms\":");
        await using var broker = TestBroker.Start(dataDir: _dataDir);
        Assert.False(File.Exists(path));
        string aside = Assert.Single(Directory.GetFiles(Path.Combine(_dataDir, "__cluster"), "broker-configs.json.damaged-*"));
        Assert.Equal("{\"Version\":1,\"Default\":{\"log.retention.ms\":", File.ReadAllText(aside));
        Assert.Contains($"WARN", broker.LogText.ToString());
        Assert.Contains($"moved aside to {aside}", broker.LogText.ToString());

        using var admin = Clients.Admin(broker.Bootstrap);
        await SetDefault(broker.Broker.BrokerEndPoint, ("log.retention.hours", "2"));
        await Clients.CreateTopicAsync(broker.Bootstrap, "after", 1);
        var topic = await Describe(admin, Topic("after"));
        Assert.Equal("7200000", topic["retention.ms"].Value);
        Assert.Contains("\"log.retention.hours\": \"2\"", File.ReadAllText(path));
    }

    [Fact]
    public async Task Max_connections_per_ip_changes_at_run_time_closing_new_connections_beyond_it_and_keeping_the_open_ones()
    {
        await using var broker = TestBroker.Start(dataDir: _dataDir);
        var ep = broker.Broker.BrokerEndPoint;
        using var admin = Clients.Admin(broker.Bootstrap);
        var wires = new List<Wire>();
        try
        {
            for (int i = 0; i < 2; i++)
            {
                wires.Add(await Wire.ConnectAsync(ep));
                Assert.Equal(0, (await ApiVersionsAsync(wires[^1])).ErrorCode);
            }
            // The admin client holds connections from 127.0.0.1 too: the limit counts them.
            await Describe(admin, Broker("1"));
            await WaitUntil(() => broker.Broker.ConnectionCount >= 3, "the admin client connected");
            int open = broker.Broker.ConnectionCount;
            await Set(admin, Broker("1"), ("max.connections.per.ip", open.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            var described = (await Describe(admin, Broker("1")))["max.connections.per.ip"];
            Assert.Equal((open.ToString(System.Globalization.CultureInfo.InvariantCulture), ConfigSource.DynamicBrokerConfig, false), (described.Value, described.Source, described.IsReadOnly));

            using (var beyond = await ConnectionLimitTests.ConnectAsync(ep))
                Assert.True(await ConnectionLimitTests.ClosedByBrokerAsync(beyond, TimeSpan.FromSeconds(5)), "a connection beyond the lowered max.connections.per.ip was kept");
            foreach (var w in wires)
                Assert.Equal(0, (await ApiVersionsAsync(w)).ErrorCode);

            await Set(admin, Broker("1"), ("max.connections.per.ip", (open + 5).ToString(System.Globalization.CultureInfo.InvariantCulture)));
            using (var again = await Wire.ConnectAsync(ep))
                Assert.Equal(0, (await ApiVersionsAsync(again)).ErrorCode);

            // An override for the address beats max.connections.per.ip.
            await WaitUntil(() => broker.Broker.ConnectionCount == open, "the closed connection counted off");
            await Set(admin, Broker("1"), ("max.connections.per.ip.overrides", $"10.0.0.7:7, 127.0.0.1:{open}"));
            using (var beyond = await ConnectionLimitTests.ConnectAsync(ep))
                Assert.True(await ConnectionLimitTests.ClosedByBrokerAsync(beyond, TimeSpan.FromSeconds(5)), "a connection beyond the override of 127.0.0.1 was kept");
            await Set(admin, Broker("1"), ("max.connections.per.ip.overrides", null));
            using (var again = await Wire.ConnectAsync(ep))
                Assert.Equal(0, (await ApiVersionsAsync(again)).ErrorCode);
            await AssertRefused(admin, "max.connections.per.ip.overrides", "127.0.0.1=5", "Invalid value 127.0.0.1=5 for configuration max.connections.per.ip.overrides: Expected a comma-separated list of host:count, each count a non-negative INT");

            await AssertRefused(admin, "max.connections.per.ip", "-1", "Invalid value -1 for configuration max.connections.per.ip: Value must be at least 1");
            await AssertRefused(admin, "max.connections", "many", "Invalid value many for configuration max.connections: Not a number of type INT");
            await Set(admin, Broker("1"), ("max.connections", "500"));
            Assert.Equal("500", (await Describe(admin, Broker("1")))["max.connections"].Value);
        }
        finally
        {
            foreach (var w in wires)
                w.Dispose();
        }
    }

    static Task<ApiVersionsResponse> ApiVersionsAsync(Wire wire) => wire.SendAsync<ApiVersionsResponse>(ApiVersionsRequest.ApiKey, 0, new ApiVersionsRequest());

    static async Task WaitUntil(Func<bool> condition, string what)
    {
        var until = DateTime.UtcNow.AddSeconds(10);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < until, "timed out waiting until " + what);
            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task Cleaner_settings_change_at_run_time_reach_the_cleaner_and_survive_a_restart()
    {
        await using var broker = TestBroker.Start(c => c with { Cleaner = c.Cleaner with { BackoffMs = 20_000 } }, _dataDir);
        using var admin = Clients.Admin(broker.Bootstrap);
        var cleaner = broker.Broker.Logs.Cleaner!;
        var before = await Describe(admin, Broker("1"));
        Assert.Equal(("20000", ConfigSource.StaticBrokerConfig, false), (before["log.cleaner.backoff.ms"].Value, before["log.cleaner.backoff.ms"].Source, before["log.cleaner.backoff.ms"].IsReadOnly));
        Assert.Equal(ConfigSource.DefaultConfig, before["log.cleaner.io.max.bytes.per.second"].Source);

        await Set(admin, Broker("1"), ("log.cleaner.io.max.bytes.per.second", "1000000.5"), ("log.cleaner.backoff.ms", "250"), ("log.cleaner.dedupe.buffer.size", "2097152"), ("log.cleaner.threads", "1"));
        Assert.Equal((1_000_000L, 250L, 2_097_152), (cleaner.Settings.IoMaxBytesPerSecond, cleaner.Settings.BackoffMs, cleaner.Settings.DedupeBufferBytes));
        var after = await Describe(admin, Broker("1"));
        Assert.Equal(("250", ConfigSource.DynamicBrokerConfig), (after["log.cleaner.backoff.ms"].Value, after["log.cleaner.backoff.ms"].Source));
        Assert.Equal(("log.cleaner.backoff.ms", "20000", ConfigSource.StaticBrokerConfig), Tuple(after["log.cleaner.backoff.ms"].Synonyms[1]));

        await AssertRefused(admin, "log.cleaner.threads", "2", "Invalid value 2 for configuration log.cleaner.threads: Value must be no more than 1");
        await AssertRefused(admin, "log.cleaner.backoff.ms", "soon", "Invalid value soon for configuration log.cleaner.backoff.ms: Not a number of type LONG");
        await AssertRefused(admin, "log.cleaner.io.max.bytes.per.second", "fast", "Invalid value fast for configuration log.cleaner.io.max.bytes.per.second: Not a number of type DOUBLE");
        await AssertRefused(admin, "log.cleaner.dedupe.buffer.size", "10", "Invalid value 10 for configuration log.cleaner.dedupe.buffer.size: Value must be at least 65536");
        Assert.Equal(250L, cleaner.Settings.BackoffMs);

        await broker.RestartAsync();
        cleaner = broker.Broker.Logs.Cleaner!;
        Assert.Equal((1_000_000L, 250L, 2_097_152), (cleaner.Settings.IoMaxBytesPerSecond, cleaner.Settings.BackoffMs, cleaner.Settings.DedupeBufferBytes));
        using var admin2 = Clients.Admin(broker.Bootstrap);
        await Set(admin2, Broker("1"), ("log.cleaner.backoff.ms", null));
        Assert.Equal(20_000L, broker.Broker.Logs.Cleaner!.Settings.BackoffMs);
    }
}
