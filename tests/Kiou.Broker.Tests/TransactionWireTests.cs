using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Kiou.Broker.Transactions;
using Kiou.Protocol;
using Kiou.Protocol.Messages;
using Kiou.Protocol.Records;

using static Kiou.Broker.Tests.RawWire;

namespace Kiou.Broker.Tests;

/// <summary>
/// Issue 14: the transaction coordinator's APIs on the wire against an in-process broker: versions, the internal
/// topic __transaction_state, a transaction's life (markers in the partitions), its state across a restart, and a
/// transaction held in PrepareCommit by a stop that completes after the restart.
/// </summary>
public sealed partial class TransactionWireTests
{
    const short InvalidRequest = 42;
    const short InvalidTopicException = 17;
    const short InvalidTxnState = 48;
    const short InvalidProducerEpoch = 47;
    const short ProducerFenced = 90;
    const short UnknownTopicOrPartition = 3;
    const short OperationNotAttempted = 55;
    const short TransactionalIdNotFound = 105;

    [Fact]
    public async Task Versions_coordinator_and_the_internal_topic()
    {
        await using var broker = TestBroker.Start();
        using var s = await ConnectAsync(broker.Broker.BrokerEndPoint);
        var versions = await SendAsync<ApiVersionsResponse>(s, new ApiVersionsRequest(), ApiVersionsRequest.ApiKey, 3, 1);
        // What Kafka 3.9 serves.
        foreach (var (key, max) in new (short, short)[] { (22, 5), (24, 5), (25, 4), (26, 4), (27, 1), (65, 0), (66, 1) })
            Assert.Contains(versions.ApiKeys, k => k.ApiKey == key && k.MinVersion == 0 && k.MaxVersion == max);

        var coordinator = await SendAsync<FindCoordinatorResponse>(s, new FindCoordinatorRequest { KeyType = 1, CoordinatorKeys = ["tx"] }, FindCoordinatorRequest.ApiKey, 4, 2);
        Assert.Equal(broker.Broker.BrokerEndPoint.Port, Assert.Single(coordinator.Coordinators).Port);

        // No topic before the first transactional id; then Kafka's 50 partitions.
        Assert.Null(broker.Broker.Controller.Find(TransactionLog.TopicName));
        var init = await SendAsync<InitProducerIdResponse>(s, new InitProducerIdRequest { TransactionalId = "tx", TransactionTimeoutMs = 60000 }, InitProducerIdRequest.ApiKey, 4, 3);
        Assert.Equal(0, init.ErrorCode);
        Assert.Equal(50, broker.Broker.Controller.Find(TransactionLog.TopicName)!.Partitions);
        Assert.Equal(1, broker.Broker.Logs.Get(TransactionLog.TopicName, TransactionLog.PartitionFor("tx", 50))!.HighWatermark);

        // Metadata: among all topics and by name, flagged internal (as Kafka); never auto-created by clients, not deletable.
        var all = await SendAsync<MetadataResponse>(s, new MetadataRequest { Topics = null }, MetadataRequest.ApiKey, 12, 4);
        Assert.True(Assert.Single(all.Topics, t => t.Name == TransactionLog.TopicName).IsInternal);
        var named = await SendAsync<MetadataResponse>(s, new MetadataRequest { Topics = [new MetadataRequest.MetadataRequestTopic { Name = TransactionLog.TopicName }] }, MetadataRequest.ApiKey, 12, 5);
        var internalTopic = Assert.Single(named.Topics);
        Assert.True(internalTopic.IsInternal);
        Assert.Equal(50, internalTopic.Partitions.Count);
        var delete = await SendAsync<DeleteTopicsResponse>(s, new DeleteTopicsRequest { TopicNames = [TransactionLog.TopicName], TimeoutMs = 5000 }, DeleteTopicsRequest.ApiKey, 4, 6);
        Assert.Equal(InvalidRequest, Assert.Single(delete.Responses).ErrorCode);
        Assert.NotNull(broker.Broker.Controller.Find(TransactionLog.TopicName));
        var create = await SendAsync<CreateTopicsResponse>(s, new CreateTopicsRequest
        {
            Topics = [new CreateTopicsRequest.CreatableTopic { Name = TransactionLog.TopicName, NumPartitions = 1, ReplicationFactor = 1 }],
        }, CreateTopicsRequest.ApiKey, 5, 7);
        Assert.Equal(InvalidRequest, Assert.Single(create.Topics).ErrorCode);
        var produce = await SendAsync<ProduceResponse>(s, new ProduceRequest
        {
            Acks = -1,
            TimeoutMs = 5000,
            TopicData = [new ProduceRequest.TopicProduceData { Name = TransactionLog.TopicName, PartitionData = [new ProduceRequest.PartitionProduceData { Index = 0, Records = TestBatches.Uncompressed(1) }] }],
        }, ProduceRequest.ApiKey, 9, 8);
        Assert.Equal(InvalidTopicException, produce.Responses[0].PartitionResponses[0].ErrorCode);

        // Old versions get INVALID_PRODUCER_EPOCH for PRODUCER_FENCED.
        var stale = await SendAsync<EndTxnResponse>(s, new EndTxnRequest { TransactionalId = "tx", ProducerId = init.ProducerId, ProducerEpoch = 7, Committed = true }, EndTxnRequest.ApiKey, 1, 9);
        Assert.Equal(InvalidProducerEpoch, stale.ErrorCode);
        var fenced = await SendAsync<EndTxnResponse>(s, new EndTxnRequest { TransactionalId = "tx", ProducerId = init.ProducerId, ProducerEpoch = 7, Committed = true }, EndTxnRequest.ApiKey, 3, 10);
        Assert.Equal(ProducerFenced, fenced.ErrorCode);
        var empty = await SendAsync<EndTxnResponse>(s, new EndTxnRequest { TransactionalId = "tx", ProducerId = init.ProducerId, ProducerEpoch = 0, Committed = true }, EndTxnRequest.ApiKey, 3, 11);
        Assert.Equal(InvalidTxnState, empty.ErrorCode);
    }

