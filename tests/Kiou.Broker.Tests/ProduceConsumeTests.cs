using Confluent.Kafka;

namespace Kiou.Broker.Tests;

/// <summary>The broker core's end-to-end promise, checked with librdkafka (Confluent.Kafka) as the client.</summary>
public sealed class ProduceConsumeTests
{
    sealed record Sent(int Partition, byte[]? Key, byte[]? Value, List<(string Key, byte[]? Value)> Headers, long TimestampMs, long Offset);

    [Fact]
    public async Task Every_codec_and_acks_level_round_trips_byte_for_byte_and_survives_a_restart()
    {
        await using var broker = TestBroker.Start();
        const string topic = "all-codecs";
        const int partitions = 3;
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, partitions);

        var codecs = new[] { CompressionType.None, CompressionType.Gzip, CompressionType.Snappy, CompressionType.Lz4, CompressionType.Zstd };
        var acksLevels = new[] { Acks.None, Acks.Leader, Acks.All };
        const int total = 100_000;
        int perRun = total / (codecs.Length * acksLevels.Length) + 1;
        var rng = new Random(12345);
        var sent = new List<Sent>(total);
        long baseTime = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 3_600_000;
        int n = 0;
        foreach (var acks in acksLevels)
        {
            foreach (var codec in codecs)
            {
                using var producer = Clients.Producer(broker.Bootstrap, acks, codec);
                var batch = new List<(Sent, Task<DeliveryResult<byte[]?, byte[]?>>)>();
                for (int i = 0; i < perRun && n < total; i++, n++)
                {
                    int partition = n % partitions;
                    byte[]? key = n % 7 == 0 ? null : RandomBytes(rng, rng.Next(1, 32));
                    byte[]? value = n % 11 == 0 ? null : RandomBytes(rng, rng.Next(0, 300));
                    var headers = new List<(string, byte[]?)>();
                    for (int h = 0; h < n % 3; h++)
                        headers.Add(($"h{h}", h == 1 ? null : RandomBytes(rng, 8)));
                    long ts = baseTime + n; // strictly increasing, so time lookups have one right answer
                    var message = new Message<byte[]?, byte[]?> { Key = key, Value = value, Timestamp = new Timestamp(ts, TimestampType.CreateTime) };
                    if (headers.Count > 0)
                    {
                        message.Headers = [];
                        foreach (var (hk, hv) in headers)
                            message.Headers.Add(hk, hv);
                    }
                    var s = new Sent(partition, key, value, headers, ts, -1);
                    batch.Add((s, producer.ProduceAsync(new TopicPartition(topic, partition), message)));
                }
                foreach (var (s, task) in batch)
                {
                    var result = await task;
                    Assert.Equal(PersistenceStatus.Persisted, acks == Acks.None ? PersistenceStatus.Persisted : result.Status);
                    sent.Add(acks == Acks.None ? s : s with { Offset = result.Offset.Value });
                }
                producer.Flush(TimeSpan.FromSeconds(30));
            }
        }
        Assert.Equal(total, sent.Count);

        var consumed = Clients.ReadAll(broker.Bootstrap, topic, partitions);
        AssertSameRecords(sent, consumed, partitions);

        // Offsets by time: every partition's records have increasing timestamps; a lookup must land on the first
        // record whose timestamp is >= the one asked for.
        using (var consumer = Clients.Consumer(broker.Bootstrap))
        {
            var byPartition = consumed.GroupBy(r => r.Partition.Value).ToDictionary(g => g.Key, g => g.ToList());
            foreach (var (partition, records) in byPartition)
            {
                var target = records[records.Count / 2];
                var query = new[]
                {
                    new TopicPartitionTimestamp(topic, partition, new Timestamp(target.Message.Timestamp.UnixTimestampMs, TimestampType.CreateTime)),
                };
                var found = consumer.OffsetsForTimes(query, TimeSpan.FromSeconds(10));
                // Compressed batches answer with the batch's first offset (see docs): at or before the exact record.
                long exact = target.Offset.Value;
                Assert.InRange(found[0].Offset.Value, records[0].Offset.Value, exact);
                var beyond = consumer.OffsetsForTimes(
                    [new TopicPartitionTimestamp(topic, partition, new Timestamp(records[^1].Message.Timestamp.UnixTimestampMs + 1000, TimestampType.CreateTime))],
                    TimeSpan.FromSeconds(10));
                Assert.Equal(Offset.End, beyond[0].Offset);
            }
        }

