using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Kiou.Protocol;
using Kiou.Protocol.Messages;

using static Kiou.Broker.Tests.RawWire;

namespace Kiou.Broker.Tests;

/// <summary>
/// Issue 13: InitProducerId and the sequence rules of idempotent produce, on the wire (Kafka's ProducerAppendInfo
/// semantics, docs/design/producer-state.md): a retry of a stored batch gets its original offset and appends nothing,
/// a gap is OUT_OF_ORDER_SEQUENCE_NUMBER, an old epoch INVALID_PRODUCER_EPOCH; the state survives restarts.
/// </summary>
public sealed class IdempotenceWireTests
{
    const short OutOfOrderSequence = 45;
    const short InvalidProducerEpoch = 47;

    [Fact]
    public async Task InitProducerId_hands_out_new_ids()
    {
        await using var broker = TestBroker.Start();
        using var s = await ConnectAsync(broker.Broker.BrokerEndPoint);
        var versions = await SendAsync<ApiVersionsResponse>(s, new ApiVersionsRequest(), ApiVersionsRequest.ApiKey, 3, 1);
        Assert.Contains(versions.ApiKeys, k => k.ApiKey == InitProducerIdRequest.ApiKey && k.MinVersion == 0 && k.MaxVersion == 5);
        Assert.Contains(versions.ApiKeys, k => k.ApiKey == DescribeProducersRequest.ApiKey);

        var ids = new HashSet<long>();
        for (short v = 0; v <= 5; v++)
        {
            var r = await SendAsync<InitProducerIdResponse>(s, new InitProducerIdRequest { TransactionalId = null, TransactionTimeoutMs = 60000 }, InitProducerIdRequest.ApiKey, v, 10 + v);
            Assert.Equal(0, r.ErrorCode);
            Assert.Equal(0, r.ProducerEpoch);
            Assert.True(r.ProducerId >= 0);
            Assert.True(ids.Add(r.ProducerId), $"producer id {r.ProducerId} handed out twice");
        }

        // A transactional id is the transaction coordinator's (TransactionWireTests): an id from the same allocator.
        var tx = await SendAsync<InitProducerIdResponse>(s, new InitProducerIdRequest { TransactionalId = "tx-1", TransactionTimeoutMs = 60000 }, InitProducerIdRequest.ApiKey, 4, 20);
        Assert.Equal(0, tx.ErrorCode);
        Assert.True(ids.Add(tx.ProducerId), $"producer id {tx.ProducerId} handed out twice");
        var bad = await SendAsync<InitProducerIdResponse>(s, new InitProducerIdRequest { TransactionalId = null, ProducerId = 5, ProducerEpoch = -1 }, InitProducerIdRequest.ApiKey, 4, 21);
        Assert.Equal(42, bad.ErrorCode); // INVALID_REQUEST

        // Ids are never reused across a restart.
        await broker.RestartAsync();
        using var s2 = await ConnectAsync(broker.Broker.BrokerEndPoint);
        var after = await SendAsync<InitProducerIdResponse>(s2, new InitProducerIdRequest { TransactionalId = null }, InitProducerIdRequest.ApiKey, 4, 30);
        Assert.True(after.ProducerId > ids.Max(), $"after restart {after.ProducerId}, before up to {ids.Max()}");
    }

    [Fact]
    public async Task Duplicates_get_the_original_offset_gaps_and_old_epochs_are_refused_and_state_survives_a_restart()
    {
        await using var broker = TestBroker.Start();
        const string topic = "idem-wire";
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);
        using var s = await ConnectAsync(broker.Broker.BrokerEndPoint);
        var init = await SendAsync<InitProducerIdResponse>(s, new InitProducerIdRequest { TransactionalId = null }, InitProducerIdRequest.ApiKey, 4, 1);
        long pid = init.ProducerId;

        var first = await ProduceAsync(s, topic, IdempotentBatches.Of(3, pid, 0, 0), 2);
        Assert.Equal((short)0, first.ErrorCode);
        Assert.Equal(0, first.BaseOffset);
        var second = await ProduceAsync(s, topic, IdempotentBatches.Of(2, pid, 0, 3), 3);
        Assert.Equal(3, second.BaseOffset);

        // A retry of either of the last batches: its original offset, nothing appended.
        var retry = await ProduceAsync(s, topic, IdempotentBatches.Of(3, pid, 0, 0), 4);
        Assert.Equal((short)0, retry.ErrorCode);
        Assert.Equal(0, retry.BaseOffset);
        var retry2 = await ProduceAsync(s, topic, IdempotentBatches.Of(2, pid, 0, 3), 5);
        Assert.Equal(3, retry2.BaseOffset);
        Assert.Equal(5, broker.Broker.Logs.Get(topic, 0)!.HighWatermark);

        // A gap.
        var gap = await ProduceAsync(s, topic, IdempotentBatches.Of(1, pid, 0, 7), 6);
        Assert.Equal(OutOfOrderSequence, gap.ErrorCode);
        Assert.Equal(5, broker.Broker.Logs.Get(topic, 0)!.HighWatermark);