    [Fact]
    public async Task A_transaction_on_the_wire_writes_markers_and_its_state_survives_a_restart()
    {
        await using var broker = TestBroker.Start();
        const string topic = "txw";
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 2);
        using var s = await ConnectAsync(broker.Broker.BrokerEndPoint);
        var init = await SendAsync<InitProducerIdResponse>(s, new InitProducerIdRequest { TransactionalId = "w", TransactionTimeoutMs = 60000 }, InitProducerIdRequest.ApiKey, 4, 1);
        long pid = init.ProducerId;

        // An unknown partition: UNKNOWN_TOPIC_OR_PARTITION for it, OPERATION_NOT_ATTEMPTED for the rest, nothing added.
        var bad = await SendAsync<AddPartitionsToTxnResponse>(s, new AddPartitionsToTxnRequest
        {
            V3AndBelowTransactionalId = "w",
            V3AndBelowProducerId = pid,
            V3AndBelowProducerEpoch = 0,
            V3AndBelowTopics = [new AddPartitionsToTxnRequest.AddPartitionsToTxnTopic { Name = topic, Partitions = [0, 9] }],
        }, AddPartitionsToTxnRequest.ApiKey, 3, 2);
        var badResults = bad.ResultsByTopicV3AndBelow[0].ResultsByPartition;
        Assert.Equal(OperationNotAttempted, badResults.Single(r => r.PartitionIndex == 0).PartitionErrorCode);
        Assert.Equal(UnknownTopicOrPartition, badResults.Single(r => r.PartitionIndex == 9).PartitionErrorCode);

        var add = await SendAsync<AddPartitionsToTxnResponse>(s, new AddPartitionsToTxnRequest
        {
            V3AndBelowTransactionalId = "w",
            V3AndBelowProducerId = pid,
            V3AndBelowProducerEpoch = 0,
            V3AndBelowTopics = [new AddPartitionsToTxnRequest.AddPartitionsToTxnTopic { Name = topic, Partitions = [0, 1] }],
        }, AddPartitionsToTxnRequest.ApiKey, 3, 3);
        Assert.All(add.ResultsByTopicV3AndBelow[0].ResultsByPartition, r => Assert.Equal(0, r.PartitionErrorCode));
        for (int p = 0; p < 2; p++)
            Assert.Equal((short)0, (await ProduceAsync(s, topic, p, TransactionalBatch(3, pid, 0, 0), "w", 4 + p)).ErrorCode);

