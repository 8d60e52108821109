namespace Kiou.Cli.Tests;

/// <summary>bin/delete-records.sh against a broker: Kafka's kafka-delete-records.sh JSON file and output.</summary>
public sealed class DeleteRecordsToolTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("kiou-delrec-tool-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    string Json(string name, string text)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public async Task Deletes_below_the_offsets_of_the_file_and_prints_the_low_watermarks()
    {
        await using var broker = TestBroker.Start();
        string b = broker.Bootstrap;
        Assert.Equal(0, Tools.Script("topics", ["--bootstrap-server", b, "--create", "--topic", "orders", "--partitions", "2"]).ExitCode);
        Check.Produce(b, "orders", Enumerable.Range(0, 5).Select(i => ((string?)null, $"a{i}")), partition: 0);
        Check.Produce(b, "orders", Enumerable.Range(0, 4).Select(i => ((string?)null, $"b{i}")), partition: 1);

        string file = Json("offsets.json", """{"partitions":[{"topic":"orders","partition":0,"offset":3},{"topic":"orders","partition":1,"offset":-1}],"version":1}""");
        var r = Tools.Script("delete-records", ["--bootstrap-server", b, "--offset-json-file", file]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal("Executing records delete operation\nRecords delete operation completed:\npartition: orders-0\tlow_watermark: 3\npartition: orders-1\tlow_watermark: 4\n", r.Stdout);
        Assert.Equal(["a3", "a4"], Check.ReadAll(b, "orders", 0).Select(c => c.Message.Value));
        Assert.Equal("orders:0:3\norders:1:4\n", Tools.Script("get-offsets", ["--bootstrap-server", b, "--topic", "orders", "--time", "earliest"]).Stdout);

        // A partition the broker refuses: Kafka's error line for it, the others done, and exit 1 with one line.
        string mixed = Json("mixed.json", """{"partitions":[{"topic":"orders","partition":0,"offset":99},{"topic":"orders","partition":1,"offset":4}]}""");
        var failed = Tools.Script("delete-records", ["--bootstrap-server", b, "--offset-json-file", mixed]);
        Assert.True(failed.ExitCode == 1, failed.ToString());
        Assert.StartsWith("Executing records delete operation\nRecords delete operation completed:\npartition: orders-0\terror: ", failed.Stdout);
        Assert.Contains("partition: orders-1\tlow_watermark: 4\n", failed.Stdout);
        Assert.Equal("delete-records: records of 1 of 2 partition(s) were not deleted (see the errors above)\n", failed.Stderr);

        var ghost = Tools.Script("delete-records", ["--bootstrap-server", b, "--offset-json-file", Json("ghost.json", """{"partitions":[{"topic":"ghost","partition":0,"offset":1}],"version":1}""")]);
        Assert.True(ghost.ExitCode == 1, ghost.ToString());
        Assert.Contains("partition: ghost-0\terror: ", ghost.Stdout);
        Assert.Single(ghost.Stderr.TrimEnd('\n').Split('\n'));

        // Bad usage: exit 2 with the usage.
        foreach (var bad in new[]
        {
            Array.Empty<string>(),
            ["--offset-json-file", Path.Combine(_dir, "missing.json")],
            ["--offset-json-file", Json("notjson.json", "{partitions")],
            ["--offset-json-file", Json("v2.json", """{"partitions":[],"version":2}""")],
            ["--offset-json-file", Json("nopartitions.json", """{"version":1}""")],
            ["--offset-json-file", Json("badentry.json", """{"partitions":[{"topic":"orders","partition":"x","offset":1}]}""")],
            ["--offset-json-file", Json("dup.json", """{"partitions":[{"topic":"orders","partition":0,"offset":1},{"topic":"orders","partition":0,"offset":2}]}""")],
            ["--no-such-flag"],
        })
        {
            var usage = Tools.Script("delete-records", ["--bootstrap-server", b, .. bad]);
            Assert.True(usage.ExitCode == 2, usage.ToString());
            Assert.Contains("usage: bin/delete-records.sh", usage.Stderr);
            Assert.Equal("", usage.Stdout);
        }
        Assert.Contains("duplicate topic partitions: orders-0", Tools.Script("delete-records", ["--bootstrap-server", b, "--offset-json-file", Path.Combine(_dir, "dup.json")]).Stderr);
        Assert.Equal(["a3", "a4"], Check.ReadAll(b, "orders", 0).Select(c => c.Message.Value));

        var help = Tools.Script("delete-records", ["--help"]);
        Assert.True(help.ExitCode == 0, help.ToString());
        Assert.StartsWith("usage: bin/delete-records.sh", help.Stdout);
    }

    [Fact]
    public void An_unreachable_broker_is_one_line_and_exit_1()
    {
        using var bound = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        bound.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        int port = ((System.Net.IPEndPoint)bound.LocalEndPoint!).Port;
        string file = Json("offsets.json", """{"partitions":[{"topic":"t","partition":0,"offset":1}],"version":1}""");
        var r = Tools.Script("delete-records", ["--bootstrap-server", $"127.0.0.1:{port}", "--offset-json-file", file], timeoutMs: 60_000);
        Assert.True(r.ExitCode == 1, r.ToString());
        Assert.StartsWith($"delete-records: cannot reach the broker at 127.0.0.1:{port} within 10 s", r.Stderr);
        Assert.Single(r.Stderr.TrimEnd('\n').Split('\n'));
        Assert.Equal("", r.Stdout);
    }
}
