using Kiou.Broker.Hosting;
using Kiou.Protocol.Messages;

using static Kiou.Broker.Tests.RawWire;

namespace Kiou.Broker.Tests;

/// <summary>
/// KIP-890 produce-side verification (KIOU_TRANSACTION_PARTITION_VERIFICATION_ENABLE, on by default): a transactional
/// batch that would start a transaction on a partition the coordinator does not have in the producer's open
/// transaction is refused, so no transaction nobody ends holds the last stable offset.
/// </summary>
public sealed partial class TransactionWireTests
{
    const short InvalidProducerIdMapping = 49;
    const short NotEnoughReplicas = 19;

    [Fact]
    public async Task A_transactional_batch_for_a_partition_not_in_the_transaction_is_refused_and_the_stable_offset_stays()
    {
        await using var broker = TestBroker.Start();
        const string topic = "txverify";
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 2);
        using var s = await ConnectAsync(broker.Broker.BrokerEndPoint);
        var init = await SendAsync<InitProducerIdResponse>(s, new InitProducerIdRequest { TransactionalId = "v", TransactionTimeoutMs = 60000 }, InitProducerIdRequest.ApiKey, 4, 1);
        long pid = init.ProducerId;
        await AddPartitionAsync(s, "v", pid, topic, 0, 2);
        Assert.Equal((short)0, (await ProduceAsync(s, topic, 0, TransactionalBatch(2, pid, 0, 0), "v", 3)).ErrorCode);

        // Partition 1 was never added: as Kafka, INVALID_TXN_STATE and nothing appended.
        var stray = await ProduceAsync(s, topic, 1, TransactionalBatch(2, pid, 0, 0), "v", 4);
        Assert.Equal(InvalidTxnState, stray.ErrorCode);
        Assert.Equal("Partition was not added to the transaction", stray.ErrorMessage);
        var p1 = broker.Broker.Logs.Get(topic, 1)!;
        Assert.Equal(0, p1.HighWatermark);
        Assert.Equal(0, p1.LastStableOffset);
        Assert.Equal(0, p1.OngoingTransactionCount);

        // A stale epoch is INVALID_PRODUCER_EPOCH (Kafka maps the coordinator's PRODUCER_FENCED); an unknown id or
        // another id's producer INVALID_PRODUCER_ID_MAPPING.
        Assert.Equal(InvalidProducerEpoch, (await ProduceAsync(s, topic, 1, TransactionalBatch(1, pid, 3, 0), "v", 5)).ErrorCode);
        Assert.Equal(InvalidProducerIdMapping, (await ProduceAsync(s, topic, 1, TransactionalBatch(1, pid, 0, 0), "nobody", 6)).ErrorCode);
        Assert.Equal(0, p1.HighWatermark);

