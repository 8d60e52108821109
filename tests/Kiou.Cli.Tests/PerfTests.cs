using System.Globalization;
using System.Text.RegularExpressions;

namespace Kiou.Cli.Tests;

public sealed partial class PerfTests
{
    [GeneratedRegex(@"^(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th\.\n$")]
    private static partial Regex ProducerSummary();

    [Fact]
    public async Task Producer_perf_sends_every_record_and_prints_Kafkas_summary()
    {
        await using var broker = TestBroker.Start();
        var r = Tools.Script("producer-perf", ["--bootstrap-server", broker.Bootstrap, "--topic", "perf", "--num-records", "20000", "--record-size", "100",
            "--throughput", "-1", "--producer-props", "acks=1", "linger.ms=2", "--reporting-interval", "10"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        var m = ProducerSummary().Match(r.Stdout);
        Assert.True(m.Success, r.ToString());
        Assert.Equal("20000", m.Groups[1].Value);
        double P(int g) => double.Parse(m.Groups[g].Value, CultureInfo.InvariantCulture);
        Assert.True(P(2) > 0 && P(4) <= P(5) && P(6) <= P(7) && P(7) <= P(8) && P(8) <= P(9) && P(9) <= P(5), r.Stdout);
        Assert.Matches(@"\d+ records sent, [\d.]+ records/sec \([\d.]+ MB/sec\), [\d.]+ ms avg latency, [\d.]+ ms max latency\.\n", r.Stderr);
        var records = Check.ReadAll(broker.Bootstrap, "perf");
        Assert.Equal(20000, records.Count);
        Assert.All(records, x => Assert.Equal(100, x.Message.Value!.Length));
    }

    [Fact]
    public async Task Producer_perf_keeps_to_the_throughput_limit()
    {
        await using var broker = TestBroker.Start();
        var r = Tools.Script("producer-perf", ["--bootstrap-server", broker.Bootstrap, "--topic", "slow", "--num-records", "300", "--record-size", "10",
            "--throughput", "200"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        var m = ProducerSummary().Match(r.Stdout);
        Assert.True(m.Success, r.ToString());
        // 300 records at 200/s take at least 1.5 s: the rate cannot be above the limit (slower is allowed on a busy machine).
        Assert.True(double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture) <= 210, r.Stdout);
    }

    [Fact]
    public async Task Consumer_perf_reads_the_records_and_prints_Kafkas_summary()
    {
        await using var broker = TestBroker.Start();
        Check.Produce(broker.Bootstrap, "cperf", Enumerable.Range(0, 5000).Select(i => ((string?)null, new string('v', 100))));
        var r = Tools.Script("consumer-perf", ["--bootstrap-server", broker.Bootstrap, "--topic", "cperf", "--messages", "5000", "--group", "perf-group"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec", lines[0]);
        var cols = lines[1].Split(", ");
        Assert.Equal(10, cols.Length);
        Assert.Equal("0.4768", cols[2]); // 5000 * 100 bytes in MiB
        Assert.Equal("5000", cols[4]);
    }

    [Fact]
    public async Task Consumer_perf_gives_up_after_the_timeout_when_records_are_missing()
    {
        await using var broker = TestBroker.Start();
        Check.Produce(broker.Bootstrap, "few", [(null, "a"), (null, "b")]);
        var r = Tools.Script("consumer-perf", ["--bootstrap-server", broker.Bootstrap, "--topic", "few", "--messages", "10"]);
        Assert.True(r.ExitCode == 1, r.ToString());
        Assert.Contains("Exiting before consuming the expected number of messages", r.Stderr);
        Assert.Equal("2", r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)[1].Split(", ")[4]);
    }

    [Fact]
    public async Task Producer_perf_turns_a_record_too_large_into_one_line_and_exit_1()
    {
        await using var broker = TestBroker.Start();
        // Larger than the producer's own message.max.bytes: refused before it leaves the client.
        var local = Tools.Script("producer-perf", ["--bootstrap-server", broker.Bootstrap, "--topic", "big", "--num-records", "2", "--record-size", "2000000",
            "--throughput", "-1"]);
        Assert.True(local.ExitCode == 1, local.ToString());
        Assert.Matches(@"^producer-perf: [^\n]*2000000[^\n]*message\.max\.bytes[^\n]*\n$", local.Stderr);

        // Allowed by the producer, larger than the broker's max.message.bytes: the broker's error in the delivery report.
        var remote = Tools.Script("producer-perf", ["--bootstrap-server", broker.Bootstrap, "--topic", "big", "--num-records", "2", "--record-size", "2000000",
            "--throughput", "-1", "--producer-props", "message.max.bytes=3000000"]);
        Assert.True(remote.ExitCode == 1, remote.ToString());
        Assert.Matches(@"^producer-perf: [^\n]*not delivered to topic 'big'[^\n]*max\.message\.bytes[^\n]*\n$", remote.Stderr);
        Assert.DoesNotContain("   at ", remote.Stderr + local.Stderr);
    }
}
