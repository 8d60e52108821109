using Confluent.Kafka.Admin;

namespace Kiou.Cli.Tests;

/// <summary>bin/configs.sh against a broker: Kafka's kafka-configs.sh describe and alter for topics and brokers.</summary>
public sealed class ConfigsToolTests
{
    static Run Configs(string bootstrap, params string[] args) => Tools.Script("configs", ["--bootstrap-server", bootstrap, .. args]);

    [Fact]
    public async Task Alters_and_describes_topic_configs_as_kafka_configs_does()
    {
        await using var broker = TestBroker.Start();
        string b = broker.Bootstrap;
        Assert.Equal(0, Tools.Script("topics", ["--bootstrap-server", b, "--create", "--topic", "orders"]).ExitCode);
        Assert.Equal(0, Tools.Script("topics", ["--bootstrap-server", b, "--create", "--topic", "audit", "--config", "retention.ms=5000"]).ExitCode);

        var empty = Configs(b, "--describe", "--topic", "orders");
        Assert.True(empty.ExitCode == 0, empty.ToString());
        Assert.Equal("Dynamic configs for topic orders are:\n", empty.Stdout);

        var set = Configs(b, "--alter", "--entity-type", "topics", "--entity-name", "orders", "--add-config", "retention.ms=1000,cleanup.policy=[compact,delete]");
        Assert.True(set.ExitCode == 0, set.ToString());
        Assert.Equal("Completed updating config for topic orders.\n", set.Stdout);
        using (var admin = Check.Admin(b))
        {
            var entries = (await admin.DescribeConfigsAsync([new ConfigResource { Type = ResourceType.Topic, Name = "orders" }])).Single().Entries;
            Assert.Equal("1000", entries["retention.ms"].Value);
            Assert.Equal("compact,delete", entries["cleanup.policy"].Value);
        }

        var described = Configs(b, "--describe", "--entity-type", "topics", "--entity-name", "orders");
        Assert.True(described.ExitCode == 0, described.ToString());
        Assert.Equal(
            "Dynamic configs for topic orders are:\n"
            + "  cleanup.policy=compact,delete sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:cleanup.policy=compact,delete, DEFAULT_CONFIG:log.cleanup.policy=delete}\n"
            + "  retention.ms=1000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=1000}\n",
            described.Stdout);

        var deleted = Configs(b, "--alter", "--topic", "orders", "--delete-config", "retention.ms");
        Assert.True(deleted.ExitCode == 0, deleted.ToString());
        Assert.Equal("Completed updating config for topic orders.\n", deleted.Stdout);
        Assert.DoesNotContain("retention.ms", Configs(b, "--describe", "--topic", "orders").Stdout);

        var all = Configs(b, "--describe", "--topic", "orders", "--all");
        Assert.True(all.ExitCode == 0, all.ToString());
        Assert.StartsWith("All configs for topic orders are:\n", all.Stdout);
        Assert.Contains("\n  retention.ms=604800000 sensitive=false synonyms={}\n", all.Stdout);
        Assert.Contains("\n  segment.bytes=", all.Stdout);

        // Every topic, in name order, without --entity-name.
        var every = Configs(b, "--describe", "--entity-type", "topics");
        Assert.True(every.ExitCode == 0, every.ToString());
        Assert.Equal(
            "Dynamic configs for topic audit are:\n"
            + "  retention.ms=5000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=5000}\n"
            + "Dynamic configs for topic orders are:\n"
            + "  cleanup.policy=compact,delete sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:cleanup.policy=compact,delete, DEFAULT_CONFIG:log.cleanup.policy=delete}\n",
            every.Stdout);

        // Failures: one line, exit 1, nothing changed.
        foreach (var (args, expected) in new (string[], string)[]
        {
            (["--describe", "--topic", "ghost"], "configs: topic 'ghost' does not exist: create it with bin/topics.sh --create --topic ghost\n"),
            (["--alter", "--topic", "ghost", "--add-config", "retention.ms=1"], "configs: topic 'ghost' does not exist: create it with bin/topics.sh --create --topic ghost\n"),
            (["--alter", "--topic", "orders", "--delete-config", "segment.bytes"], "configs: invalid config(s): segment.bytes (not set on topic orders)\n"),
        })
        {
            var r = Configs(b, args);
            Assert.True(r.ExitCode == 1, r.ToString());
            Assert.Equal(expected, r.Stderr);
            Assert.Equal("", r.Stdout);
        }
        var invalid = Configs(b, "--alter", "--topic", "orders", "--add-config", "retention.ms=soon");
        Assert.True(invalid.ExitCode == 1, invalid.ToString());
        Assert.StartsWith("configs: updating the configs of topic orders failed: ", invalid.Stderr);
        Assert.Contains("retention.ms", invalid.Stderr);
        Assert.Single(invalid.Stderr.TrimEnd('\n').Split('\n'));
        Assert.Equal("Dynamic configs for topic orders are:\n  cleanup.policy=compact,delete sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:cleanup.policy=compact,delete, DEFAULT_CONFIG:log.cleanup.policy=delete}\n",
            Configs(b, "--describe", "--topic", "orders").Stdout);
    }

