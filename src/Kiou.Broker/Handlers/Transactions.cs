using Kiou.Broker.Network;
using Kiou.Broker.Security;
using Kiou.Broker.Transactions;
using Kiou.Protocol;
using Kiou.Protocol.Messages;

namespace Kiou.Broker.Handlers;

// The transaction coordinator's APIs (Transactions/TransactionCoordinator), versions as Kafka 3.9 serves them:
// AddPartitionsToTxn v0-5 (v4+ batched, with KIP-890's VerifyOnly; v5 as v4), AddOffsetsToTxn v0-4, EndTxn v0-4,
// WriteTxnMarkers v0-1 (for tools: markers written as the coordinator writes them), ListTransactions v0-1,
// DescribeTransactions v0, TxnOffsetCommit v0-4 (the group coordinator keeps the offsets pending until the marker). InitProducerId with a transactional id is in Producers.cs. PRODUCER_FENCED is answered
// as INVALID_PRODUCER_EPOCH to versions that predate it (AddPartitionsToTxn, AddOffsetsToTxn and EndTxn below v2,
// InitProducerId below v4), as KafkaApis does.
public sealed partial class BrokerHandlers
{
    /// <summary>The transaction coordinator; when null no transaction API is registered.</summary>
    public TransactionCoordinator? Transactions { get; init; }

    void RegisterTransactionApis()
    {
        if (Transactions is null)
            return;
        Add<AddPartitionsToTxnRequest>(AddPartitionsToTxnRequest.ApiKey, 0, 5, AddPartitionsToTxn);
        Add<AddOffsetsToTxnRequest>(AddOffsetsToTxnRequest.ApiKey, 0, 4, AddOffsetsToTxn);
        Add<EndTxnRequest>(EndTxnRequest.ApiKey, 0, 4, EndTxn);
        Add<WriteTxnMarkersRequest>(WriteTxnMarkersRequest.ApiKey, 0, 1, WriteTxnMarkers);
        Add<ListTransactionsRequest>(ListTransactionsRequest.ApiKey, 0, 1, ListTransactions);
        Add<DescribeTransactionsRequest>(DescribeTransactionsRequest.ApiKey, 0, 0, DescribeTransactions);
        if (Coordinator is not null)
            Add<TxnOffsetCommitRequest>(TxnOffsetCommitRequest.ApiKey, 0, 4, TxnOffsetCommit);
    }

    /// <summary>KIP-890's verification, as Kafka 3.9 does it by default (transaction.partition.verification.enable):
    /// offsets are taken only from the current producer of an open transaction that holds the group's offsets
    /// partition (AddOffsetsToTxn), so no pending offsets are left behind by a producer without a transaction.</summary>
    async ValueTask<IKafkaMessage?> TxnOffsetCommit(RequestContext ctx, TxnOffsetCommitRequest request)
    {
        // Kafka: WRITE on the transactional id and READ on the group for all of it, READ on each topic for its partitions.
        short authError = !Allowed(ctx, AclOperation.Write, ResourceType.TransactionalId, request.TransactionalId) ? ErrorCodes.TransactionalIdAuthorizationFailed
            : !Allowed(ctx, AclOperation.Read, ResourceType.Group, request.GroupId) ? ErrorCodes.GroupAuthorizationFailed
            : ErrorCodes.None;
        var deniedTopics = request.Topics.Where(t => authError != ErrorCodes.None || !Allowed(ctx, AclOperation.Read, ResourceType.Topic, t.Name)).ToList();
        if (deniedTopics.Count > 0)
        {
            short topicError = authError != ErrorCodes.None ? authError : ErrorCodes.TopicAuthorizationFailed;
            request.Topics.RemoveAll(deniedTopics.Contains);
            var partial = request.Topics.Count > 0 ? (TxnOffsetCommitResponse)(await TxnOffsetCommit(ctx, request).ConfigureAwait(false))! : new TxnOffsetCommitResponse();
            foreach (var topic in deniedTopics)
            {
                partial.Topics.Add(new TxnOffsetCommitResponse.TxnOffsetCommitResponseTopic
                {
                    Name = topic.Name,
                    Partitions = topic.Partitions.Select(p => new TxnOffsetCommitResponse.TxnOffsetCommitResponsePartition { PartitionIndex = p.PartitionIndex, ErrorCode = topicError }).ToList(),
                });
            }
            return partial;
        }
        var (error, perPartition) = Transactions!.Verify(request.TransactionalId, request.ProducerId, request.ProducerEpoch);
        if (error == ErrorCodes.None)
            error = perPartition!(new TopicPartition(TransactionCoordinator.OffsetsTopic, Groups.OffsetsPartitionFor(request.GroupId)));
        if (error == ErrorCodes.None)
            return await Groups.TxnCommitOffsets(request, ctx.ApiVersion).ConfigureAwait(false);
        error = Fenced(error, ctx.ApiVersion, 3);
        var response = new TxnOffsetCommitResponse();
        foreach (var topic in request.Topics)
        {
            response.Topics.Add(new TxnOffsetCommitResponse.TxnOffsetCommitResponseTopic
            {
                Name = topic.Name,
                Partitions = topic.Partitions.Select(p => new TxnOffsetCommitResponse.TxnOffsetCommitResponsePartition { PartitionIndex = p.PartitionIndex, ErrorCode = error }).ToList(),
            });
        }
        return response;
    }

