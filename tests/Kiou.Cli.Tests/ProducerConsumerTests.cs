using System.Text;

namespace Kiou.Cli.Tests;

public sealed class ProducerConsumerTests
{
    [Theory]
    [InlineData("0", "none")]
    [InlineData("1", "lz4")]
    [InlineData("all", "zstd")]
    [InlineData("all", "gzip")]
    public async Task Producer_sends_keyed_lines_with_each_acks_and_codec(string acks, string codec)
    {
        await using var broker = TestBroker.Start();
        var lines = Enumerable.Range(0, 200).Select(i => $"key{i}:value {i}: with a colon").ToList();
        var r = Tools.Script("producer", ["--topic", "keyed", "--bootstrap-server", broker.Bootstrap, "--acks", acks, "--compression-type", codec,
            "--property", "parse.key=true", "--property", "key.separator=:"], string.Join("\n", lines) + "\n");
        Assert.True(r.ExitCode == 0, r.ToString());
        var got = Check.ReadAll(broker.Bootstrap, "keyed");
        Assert.Equal(lines.Select((_, i) => $"key{i}"), got.Select(g => g.Message.Key));
        Assert.Equal(lines.Select((_, i) => $"value {i}: with a colon"), got.Select(g => g.Message.Value));
    }

    [Fact]
    public async Task Producer_rejects_a_line_without_the_key_separator()
    {
        await using var broker = TestBroker.Start();
        var r = Tools.Script("producer", ["--topic", "keyed", "--bootstrap-server", broker.Bootstrap, "--property", "parse.key=true"], "a\tb\nno tab here\n");
        Assert.True(r.ExitCode == 1, r.ToString());
        Assert.Contains("no key separator '\\t' on line 2", r.Stderr);
        Assert.Equal(["b"], Check.ReadAll(broker.Bootstrap, "keyed").Select(g => g.Message.Value));
    }

    [Fact]
    public async Task Producer_fails_clearly_when_the_topic_does_not_exist_and_is_not_auto_created()
    {
        await using var broker = TestBroker.Start(c => c with { AutoCreateTopics = false });
        var r = Tools.Script("producer", ["--topic", "missing", "--bootstrap-server", broker.Bootstrap], "one\ntwo\n", timeoutMs: 90_000);
        Assert.True(r.ExitCode == 1, r.ToString());
        Assert.Contains("2 of 2 records were not delivered to topic 'missing'", r.Stderr);
        Assert.Contains("does not exist", r.Stderr);
        Assert.False(Check.Exists(broker.Bootstrap, "missing"));
    }

    [Fact]
    public async Task Producer_fails_when_the_broker_refuses_a_record()
    {
        await using var broker = TestBroker.Start();
        Assert.Equal(0, Tools.Script("topics", ["--bootstrap-server", broker.Bootstrap, "--create", "--topic", "small", "--config", "max.message.bytes=200"]).ExitCode);
        var big = new string('x', 5000);
        var r = Tools.Script("producer", ["--topic", "small", "--bootstrap-server", broker.Bootstrap, "--producer-property", "message.max.bytes=100000", "--sync"],
            "fits\n" + big + "\n");
        Assert.True(r.ExitCode == 1, r.ToString());
        Assert.Contains("1 of 2 records were not delivered to topic 'small'", r.Stderr);
        Assert.Equal(["fits"], Check.ReadAll(broker.Bootstrap, "small").Select(g => g.Message.Value));
    }