        // KIP-890 verification (v4 VerifyOnly): in the transaction or not.
        var verify = await SendAsync<AddPartitionsToTxnResponse>(s, new AddPartitionsToTxnRequest
        {
            Transactions = [new AddPartitionsToTxnRequest.AddPartitionsToTxnTransaction
            {
                TransactionalId = "w", ProducerId = pid, ProducerEpoch = 0, VerifyOnly = true,
                Topics = [new AddPartitionsToTxnRequest.AddPartitionsToTxnTopic { Name = topic, Partitions = [1] }, new AddPartitionsToTxnRequest.AddPartitionsToTxnTopic { Name = "other", Partitions = [0] }],
            }],
        }, AddPartitionsToTxnRequest.ApiKey, 4, 6);
        var vr = Assert.Single(verify.ResultsByTransaction);
        Assert.Equal(0, vr.TopicResults.Single(t => t.Name == topic).ResultsByPartition[0].PartitionErrorCode);
        Assert.Equal(InvalidTxnState, vr.TopicResults.Single(t => t.Name == "other").ResultsByPartition[0].PartitionErrorCode);

        var described = await DescribeAsync(s, "w", 7);
        Assert.Equal("Ongoing", described.TransactionState);
        Assert.Equal(new[] { 0, 1 }, Assert.Single(described.Topics).Partitions.Order());
        var listed = await SendAsync<ListTransactionsResponse>(s, new ListTransactionsRequest { StateFilters = ["Ongoing", "Bogus"] }, ListTransactionsRequest.ApiKey, 1, 8);
        Assert.Equal("w", Assert.Single(listed.TransactionStates).TransactionalId);
        Assert.Equal(["Bogus"], listed.UnknownStateFilters);

        var end = await SendAsync<EndTxnResponse>(s, new EndTxnRequest { TransactionalId = "w", ProducerId = pid, ProducerEpoch = 0, Committed = true }, EndTxnRequest.ApiKey, 3, 9);
        Assert.Equal(0, end.ErrorCode);
        await broker.Broker.Transactions.WhenIdleAsync();
        Assert.Equal("CompleteCommit", (await DescribeAsync(s, "w", 10)).TransactionState);
        for (int p = 0; p < 2; p++)
        {
            var last = LastBatch(broker, topic, p);
            Assert.True(RecordBatch.IsControl(last));
            Assert.True(TransactionLog.ReadMarker(last));
            Assert.Equal(pid, RecordBatch.ProducerId(last));
            Assert.Equal(3, RecordBatch.BaseOffset(last));
        }

