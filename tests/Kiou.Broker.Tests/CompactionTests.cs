using System.Diagnostics;
using System.Text;
using Confluent.Kafka;

namespace Kiou.Broker.Tests;

/// <summary>The log cleaner end to end with librdkafka: overwrites and tombstones to a compacted topic, then read back.</summary>
public sealed class CompactionTests
{
    static byte[] B(string s) => Encoding.UTF8.GetBytes(s);

    /// <summary>
    /// Batches of every codec, as librdkafka compresses them (several records per batch, so the cleaner decompresses,
    /// filters and recompresses): after cleaning, each topic reads back the latest value per key at its offset, and
    /// its tombstones are gone once delete.retention.ms has passed.
    /// </summary>
    [Fact]
    public async Task Batches_of_every_codec_are_cleaned_to_the_latest_value_per_key_at_unchanged_offsets()
    {
        string dir = Path.Combine(Path.GetTempPath(), "kiou-compaction-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var broker = BrokerProcess.Start(dir, new Dictionary<string, string>
            {
                ["KIOU_LOG_CLEANER_BACKOFF_MS"] = "100",
                ["KIOU_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND"] = (256 << 20).ToString(),
            });
            var codecs = new[] { CompressionType.None, CompressionType.Gzip, CompressionType.Snappy, CompressionType.Lz4, CompressionType.Zstd };
            var produced = new Dictionary<string, Dictionary<long, (string Key, string? Value)>>();
            var latest = new Dictionary<string, Dictionary<string, long>>();
            foreach (var codec in codecs)
            {
                string topic = $"compacted-{codec.ToString().ToLowerInvariant()}";
                await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1, new Dictionary<string, string>
                {
                    ["cleanup.policy"] = "compact",
                    ["segment.bytes"] = "2048",
                    ["min.cleanable.dirty.ratio"] = "0.01",
                    ["delete.retention.ms"] = "1000",
                });
                produced[topic] = [];
                latest[topic] = [];
                using var producer = Clients.Producer(broker.Bootstrap, Acks.All, codec, c => c.LingerMs = 20);
                for (int round = 0; round < 10; round++)
                {
                    // One round in flight at a time: the records of a round share batches.
                    var sends = Enumerable.Range(0, 20).Select(k => (Key: $"k{k}", Value: (string?)($"{codec}-r{round}-k{k}-" + new string('y', 30)))).ToList();
                    if (round == 9)
                        sends.AddRange(Enumerable.Range(0, 4).Select(k => (Key: $"k{k}", Value: (string?)null)));
                    var results = await Task.WhenAll(sends.Select(s => producer.ProduceAsync(topic, new Message<byte[]?, byte[]?> { Key = B(s.Key), Value = s.Value is null ? null : B(s.Value) })));
                    for (int i = 0; i < sends.Count; i++)
                    {
                        produced[topic][results[i].Offset.Value] = sends[i];
                        latest[topic][sends[i].Key] = results[i].Offset.Value;
                    }
                }
            }

            var deadline = Stopwatch.StartNew();
            using var filler = Clients.Producer(broker.Bootstrap, Acks.All);
            foreach (var codec in codecs)
            {
                string topic = $"compacted-{codec.ToString().ToLowerInvariant()}";
                long end = produced[topic].Keys.Max() + 1;
                List<ConsumeResult<byte[]?, byte[]?>> records;
                int n = 0;
                while (true)
                {
                    // Filler records roll segments and make the log dirty again, so the cleaner passes after the horizon.
                    for (int i = 0; i < 10; i++)
                        await filler.ProduceAsync(topic, new Message<byte[]?, byte[]?> { Key = B($"filler{n++ % 3}"), Value = B(new string('f', 200)) });
                    records = Clients.ReadAll(broker.Bootstrap, topic, 1).Where(r => r.Offset.Value < end).ToList();
                    bool tombstonesGone = !records.Any(r => r.Message.Value is null);
                    if (tombstonesGone && records.Count == 16)
                        break;
                    Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(60), $"{topic} not cleaned in time: {records.Count} records below offset {end}; broker output:\n{broker.Output}");
                    await Task.Delay(200);
                }