        await broker.RestartAsync();
        var again = Clients.ReadAll(broker.Bootstrap, topic, partitions);
        Assert.Equal(consumed.Count, again.Count);
        // Partitions interleave differently on each read: compare in (partition, offset) order.
        consumed = [.. consumed.OrderBy(r => r.Partition.Value).ThenBy(r => r.Offset.Value)];
        again = [.. again.OrderBy(r => r.Partition.Value).ThenBy(r => r.Offset.Value)];
        for (int i = 0; i < consumed.Count; i++)
        {
            Assert.Equal(consumed[i].TopicPartitionOffset, again[i].TopicPartitionOffset);
            Assert.Equal(consumed[i].Message.Key, again[i].Message.Key);
            Assert.Equal(consumed[i].Message.Value, again[i].Message.Value);
        }
    }

    [Fact]
    public async Task Time_lookup_is_exact_for_uncompressed_batches()
    {
        await using var broker = TestBroker.Start();
        const string topic = "times";
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);
        long t0 = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 100_000;
        using (var producer = Clients.Producer(broker.Bootstrap, Acks.All))
        {
            for (int i = 0; i < 1000; i++)
                producer.Produce(new TopicPartition(topic, 0), new Message<byte[]?, byte[]?> { Value = [1], Timestamp = new Timestamp(t0 + i * 10, TimestampType.CreateTime) });
            producer.Flush(TimeSpan.FromSeconds(10));
        }
        using var consumer = Clients.Consumer(broker.Bootstrap);
        foreach (int i in new[] { 0, 1, 333, 998, 999 })
        {
            var r = consumer.OffsetsForTimes([new TopicPartitionTimestamp(topic, 0, new Timestamp(t0 + i * 10 - 5, TimestampType.CreateTime))], TimeSpan.FromSeconds(10));
            Assert.Equal(i, r[0].Offset.Value);
        }
    }

    static void AssertSameRecords(List<Sent> sent, List<ConsumeResult<byte[]?, byte[]?>> consumed, int partitions)
    {
        Assert.Equal(sent.Count, consumed.Count);
        for (int p = 0; p < partitions; p++)
        {
            var expected = sent.Where(s => s.Partition == p).ToList();
            var actual = consumed.Where(c => c.Partition.Value == p).ToList();
            Assert.Equal(expected.Count, actual.Count);
            for (int i = 0; i < expected.Count; i++)
            {
                var e = expected[i];
                var a = actual[i];
                Assert.Equal(i, a.Offset.Value); // dense offsets from 0, in produce order
                if (e.Offset >= 0)
                    Assert.Equal(e.Offset, a.Offset.Value);
                Assert.Equal(e.Key, a.Message.Key);
                Assert.Equal(e.Value, a.Message.Value);
                Assert.Equal(e.TimestampMs, a.Message.Timestamp.UnixTimestampMs);
                var headers = a.Message.Headers?.Select(h => (h.Key, h.GetValueBytes())).ToList() ?? [];
                Assert.Equal(e.Headers.Count, headers.Count);
                for (int h = 0; h < headers.Count; h++)
                {
                    Assert.Equal(e.Headers[h].Key, headers[h].Key);
                    Assert.Equal(e.Headers[h].Value, headers[h].Item2);
                }
            }
        }
    }

    static byte[] RandomBytes(Random rng, int length)
    {
        var b = new byte[length];
        rng.NextBytes(b);
        return b;
    }
}