        // After a restart (replay of __transaction_state) the id is known with its epoch: the next init bumps it.
        await broker.RestartAsync();
        using var s2 = await ConnectAsync(broker.Broker.BrokerEndPoint);
        var again = await WaitLoadedAsync(s2, "w", 20);
        Assert.Equal("CompleteCommit", again.TransactionState);
        Assert.Equal(pid, again.ProducerId);
        var reinit = await SendAsync<InitProducerIdResponse>(s2, new InitProducerIdRequest { TransactionalId = "w", TransactionTimeoutMs = 60000 }, InitProducerIdRequest.ApiKey, 4, 30);
        Assert.Equal(pid, reinit.ProducerId);
        Assert.Equal(1, reinit.ProducerEpoch);
        var unknown = await DescribeAsync(s2, "nobody", 31);
        Assert.Equal(TransactionalIdNotFound, unknown.ErrorCode);
    }

    [Fact]
    public async Task A_transaction_stopped_in_PrepareCommit_completes_after_the_restart()
    {
        var hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        bool holding = true;
        await using var broker = TestBroker.Start(c => c with
        {
            Transactions = c.Transactions with { BeforeMarkers = ct => Volatile.Read(ref holding) ? hold.Task.WaitAsync(ct) : Task.CompletedTask },
        });
        const string topic = "txprep";
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 3);
        using var s = await ConnectAsync(broker.Broker.BrokerEndPoint);
        var init = await SendAsync<InitProducerIdResponse>(s, new InitProducerIdRequest { TransactionalId = "p", TransactionTimeoutMs = 60000 }, InitProducerIdRequest.ApiKey, 4, 1);
        var add = await SendAsync<AddPartitionsToTxnResponse>(s, new AddPartitionsToTxnRequest
        {
            V3AndBelowTransactionalId = "p",
            V3AndBelowProducerId = init.ProducerId,
            V3AndBelowProducerEpoch = 0,
            V3AndBelowTopics = [new AddPartitionsToTxnRequest.AddPartitionsToTxnTopic { Name = topic, Partitions = [0, 1, 2] }],
        }, AddPartitionsToTxnRequest.ApiKey, 2, 2);
        Assert.All(add.ResultsByTopicV3AndBelow[0].ResultsByPartition, r => Assert.Equal(0, r.PartitionErrorCode));
        for (int p = 0; p < 3; p++)
            Assert.Equal((short)0, (await ProduceAsync(s, topic, p, TransactionalBatch(2, init.ProducerId, 0, 0), "p", 3 + p)).ErrorCode);
        var end = await SendAsync<EndTxnResponse>(s, new EndTxnRequest { TransactionalId = "p", ProducerId = init.ProducerId, ProducerEpoch = 0, Committed = true }, EndTxnRequest.ApiKey, 2, 10);
        Assert.Equal(0, end.ErrorCode);
        Assert.Equal("PrepareCommit", (await DescribeAsync(s, "p", 11)).TransactionState);
        // The client's next step meanwhile: CONCURRENT_TRANSACTIONS.
        var busy = await SendAsync<InitProducerIdResponse>(s, new InitProducerIdRequest { TransactionalId = "p", TransactionTimeoutMs = 60000 }, InitProducerIdRequest.ApiKey, 4, 12);
        Assert.Equal(51, busy.ErrorCode);
        for (int p = 0; p < 3; p++)
            Assert.False(RecordBatch.IsControl(LastBatch(broker, topic, p)));

        // Stopped with the PrepareCommit record durable and no marker written; the restart finishes it.
        await broker.StopAsync();
        Volatile.Write(ref holding, false);
        broker.StartAgain();
        using var s2 = await ConnectAsync(broker.Broker.BrokerEndPoint);
        var deadline = DateTime.UtcNow.AddSeconds(15);
        DescribeTransactionsResponse.TransactionStateData state;
        while ((state = await WaitLoadedAsync(s2, "p", 20)).TransactionState != "CompleteCommit" && DateTime.UtcNow < deadline)
            await Task.Delay(50);
        Assert.Equal("CompleteCommit", state.TransactionState);
        for (int p = 0; p < 3; p++)
        {
            var last = LastBatch(broker, topic, p);
            Assert.True(TransactionLog.ReadMarker(last));
            Assert.Equal(2, RecordBatch.BaseOffset(last));
        }
    }

    [Fact]
    public async Task A_transaction_open_longer_than_its_timeout_is_aborted_and_its_producer_fenced()
    {
        await using var broker = TestBroker.Start(c => c with { Transactions = c.Transactions with { AbortTimedOutIntervalMs = 100 } });
        const string topic = "txtimeout";
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);
        using var s = await ConnectAsync(broker.Broker.BrokerEndPoint);
        var init = await SendAsync<InitProducerIdResponse>(s, new InitProducerIdRequest { TransactionalId = "slow", TransactionTimeoutMs = 300 }, InitProducerIdRequest.ApiKey, 4, 1);
        await SendAsync<AddPartitionsToTxnResponse>(s, new AddPartitionsToTxnRequest
        {
            V3AndBelowTransactionalId = "slow",
            V3AndBelowProducerId = init.ProducerId,
            V3AndBelowProducerEpoch = 0,
            V3AndBelowTopics = [new AddPartitionsToTxnRequest.AddPartitionsToTxnTopic { Name = topic, Partitions = [0] }],
        }, AddPartitionsToTxnRequest.ApiKey, 3, 2);
        Assert.Equal((short)0, (await ProduceAsync(s, topic, 0, TransactionalBatch(2, init.ProducerId, 0, 0), "slow", 3)).ErrorCode);

        var deadline = DateTime.UtcNow.AddSeconds(10);
        DescribeTransactionsResponse.TransactionStateData state;
        while ((state = await DescribeAsync(s, "slow", 4)).TransactionState != "CompleteAbort" && DateTime.UtcNow < deadline)
            await Task.Delay(50);
        Assert.Equal("CompleteAbort", state.TransactionState);
        Assert.Equal(1, state.ProducerEpoch);
        var marker = LastBatch(broker, topic, 0);
        Assert.False(TransactionLog.ReadMarker(marker));
        Assert.Equal(1, RecordBatch.ProducerEpoch(marker));
        var late = await SendAsync<EndTxnResponse>(s, new EndTxnRequest { TransactionalId = "slow", ProducerId = init.ProducerId, ProducerEpoch = 0, Committed = true }, EndTxnRequest.ApiKey, 3, 5);
        Assert.Equal(ProducerFenced, late.ErrorCode);
        var tooLong = await SendAsync<InitProducerIdResponse>(s, new InitProducerIdRequest { TransactionalId = "slow", TransactionTimeoutMs = 900_001 }, InitProducerIdRequest.ApiKey, 4, 6);
        Assert.Equal(50, tooLong.ErrorCode); // INVALID_TRANSACTION_TIMEOUT beyond KIOU_TRANSACTION_MAX_TIMEOUT_MS
    }

    [Fact]
    public async Task Transactional_offsets_become_visible_on_commit_are_dropped_on_abort_and_survive_a_restart_pending()
    {
        var hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        bool holding = false;
        await using var broker = TestBroker.Start(c => c with
        {
            Transactions = c.Transactions with { BeforeMarkers = ct => Volatile.Read(ref holding) ? hold.Task.WaitAsync(ct) : Task.CompletedTask },
        });
        const string topic = "txoff";
        const string group = "txoff-group";
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);
        using var s = await ConnectAsync(broker.Broker.BrokerEndPoint);
        var init = await SendAsync<InitProducerIdResponse>(s, new InitProducerIdRequest { TransactionalId = "o", TransactionTimeoutMs = 60000 }, InitProducerIdRequest.ApiKey, 4, 1);
        long pid = init.ProducerId;
        int correlation = 100;

        async Task CommitOffsetInTransaction(Socket socket, long offset, bool commit, long visibleBefore)
        {
            var addOffsets = await SendAsync<AddOffsetsToTxnResponse>(socket, new AddOffsetsToTxnRequest { TransactionalId = "o", ProducerId = pid, ProducerEpoch = 0, GroupId = group }, AddOffsetsToTxnRequest.ApiKey, 3, correlation++);
            Assert.Equal(0, addOffsets.ErrorCode);
            var txnCommit = await SendAsync<TxnOffsetCommitResponse>(socket, new TxnOffsetCommitRequest
            {
                TransactionalId = "o",
                GroupId = group,
                ProducerId = pid,
                ProducerEpoch = 0,
                Topics = [new TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic { Name = topic, Partitions = [new TxnOffsetCommitRequest.TxnOffsetCommitRequestPartition { PartitionIndex = 0, CommittedOffset = offset, CommittedMetadata = "m" }] }],
            }, TxnOffsetCommitRequest.ApiKey, 3, correlation++);
            Assert.Equal(0, txnCommit.Topics[0].Partitions[0].ErrorCode);
            // Not visible before the transaction commits; RequireStable says it is unstable.
            Assert.Equal(visibleBefore, (await FetchOffsetAsync(socket, group, topic, requireStable: false, correlation++)).CommittedOffset);
            Assert.Equal(88, (await FetchOffsetAsync(socket, group, topic, requireStable: true, correlation++)).ErrorCode);
            var end = await SendAsync<EndTxnResponse>(socket, new EndTxnRequest { TransactionalId = "o", ProducerId = pid, ProducerEpoch = 0, Committed = commit }, EndTxnRequest.ApiKey, 3, correlation++);
            Assert.Equal(0, end.ErrorCode);
        }

        // KIP-890 verification: without AddOffsetsToTxn (no open transaction holding the group's partition), refused.
        var unverified = await SendAsync<TxnOffsetCommitResponse>(s, new TxnOffsetCommitRequest
        {
            TransactionalId = "o",
            GroupId = group,
            ProducerId = pid,
            ProducerEpoch = 0,
            Topics = [new TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic { Name = topic, Partitions = [new TxnOffsetCommitRequest.TxnOffsetCommitRequestPartition { PartitionIndex = 0, CommittedOffset = 1 }] }],
        }, TxnOffsetCommitRequest.ApiKey, 3, correlation++);
        Assert.Equal(InvalidTxnState, unverified.Topics[0].Partitions[0].ErrorCode);
        Assert.False(broker.Broker.Groups.HasPendingTxnOffset(group, topic, 0));

        await CommitOffsetInTransaction(s, 42, commit: true, visibleBefore: -1);
        await broker.Broker.Transactions.WhenIdleAsync();
        var committed = await FetchOffsetAsync(s, group, topic, requireStable: true, correlation++);
        Assert.Equal(0, committed.ErrorCode);
        Assert.Equal(42, committed.CommittedOffset);
        Assert.Equal("m", committed.Metadata);

        // An aborted transaction's offset is dropped.
        // Its pending offset hides nothing committed: the committed 42 stays visible meanwhile.
        await SendAsync<AddOffsetsToTxnResponse>(s, new AddOffsetsToTxnRequest { TransactionalId = "o", ProducerId = pid, ProducerEpoch = 0, GroupId = group }, AddOffsetsToTxnRequest.ApiKey, 3, correlation++);
        await SendAsync<TxnOffsetCommitResponse>(s, new TxnOffsetCommitRequest
        {
            TransactionalId = "o",
            GroupId = group,
            ProducerId = pid,
            ProducerEpoch = 0,
            Topics = [new TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic { Name = topic, Partitions = [new TxnOffsetCommitRequest.TxnOffsetCommitRequestPartition { PartitionIndex = 0, CommittedOffset = 50 }] }],
        }, TxnOffsetCommitRequest.ApiKey, 3, correlation++);
        Assert.Equal(42, (await FetchOffsetAsync(s, group, topic, requireStable: false, correlation++)).CommittedOffset);
        Assert.Equal(0, (await SendAsync<EndTxnResponse>(s, new EndTxnRequest { TransactionalId = "o", ProducerId = pid, ProducerEpoch = 0, Committed = false }, EndTxnRequest.ApiKey, 3, correlation++)).ErrorCode);
        await broker.Broker.Transactions.WhenIdleAsync();
        var afterAbort = await FetchOffsetAsync(s, group, topic, requireStable: true, correlation++);
        Assert.Equal(0, afterAbort.ErrorCode);
        Assert.Equal(42, afterAbort.CommittedOffset);

        // A commit held in PrepareCommit across a stop: the pending offset is durable in the group log, the
        // PrepareCommit in __transaction_state; after the restart the marker makes it committed.
        Volatile.Write(ref holding, true);
        await CommitOffsetInTransaction(s, 60, commit: true, visibleBefore: 42);
        Assert.Equal(42, (await FetchOffsetAsync(s, group, topic, requireStable: false, correlation++)).CommittedOffset);
        await broker.StopAsync();
        Volatile.Write(ref holding, false);
        broker.StartAgain();
        using var s2 = await ConnectAsync(broker.Broker.BrokerEndPoint);
        var deadline = DateTime.UtcNow.AddSeconds(15);
        OffsetFetchResponse.OffsetFetchResponsePartitions after;
        while ((after = await FetchOffsetAsync(s2, group, topic, requireStable: true, correlation++)).CommittedOffset != 60 && DateTime.UtcNow < deadline)
            await Task.Delay(50);
        Assert.Equal(60, after.CommittedOffset);
        Assert.Equal(0, after.ErrorCode);
    }

    static async Task<OffsetFetchResponse.OffsetFetchResponsePartitions> FetchOffsetAsync(Socket s, string group, string topic, bool requireStable, int correlation)
    {
        var response = await SendAsync<OffsetFetchResponse>(s, new OffsetFetchRequest
        {
            Groups = [new OffsetFetchRequest.OffsetFetchRequestGroup { GroupId = group, Topics = [new OffsetFetchRequest.OffsetFetchRequestTopics { Name = topic, PartitionIndexes = [0] }] }],
            RequireStable = requireStable,
        }, OffsetFetchRequest.ApiKey, 8, correlation);
        var g = Assert.Single(response.Groups);
        if (g.ErrorCode == 14)
            return new OffsetFetchResponse.OffsetFetchResponsePartitions { CommittedOffset = -2, ErrorCode = 14 };
        return g.Topics[0].Partitions[0];
    }

    /// <summary>The last batch of a partition (its records read into memory).</summary>
    internal static byte[] LastBatch(TestBroker broker, string topic, int partition)
    {
        var log = broker.Broker.Logs.Get(topic, partition)!;
        byte[]? last = null;
        long offset = log.LogStartOffset;
        while (offset < log.HighWatermark)
        {
            using var read = log.Read(offset, 1 << 20, minOneBatch: true);
            var span = read.Records.Span;
            while (span.Length >= RecordBatch.HeaderSize)
            {
                int size = RecordBatch.TotalSize(span);
                last = span[..size].ToArray();
                offset = RecordBatch.LastOffset(span) + 1;
                span = span[size..];
            }
        }
        return last!;
    }

    /// <summary>Kafka's transactional batch: the transactional attribute bit with a producer id and sequence.</summary>
    internal static byte[] TransactionalBatch(int count, long producerId, short epoch, int baseSequence)
    {
        byte[] batch = IdempotentBatches.Of(count, producerId, epoch, baseSequence);
        BinaryPrimitives.WriteInt16BigEndian(batch.AsSpan(21), (short)(RecordBatch.Attributes(batch) | 0x10));
        RecordBatch.UpdateCrc(batch);
        return batch;
    }

    static async Task<DescribeTransactionsResponse.TransactionStateData> DescribeAsync(Socket s, string id, int correlation) =>
        Assert.Single((await SendAsync<DescribeTransactionsResponse>(s, new DescribeTransactionsRequest { TransactionalIds = [id] }, DescribeTransactionsRequest.ApiKey, 0, correlation)).TransactionStates);

    /// <summary>Describes until the coordinator has loaded (COORDINATOR_LOAD_IN_PROGRESS meanwhile).</summary>
    static async Task<DescribeTransactionsResponse.TransactionStateData> WaitLoadedAsync(Socket s, string id, int correlation)
    {
        for (int i = 0; ; i++)
        {
            var d = await DescribeAsync(s, id, correlation + i);
            if (d.ErrorCode != 14 || i > 100)
                return d;
            await Task.Delay(50);
        }
    }

    static async Task<ProduceResponse.PartitionProduceResponse> ProduceAsync(Socket s, string topic, int partition, byte[] records, string transactionalId, int correlation)
    {
        var request = new ProduceRequest
        {
            TransactionalId = transactionalId,
            Acks = -1,
            TimeoutMs = 5000,
            TopicData = [new ProduceRequest.TopicProduceData { Name = topic, PartitionData = [new ProduceRequest.PartitionProduceData { Index = partition, Records = records }] }],
        };
        var response = await SendAsync<ProduceResponse>(s, request, ProduceRequest.ApiKey, 9, correlation);
        return response.Responses[0].PartitionResponses[0];
    }
}