        // A new epoch starting at 0 is taken; the old epoch is then fenced.
        var bumped = await ProduceAsync(s, topic, IdempotentBatches.Of(1, pid, 1, 0), 7);
        Assert.Equal((short)0, bumped.ErrorCode);
        Assert.Equal(5, bumped.BaseOffset);
        var old = await ProduceAsync(s, topic, IdempotentBatches.Of(1, pid, 0, 5), 8);
        Assert.Equal(InvalidProducerEpoch, old.ErrorCode);
        var notZero = await ProduceAsync(s, topic, IdempotentBatches.Of(1, pid, 2, 4), 9);
        Assert.Equal(OutOfOrderSequence, notZero.ErrorCode);

        // DescribeProducers sees the producer.
        var described = await SendAsync<DescribeProducersResponse>(s, new DescribeProducersRequest
        {
            Topics = [new DescribeProducersRequest.TopicRequest { Name = topic, PartitionIndexes = [0] }],
        }, DescribeProducersRequest.ApiKey, 0, 10);
        var state = Assert.Single(described.Topics[0].Partitions[0].ActiveProducers);
        Assert.Equal(pid, state.ProducerId);
        Assert.Equal(1, state.ProducerEpoch);
        Assert.Equal(0, state.LastSequence);

        // A clean restart: the retry of the last batch is still a duplicate, the next sequence follows.
        await broker.RestartAsync();
        using var s2 = await ConnectAsync(broker.Broker.BrokerEndPoint);
        var again = await ProduceAsync(s2, topic, IdempotentBatches.Of(1, pid, 1, 0), 11);
        Assert.Equal((short)0, again.ErrorCode);
        Assert.True(again.BaseOffset == 5, $"retry after restart at {again.BaseOffset}; broker log: {string.Join('\n', broker.LogText.ToString().Split('\n').Where(l => l.Contains("producer") || l.Contains("idem-wire")))}");
        var next = await ProduceAsync(s2, topic, IdempotentBatches.Of(1, pid, 1, 1), 12);
        Assert.Equal(6, next.BaseOffset);
        var gapAfter = await ProduceAsync(s2, topic, IdempotentBatches.Of(1, pid, 1, 9), 13);
        Assert.Equal(OutOfOrderSequence, gapAfter.ErrorCode);
        Assert.Equal(7, broker.Broker.Logs.Get(topic, 0)!.HighWatermark);
    }

    [Fact]
    public async Task After_a_kill_9_the_retry_of_the_last_acknowledged_batch_is_still_a_duplicate()
    {
        string dataDir = Path.Combine(Path.GetTempPath(), "kiou-idem-kill-" + Guid.NewGuid().ToString("N"));
        int port = BrokerProcess.FreePort();
        var env = new Dictionary<string, string> { ["KIOU_FLUSH"] = "always" };
        const string topic = "idem-kill";
        try
        {
            long pid;
            using (var broker = BrokerProcess.Start(dataDir, env, port))
            {
                await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1, new Dictionary<string, string> { ["segment.bytes"] = "2048" });
                using var s = await ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
                pid = (await SendAsync<InitProducerIdResponse>(s, new InitProducerIdRequest { TransactionalId = null }, InitProducerIdRequest.ApiKey, 4, 1)).ProducerId;
                // Enough batches to roll segments (snapshots at roll), then a kill without a clean shutdown.
                for (int i = 0; i < 40; i++)
                {
                    var r = await ProduceAsync(s, topic, IdempotentBatches.Of(5, pid, 0, i * 5), 2 + i);
                    Assert.Equal((short)0, r.ErrorCode);
                    Assert.Equal(i * 5L, r.BaseOffset);
                }
                broker.Kill();
            }

            using (var broker = BrokerProcess.Start(dataDir, env, port))
            {
                using var s = await ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
                for (int i = 35; i < 40; i++)
                {
                    var retry = await ProduceAsync(s, topic, IdempotentBatches.Of(5, pid, 0, i * 5), 100 + i);
                    Assert.Equal((short)0, retry.ErrorCode);
                    Assert.Equal(i * 5L, retry.BaseOffset);
                }
                var next = await ProduceAsync(s, topic, IdempotentBatches.Of(5, pid, 0, 200), 200);
                Assert.Equal((short)0, next.ErrorCode);
                Assert.Equal(200, next.BaseOffset);
                var newPid = (await SendAsync<InitProducerIdResponse>(s, new InitProducerIdRequest { TransactionalId = null }, InitProducerIdRequest.ApiKey, 4, 300)).ProducerId;
                Assert.True(newPid > pid, $"producer id {newPid} after the kill, {pid} before");
                Assert.Equal(0, broker.Terminate());
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

    static async Task<ProduceResponse.PartitionProduceResponse> ProduceAsync(Socket s, string topic, byte[] records, int correlation)
    {
        var request = new ProduceRequest
        {
            Acks = -1,
            TimeoutMs = 5000,
            TopicData = [new ProduceRequest.TopicProduceData { Name = topic, PartitionData = [new ProduceRequest.PartitionProduceData { Index = 0, Records = records }] }],
        };
        var response = await SendAsync<ProduceResponse>(s, request, ProduceRequest.ApiKey, 9, correlation);
        return response.Responses[0].PartitionResponses[0];
    }
}
