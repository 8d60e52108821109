using System.Globalization;
using Confluent.Kafka;

namespace Kiou.Broker.Tests;

/// <summary>
/// KIOU_READ_CACHE_BYTES through a real client: two producers write records of many sizes while a consumer follows
/// behind them, then a second consumer reads everything from the start; with the default cache, one of a single chunk
/// and none, every record comes back dense, in order and with the bytes acknowledged. With the cache on and the
/// write-behind in use (not KIOU_IO=sync), the consumers' reads are counted as served from memory; the tiny one never
/// holds more than its chunk.
/// </summary>
public sealed class ReadCacheTests
{
    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    static byte[] Value(int producer, int i)
    {
        int size = (i * 7919 % 5) switch { 0 => 10, 1 => 700, 2 => 5_000, 3 => 40_000, _ => 120_000 };
        var value = new byte[size];
        new Random((producer * 100_000) + i).NextBytes(value);
        return value;
    }

    [Theory]
    [InlineData(null)]
    [InlineData("65536")]
    [InlineData("0")]
    public async Task Consumers_behind_the_producers_read_every_record_right(string? cacheBytes)
    {
        string dir = Path.Combine(Path.GetTempPath(), "kiou-readcache-" + Guid.NewGuid().ToString("N"));
        try
        {
            int httpPort = BrokerProcess.FreePort();
            var env = new Dictionary<string, string> { ["KIOU_HTTP_PORT"] = httpPort.ToString(CultureInfo.InvariantCulture) };
            if (cacheBytes is not null)
                env["KIOU_READ_CACHE_BYTES"] = cacheBytes;
            using var broker = BrokerProcess.Start(dir, env);
            const string topic = "cached";
            const int producers = 2, perProducer = 300;
            await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);

            // A consumer following the producers from the start while they write.
            using var done = new CancellationTokenSource();
            var followed = new List<ConsumeResult<byte[]?, byte[]?>>();
            // The producers start once the follower has fetched: the broker keeps written bytes in memory only for
            // partitions being read.
            var reading = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var follower = Task.Run(() =>
            {
                using var consumer = Clients.Consumer(broker.Bootstrap, isolation: IsolationLevel.ReadUncommitted);
                consumer.Assign(new TopicPartitionOffset(topic, 0, Offset.Beginning));
                while (followed.Count < producers * perProducer && !done.IsCancellationRequested)
                {
                    var r = consumer.Consume(TimeSpan.FromMilliseconds(200));
                    if (r is not null)
                        reading.TrySetResult();
                    if (r is { IsPartitionEOF: false })
                        followed.Add(r);
                }
                consumer.Close();
            });
            if (await Task.WhenAny(reading.Task, follower, Task.Delay(TimeSpan.FromSeconds(30))) != reading.Task)
                Assert.Fail("the following consumer did not reach the end of the empty partition");

            var acked = new List<(long Offset, byte[] Value)>();
            await Task.WhenAll(Enumerable.Range(0, producers).Select(p => Task.Run(async () =>
            {
                using var producer = Clients.Producer(broker.Bootstrap, Acks.Leader, configure: c => c.BatchSize = 1_000_000);
                var sends = Enumerable.Range(0, perProducer).Select(i => producer.ProduceAsync(topic, new Message<byte[]?, byte[]?> { Value = Value(p, i) })).ToList();
                foreach (var report in await Task.WhenAll(sends))
                {
                    lock (acked)
                        acked.Add((report.Offset.Value, report.Message.Value!));
                }
            })));

            if (await Task.WhenAny(follower, Task.Delay(TimeSpan.FromSeconds(60))) != follower)
            {
                await done.CancelAsync();
                Assert.Fail($"the following consumer read {followed.Count} of {producers * perProducer} records");
            }
            var read = Clients.ReadAll(broker.Bootstrap, topic, 1);
            var byOffset = acked.ToDictionary(a => a.Offset, a => a.Value);
            foreach (var records in new[] { followed, read })
            {
                Assert.Equal(Enumerable.Range(0, producers * perProducer).Select(i => (long)i), records.Select(r => r.Offset.Value));
                Assert.All(records, r => Assert.True(byOffset[r.Offset.Value].AsSpan().SequenceEqual(r.Message.Value), $"offset {r.Offset.Value} differs"));
            }

            string metrics = await Http.GetStringAsync($"http://127.0.0.1:{httpPort}/metrics");
            double hits = Metric(metrics, "kiou_read_cache_hits_bytes_total");
            double size = Metric(metrics, "kiou_read_cache_size_bytes");
            if (cacheBytes == "0")
            {
                Assert.Equal(0, size);
            }
            else if (cacheBytes is null && TestBroker.IoModeFromEnvironment != "sync")
            {
                Assert.True(hits > 0, "no fetched bytes were served from memory");
                Assert.InRange(size, 1, Kiou.Storage.ReadCache.DefaultCapacityBytes);
            }
            else
            {
                Assert.InRange(size, 0, 65536); // one chunk at most
            }
            Assert.Equal(0, broker.Terminate());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    static double Metric(string text, string name)
    {
        string? line = text.Split('\n').FirstOrDefault(l => l.StartsWith(name + "{", StringComparison.Ordinal) || l.StartsWith(name + " ", StringComparison.Ordinal));
        Assert.True(line is not null, $"{name} not exported");
        return double.Parse(line![(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
    }
}