    static short Fenced(short error, short version, short firstWithFenced) =>
        error == ErrorCodes.ProducerFenced && version < firstWithFenced ? ErrorCodes.InvalidProducerEpoch : error;

    async ValueTask<IKafkaMessage?> AddPartitionsToTxn(RequestContext ctx, AddPartitionsToTxnRequest request)
    {
        var response = new AddPartitionsToTxnResponse();
        if (ctx.ApiVersion < 4)
        {
            response.ResultsByTopicV3AndBelow = AddPartitionsDenied(ctx, request.V3AndBelowTransactionalId, request.V3AndBelowTopics)
                ?? await AddPartitionsOne(request.V3AndBelowTransactionalId, request.V3AndBelowProducerId,
                    request.V3AndBelowProducerEpoch, request.V3AndBelowTopics, verifyOnly: false, ctx.ApiVersion).ConfigureAwait(false);
            return response;
        }
        // Kafka: a broker's batch of verifications (v4+) needs CLUSTER_ACTION on the cluster.
        if (!AllowedOnCluster(ctx, AclOperation.ClusterAction))
        {
            response.ErrorCode = ErrorCodes.ClusterAuthorizationFailed;
            return response;
        }
        foreach (var txn in request.Transactions)
        {
            response.ResultsByTransaction.Add(new AddPartitionsToTxnResponse.AddPartitionsToTxnResult
            {
                TransactionalId = txn.TransactionalId,
                TopicResults = AddPartitionsDenied(ctx, txn.TransactionalId, txn.Topics)
                    ?? await AddPartitionsOne(txn.TransactionalId, txn.ProducerId, txn.ProducerEpoch, txn.Topics, txn.VerifyOnly, ctx.ApiVersion).ConfigureAwait(false),
            });
        }
        return response;
    }

    /// <summary>Kafka's checks of AddPartitionsToTxn: WRITE on the transactional id (else every partition
    /// TRANSACTIONAL_ID_AUTHORIZATION_FAILED), WRITE on each topic (else TOPIC_AUTHORIZATION_FAILED, the others
    /// OPERATION_NOT_ATTEMPTED); null when all are allowed.</summary>
    List<AddPartitionsToTxnResponse.AddPartitionsToTxnTopicResult>? AddPartitionsDenied(RequestContext ctx, string transactionalId,
        List<AddPartitionsToTxnRequest.AddPartitionsToTxnTopic> topics)
    {
        if (!Authorizer.Enabled)
            return null;
        bool txnDenied = !Allowed(ctx, AclOperation.Write, ResourceType.TransactionalId, transactionalId);
        var deniedTopics = topics.Where(t => !Allowed(ctx, AclOperation.Write, ResourceType.Topic, t.Name)).Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        if (!txnDenied && deniedTopics.Count == 0)
            return null;
        var results = new List<AddPartitionsToTxnResponse.AddPartitionsToTxnTopicResult>();
        foreach (var t in topics)
        {
            short error = txnDenied ? ErrorCodes.TransactionalIdAuthorizationFailed
                : deniedTopics.Contains(t.Name) ? ErrorCodes.TopicAuthorizationFailed : ErrorCodes.OperationNotAttempted;
            var tr = new AddPartitionsToTxnResponse.AddPartitionsToTxnTopicResult { Name = t.Name };
            foreach (int p in t.Partitions)
                tr.ResultsByPartition.Add(new AddPartitionsToTxnResponse.AddPartitionsToTxnPartitionResult { PartitionIndex = p, PartitionErrorCode = error });
            results.Add(tr);
        }
        return results;
    }