    [Fact]
    public async Task Consumer_prints_the_properties_in_Kafkas_format_and_stops_at_the_end()
    {
        await using var broker = TestBroker.Start();
        Assert.Equal(0, Tools.Script("topics", ["--bootstrap-server", broker.Bootstrap, "--create", "--topic", "p", "--partitions", "2"]).ExitCode);
        Check.Produce(broker.Bootstrap, "p", [("k0", "v0"), (null, "v1"), ("k2", "v2")], partition: 1);
        var expected = Check.ReadAll(broker.Bootstrap, "p", 1)
            .Select(r => $"CreateTime:{r.Message.Timestamp.UnixTimestampMs}\tPartition:1\tOffset:{r.Offset.Value}\t{r.Message.Key ?? "null"}\t{r.Message.Value}\n");
        var c = Tools.Script("consumer", ["--topic", "p", "--partition", "1", "--from-beginning", "--bootstrap-server", broker.Bootstrap,
            "--property", "print.key=true", "--property", "print.offset=true", "--property", "print.partition=true", "--property", "print.timestamp=true"]);
        Assert.True(c.ExitCode == 0, c.ToString());
        Assert.Equal(string.Concat(expected), c.Stdout);

        var two = Tools.Script("consumer", ["--topic", "p", "--partition", "1", "--offset", "1", "--max-messages", "1", "--bootstrap-server", broker.Bootstrap]);
        Assert.True(two.ExitCode == 0, two.ToString());
        Assert.Equal("v1\n", two.Stdout);
        Assert.Contains("Processed a total of 1 messages", two.Stderr);

        var empty = Tools.Script("consumer", ["--topic", "p", "--partition", "0", "--from-beginning", "--bootstrap-server", broker.Bootstrap]);
        Assert.True(empty.ExitCode == 0, empty.ToString());
        Assert.Equal("", empty.Stdout);
    }

    [Fact]
    public async Task Consumer_follow_prints_records_as_they_arrive_until_stopped()
    {
        await using var broker = TestBroker.Start();
        Check.Produce(broker.Bootstrap, "live", [(null, "before")]);
        using var follow = new Tools.Running("consumer", ["--topic", "live", "--partition", "0", "--from-beginning", "--follow", "--bootstrap-server", broker.Bootstrap]);
        follow.WaitFor(s => s == "before\n", "the record produced before the start");
        var p = Tools.Script("producer", ["--topic", "live", "--bootstrap-server", broker.Bootstrap], "after 1\nafter 2\n");
        Assert.True(p.ExitCode == 0, p.ToString());
        follow.WaitFor(s => s == "before\nafter 1\nafter 2\n", "the records produced while it follows");
        Assert.False(follow.HasExited);
        Assert.Equal(0, follow.Stop());
        Assert.Contains("Processed a total of 3 messages", follow.Stderr);
    }

    [Fact]
    public async Task Consumer_names_an_unknown_topic_and_partition()
    {
        await using var broker = TestBroker.Start();
        var r = Tools.Script("consumer", ["--topic", "ghost", "--partition", "0", "--bootstrap-server", broker.Bootstrap]);
        Assert.True(r.ExitCode == 1, r.ToString());
        Assert.Contains("topic 'ghost' does not exist", r.Stderr);
        Check.Produce(broker.Bootstrap, "one", [(null, "x")]);
        var p = Tools.Script("consumer", ["--topic", "one", "--partition", "5", "--bootstrap-server", broker.Bootstrap]);
        Assert.True(p.ExitCode == 1, p.ToString());
        Assert.Contains("topic 'one' has no partition 5", p.Stderr);
    }

    [Fact]
    public async Task Utf8_values_pass_through_unchanged()
    {
        await using var broker = TestBroker.Start();
        var value = "caf\u00e9 \u00fcber \u2603";
        Check.Produce(broker.Bootstrap, "utf8", [(null, value)]);
        var c = Tools.Script("consumer", ["--topic", "utf8", "--partition", "0", "--from-beginning", "--bootstrap-server", broker.Bootstrap]);
        Assert.True(c.ExitCode == 0, c.ToString());
        Assert.Equal(value + "\n", c.Stdout);
        Assert.Equal(Encoding.UTF8.GetByteCount(value), Encoding.UTF8.GetByteCount(c.Stdout) - 1);
    }
}