        // Added, the same batch goes in; the commit then moves both stable offsets to the end.
        await AddPartitionAsync(s, "v", pid, topic, 1, 7);
        Assert.Equal((short)0, (await ProduceAsync(s, topic, 1, TransactionalBatch(2, pid, 0, 0), "v", 8)).ErrorCode);
        Assert.Equal(0, p1.LastStableOffset);
        var end = await SendAsync<EndTxnResponse>(s, new EndTxnRequest { TransactionalId = "v", ProducerId = pid, ProducerEpoch = 0, Committed = true }, EndTxnRequest.ApiKey, 3, 9);
        Assert.Equal(0, end.ErrorCode);
        await broker.Broker.Transactions.WhenIdleAsync();
        for (int p = 0; p < 2; p++)
        {
            var log = broker.Broker.Logs.Get(topic, p)!;
            Assert.Equal(3, log.HighWatermark);
            Assert.Equal(3, log.LastStableOffset);
        }
    }

    [Fact]
    public async Task A_late_batch_of_an_aborted_transaction_is_refused_and_does_not_hold_the_stable_offset()
    {
        await using var broker = TestBroker.Start();
        const string topic = "txlate";
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);
        using var s = await ConnectAsync(broker.Broker.BrokerEndPoint);
        var init = await SendAsync<InitProducerIdResponse>(s, new InitProducerIdRequest { TransactionalId = "late", TransactionTimeoutMs = 60000 }, InitProducerIdRequest.ApiKey, 4, 1);
        long pid = init.ProducerId;
        await AddPartitionAsync(s, "late", pid, topic, 0, 2);
        Assert.Equal((short)0, (await ProduceAsync(s, topic, 0, TransactionalBatch(3, pid, 0, 0), "late", 3)).ErrorCode);
        var end = await SendAsync<EndTxnResponse>(s, new EndTxnRequest { TransactionalId = "late", ProducerId = pid, ProducerEpoch = 0, Committed = false }, EndTxnRequest.ApiKey, 3, 4);
        Assert.Equal(0, end.ErrorCode);
        await broker.Broker.Transactions.WhenIdleAsync();
        var log = broker.Broker.Logs.Get(topic, 0)!;
        Assert.Equal(4, log.HighWatermark); // 0..2 and the ABORT marker
        Assert.Equal(4, log.LastStableOffset);

        // The next batch of the aborted transaction arrives late (same epoch, next sequence): the coordinator's
        // transaction is over, so it must not open a new one that no marker would ever end.
        var stale = await ProduceAsync(s, topic, 0, TransactionalBatch(2, pid, 0, 3), "late", 5);
        Assert.Equal(InvalidTxnState, stale.ErrorCode);
        Assert.Equal(4, log.HighWatermark);
        Assert.Equal(4, log.LastStableOffset);
        Assert.Equal(0, log.OngoingTransactionCount);
        var committed = await SendAsync<ListOffsetsResponse>(s, new ListOffsetsRequest
        {
            ReplicaId = -1,
            IsolationLevel = 1,
            Topics = [new ListOffsetsRequest.ListOffsetsTopic { Name = topic, Partitions = [new ListOffsetsRequest.ListOffsetsPartition { PartitionIndex = 0, Timestamp = -1 }] }],
        }, ListOffsetsRequest.ApiKey, 5, 6);
        Assert.Equal(4, committed.Topics[0].Partitions[0].Offset);

        // The producer's next transaction is verified and appended as usual.
        await AddPartitionAsync(s, "late", pid, topic, 0, 7);
        Assert.Equal((short)0, (await ProduceAsync(s, topic, 0, TransactionalBatch(2, pid, 0, 3), "late", 8)).ErrorCode);
        Assert.Equal(4, log.LastStableOffset);
    }

    [Fact]
    public async Task While_the_transaction_is_being_ended_a_batch_that_would_start_one_gets_a_retriable_error()
    {
        var hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var broker = TestBroker.Start(c => c with { Transactions = c.Transactions with { BeforeMarkers = ct => hold.Task.WaitAsync(ct) } });
        const string topic = "txbusy";
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 2);
        using var s = await ConnectAsync(broker.Broker.BrokerEndPoint);
        var init = await SendAsync<InitProducerIdResponse>(s, new InitProducerIdRequest { TransactionalId = "busy", TransactionTimeoutMs = 60000 }, InitProducerIdRequest.ApiKey, 4, 1);
        long pid = init.ProducerId;
        await AddPartitionAsync(s, "busy", pid, topic, 0, 2);
        await AddPartitionAsync(s, "busy", pid, topic, 1, 3);
        Assert.Equal((short)0, (await ProduceAsync(s, topic, 0, TransactionalBatch(1, pid, 0, 0), "busy", 4)).ErrorCode);
        var end = await SendAsync<EndTxnResponse>(s, new EndTxnRequest { TransactionalId = "busy", ProducerId = pid, ProducerEpoch = 0, Committed = true }, EndTxnRequest.ApiKey, 3, 5);
        Assert.Equal(0, end.ErrorCode);

        // PrepareCommit, markers not yet written: as Kafka, NOT_ENOUGH_REPLICAS (the coordinator's
        // CONCURRENT_TRANSACTIONS), which clients retry; once the commit completed the retry gets INVALID_TXN_STATE.
        var p1 = broker.Broker.Logs.Get(topic, 1)!;
        Assert.Equal(NotEnoughReplicas, (await ProduceAsync(s, topic, 1, TransactionalBatch(1, pid, 0, 0), "busy", 6)).ErrorCode);
        Assert.Equal(0, p1.HighWatermark);
        hold.SetResult();
        await broker.Broker.Transactions.WhenIdleAsync();
        Assert.Equal(InvalidTxnState, (await ProduceAsync(s, topic, 1, TransactionalBatch(1, pid, 0, 0), "busy", 7)).ErrorCode);
        Assert.Equal(1, p1.HighWatermark); // the COMMIT marker alone
        Assert.Equal(1, p1.LastStableOffset);
        Assert.Equal(2, broker.Broker.Logs.Get(topic, 0)!.LastStableOffset);
    }

    [Fact]
    public async Task The_setting_defaults_to_on_and_off_appends_unverified_batches_as_before()
    {
        Assert.True(BrokerConfig.FromEnvironment(_ => null).Transactions.PartitionVerificationEnable);
        Assert.False(BrokerConfig.FromEnvironment(k => k == "KIOU_TRANSACTION_PARTITION_VERIFICATION_ENABLE" ? "false" : null).Transactions.PartitionVerificationEnable);
        var e = Assert.Throws<ConfigException>(() => BrokerConfig.FromEnvironment(k => k == "KIOU_TRANSACTION_PARTITION_VERIFICATION_ENABLE" ? "maybe" : null));
        Assert.Contains("KIOU_TRANSACTION_PARTITION_VERIFICATION_ENABLE=maybe", e.Message);

        await using var broker = TestBroker.Start(c => c with { Transactions = c.Transactions with { PartitionVerificationEnable = false } });
        const string topic = "txoff";
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);
        using var s = await ConnectAsync(broker.Broker.BrokerEndPoint);
        var init = await SendAsync<InitProducerIdResponse>(s, new InitProducerIdRequest { TransactionalId = "off", TransactionTimeoutMs = 60000 }, InitProducerIdRequest.ApiKey, 4, 1);
        Assert.Equal((short)0, (await ProduceAsync(s, topic, 0, TransactionalBatch(1, init.ProducerId, 0, 0), "off", 2)).ErrorCode);
        Assert.Equal(1, broker.Broker.Logs.Get(topic, 0)!.OngoingTransactionCount); // the hanging transaction verification prevents
    }

    static async Task AddPartitionAsync(System.Net.Sockets.Socket s, string transactionalId, long producerId, string topic, int partition, int correlation)
    {
        var add = await SendAsync<AddPartitionsToTxnResponse>(s, new AddPartitionsToTxnRequest
        {
            V3AndBelowTransactionalId = transactionalId,
            V3AndBelowProducerId = producerId,
            V3AndBelowProducerEpoch = 0,
            V3AndBelowTopics = [new AddPartitionsToTxnRequest.AddPartitionsToTxnTopic { Name = topic, Partitions = [partition] }],
        }, AddPartitionsToTxnRequest.ApiKey, 3, correlation);
        Assert.Equal(0, add.ResultsByTopicV3AndBelow[0].ResultsByPartition[0].PartitionErrorCode);
    }
}
