using Kiou.Broker.Network;
using Kiou.Broker.Security;
using Kiou.Protocol;
using Kiou.Protocol.Messages;
using Kiou.Storage.Producers;

namespace Kiou.Broker.Handlers;

// Idempotent producers (docs/design/producer-state.md).
// InitProducerId v0-5, as Kafka's KafkaApis.handleInitProducerIdRequest and TransactionCoordinator.handleInitProducerId:
// - a producer id without an epoch or the reverse (v3+, KIP-360): INVALID_REQUEST;
// - no transactional id: a new producer id, never handed out before (ProducerIdAllocator, durable blocks), epoch 0,
//   whatever id and epoch the request carries (Kafka bumps epochs only for transactional ids);
// - an empty transactional id: INVALID_REQUEST;
// - any other transactional id: the transaction coordinator (TransactionCoordinator.InitProducerIdAsync): a new
//   producer id or an epoch bump fencing the previous producer, after aborting its open transaction.
// DescribeProducers v0: each partition's producer state, read under the partition lock.
public sealed partial class BrokerHandlers
{
    void RegisterIdempotenceApis()
    {
        Add<InitProducerIdRequest>(InitProducerIdRequest.ApiKey, 0, 5, InitProducerId);
        Add<DescribeProducersRequest>(DescribeProducersRequest.ApiKey, 0, 0, DescribeProducers);
    }

    ValueTask<IKafkaMessage?> InitProducerId(RequestContext ctx, InitProducerIdRequest request)
    {
        var response = new InitProducerIdResponse { ProducerId = ProducerSequence.NoProducerId, ProducerEpoch = ProducerSequence.NoProducerEpoch };
        if ((request.ProducerId == ProducerSequence.NoProducerId) != (request.ProducerEpoch == ProducerSequence.NoProducerEpoch))
        {
            response.ErrorCode = ErrorCodes.InvalidRequest;
            return Done(response);
        }
        if (request.TransactionalId is not null)
        {
            if (request.TransactionalId.Length == 0)
            {
                response.ErrorCode = ErrorCodes.InvalidRequest;
                return Done(response);
            }
            if (Transactions is null || !Allowed(ctx, AclOperation.Write, ResourceType.TransactionalId, request.TransactionalId))
            {
                response.ErrorCode = ErrorCodes.TransactionalIdAuthorizationFailed;
                return Done(response);
            }
            return InitTransactionalProducerId(ctx, request, response);
        }
        // Kafka: an idempotent producer needs IDEMPOTENT_WRITE on the cluster, or WRITE on some topic.
        if (Authorizer.Enabled && !AllowedOnCluster(ctx, AclOperation.IdempotentWrite)
            && !Authorizer.AuthorizeAny(ctx.Principal, ClientAddress(ctx), AclOperation.Write, ResourceType.Topic))
        {
            response.ErrorCode = ErrorCodes.ClusterAuthorizationFailed;
            return Done(response);
        }
        try
        {
            response.ProducerId = _logs.ProducerIds.Allocate();
            response.ProducerEpoch = 0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Kafka's producer id manager answers this while it cannot obtain a block: retriable.
            _log.Error($"{ctx.Client}: InitProducerId could not reserve producer ids in {_config.DataDir}: {e.Message}; fix the disk, clients retry");
            response.ErrorCode = ErrorCodes.CoordinatorLoadInProgress;
        }
        return Done(response);
    }

    async ValueTask<IKafkaMessage?> InitTransactionalProducerId(RequestContext ctx, InitProducerIdRequest request, InitProducerIdResponse response)
    {
        var result = await Transactions!.InitProducerIdAsync(request.TransactionalId!, request.TransactionTimeoutMs, request.ProducerId, request.ProducerEpoch).ConfigureAwait(false);
        response.ErrorCode = Fenced(result.Error, ctx.ApiVersion, 4);
        if (result.Error == ErrorCodes.None)
        {
            response.ProducerId = result.ProducerId;
            response.ProducerEpoch = result.ProducerEpoch;
        }
        return response;
    }

    ValueTask<IKafkaMessage?> DescribeProducers(RequestContext ctx, DescribeProducersRequest request)
    {
        var response = new DescribeProducersResponse();
        foreach (var topic in request.Topics)
        {
            var tr = new DescribeProducersResponse.TopicResponse { Name = topic.Name };
            response.Topics.Add(tr);
            bool topicDenied = !Allowed(ctx, AclOperation.Read, ResourceType.Topic, topic.Name);
            foreach (int index in topic.PartitionIndexes)
            {
                var pr = new DescribeProducersResponse.PartitionResponse { PartitionIndex = index };
                tr.Partitions.Add(pr);
                if (topicDenied)
                {
                    pr.ErrorCode = ErrorCodes.TopicAuthorizationFailed;
                    continue;
                }
                var log = _logs.Get(topic.Name, index);
                if (log is null)
                {
                    pr.ErrorCode = ErrorCodes.UnknownTopicOrPartition;
                    pr.ErrorMessage = "This server does not host this topic-partition.";
                    continue;
                }
                foreach (ProducerStateEntry e in log.ActiveProducers())
                {
                    pr.ActiveProducers.Add(new DescribeProducersResponse.ProducerState
                    {
                        ProducerId = e.ProducerId,
                        ProducerEpoch = e.ProducerEpoch,
                        LastSequence = e.LastSequence,
                        LastTimestamp = e.LastTimestamp,
                        CoordinatorEpoch = e.CoordinatorEpoch,
                        CurrentTxnStartOffset = e.CurrentTxnFirstOffset,
                    });
                }
            }
        }
        return Done(response);
    }
}
