using Kiou.Broker.Controller;
using Kiou.Broker.Network;
using Kiou.Broker.Security;
using Kiou.Protocol;
using Kiou.Protocol.Messages;

namespace Kiou.Broker.Handlers;

// Metadata v0-12. This node is the only broker, the controller and the leader of every partition (epoch 0,
// replicas = isr = [this node]). "All topics" is an empty list in v0 and null from v1. Unknown topics are
// auto-created when the request allows it (v4+; implicitly in v0-3) and KIOU_AUTO_CREATE_TOPICS is on, never
// for an "all topics" request. v12 may name topics by id only. __consumer_offsets and __transaction_state are internal:
// listed with is_internal (as Kafka lists its internal topics); no "__" name is ever auto-created by a Metadata request.
//
// Authorized operations (Metadata v8+ topics, v8-10 cluster; DescribeCluster): from the authorizer; without one every
// operation of the resource type, as Kafka answers (Handlers/ClusterAdmin.cs). With the authorizer on, topics the
// principal may not DESCRIBE are left out of "all topics" and named ones get TOPIC_AUTHORIZATION_FAILED; auto-creation
// needs CREATE on the cluster or the topic. DescribeCluster is open to all, as in Kafka (its authorized operations are
// empty without DESCRIBE on the cluster).
//
// DescribeCluster v0-1: the same node as broker and controller; EndpointType 2 (controllers) is refused with
// UNSUPPORTED_ENDPOINT_TYPE as a broker does.
public sealed partial class BrokerHandlers
{
    /// <summary>The endpoint of the listener the request came in on, as Kafka answers by listener name (the first
    /// broker listener's for a request on the controller listener).</summary>
    Kiou.Broker.Security.BrokerListener AdvertisedListener(RequestContext ctx) => ctx.Endpoint ?? _config.EffectiveListeners[0];

    string AdvertisedHost(RequestContext ctx) => AdvertisedListener(ctx).EffectiveAdvertisedHost;

    int AdvertisedPort(RequestContext ctx) => AdvertisedListener(ctx).EffectiveAdvertisedPort;

    async ValueTask<IKafkaMessage?> Metadata(RequestContext ctx, MetadataRequest request)
    {
        var response = new MetadataResponse
        {
            ClusterId = _controller.ClusterId,
            ControllerId = _config.NodeId,
            Brokers = [new MetadataResponse.MetadataResponseBroker { NodeId = _config.NodeId, Host = AdvertisedHost(ctx), Port = AdvertisedPort(ctx) }],
        };
        if (ctx.ApiVersion is >= 8 and <= 10 && request.IncludeClusterAuthorizedOperations)
            response.ClusterAuthorizedOperations = ClusterAuthorizedOperations(ctx);
        await FillTopics(ctx, request, response).ConfigureAwait(false);
        if (ctx.ApiVersion >= 8 && request.IncludeTopicAuthorizedOperations)
        {
            foreach (var t in response.Topics)
                if (t.ErrorCode == ErrorCodes.None)
                    t.TopicAuthorizedOperations = AuthorizedOperations(ctx, ResourceType.Topic, t.Name!, TopicOperations);
        }
        return response;
    }