    /// <summary>Kafka's handleAddPartitionsToTxnRequest for one transaction: unknown partitions get
    /// UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED; else one error for all.</summary>
    async Task<List<AddPartitionsToTxnResponse.AddPartitionsToTxnTopicResult>> AddPartitionsOne(string transactionalId, long producerId, short producerEpoch,
        List<AddPartitionsToTxnRequest.AddPartitionsToTxnTopic> topics, bool verifyOnly, short version)
    {
        var partitions = new List<TopicPartition>();
        foreach (var t in topics)
            foreach (int p in t.Partitions)
                partitions.Add(new TopicPartition(t.Name, p));
        Func<TopicPartition, short> errorOf;
        if (verifyOnly)
        {
            var (error, perPartition) = Transactions!.Verify(transactionalId, producerId, producerEpoch);
            errorOf = perPartition ?? (_ => error);
        }
        else
        {
            bool anyUnknown = partitions.Any(tp => _logs.Get(tp.Topic, tp.Partition) is null || tp.Topic == TransactionLog.TopicName);
            if (anyUnknown)
            {
                errorOf = tp => _logs.Get(tp.Topic, tp.Partition) is null || tp.Topic == TransactionLog.TopicName
                    ? ErrorCodes.UnknownTopicOrPartition : ErrorCodes.OperationNotAttempted;
            }
            else
            {
                short error = Fenced(await Transactions!.AddPartitionsAsync(transactionalId, producerId, producerEpoch, partitions).ConfigureAwait(false), version, 2);
                errorOf = _ => error;
            }
        }
        var results = new List<AddPartitionsToTxnResponse.AddPartitionsToTxnTopicResult>();
        foreach (var t in topics)
        {
            var tr = new AddPartitionsToTxnResponse.AddPartitionsToTxnTopicResult { Name = t.Name };
            foreach (int p in t.Partitions)
                tr.ResultsByPartition.Add(new AddPartitionsToTxnResponse.AddPartitionsToTxnPartitionResult { PartitionIndex = p, PartitionErrorCode = errorOf(new TopicPartition(t.Name, p)) });
            results.Add(tr);
        }
        return results;
    }

    async ValueTask<IKafkaMessage?> AddOffsetsToTxn(RequestContext ctx, AddOffsetsToTxnRequest request)
    {
        if (!Allowed(ctx, AclOperation.Write, ResourceType.TransactionalId, request.TransactionalId))
            return new AddOffsetsToTxnResponse { ErrorCode = ErrorCodes.TransactionalIdAuthorizationFailed };
        if (!Allowed(ctx, AclOperation.Read, ResourceType.Group, request.GroupId))
            return new AddOffsetsToTxnResponse { ErrorCode = ErrorCodes.GroupAuthorizationFailed };
        // Kafka adds the group's partition of __consumer_offsets to the transaction; its marker goes there.
        if (Coordinator is { } groups && await groups.EnsureOffsetsTopicAsync().ConfigureAwait(false) is var topicError && topicError != ErrorCodes.None)
            return new AddOffsetsToTxnResponse { ErrorCode = topicError };
        var offsets = new TopicPartition(TransactionCoordinator.OffsetsTopic,
            Coordinator?.OffsetsPartitionFor(request.GroupId) ?? TransactionLog.PartitionFor(request.GroupId, _config.Groups.OffsetsTopicPartitions));
        short error = await Transactions!.AddPartitionsAsync(request.TransactionalId, request.ProducerId, request.ProducerEpoch, [offsets]).ConfigureAwait(false);
        return new AddOffsetsToTxnResponse { ErrorCode = Fenced(error, ctx.ApiVersion, 2) };
    }

    async ValueTask<IKafkaMessage?> EndTxn(RequestContext ctx, EndTxnRequest request)
    {
        if (!Allowed(ctx, AclOperation.Write, ResourceType.TransactionalId, request.TransactionalId))
            return new EndTxnResponse { ErrorCode = ErrorCodes.TransactionalIdAuthorizationFailed };
        short error = await Transactions!.EndTxnAsync(request.TransactionalId, request.ProducerId, request.ProducerEpoch, request.Committed).ConfigureAwait(false);
        return new EndTxnResponse { ErrorCode = Fenced(error, ctx.ApiVersion, 2) };
    }

