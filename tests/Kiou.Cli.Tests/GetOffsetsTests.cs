namespace Kiou.Cli.Tests;

/// <summary>bin/get-offsets.sh against a broker: Kafka's kafka-get-offsets.sh output, topic:partition:offset per line.</summary>
public sealed class GetOffsetsTests
{
    [Fact]
    public async Task Prints_latest_earliest_and_by_timestamp_offsets_of_matching_partitions()
    {
        await using var broker = TestBroker.Start();
        string b = broker.Bootstrap;
        Assert.Equal(0, Tools.Script("topics", ["--bootstrap-server", b, "--create", "--topic", "orders", "--partitions", "2"]).ExitCode);
        Assert.Equal(0, Tools.Script("topics", ["--bootstrap-server", b, "--create", "--topic", "reorders"]).ExitCode);
        Check.Produce(b, "orders", Enumerable.Range(0, 5).Select(i => ((string?)null, $"a{i}")), partition: 0);
        Check.Produce(b, "orders", Enumerable.Range(0, 3).Select(i => ((string?)null, $"b{i}")), partition: 1);
        Check.Produce(b, "reorders", [(null, "r")]);

        var latest = Tools.Script("get-offsets", ["--bootstrap-server", b]);
        Assert.True(latest.ExitCode == 0, latest.ToString());
        Assert.Equal("orders:0:5\norders:1:3\nreorders:0:1\n", latest.Stdout);

        var matching = Tools.Script("get-offsets", ["--bootstrap-server", b, "--topic", "ord.*", "--partitions", "1"]);
        Assert.True(matching.ExitCode == 0, matching.ToString());
        Assert.Equal("orders:1:3\n", matching.Stdout);

        Assert.Equal("orders:0:0\norders:1:0\n", Tools.Script("get-offsets", ["--bootstrap-server", b, "--topic", "orders", "--time", "-2"]).Stdout);
        Assert.Equal("orders:0:0\norders:1:0\n", Tools.Script("get-offsets", ["--bootstrap-server", b, "--topic", "orders", "--time", "0"]).Stdout);
        // No record is that recent: Kafka prints the partition with an empty offset.
        Assert.Equal("orders:0:\norders:1:\n", Tools.Script("get-offsets", ["--bootstrap-server", b, "--topic", "orders", "--time", "99999999999999"]).Stdout);

        var none = Tools.Script("get-offsets", ["--bootstrap-server", b, "--topic", "ghost"]);
        Assert.True(none.ExitCode == 1, none.ToString());
        Assert.Equal("get-offsets: no partition matches --topic 'ghost'\n", none.Stderr);

        foreach (var bad in new[] { new[] { "--time", "yesterday" }, ["--partitions", "1-x"], ["--topic", "ord(("] })
        {
            var usage = Tools.Script("get-offsets", ["--bootstrap-server", b, .. bad]);
            Assert.True(usage.ExitCode == 2, usage.ToString());
            Assert.Contains("bin/get-offsets.sh", usage.Stderr);
        }
    }
}
