using System.Diagnostics;

namespace Kiou.Broker.Tests;

/// <summary>kcat (Debian's package, librdkafka inside) driving the broker as a user would.</summary>
public sealed class KcatTests
{
    static (int ExitCode, string Stdout, string Stderr) Kcat(string args, string? stdin = null, int timeoutMs = 30000)
    {
        var psi = new ProcessStartInfo("kcat", args)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("kcat did not start");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (stdin is not null)
            p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        if (!p.WaitForExit(timeoutMs))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"kcat {args} did not finish in {timeoutMs} ms: {stderr.Result}");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

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