    async ValueTask FillTopics(RequestContext ctx, MetadataRequest request, MetadataResponse response)
    {
        bool all = request.Topics is null || (ctx.ApiVersion == 0 && request.Topics.Count == 0);
        if (all)
        {
            // As Kafka: internal topics are listed too, flagged is_internal (clients leave them out of regex
            // subscriptions, tools out of --exclude-internal listings).
            // Topics the principal may not DESCRIBE are left out, as Kafka does.
            foreach (var topic in _controller.Topics.Values.OrderBy(t => t.Name, StringComparer.Ordinal))
                if (Allowed(ctx, AclOperation.Describe, ResourceType.Topic, topic.Name))
                    response.Topics.Add(DescribeTopic(topic));
            return;
        }
        bool allowAutoCreate = (ctx.ApiVersion < 4 || request.AllowAutoTopicCreation) && _config.AutoCreateTopics;
        foreach (var wanted in request.Topics!)
        {
            TopicInfo? topic = wanted.Name is null ? _controller.Find(wanted.TopicId) : _controller.Find(wanted.Name);
            if ((topic?.Name ?? wanted.Name) is { } named && !Allowed(ctx, AclOperation.Describe, ResourceType.Topic, named))
            {
                response.Topics.Add(new MetadataResponse.MetadataResponseTopic { Name = wanted.Name, TopicId = wanted.TopicId, ErrorCode = ErrorCodes.TopicAuthorizationFailed });
                continue;
            }
            if (topic is not null)
            {
                response.Topics.Add(DescribeTopic(topic));
                continue;
            }
            var missing = new MetadataResponse.MetadataResponseTopic { Name = wanted.Name, TopicId = wanted.TopicId };
            response.Topics.Add(missing);
            if (wanted.Name is null)
            {
                missing.ErrorCode = ErrorCodes.UnknownTopicId;
                continue;
            }
            if (TopicNames.Validate(wanted.Name) is not null)
            {
                missing.ErrorCode = ErrorCodes.InvalidTopicException;
                continue;
            }
            if (!allowAutoCreate || InternalTopics.IsReserved(wanted.Name))
            {
                missing.ErrorCode = ErrorCodes.UnknownTopicOrPartition;
                continue;
            }
            if (!AllowedOnCluster(ctx, AclOperation.Create) && !Allowed(ctx, AclOperation.Create, ResourceType.Topic, wanted.Name))
            {
                missing.ErrorCode = ErrorCodes.TopicAuthorizationFailed;
                continue;
            }
            AdminResult created;
            try
            {
                created = await _controller.CreateTopicAsync(wanted.Name, -1, -1, new Dictionary<string, string?>(), validateOnly: false).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                created = new AdminResult(ErrorCodes.KafkaStorageError, e.Message);
                _log.Error($"{ctx.Client}: auto-creating topic {wanted.Name} failed inside the broker: {e}");
            }
            if (created.ErrorCode == ErrorCodes.None || created.ErrorCode == ErrorCodes.TopicAlreadyExists)
            {
                var now = _controller.Find(wanted.Name);
                if (now is not null)
                {
                    response.Topics[^1] = DescribeTopic(now);
                    if (created.ErrorCode == ErrorCodes.None)
                        _log.Info($"{ctx.Client}: auto-created topic {wanted.Name} (set KIOU_AUTO_CREATE_TOPICS=false to turn this off)");
                    continue;
                }
            }
            missing.ErrorCode = created.ErrorCode;
        }
    }

    MetadataResponse.MetadataResponseTopic DescribeTopic(TopicInfo topic)
    {
        var t = new MetadataResponse.MetadataResponseTopic { Name = topic.Name, TopicId = topic.Id, IsInternal = IsInternalTopic(topic.Name) };
        for (int p = 0; p < topic.Partitions; p++)
        {
            t.Partitions.Add(new MetadataResponse.MetadataResponsePartition
            {
                PartitionIndex = p,
                LeaderId = _config.NodeId,
                LeaderEpoch = LeaderEpoch,
                ReplicaNodes = [_config.NodeId],
                IsrNodes = [_config.NodeId],
                OfflineReplicas = [],
            });
        }
        return t;
    }

    /// <summary>Kafka: the cluster's authorized operations only for a principal that may DESCRIBE it, else none.</summary>
    int ClusterAuthorizedOperations(RequestContext ctx) =>
        AllowedOnCluster(ctx, AclOperation.Describe) ? AuthorizedOperations(ctx, ResourceType.Cluster, Acls.ClusterName, ClusterOperations) : 0;

    static bool IsInternalTopic(string name) => InternalTopics.IsInternal(name);

    ValueTask<IKafkaMessage?> DescribeCluster(RequestContext ctx, DescribeClusterRequest request)
    {
        var response = new DescribeClusterResponse
        {
            EndpointType = request.EndpointType,
            ClusterId = _controller.ClusterId,
            ControllerId = _config.NodeId,
        };
        if (request.IncludeClusterAuthorizedOperations)
            response.ClusterAuthorizedOperations = ClusterAuthorizedOperations(ctx);
        if (request.EndpointType != 1)
        {
            response.ErrorCode = ErrorCodes.UnsupportedEndpointType;
            response.ErrorMessage = "this listener answers only for brokers (EndpointType 1)";
            return Done(response);
        }
        response.Brokers.Add(new DescribeClusterResponse.DescribeClusterBroker { BrokerId = _config.NodeId, Host = AdvertisedHost(ctx), Port = AdvertisedPort(ctx) });
        return Done(response);
    }
}
