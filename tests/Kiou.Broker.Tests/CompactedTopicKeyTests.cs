using Confluent.Kafka;
using Kiou.Protocol;
using Kiou.Protocol.Messages;
using Kiou.Testing;
using static Kiou.Broker.Tests.RawWire;

namespace Kiou.Broker.Tests;

/// <summary>
/// KIP-467 as Kafka's LogValidator applies it: a compacted topic cannot hold a record without a key (the cleaner
/// could never retire it), so Produce refuses the whole batch with INVALID_RECORD and names the record in
/// record_errors; other topics take keyless records.
/// </summary>
public sealed class CompactedTopicKeyTests
{
    static readonly string[] Codecs = ["none", "gzip", "snappy", "lz4", "zstd"];

    [Fact]
    public async Task Keyless_records_to_a_compacted_topic_are_refused_with_the_record_index_and_nothing_is_appended()
    {
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, "compacted", 1, new() { ["cleanup.policy"] = "compact" });
        await Clients.CreateTopicAsync(broker.Bootstrap, "both", 1, new() { ["cleanup.policy"] = "compact,delete" });
        await Clients.CreateTopicAsync(broker.Bootstrap, "plain", 1);
        using var s = await ConnectAsync(broker.Broker.BrokerEndPoint);
        int correlation = 0;
        foreach (string codec in Codecs)
        {
            byte[] Batch(int[]? keyless)
            {
                byte[] uncompressed = TestBatches.Uncompressed(4, keyless: keyless);
                return codec == "none" ? uncompressed : CompressedBatches.Compressed(codec, uncompressed);
            }

            foreach (string topic in new[] { "compacted", "both" })
            {
                // Kafka names every keyless record, so a client fails just those (librdkafka: the others get
                // _INVALID_DIFFERENT_RECORD and may be retried).
                var refused = await ProduceAsync(s, topic, Batch(keyless: [1, 3]), ++correlation);
                Assert.True(refused.ErrorCode == ErrorCodes.InvalidRecord, $"{codec} to {topic}: error {refused.ErrorCode} {refused.ErrorMessage}");
                Assert.Equal([1, 3], refused.RecordErrors.Select(e => e.BatchIndex).ToArray());
                Assert.All(refused.RecordErrors, e => Assert.Equal($"Compacted topic cannot accept message without key in topic partition {topic}-0.", e.BatchIndexErrorMessage));
                Assert.Contains("without key", refused.ErrorMessage);

                var keyed = await ProduceAsync(s, topic, Batch(keyless: null), ++correlation);
                Assert.Equal(ErrorCodes.None, keyed.ErrorCode);
            }
            var plain = await ProduceAsync(s, "plain", Batch(keyless: [1, 3]), ++correlation);
            Assert.Equal(ErrorCodes.None, plain.ErrorCode);
        }

        // Only the keyed batches were appended: 4 records per codec.
        Assert.Equal(4 * Codecs.Length, Clients.ReadAll(broker.Bootstrap, "compacted", 1).Count);
        Assert.Equal(4 * Codecs.Length, Clients.ReadAll(broker.Bootstrap, "both", 1).Count);
        Assert.Equal(4 * Codecs.Length, Clients.ReadAll(broker.Bootstrap, "plain", 1).Count);
    }

    [Fact]
    public async Task Librdkafka_gets_invalid_record_for_a_keyless_record_to_a_compacted_topic()
    {
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, "compacted", 1, new() { ["cleanup.policy"] = "compact" });
        using var producer = new ProducerBuilder<byte[]?, byte[]>(new ProducerConfig { BootstrapServers = broker.Bootstrap, EnableIdempotence = true, MessageTimeoutMs = 10000 }).Build();
        var ok = await producer.ProduceAsync("compacted", new Message<byte[]?, byte[]> { Key = "k"u8.ToArray(), Value = "v"u8.ToArray() });
        Assert.Equal(0, ok.Offset.Value);
        var e = await Assert.ThrowsAsync<ProduceException<byte[]?, byte[]>>(() =>
            producer.ProduceAsync("compacted", new Message<byte[]?, byte[]> { Key = null, Value = "no key"u8.ToArray() }));
        Assert.Equal(ErrorCode.InvalidRecord, e.Error.Code);
    }

    static async Task<ProduceResponse.PartitionProduceResponse> ProduceAsync(System.Net.Sockets.Socket s, string topic, byte[] records, int correlation)
    {
        var request = new ProduceRequest
        {
            Acks = -1,
            TimeoutMs = 5000,
            TopicData = [new ProduceRequest.TopicProduceData { Name = topic, PartitionData = [new ProduceRequest.PartitionProduceData { Index = 0, Records = records }] }],
        };
        var response = await SendAsync<ProduceResponse>(s, request, 0, 8, correlation);
        return response.Responses[0].PartitionResponses[0];
    }
}
