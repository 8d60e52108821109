namespace Kiou.Cli.Tests;

/// <summary>The README quickstart, word for word, against a broker on free ports.</summary>
public sealed class QuickstartTests
{
    static string CreateAndProduce(TestBroker broker)
    {
        var create = Tools.Shell($"bin/topics.sh --bootstrap-server 127.0.0.1:{broker.ControllerPort} --create --topic demo --partitions 1");
        Assert.True(create.ExitCode == 0, create.ToString());
        Assert.Equal("Created topic demo.\n", create.Stdout);

        var describe = Tools.Shell($"bin/topics.sh --bootstrap-server 127.0.0.1:{broker.ControllerPort} --describe --topic demo");
        Assert.True(describe.ExitCode == 0, describe.ToString());
        var lines = describe.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        Assert.Matches(@"^Topic: demo\tTopicId: \S+\tPartitionCount: 1\tReplicationFactor: 1\tConfigs: $", lines[0]);
        Assert.Equal("\tTopic: demo\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1", lines[1]);

        var produce = Tools.Shell($"printf 'one\\ntwo\\nthree\\n' | bin/producer.sh --topic demo --bootstrap-server {broker.Bootstrap}");
        Assert.True(produce.ExitCode == 0, produce.ToString());
        Assert.Equal("", produce.Stdout);
        Assert.Equal(["one", "two", "three"], Check.ReadAll(broker.Bootstrap, "demo").Select(r => r.Message.Value));
        return broker.Bootstrap;
    }

    [Fact]
    public async Task Quickstart_creates_describes_produces_and_consumes_in_a_group()
    {
        await using var broker = TestBroker.Start(); // default settings, as in the README
        var bootstrap = CreateAndProduce(broker);
        var consume = Tools.Shell($"bin/consumer.sh --topic demo --group demo-group --session-timeout-ms 5000 --from-beginning --bootstrap-server {bootstrap}");
        Assert.True(consume.ExitCode == 0, consume.ToString());
        Assert.Equal("one\ntwo\nthree\n", consume.Stdout);
        Assert.Contains("Processed a total of 3 messages", consume.Stderr);

        // It committed: the group's offset is 3 (read by Confluent's admin client), and a second run prints nothing.
        Assert.Equal(3, Check.Committed(bootstrap, "demo-group", "demo")[0]);
        var again = Tools.Shell($"bin/consumer.sh --topic demo --group demo-group --session-timeout-ms 5000 --from-beginning --bootstrap-server {bootstrap}");
        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.Equal("", again.Stdout);
    }

    [Fact]
    public async Task Quickstart_produce_then_consume_the_partition_without_a_group()
    {
        await using var broker = TestBroker.Start();
        var bootstrap = CreateAndProduce(broker);
        var consume = Tools.Shell($"bin/consumer.sh --topic demo --partition 0 --from-beginning --bootstrap-server {bootstrap}");
        Assert.True(consume.ExitCode == 0, consume.ToString());
        Assert.Equal("one\ntwo\nthree\n", consume.Stdout);
        Assert.Contains("Processed a total of 3 messages", consume.Stderr);
    }

    [Fact]
    public async Task A_session_timeout_the_broker_refuses_is_a_clear_error_not_a_retry_loop()
    {
        // Kafka's own minimum (group.min.session.timeout.ms=6000), stricter than KIOU's default of 1000.
        await using var broker = TestBroker.Start(c => c with { Groups = c.Groups with { MinSessionTimeoutMs = 6000 } });
        Check.Produce(broker.Bootstrap, "demo", [(null, "one")]);
        var consume = Tools.Shell($"bin/consumer.sh --topic demo --group demo-group --session-timeout-ms 5000 --from-beginning --bootstrap-server {broker.Bootstrap}",
            timeoutMs: 60_000);
        Assert.True(consume.ExitCode == 1, consume.ToString());
        Assert.Contains("the broker refuses --session-timeout-ms 5000 for group 'demo-group'", consume.Stderr);
        Assert.Equal("", consume.Stdout);
    }
}
