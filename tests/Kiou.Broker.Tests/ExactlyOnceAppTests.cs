using System.Diagnostics;
using System.Text;
using Confluent.Kafka;

namespace Kiou.Broker.Tests;

/// <summary>
/// Issue 14: a consume-transform-produce application (kiou-txn-app: Confluent.Kafka, read_committed input in a group,
/// output records and consumed offsets in one transaction) is killed with SIGKILL at random moments and restarted;
/// a read_committed reader of the output then finds every input record exactly once, in order per partition.
/// KIOU_EOS_KILLS sets the number of kills (default 20), for longer runs by hand.
/// </summary>
public sealed class ExactlyOnceAppTests
{
    [Fact]
    public async Task A_transactional_app_killed_at_random_moments_writes_each_input_record_exactly_once()
    {
        int kills = int.TryParse(Environment.GetEnvironmentVariable("KIOU_EOS_KILLS"), out int k) ? k : 20;
        int seed = Environment.TickCount;
        var rng = new Random(seed);
        await using var broker = TestBroker.Start();
        const string input = "eos-in", output = "eos-out";
        const int partitions = 4, records = 6000;
        await Clients.CreateTopicAsync(broker.Bootstrap, input, partitions);
        await Clients.CreateTopicAsync(broker.Bootstrap, output, partitions);
        using (var producer = Clients.Producer(broker.Bootstrap, Acks.All))
        {
            for (int i = 0; i < records; i++)
                producer.Produce(new TopicPartition(input, i % partitions), new Message<byte[]?, byte[]?> { Value = Encoding.UTF8.GetBytes($"in-{i}") });
            Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(30)));
        }

        string app = Path.Combine(AppContext.BaseDirectory, "kiou-txn-app");
        string[] appArgs = [broker.Bootstrap, input, output, "eos-app", "eos-app-1"];
        int killed = 0;
        var log = new StringBuilder();
        for (int run = 0; killed < kills; run++)
        {
            using var p = Start(app, appArgs, log, run);
            // Killed once it works: after its assignment, at a random moment among its transactions.
            var deadline = Stopwatch.StartNew();
            while (!Text(log).Contains($"run {run}: assigned") && !p.HasExited && deadline.Elapsed < TimeSpan.FromSeconds(60))
                await Task.Delay(20);
            Assert.False(deadline.Elapsed >= TimeSpan.FromSeconds(60), $"run {run}: no assignment in 60 s (seed {seed})\n{Text(log)}");
            if (p.HasExited)
            {
                Assert.True(p.ExitCode == 0, $"run {run} exited with {p.ExitCode} (seed {seed})\n{Text(log)}");
                break; // everything was processed before the kills ran out
            }

            await Task.Delay(rng.Next(0, 1200));
            if (p.HasExited)
                break;
            p.Kill(); // SIGKILL
            p.WaitForExit();
            killed++;
            lock (log)
                log.AppendLine($"run {run}: killed at {Clock.ElapsedMilliseconds} ms");
        }

        // A last run to the end.
        using (var last = Start(app, appArgs, log, kills + 1))
        {
            Assert.True(last.WaitForExit(120_000), $"the last run did not finish (seed {seed})\n{Text(log)}");
            Assert.True(last.ExitCode == 0, $"the last run exited with {last.ExitCode} (seed {seed})\n{Text(log)}");
        }

        var outputRecords = Clients.ReadAll(broker.Bootstrap, output, partitions, isolation: IsolationLevel.ReadCommitted);
        for (int p = 0; p < partitions; p++)
        {
            var got = outputRecords.Where(r => r.Partition.Value == p).Select(r => Encoding.UTF8.GetString(r.Message.Value!)).ToList();
            var expected = Enumerable.Range(0, records).Where(i => i % partitions == p).Select(i => $"in-{i}->out").ToList();
            var duplicates = got.GroupBy(v => v).Where(g => g.Count() > 1).Select(g => g.Key).ToList();
            Assert.True(duplicates.Count == 0, $"partition {p}: {duplicates.Count} duplicated, e.g. {string.Join(",", duplicates.Take(5))}; {killed} kills (seed {seed})");
            Assert.True(got.SequenceEqual(expected), $"partition {p}: {got.Count} records, expected {expected.Count} in order; first difference at {got.Zip(expected).TakeWhile(x => x.First == x.Second).Count()}; {killed} kills (seed {seed})");
        }

        Assert.True(killed >= Math.Min(kills, 5), $"only {killed} kills happened before the input was processed (seed {seed})");
    }

    static readonly Stopwatch Clock = Stopwatch.StartNew();

    static string Text(StringBuilder log)
    {
        lock (log)
            return log.ToString();
    }

    static Process Start(string app, string[] args, StringBuilder log, int run)
    {
        var psi = new ProcessStartInfo(app) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        var p = Process.Start(psi) ?? throw new InvalidOperationException($"{app} did not start");
        lock (log)
            log.AppendLine($"run {run}: started at {Clock.ElapsedMilliseconds} ms");
        p.OutputDataReceived += (_, e) =>
        {
            if (e.Data is "assigned")
            {
                lock (log)
                    log.AppendLine($"run {run}: assigned at {Clock.ElapsedMilliseconds} ms");
            }
        };
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null && !e.Data.StartsWith('%'))
            {
                lock (log)
                    log.AppendLine($"run {run} stderr: {e.Data}");
            }
        };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }
}
