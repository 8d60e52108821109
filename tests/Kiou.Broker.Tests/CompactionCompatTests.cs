using System.Diagnostics;
using System.Text;
using Confluent.Kafka;

namespace Kiou.Broker.Tests;

/// <summary>
/// A cleaned compacted topic read by kafka-python (Debian's python3-kafka 2.0.2), which raises IndexError on a fetch
/// response holding only batches without records (dpkp/kafka-python#2132): the cleaner ends a cleaned segment with
/// such a batch when everything at its end was removed.
/// </summary>
public sealed class CompactionCompatTests
{
    static byte[] B(string s) => Encoding.UTF8.GetBytes(s);

    [Fact]
    public async Task Kafka_python_reads_a_cleaned_compacted_topic_whose_segments_end_in_empty_batches_as_librdkafka_does()
    {
        string dir = Path.Combine(Path.GetTempPath(), "kiou-compaction-compat-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var broker = BrokerProcess.Start(dir, new Dictionary<string, string>
            {
                ["KIOU_LOG_CLEANER_BACKOFF_MS"] = "100",
                ["KIOU_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND"] = (256 << 20).ToString(),
            });
            const string topic = "compacted-kp";
            await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1, new Dictionary<string, string>
            {
                ["cleanup.policy"] = "compact",
                ["segment.bytes"] = "4096",
                ["min.cleanable.dirty.ratio"] = "0.01",
            });

            // Ten rounds over ten keys, one batch each: every segment but the last round's is overwritten entirely,
            // so the cleaned segments keep only the empty batch that ends them.
            const int keys = 10, rounds = 10, written = keys * rounds;
            var latest = new Dictionary<string, (long Offset, string Value)>();
            using (var producer = Clients.Producer(broker.Bootstrap, Acks.All))
            {
                for (int round = 0; round < rounds; round++)
                {
                    for (int k = 0; k < keys; k++)
                    {
                        string value = $"r{round}-k{k}-" + new string('x', 60);
                        var r = await producer.ProduceAsync(topic, new Message<byte[]?, byte[]?> { Key = B($"k{k}"), Value = B(value) });
                        latest[$"k{k}"] = (r.Offset.Value, value);
                    }
                }
            }

            // Unique filler keys roll the segments and make the log dirty; cleaning them removes nothing, so the
            // topic reads the same once the overwrites are gone.
            var deadline = Stopwatch.StartNew();
            List<ConsumeResult<byte[]?, byte[]?>> records;
            using (var filler = Clients.Producer(broker.Bootstrap, Acks.All))
            {
                int n = 0;
                while (true)
                {
                    for (int i = 0; i < 10; i++)
                        await filler.ProduceAsync(topic, new Message<byte[]?, byte[]?> { Key = B($"u{n++}"), Value = B(new string('f', 300)) });
                    records = Clients.ReadAll(broker.Bootstrap, topic, 1);
                    if (records.Count(r => r.Offset.Value < written) == keys)
                        break;
                    Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(45), $"not cleaned in time: {records.Count} records; broker output:\n{broker.Output}");
                    await Task.Delay(200);
                }
            }

            Assert.Contains($"log cleaner: cleaned partition {topic}-0", broker.Output);
            var mine = records.Where(r => r.Offset.Value < written).ToList();
            Assert.Equal(latest.Values.Select(v => v.Offset).Order(), mine.Select(r => r.Offset.Value));
            foreach (var r in mine)
                Assert.Equal(latest[Encoding.UTF8.GetString(r.Message.Key!)], (r.Offset.Value, Encoding.UTF8.GetString(r.Message.Value!)));

            var run = ChildProcess.Run("/usr/bin/python3", [Path.Combine(CompatTests.CompatDir, "kafka_python_read_compacted.py"), broker.Bootstrap, topic],
                timeoutMs: 60_000);
            Assert.True(run.ExitCode == 0, $"exit code {run.ExitCode}\nstdout:\n{run.Stdout}\nstderr:\n{run.Stderr}");
            Assert.Contains($"ok: consumed {records.Count} records", run.Stdout);
            var expected = records.Select(r => $"{r.Offset.Value} {Encoding.UTF8.GetString(r.Message.Key!)} {Encoding.UTF8.GetString(r.Message.Value!)}");
            var got = run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !l.StartsWith("ok: ", StringComparison.Ordinal));
            Assert.Equal(expected, got);
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
}