    [Fact]
    public async Task Describes_brokers_and_reports_a_refused_broker_change_in_one_line()
    {
        await using var broker = TestBroker.Start();
        string b = broker.Bootstrap;
        string id = broker.Broker.Config.NodeId.ToString(System.Globalization.CultureInfo.InvariantCulture);

        var all = Configs(b, "--describe", "--entity-type", "brokers", "--entity-name", id, "--all");
        Assert.True(all.ExitCode == 0, all.ToString());
        Assert.StartsWith($"All configs for broker {id} are:\n", all.Stdout);
        Assert.Contains($"\n  broker.id={id} sensitive=false synonyms={{", all.Stdout);
        Assert.Contains("\n  message.max.bytes=", all.Stdout);

        var every = Configs(b, "--describe", "--entity-type", "brokers", "--all");
        Assert.True(every.ExitCode == 0, every.ToString());
        Assert.Equal(all.Stdout, every.Stdout);

        var dynamicOnly = Configs(b, "--describe", "--broker", id);
        Assert.True(dynamicOnly.ExitCode == 0, dynamicOnly.ToString());
        Assert.StartsWith($"Dynamic configs for broker {id} are:\n", dynamicOnly.Stdout);

        var absent = Configs(b, "--describe", "--broker", "77");
        Assert.True(absent.ExitCode == 1, absent.ToString());
        Assert.Equal($"configs: broker 77 is not in the cluster (its brokers: {id})\n", absent.Stderr);

        var unknown = Configs(b, "--alter", "--broker", id, "--add-config", "no.such.config=1");
        Assert.True(unknown.ExitCode == 1, unknown.ToString());
        Assert.StartsWith($"configs: updating the configs of broker {id} failed: ", unknown.Stderr);
        Assert.Single(unknown.Stderr.TrimEnd('\n').Split('\n'));
        Assert.Equal("", unknown.Stdout);
    }

