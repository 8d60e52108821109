namespace Kiou.Broker.Tests;

/// <summary>kcat (Debian's package, librdkafka inside) driving the broker as a user would.</summary>
public sealed class KcatTests
{
    static ChildProcess.Result Kcat(string args, string? stdin = null) =>
        ChildProcess.Run("kcat", args.Split(' ', StringSplitOptions.RemoveEmptyEntries), stdin);

    [Fact]
    public async Task Kcat_reads_metadata_produces_and_consumes()
    {
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, "kc", 2);
        var list = Kcat($"-b {broker.Bootstrap} -L -t kc");
        Assert.True(list.ExitCode == 0, list.Stderr);
        Assert.Contains("topic \"kc\" with 2 partitions", list.Stdout);
        Assert.Contains($"broker 1 at 127.0.0.1:{broker.Broker.BrokerEndPoint.Port}", list.Stdout);

        var lines = Enumerable.Range(0, 500).Select(i => $"key{i}:value {i}").ToList();
        var produce = Kcat($"-b {broker.Bootstrap} -P -t kc -p 1 -K: -z lz4", string.Join("\n", lines) + "\n");
        Assert.True(produce.ExitCode == 0, produce.Stderr);

        var consume = Kcat($"-b {broker.Bootstrap} -C -t kc -p 1 -o beginning -e -f %k=%s@%o\\n");
        Assert.True(consume.ExitCode == 0, consume.Stderr);
        var got = consume.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(lines.Select((l, i) => l.Replace(':', '=') + "@" + i), got);
    }
}