    async ValueTask<IKafkaMessage?> WriteTxnMarkers(RequestContext ctx, WriteTxnMarkersRequest request)
    {
        var response = new WriteTxnMarkersResponse();
        bool denied = !AllowedOnCluster(ctx, AclOperation.ClusterAction);
        var store = new TransactionStateStore(_controller, _logs, Transactions!.Settings, _log, Coordinator);
        foreach (var marker in request.Markers)
        {
            var mr = new WriteTxnMarkersResponse.WritableTxnMarkerResult { ProducerId = marker.ProducerId };
            response.Markers.Add(mr);
            foreach (var topic in marker.Topics)
            {
                var tr = new WriteTxnMarkersResponse.WritableTxnMarkerTopicResult { Name = topic.Name };
                mr.Topics.Add(tr);
                foreach (int p in topic.PartitionIndexes)
                {
                    short error;
                    if (denied)
                    {
                        tr.Partitions.Add(new WriteTxnMarkersResponse.WritableTxnMarkerPartitionResult { PartitionIndex = p, ErrorCode = ErrorCodes.ClusterAuthorizationFailed });
                        continue;
                    }
                    try
                    {
                        var batch = TransactionLog.MarkerBatch(marker.ProducerId, marker.ProducerEpoch, marker.TransactionResult, marker.CoordinatorEpoch, NowMs);
                        error = await store.WriteMarkerAsync(new TopicPartition(topic.Name, p), batch).ConfigureAwait(false);
                    }
                    catch (Exception e) when (e is not OutOfMemoryException)
                    {
                        error = ErrorCodes.KafkaStorageError;
                        _log.Warn($"{ctx.Client}: WriteTxnMarkers to {topic.Name}-{p} failed: {e.Message}");
                    }
                    tr.Partitions.Add(new WriteTxnMarkersResponse.WritableTxnMarkerPartitionResult { PartitionIndex = p, ErrorCode = error });
                }
            }
        }
        return response;
    }

    static readonly string[] TxnStateNames = ["Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort", "Dead", "PrepareEpochFence"];

    ValueTask<IKafkaMessage?> ListTransactions(RequestContext ctx, ListTransactionsRequest request)
    {
        var response = new ListTransactionsResponse { ErrorCode = Transactions!.ReadyError };
        if (response.ErrorCode != ErrorCodes.None)
            return Done(response);
        var states = new HashSet<string>(StringComparer.Ordinal);
        foreach (string s in request.StateFilters)
        {
            if (TxnStateNames.Contains(s))
                states.Add(s);
            else
                response.UnknownStateFilters.Add(s);
        }
        if (request.StateFilters.Count > 0 && states.Count == 0)
            return Done(response); // only unknown states asked for: nothing matches
        var pids = request.ProducerIdFilters.ToHashSet();
        long now = NowMs;
        foreach (var md in Transactions.All.OrderBy(m => m.Id, StringComparer.Ordinal))
        {
            TxnSnapshot cur;
            lock (md)
                cur = md.Current;
            string state = TxnSnapshot.StateName(cur.State);
            if (states.Count > 0 && !states.Contains(state))
                continue;
            if (pids.Count > 0 && !pids.Contains(cur.ProducerId))
                continue;
            if (!Allowed(ctx, AclOperation.Describe, ResourceType.TransactionalId, md.Id))
                continue;
            // v1 DurationFilter: transactions running longer than this (Ongoing ones, by their start time).
            if (request.DurationFilter >= 0 && (cur.State != TxnState.Ongoing || now - cur.StartTimestampMs <= request.DurationFilter))
                continue;
            response.TransactionStates.Add(new ListTransactionsResponse.TransactionStateData { TransactionalId = md.Id, ProducerId = cur.ProducerId, TransactionState = state });
        }
        return Done(response);
    }

    ValueTask<IKafkaMessage?> DescribeTransactions(RequestContext ctx, DescribeTransactionsRequest request)
    {
        var response = new DescribeTransactionsResponse();
        short ready = Transactions!.ReadyError;
        foreach (string id in request.TransactionalIds)
        {
            var ts = new DescribeTransactionsResponse.TransactionStateData { TransactionalId = id, TransactionStartTimeMs = -1, ProducerId = -1, ProducerEpoch = -1 };
            response.TransactionStates.Add(ts);
            if (!Allowed(ctx, AclOperation.Describe, ResourceType.TransactionalId, id))
            {
                ts.ErrorCode = ErrorCodes.TransactionalIdAuthorizationFailed;
                continue;
            }
            var md = ready == ErrorCodes.None ? Transactions.Find(id) : null;
            if (md is null)
            {
                ts.ErrorCode = ready != ErrorCodes.None ? ready : ErrorCodes.TransactionalIdNotFound;
                continue;
            }
            TxnSnapshot cur;
            lock (md)
                cur = md.Current;
            ts.TransactionState = TxnSnapshot.StateName(cur.State);
            ts.TransactionTimeoutMs = cur.TimeoutMs;
            ts.TransactionStartTimeMs = cur.StartTimestampMs;
            ts.ProducerId = cur.ProducerId;
            ts.ProducerEpoch = cur.ProducerEpoch;
            foreach (var group in cur.Partitions.Where(p => Allowed(ctx, AclOperation.Describe, ResourceType.Topic, p.Topic)).GroupBy(p => p.Topic, StringComparer.Ordinal))
                ts.Topics.Add(new DescribeTransactionsResponse.TopicData { Topic = group.Key, Partitions = group.Select(p => p.Partition).ToList() });
        }
        return Done(response);
    }
}
