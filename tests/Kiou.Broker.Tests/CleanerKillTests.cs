using System.Diagnostics;
using System.Text;
using Confluent.Kafka;

namespace Kiou.Broker.Tests;

/// <summary>
/// kill -9 of the broker while the log cleaner swaps segments (KIOU_TEST_CLEANER_SWAP_DELAY_MS holds each swap open),
/// KIOU_CLEANER_KILLS times (default 20): after every restart each key reads back its latest acknowledged value.
/// </summary>
public sealed class CleanerKillTests
{
    static byte[] B(string s) => Encoding.UTF8.GetBytes(s);

    [Fact]
    public async Task Killing_the_broker_during_cleaner_swaps_loses_no_live_key()
    {
        int kills = int.TryParse(Environment.GetEnvironmentVariable("KIOU_CLEANER_KILLS"), out int k) ? k : 20;
        var random = new Random(Environment.TickCount);
        string dir = Path.Combine(Path.GetTempPath(), "kiou-cleaner-kill-" + Guid.NewGuid().ToString("N"));
        string partitionDir = Path.Combine(dir, "kill-0");
        var env = new Dictionary<string, string>
        {
            ["KIOU_LOG_CLEANER_BACKOFF_MS"] = "50",
            ["KIOU_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND"] = (256 << 20).ToString(),
            ["KIOU_TEST_CLEANER_SWAP_DELAY_MS"] = "150",
        };
        var latest = new Dictionary<string, string>();
        int swapsSeen = 0;
        int completedAtStart = 0;
        try
        {
            for (int cycle = 0; cycle <= kills; cycle++)
            {
                using var broker = BrokerProcess.Start(dir, env);
                if (cycle == 0)
                {
                    await Clients.CreateTopicAsync(broker.Bootstrap, "kill", 1, new Dictionary<string, string>
                    {
                        ["cleanup.policy"] = "compact",
                        ["segment.bytes"] = "2048",
                        ["min.cleanable.dirty.ratio"] = "0.01",
                    });
                }
                else
                {
                    AssertLatest(broker, latest, cycle);
                    if (broker.Output.Contains("completed the log cleaner's swap", StringComparison.Ordinal))
                        completedAtStart++;
                }

                if (cycle == kills)
                {
                    break;
                }

                using (var producer = Clients.Producer(broker.Bootstrap, Acks.All))
                {
                    for (int round = 0; round < 3; round++)
                    {
                        for (int key = 0; key < 12; key++)
                        {
                            string value = $"c{cycle}-r{round}-{new string('v', random.Next(10, 80))}";
                            await producer.ProduceAsync("kill", new Message<byte[]?, byte[]?> { Key = B($"key{key}"), Value = B(value) });
                            latest[$"key{key}"] = value; // acknowledged: must survive
                        }
                    }
                }

                // Kill while a swap is under way: its .swap or .deleted files are on disk, or a moment after.
                var waited = Stopwatch.StartNew();
                while (waited.Elapsed < TimeSpan.FromSeconds(10))
                {
                    if (Directory.Exists(partitionDir) && Directory.EnumerateFiles(partitionDir).Any(f => f.EndsWith(".swap", StringComparison.Ordinal) || f.EndsWith(".deleted", StringComparison.Ordinal)))
                    {
                        swapsSeen++;
                        break;
                    }

                    await Task.Delay(2);
                }

                await Task.Delay(random.Next(0, 120));
                broker.Kill();
            }

            Assert.True(swapsSeen >= kills / 2, $"only {swapsSeen} of {kills} kills landed in a swap");
            Assert.True(kills < 5 || completedAtStart > 0, "no restart found a swap to complete: the kills never hit the swap window");
        }
        finally
        {
            try
            {
                Directory.Delete(dir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    static void AssertLatest(BrokerProcess broker, Dictionary<string, string> latest, int cycle)
    {
        var seen = new Dictionary<string, string>();
        long previous = -1;
        foreach (var r in Clients.ReadAll(broker.Bootstrap, "kill", 1))
        {
            Assert.True(r.Offset.Value > previous, "offsets out of order");
            previous = r.Offset.Value;
            seen[Encoding.UTF8.GetString(r.Message.Key!)] = Encoding.UTF8.GetString(r.Message.Value!);
        }

        foreach (var (key, value) in latest)
        {
            Assert.True(seen.TryGetValue(key, out var got), $"after kill {cycle}: {key} is gone. Broker output:\n{broker.Output}");
            Assert.True(value == got, $"after kill {cycle}: {key} reads {got}, not the acknowledged {value}. Broker output:\n{broker.Output}");
        }
    }
}