    [Fact]
    public async Task Alters_a_dynamic_broker_config_and_describes_it_with_its_source()
    {
        await using var broker = TestBroker.Start();
        string b = broker.Bootstrap;
        string id = broker.Broker.Config.NodeId.ToString(System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(0, Tools.Script("topics", ["--bootstrap-server", b, "--create", "--topic", "orders"]).ExitCode);

        var set = Configs(b, "--alter", "--broker", id, "--add-config", "log.retention.ms=3600000,log.cleanup.policy=[compact,delete]");
        Assert.True(set.ExitCode == 0, set.ToString());
        Assert.Equal($"Completed updating config for broker {id}.\n", set.Stdout);

        var dynamicOnly = Configs(b, "--describe", "--broker", id);
        Assert.True(dynamicOnly.ExitCode == 0, dynamicOnly.ToString());
        Assert.Equal(
            $"Dynamic configs for broker {id} are:\n"
            + "  log.cleanup.policy=compact,delete sensitive=false synonyms={DYNAMIC_BROKER_CONFIG:log.cleanup.policy=compact,delete, DEFAULT_CONFIG:log.cleanup.policy=delete}\n"
            + "  log.retention.ms=3600000 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG:log.retention.ms=3600000, DEFAULT_CONFIG:log.retention.hours=168}\n",
            dynamicOnly.Stdout);

        // The topic without its own values follows the broker at once.
        var topic = Configs(b, "--describe", "--topic", "orders", "--all");
        Assert.True(topic.ExitCode == 0, topic.ToString());
        Assert.Contains("\n  retention.ms=3600000 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG:log.retention.ms=3600000, DEFAULT_CONFIG:log.retention.hours=168}\n", topic.Stdout);
        Assert.Contains("\n  cleanup.policy=compact,delete sensitive=false synonyms={DYNAMIC_BROKER_CONFIG:log.cleanup.policy=compact,delete, DEFAULT_CONFIG:log.cleanup.policy=delete}\n", topic.Stdout);

        var deleted = Configs(b, "--alter", "--broker", id, "--delete-config", "log.retention.ms,log.cleanup.policy");
        Assert.True(deleted.ExitCode == 0, deleted.ToString());
        Assert.Equal($"Dynamic configs for broker {id} are:\n", Configs(b, "--describe", "--broker", id).Stdout);
    }

    [Fact]
    public void Bad_usage_prints_the_usage_and_exits_2()
    {
        foreach (var args in new[]
        {
            Array.Empty<string>(),
            ["--topic", "t"],
            ["--describe", "--alter", "--topic", "t"],
            ["--describe"],
            ["--describe", "--entity-type", "users", "--entity-name", "u"],
            ["--describe", "--entity-type", "topics", "--topic", "t"],
            ["--describe", "--topic", "t", "--add-config", "a=1"],
            ["--alter", "--entity-type", "topics"],
            ["--alter", "--topic", "t"],
            ["--alter", "--topic", "t", "--all", "--add-config", "a=1"],
            ["--alter", "--topic", "t", "--add-config", "novalue"],
            ["--alter", "--topic", "t", "--add-config", "a=1", "--delete-config", "a"],
            ["--alter", "--broker", "one", "--add-config", "a=1"],
            ["--describe", "--entity-type", "brokers", "--entity-name", ""],
            ["--describe", "--topic", "t", "--no-such-flag"],
        })
        {
            var r = Tools.Script("configs", args);
            Assert.True(r.ExitCode == 2, string.Join(' ', args) + "\n" + r);
            Assert.Contains("usage: bin/configs.sh", r.Stderr);
            Assert.Equal("", r.Stdout);
        }

        var help = Tools.Script("configs", ["--help"]);
        Assert.True(help.ExitCode == 0, help.ToString());
        Assert.StartsWith("usage: bin/configs.sh", help.Stdout);
    }

    [Fact]
    public void An_unreachable_broker_is_one_line_and_exit_1()
    {
        using var bound = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        bound.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        int port = ((System.Net.IPEndPoint)bound.LocalEndPoint!).Port;
        var r = Tools.Script("configs", ["--bootstrap-server", $"127.0.0.1:{port}", "--describe", "--topic", "t"], timeoutMs: 60_000);
        Assert.True(r.ExitCode == 1, r.ToString());
        Assert.StartsWith($"configs: cannot reach the broker at 127.0.0.1:{port} within 10 s", r.Stderr);
        Assert.Single(r.Stderr.TrimEnd('\n').Split('\n'));
        Assert.Equal("", r.Stdout);
    }
}
