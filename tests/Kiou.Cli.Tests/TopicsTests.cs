namespace Kiou.Cli.Tests;

public sealed class TopicsTests
{
    [Fact]
    public async Task Create_list_describe_alter_and_delete()
    {
        await using var broker = TestBroker.Start();
        string b = broker.Bootstrap;
        var create = Tools.Script("topics", ["--bootstrap-server", b, "--create", "--topic", "orders", "--partitions", "2",
            "--config", "retention.ms=60000", "--config", "max.message.bytes=2000000"]);
        Assert.True(create.ExitCode == 0, create.ToString());
        Assert.Equal(2, Check.Partitions(b, "orders"));
        Assert.Equal(0, Tools.Script("topics", ["--bootstrap-server", b, "--create", "--topic", "audit"]).ExitCode);

        var again = Tools.Script("topics", ["--bootstrap-server", b, "--create", "--topic", "orders"]);
        Assert.True(again.ExitCode == 1, again.ToString());
        Assert.Contains("topic 'orders' already exists", again.Stderr);
        Assert.Equal(0, Tools.Script("topics", ["--bootstrap-server", b, "--create", "--topic", "orders", "--if-not-exists"]).ExitCode);

        var list = Tools.Script("topics", ["--bootstrap-server", b, "--list"]);
        Assert.True(list.ExitCode == 0, list.ToString());
        Assert.Equal("audit\norders\n", list.Stdout);

        var describe = Tools.Script("topics", ["--bootstrap-server", b, "--describe", "--topic", "orders"]);
        Assert.True(describe.ExitCode == 0, describe.ToString());
        var lines = describe.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Matches(@"^Topic: orders\tTopicId: \S+\tPartitionCount: 2\tReplicationFactor: 1\tConfigs: max.message.bytes=2000000,retention.ms=60000$", lines[0]);
        Assert.Equal(["\tTopic: orders\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1", "\tTopic: orders\tPartition: 1\tLeader: 1\tReplicas: 1\tIsr: 1"], lines[1..]);

        var all = Tools.Script("topics", ["--bootstrap-server", b, "--describe"]);
        Assert.Equal(2, all.Stdout.Split('\n').Count(l => l.StartsWith("Topic: ", StringComparison.Ordinal)));

        var alter = Tools.Script("topics", ["--bootstrap-server", b, "--alter", "--topic", "orders", "--partitions", "4", "--config", "retention.ms=1000"]);
        Assert.True(alter.ExitCode == 0, alter.ToString());
        Assert.Equal(4, Check.Partitions(b, "orders"));
        Assert.Contains("retention.ms=1000", Tools.Script("topics", ["--bootstrap-server", b, "--describe", "--topic", "orders"]).Stdout);

        var shrink = Tools.Script("topics", ["--bootstrap-server", b, "--alter", "--topic", "orders", "--partitions", "2"]);
        Assert.True(shrink.ExitCode == 1, shrink.ToString());
        Assert.Contains("cannot change the partitions of topic 'orders'", shrink.Stderr);

        var badConfig = Tools.Script("topics", ["--bootstrap-server", b, "--create", "--topic", "x", "--config", "no.such.config=1"]);
        Assert.True(badConfig.ExitCode == 1, badConfig.ToString());
        Assert.Contains("cannot create topic 'x'", badConfig.Stderr);

        var delete = Tools.Script("topics", ["--bootstrap-server", b, "--delete", "--topic", "orders"]);
        Assert.True(delete.ExitCode == 0, delete.ToString());
        Assert.False(Check.Exists(b, "orders"));
    }

    [Fact]
    public async Task An_unknown_topic_is_named_in_the_error()
    {
        await using var broker = TestBroker.Start();
        foreach (var action in new[] { "--describe", "--delete" })
        {
            var r = Tools.Script("topics", ["--bootstrap-server", broker.Bootstrap, action, "--topic", "ghost"]);
            Assert.True(r.ExitCode == 1, r.ToString());
            Assert.Equal("topics: topic 'ghost' does not exist\n", r.Stderr);
        }
        var alter = Tools.Script("topics", ["--bootstrap-server", broker.Bootstrap, "--alter", "--topic", "ghost", "--partitions", "3"]);
        Assert.True(alter.ExitCode == 1, alter.ToString());
        Assert.Equal(0, Tools.Script("topics", ["--bootstrap-server", broker.Bootstrap, "--delete", "--topic", "ghost", "--if-exists"]).ExitCode);
        Assert.False(Check.Exists(broker.Bootstrap, "ghost"));
    }

    [Fact]
    public async Task Topic_is_a_regular_expression_that_must_match_the_whole_name()
    {
        await using var broker = TestBroker.Start();
        string b = broker.Bootstrap;
        foreach (var t in new[] { "orders", "orders-eu", "audit", "reorder" })
            Assert.Equal(0, Tools.Script("topics", ["--bootstrap-server", b, "--create", "--topic", t]).ExitCode);

        var list = Tools.Script("topics", ["--bootstrap-server", b, "--list", "--topic", "ord.*"]);
        Assert.True(list.ExitCode == 0, list.ToString());
        Assert.Equal("orders\norders-eu\n", list.Stdout);
        Assert.Equal("orders\n", Tools.Script("topics", ["--bootstrap-server", b, "--list", "--topic", "orders"]).Stdout);
        Assert.Equal("", Tools.Script("topics", ["--bootstrap-server", b, "--list", "--topic", "nothing.*"]).Stdout);

        var describe = Tools.Script("topics", ["--bootstrap-server", b, "--describe", "--topic", "orders|aud.t"]);
        Assert.True(describe.ExitCode == 0, describe.ToString());
        Assert.Equal(["audit", "orders"], describe.Stdout.Split('\n').Where(l => l.StartsWith("Topic: ", StringComparison.Ordinal)).Select(l => l[7..l.IndexOf('\t')]));

        var none = Tools.Script("topics", ["--bootstrap-server", b, "--describe", "--topic", "nothing.*"]);
        Assert.True(none.ExitCode == 1, none.ToString());
        Assert.Equal("topics: no topic matches --topic 'nothing.*'\n", none.Stderr);

        var delete = Tools.Script("topics", ["--bootstrap-server", b, "--delete", "--topic", "orders-.*"]);
        Assert.True(delete.ExitCode == 0, delete.ToString());
        Assert.Equal("audit\norders\nreorder\n", Tools.Script("topics", ["--bootstrap-server", b, "--list"]).Stdout);

        var bad = Tools.Script("topics", ["--bootstrap-server", b, "--list", "--topic", "ord[ers"]);
        Assert.True(bad.ExitCode == 2, bad.ToString());
        Assert.Contains("--topic", bad.Stderr);
    }
}