                foreach (var r in records)
                {
                    Assert.True(produced[topic].TryGetValue(r.Offset.Value, out var p), $"{topic}: offset {r.Offset.Value} was not produced");
                    Assert.Equal(p.Key, Encoding.UTF8.GetString(r.Message.Key!));
                    Assert.Equal(p.Value, Encoding.UTF8.GetString(r.Message.Value!));
                    Assert.Equal(latest[topic][p.Key], r.Offset.Value);
                }
                Assert.Equal(Enumerable.Range(4, 16).Select(k => $"k{k}").Order(), records.Select(r => Encoding.UTF8.GetString(r.Message.Key!)).Order());
            }
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

    [Fact]
    public async Task A_compacted_topic_reads_back_the_latest_value_per_key_at_its_offset_without_old_tombstones_and_a_committed_group_continues()
    {
        string dir = Path.Combine(Path.GetTempPath(), "kiou-compaction-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var broker = BrokerProcess.Start(dir, new Dictionary<string, string>
            {
                ["KIOU_LOG_CLEANER_BACKOFF_MS"] = "100",
                ["KIOU_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND"] = (256 << 20).ToString(),
            });
            const string topic = "compacted";
            await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1, new Dictionary<string, string>
            {
                ["cleanup.policy"] = "compact",
                ["segment.bytes"] = "4096",
                ["min.cleanable.dirty.ratio"] = "0.01",
                ["delete.retention.ms"] = "1500",
            });

            using (var admin = Clients.Admin(broker.Bootstrap))
            {
                var resource = new Confluent.Kafka.Admin.ConfigResource { Type = Confluent.Kafka.Admin.ResourceType.Topic, Name = topic };
                await admin.IncrementalAlterConfigsAsync(new Dictionary<Confluent.Kafka.Admin.ConfigResource, List<Confluent.Kafka.Admin.ConfigEntry>>
                {
                    [resource] = [new Confluent.Kafka.Admin.ConfigEntry { Name = "max.compaction.lag.ms", Value = "3600000", IncrementalOperation = Confluent.Kafka.Admin.AlterConfigOpType.Set }],
                });
                var entries = (await admin.DescribeConfigsAsync([resource]))[0].Entries;
                Assert.Equal("compact", entries["cleanup.policy"].Value);
                Assert.Equal("0.01", entries["min.cleanable.dirty.ratio"].Value);
                Assert.Equal("1500", entries["delete.retention.ms"].Value);
                Assert.Equal("3600000", entries["max.compaction.lag.ms"].Value);
                Assert.Equal("0", entries["min.compaction.lag.ms"].Value);
                Assert.True(entries["min.compaction.lag.ms"].IsDefault);
            }

            var produced = new Dictionary<long, (string Key, string? Value)>();
            var latest = new Dictionary<string, long>();
            using (var producer = Clients.Producer(broker.Bootstrap, Acks.All))
            {
                async Task Send(string key, string? value)
                {
                    var r = await producer.ProduceAsync(topic, new Message<byte[]?, byte[]?> { Key = B(key), Value = value is null ? null : B(value) });
                    produced[r.Offset.Value] = (key, value);
                    latest[key] = r.Offset.Value;
                }

                for (int round = 0; round < 20; round++)
                {
                    var sends = Enumerable.Range(0, 20).Select(k => (Key: $"k{k}", Value: $"r{round}-k{k}-" + new string('x', 40))).ToList();
                    foreach (var (key, value) in sends)
                        await Send(key, value);
                }

                for (int k = 0; k < 5; k++)
                    await Send($"k{k}", null); // tombstones, the last word on k0..k4
            }

            // A group commits in the middle, at an offset the cleaner removes (an early overwrite of k10).
            long committed = produced.First(p => p.Value.Key == "k10").Key;
            var tp = new TopicPartition(topic, 0);
            using (var c = Clients.Consumer(broker.Bootstrap, group: "mid"))
            {
                c.Assign(new TopicPartitionOffset(tp, committed));
                c.Commit([new TopicPartitionOffset(tp, committed)]);
            }

            // Roll until the tombstones are cleaned and past delete.retention.ms: filler writes make the log dirty again.
            var deadline = Stopwatch.StartNew();
            List<ConsumeResult<byte[]?, byte[]?>> records;
            using (var filler = Clients.Producer(broker.Bootstrap, Acks.All))
            {
                int n = 0;
                while (true)
                {
                    for (int i = 0; i < 10; i++)
                        await filler.ProduceAsync(topic, new Message<byte[]?, byte[]?> { Key = B($"filler{n++ % 3}"), Value = B(new string('f', 300)) });
                    records = Clients.ReadAll(broker.Bootstrap, topic, 1);
                    bool tombstonesGone = !records.Any(r => r.Message.Key is { } key && Encoding.UTF8.GetString(key) is "k0" or "k1" or "k2" or "k3" or "k4");
                    bool cleaned = records.Count(r => r.Offset.Value < 405) < 100;
                    if (tombstonesGone && cleaned)
                        break;
                    Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(45), $"not cleaned in time: {records.Count} records; broker output:\n{broker.Output}");
                    await Task.Delay(200);
                }
            }

            Assert.Contains("log cleaner: cleaned partition compacted-0", broker.Output);
            var mine = records.Where(r => r.Offset.Value < 405).ToList();
            foreach (var r in mine)
            {
                // Offsets unchanged: every record read is the one produced at its offset.
                Assert.True(produced.TryGetValue(r.Offset.Value, out var p), $"offset {r.Offset.Value} was not produced");
                Assert.Equal(p.Key, Encoding.UTF8.GetString(r.Message.Key!));
                Assert.Equal(p.Value, r.Message.Value is null ? null : Encoding.UTF8.GetString(r.Message.Value));
            }

            for (int k = 5; k < 20; k++)
            {
                var forKey = mine.Where(r => Encoding.UTF8.GetString(r.Message.Key!) == $"k{k}").ToList();
                Assert.Single(forKey);
                Assert.Equal(latest[$"k{k}"], forKey[0].Offset.Value);
            }

            // The group that committed in the middle continues at the next kept record.
            long expected = records.First(r => r.Offset.Value >= committed).Offset.Value;
            using (var c = Clients.Consumer(broker.Bootstrap, group: "mid"))
            {
                c.Assign(new TopicPartitionOffset(tp, Offset.Stored));
                var first = c.Consume(TimeSpan.FromSeconds(20));
                Assert.NotNull(first);
                Assert.False(first.IsPartitionEOF);
                Assert.Equal(expected, first.Offset.Value);
            }
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
