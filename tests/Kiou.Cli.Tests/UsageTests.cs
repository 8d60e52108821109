namespace Kiou.Cli.Tests;

/// <summary>What every tool does with --help, a bad flag, and a broker that is not there.</summary>
public sealed class UsageTests
{
    public static TheoryData<string> AllTools => new() { "topics", "producer", "consumer", "consumer-groups", "producer-perf", "consumer-perf" };

    [Theory]
    [MemberData(nameof(AllTools))]
    public void Help_prints_the_usage_on_stdout_and_exits_0(string tool)
    {
        var r = Tools.Script(tool, ["--help"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.StartsWith($"usage: bin/{tool}.sh", r.Stdout);
        Assert.Contains("--bootstrap-server HOST:PORT", r.Stdout);
    }

    [Theory]
    [MemberData(nameof(AllTools))]
    public void A_bad_flag_prints_the_usage_on_stderr_and_exits_2(string tool)
    {
        var r = Tools.Script(tool, ["--no-such-flag"]);
        Assert.True(r.ExitCode == 2, r.ToString());
        Assert.Equal("", r.Stdout);
        Assert.StartsWith($"{tool}: unknown flag --no-such-flag", r.Stderr);
        Assert.Contains($"usage: bin/{tool}.sh", r.Stderr);
    }

    [Fact]
    public void Bad_values_and_missing_flags_exit_2()
    {
        Assert.Equal(2, Tools.Script("producer", ["--topic", "t", "--acks", "2"], "x\n").ExitCode);
        Assert.Equal(2, Tools.Script("producer", ["--topic", "t", "--compression-type", "brotli"], "x\n").ExitCode);
        Assert.Equal(2, Tools.Script("producer", [], "x\n").ExitCode);
        Assert.Equal(2, Tools.Script("consumer", ["--topic", "t", "--max-messages", "many"]).ExitCode);
        Assert.Equal(2, Tools.Script("topics", ["--create"]).ExitCode);
        Assert.Equal(2, Tools.Script("topics", ["--create", "--list", "--topic", "t"]).ExitCode);
        Assert.Equal(2, Tools.Script("consumer-groups", ["--reset-offsets", "--group", "g", "--topic", "t"]).ExitCode);
        Assert.Equal(2, Tools.Script("producer-perf", ["--topic", "t", "--num-records", "10", "--record-size", "10"]).ExitCode);
        Assert.Equal(2, Tools.Script("consumer-perf", ["--topic", "t"]).ExitCode);
    }

    public static TheoryData<string, string[]> Unreachable => new()
    {
        { "topics", ["--list"] },
        { "producer", ["--topic", "t"] },
        { "consumer", ["--topic", "t"] },
        { "consumer-groups", ["--list"] },
        { "producer-perf", ["--topic", "t", "--num-records", "10", "--record-size", "10", "--throughput", "-1"] },
        { "consumer-perf", ["--topic", "t", "--messages", "10"] },
    };

    [Theory]
    [MemberData(nameof(Unreachable))]
    public void An_unreachable_broker_is_one_clear_line_and_exit_1_within_about_10_s(string tool, string[] args)
    {
        // A port nobody listens on: bound but never listening, and held for the whole test so that no broker started
        // by a test running alongside can take it (connecting to it is refused).
        using var bound = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        bound.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        int port = ((System.Net.IPEndPoint)bound.LocalEndPoint!).Port;
        Tools.Script(tool, ["--help"]); // the build, if any, is not part of the time measured
        var r = Tools.Script(tool, [.. args, "--bootstrap-server", $"127.0.0.1:{port}"], stdin: "x\n", timeoutMs: 60_000);
        Assert.True(r.ExitCode == 1, r.ToString());
        Assert.Contains($"{tool}: cannot reach the broker at 127.0.0.1:{port} within 10 s", r.Stderr);
        Assert.Contains("Connection refused", r.Stderr);
        Assert.True(r.Elapsed < TimeSpan.FromSeconds(30), r.ToString());
        Assert.Equal("", r.Stdout);
    }
}
