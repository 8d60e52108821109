using System.Net;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Kiou.Protocol.Messages;
using static Kiou.Broker.Tests.RawWire;

namespace Kiou.Broker.Tests;

/// <summary>
/// DeleteRecords (API 21) against a broker child process, from Confluent.Kafka's admin client: the new log start is
/// what ListOffsets earliest answers and where a consumer from the beginning starts, fetches below it are out of
/// range, the segments wholly below it are gone from disk, and it survives a SIGKILL and restart. Bad offsets,
/// unknown partitions, compacted and internal topics get Kafka's error codes.
/// </summary>
public sealed class DeleteRecordsTests : IDisposable
{
    readonly string _dataDir = Path.Combine(Path.GetTempPath(), "kiou-delrec-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        try
        {
            Directory.Delete(_dataDir, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }

    [Fact]
    public async Task DeleteRecords_moves_the_log_start_durably_and_consumers_start_there()
    {
        const string topic = "dr";
        int port = BrokerProcess.FreePort();
        using (var broker = BrokerProcess.Start(_dataDir, port: port))
        {
            await Clients.CreateTopicAsync(broker.Bootstrap, topic, 2, new Dictionary<string, string> { ["segment.bytes"] = "16384" });
            using (var producer = Clients.Producer(broker.Bootstrap, Acks.All))
            {
                // One record a batch: segments of 16 KiB then hold about sixteen records each.
                for (int i = 0; i < 100; i++)
                    await producer.ProduceAsync(new TopicPartition(topic, 0), new Message<byte[]?, byte[]?> { Value = System.Text.Encoding.UTF8.GetBytes($"v{i}".PadRight(1000)) });
                for (int i = 0; i < 10; i++)
                    await producer.ProduceAsync(new TopicPartition(topic, 1), new Message<byte[]?, byte[]?> { Value = [(byte)i] });
            }
            string dir = Path.Combine(_dataDir, topic + "-0");
            long[] basesBefore = Bases(dir);
            Assert.True(basesBefore.Length >= 5, $"{basesBefore.Length} segments");

            using (var admin = Clients.Admin(broker.Bootstrap))
            {
                var results = await admin.DeleteRecordsAsync([
                    new TopicPartitionOffset(topic, 0, 57),
                    new TopicPartitionOffset(topic, 1, Offset.End), // -1: the high watermark
                ]);
                Assert.Equal(57, results.Single(r => r.Partition == 0).Offset.Value);
                Assert.Equal(10, results.Single(r => r.Partition == 1).Offset.Value);

                // A smaller offset changes nothing and answers the current start.
                var again = await admin.DeleteRecordsAsync([new TopicPartitionOffset(topic, 0, 3)]);
                Assert.Equal(57, again.Single().Offset.Value);
            }

            long[] basesAfter = Bases(dir);
            Assert.True(basesAfter[0] <= 57 && (basesAfter.Length == 1 || basesAfter[1] > 57), string.Join(",", basesAfter));
            Assert.True(basesAfter.Length < basesBefore.Length);
            Assert.All(basesBefore.Where(b => b < basesAfter[0]), b => Assert.False(File.Exists(Path.Combine(dir, $"{b:D20}.log"))));

            AssertStartsAt(broker.Bootstrap, topic, 57, 100);
            using (var consumer = Clients.Consumer(broker.Bootstrap))
            {
                AssertWatermarks(consumer.QueryWatermarkOffsets(new TopicPartition(topic, 1), TimeSpan.FromSeconds(10)), 10, 10);
            }

            // Below the start: out of range, so auto.offset.reset decides (error here, earliest below).
            using (var strict = Clients.Consumer(broker.Bootstrap))
            {
                strict.Assign(new TopicPartitionOffset(topic, 0, 20));
                var e = Assert.Throws<ConsumeException>(() =>
                {
                    for (int i = 0; i < 40; i++)
                        strict.Consume(TimeSpan.FromMilliseconds(500));
                });
                Assert.Equal(ErrorCode.Local_AutoOffsetReset, e.Error.Code);
            }
            using (var earliest = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
            {
                BootstrapServers = broker.Bootstrap,
                GroupId = "delrec-earliest",
                EnableAutoCommit = false,
                AutoOffsetReset = AutoOffsetReset.Earliest,
            }).Build())
            {
                earliest.Assign(new TopicPartitionOffset(topic, 0, 20));
                var first = earliest.Consume(TimeSpan.FromSeconds(20));
                Assert.NotNull(first);
                Assert.Equal(57, first.Offset.Value);
            }

            broker.Kill(); // SIGKILL right after the answers: the start was durable before them
        }

        using (var restarted = BrokerProcess.Start(_dataDir, port: port))
        {
            AssertStartsAt(restarted.Bootstrap, topic, 57, 100);
            using var consumer = Clients.Consumer(restarted.Bootstrap);
            AssertWatermarks(consumer.QueryWatermarkOffsets(new TopicPartition(topic, 1), TimeSpan.FromSeconds(10)), 10, 10);
            Assert.DoesNotContain("WARN", restarted.Output);
        }
    }

    [Fact]
    public async Task Bad_offsets_unknown_partitions_compacted_and_internal_topics_get_Kafkas_errors()
    {
        using var broker = BrokerProcess.Start(_dataDir);
        await Clients.CreateTopicAsync(broker.Bootstrap, "plain", 1);
        await Clients.CreateTopicAsync(broker.Bootstrap, "compacted", 1, new Dictionary<string, string> { ["cleanup.policy"] = "compact" });
        await Clients.CreateTopicAsync(broker.Bootstrap, "both", 1, new Dictionary<string, string> { ["cleanup.policy"] = "compact,delete" });
        using (var producer = Clients.Producer(broker.Bootstrap, Acks.All))
        {
            foreach (string t in new[] { "plain", "compacted", "both" })
                for (int i = 0; i < 5; i++)
                    await producer.ProduceAsync(t, new Message<byte[]?, byte[]?> { Key = [(byte)i], Value = [(byte)i] });
        }

        using (var admin = Clients.Admin(broker.Bootstrap))
        {
            var tooFar = await Assert.ThrowsAsync<DeleteRecordsException>(() => admin.DeleteRecordsAsync([new TopicPartitionOffset("plain", 0, 6)]));
            Assert.Equal(ErrorCode.OffsetOutOfRange, tooFar.Results.Single().Error.Code);
            var policy = await Assert.ThrowsAsync<DeleteRecordsException>(() => admin.DeleteRecordsAsync([new TopicPartitionOffset("compacted", 0, 2)]));
            Assert.Equal(ErrorCode.PolicyViolation, policy.Results.Single().Error.Code);
            var both = await admin.DeleteRecordsAsync([new TopicPartitionOffset("both", 0, 2)]);
            Assert.Equal(2, both.Single().Offset.Value);
        }

        using (var committer = Clients.Consumer(broker.Bootstrap, group: "delrec-commit"))
            committer.Commit([new TopicPartitionOffset("plain", 0, 1)]); // brings __consumer_offsets into being

        // On the wire, at every version: what librdkafka checks itself before sending is asserted here.
        var endPoint = new IPEndPoint(IPAddress.Loopback, broker.Port);
        using var s = await ConnectAsync(endPoint);
        for (short version = 0; version <= 2; version++)
        {
            var response = await SendAsync<DeleteRecordsResponse>(s, new DeleteRecordsRequest
            {
                TimeoutMs = 5000,
                Topics =
                [
                    new() { Name = "plain", Partitions = [new() { PartitionIndex = 0, Offset = 7 }, new() { PartitionIndex = 3, Offset = 1 }] },
                    new() { Name = "missing", Partitions = [new() { PartitionIndex = 0, Offset = 1 }] },
                    new() { Name = "both", Partitions = [new() { PartitionIndex = 0, Offset = -2 }] },
                    new() { Name = "__consumer_offsets", Partitions = [new() { PartitionIndex = 0, Offset = 0 }] },
                ],
            }, DeleteRecordsRequest.ApiKey, version, correlation: version + 1);
            var byName = response.Topics.ToDictionary(t => t.Name);
            Assert.Equal([ErrorCodes.OffsetOutOfRange, ErrorCodes.UnknownTopicOrPartition], byName["plain"].Partitions.Select(p => p.ErrorCode));
            Assert.All(byName["plain"].Partitions, p => Assert.Equal(-1, p.LowWatermark));
            Assert.Equal(ErrorCodes.UnknownTopicOrPartition, byName["missing"].Partitions.Single().ErrorCode);
            Assert.Equal(ErrorCodes.OffsetOutOfRange, byName["both"].Partitions.Single().ErrorCode);
            Assert.Equal(ErrorCodes.InvalidTopicException, byName["__consumer_offsets"].Partitions.Single().ErrorCode);
        }

        var versions = await SendAsync<ApiVersionsResponse>(s, new ApiVersionsRequest(), ApiVersionsRequest.ApiKey, 0, 10);
        var advertised = versions.ApiKeys.Single(k => k.ApiKey == DeleteRecordsRequest.ApiKey);
        Assert.Equal((0, 2), (advertised.MinVersion, advertised.MaxVersion));
    }

    static long[] Bases(string dir) =>
        Directory.GetFiles(dir, "*.log").Select(f => long.Parse(Path.GetFileNameWithoutExtension(f))).Order().ToArray();

    static void AssertWatermarks(WatermarkOffsets w, long low, long high) => Assert.Equal((low, high), (w.Low.Value, w.High.Value));

    static void AssertStartsAt(string bootstrap, string topic, long start, long end)
    {
        using (var consumer = Clients.Consumer(bootstrap))
            AssertWatermarks(consumer.QueryWatermarkOffsets(new TopicPartition(topic, 0), TimeSpan.FromSeconds(10)), start, end);
        var all = Clients.ReadAll(bootstrap, topic, 1);
        Assert.Equal(end - start, all.Count);
        Assert.Equal(start, all[0].Offset.Value);
        Assert.StartsWith($"v{start} ", System.Text.Encoding.UTF8.GetString(all[0].Message.Value!));
    }
}
