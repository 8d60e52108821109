using System.Collections.Concurrent;
using Confluent.Kafka;

namespace Kiou.Broker.Tests;

/// <summary>
/// SIGKILL mid-stream, several times, with KIOU_FLUSH=always and acks=all: every acknowledged record must be there
/// after each restart, at its acknowledged offset, and no torn batch may ever be served.
/// </summary>
public sealed class CrashTests
{
    [Fact]
    public async Task Acknowledged_records_survive_repeated_SIGKILLs()
    {
        int seed = Environment.TickCount;
        var rng = new Random(seed);
        string dataDir = Path.Combine(Path.GetTempPath(), "kiou-crash-" + Guid.NewGuid().ToString("N"));
        var env = new Dictionary<string, string> { ["KIOU_FLUSH"] = "always" };
        const string topic = "crash";
        const int partitions = 2;
        var acked = new ConcurrentDictionary<(int Partition, long Offset), string>();
        int port = BrokerProcess.FreePort();
        try
        {
            using (var first = BrokerProcess.Start(dataDir, env, port))
                await Clients.CreateTopicAsync(first.Bootstrap, topic, partitions);

            for (int round = 0; round < 4; round++)
            {
                using var broker = BrokerProcess.Start(dataDir, env, port);
                using var producer = Clients.Producer(broker.Bootstrap, Acks.All, CompressionType.Lz4, c =>
                {
                    c.LingerMs = 1;
                    c.MessageTimeoutMs = 4000;
                    c.EnableIdempotence = false; // the plain path: librdkafka needs retries for idempotence
                    c.MessageSendMaxRetries = 0; // a retried duplicate would still be fine; keep the check simple
                });
                using var stop = new CancellationTokenSource();
                int sequence = 0;
                var producing = Task.Run(async () =>
                {
                    while (!stop.IsCancellationRequested)
                    {
                        string value = $"r{round}-{sequence++}";
                        int partition = sequence % partitions;
                        producer.Produce(new TopicPartition(topic, partition), new Message<byte[]?, byte[]?> { Value = System.Text.Encoding.UTF8.GetBytes(value) }, report =>
                        {
                            if (report.Error.Code == ErrorCode.NoError)
                                Assert.True(acked.TryAdd((report.Partition.Value, report.Offset.Value), value), $"offset {report.Partition}/{report.Offset} acknowledged twice (seed {seed})");
                        });
                        if (sequence % 50 == 0)
                            await Task.Delay(1);
                    }
                });
                await Task.Delay(rng.Next(300, 1500));
                broker.Kill();
                stop.Cancel();
                await producing;
                producer.Flush(TimeSpan.FromSeconds(10)); // the rest fail: the broker is gone
            }

            using var final = BrokerProcess.Start(dataDir, env, port);
            var records = Clients.ReadAll(final.Bootstrap, topic, partitions);
            Assert.True(acked.Count > 100, $"only {acked.Count} records were acknowledged (seed {seed})");
            var stored = new Dictionary<(int, long), string>();
            foreach (var group in records.GroupBy(r => r.Partition.Value))
            {
                long expected = 0;
                foreach (var r in group.OrderBy(r => r.Offset.Value))
                {
                    Assert.Equal(expected++, r.Offset.Value); // dense: no hole, no torn batch skipped over
                    stored[(group.Key, r.Offset.Value)] = System.Text.Encoding.UTF8.GetString(r.Message.Value!);
                }
            }
            foreach (var ((partition, offset), value) in acked)
            {
                Assert.True(stored.TryGetValue((partition, offset), out var found), $"acknowledged {value} at {partition}/{offset} is missing (seed {seed})");
                Assert.Equal(value, found);
            }
        }
        finally
        {
            try
            {
                Directory.Delete(dataDir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }
}
