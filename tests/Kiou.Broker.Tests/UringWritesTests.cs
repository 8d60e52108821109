using System.Text;
using Confluent.Kafka;

namespace Kiou.Broker.Tests;

/// <summary>
/// KIOU_URING_WRITES: with <c>inline</c> the ring thread writes appends itself (pwritev); produce and consume through
/// librdkafka must see the same log as with the default. An unknown value stops the broker with a message naming
/// the variable.
/// </summary>
public sealed class UringWritesTests
{
    [Theory]
    [InlineData("direct")]
    [InlineData("ring")]
    [InlineData("inline")]
    public async Task Records_produced_concurrently_come_back_dense_and_in_order(string writes)
    {
        string dataDir = Path.Combine(Path.GetTempPath(), "kiou-writes-" + Guid.NewGuid().ToString("N"));
        var env = new Dictionary<string, string> { ["KIOU_IO"] = "uring", ["KIOU_URING_WRITES"] = writes, ["KIOU_FLUSH"] = "always" };
        try
        {
            BrokerProcess broker;
            try
            {
                broker = BrokerProcess.Start(dataDir, env);
            }
            catch (InvalidOperationException e) when (e.Message.Contains("io_uring cannot be used"))
            {
                return; // a machine without io_uring; IoModeTests covers the message
            }
            using (broker)
            {
                await Clients.CreateTopicAsync(broker.Bootstrap, "w", 1);
                const int producers = 4, perProducer = 500;
                var acked = new List<(long Offset, string Value)>();
                await Task.WhenAll(Enumerable.Range(0, producers).Select(p => Task.Run(async () =>
                {
                    using var producer = Clients.Producer(broker.Bootstrap, Acks.All, configure: c => c.BatchSize = 4096);
                    var sends = Enumerable.Range(0, perProducer).Select(i => producer.ProduceAsync("w",
                        new Message<byte[]?, byte[]?> { Value = Encoding.UTF8.GetBytes($"{p}-{i}") })).ToList();
                    foreach (var report in await Task.WhenAll(sends))
                    {
                        lock (acked)
                            acked.Add((report.Offset.Value, Encoding.UTF8.GetString(report.Message.Value!)));
                    }
                })));

                var read = Clients.ReadAll(broker.Bootstrap, "w", 1);
                Assert.Equal(producers * perProducer, read.Count);
                Assert.Equal(Enumerable.Range(0, read.Count).Select(i => (long)i), read.Select(r => r.Offset.Value));
                var byOffset = read.ToDictionary(r => r.Offset.Value, r => Encoding.UTF8.GetString(r.Message.Value!));
                Assert.All(acked, a => Assert.Equal(a.Value, byOffset[a.Offset]));
                Assert.Equal(0, broker.Terminate());
            }
        }
        finally
        {
            Directory.Delete(dataDir, recursive: true);
        }
    }

    [Fact]
    public void An_unknown_value_is_refused_at_start_naming_the_variable()
    {
        string dataDir = Path.Combine(Path.GetTempPath(), "kiou-writes-" + Guid.NewGuid().ToString("N"));
        try
        {
            var e = Assert.Throws<InvalidOperationException>(() =>
                BrokerProcess.Start(dataDir, new Dictionary<string, string> { ["KIOU_URING_WRITES"] = "sometimes" }).Dispose());
            Assert.Contains("KIOU_URING_WRITES=sometimes", e.Message);
        }
        finally
        {
            if (Directory.Exists(dataDir))
                Directory.Delete(dataDir, recursive: true);
        }
    }
}
