using Kiou.Broker.Groups;
using Kiou.Broker.Network;
using Kiou.Broker.Security;
using Kiou.Protocol;
using Kiou.Protocol.Messages;

namespace Kiou.Broker.Handlers;

// The classic group protocol, served by Groups/GroupCoordinator (this node coordinates every group).
//
// FindCoordinator v0-6: this node's advertised host and broker port (as in Metadata) for group and transaction keys;
//   v4+ batch CoordinatorKeys and answer one Coordinator each. Other key types: INVALID_REQUEST.
// JoinGroup v0-9: v0 has no rebalance timeout (the session timeout serves); v4+ MEMBER_ID_REQUIRED round trip for
//   dynamic members; v5+ static membership (GroupInstanceId); v7+ ProtocolType in the answer; v9 SkipAssignment for a
//   static leader rejoining a Stable group. The answer is parked until the join phase completes (delayed; responses
//   on the connection stay in order).
// SyncGroup v0-5: v3+ GroupInstanceId; v5 checks ProtocolType/ProtocolName. Followers park until the leader syncs.
// Heartbeat v0-4, LeaveGroup v0-5 (v3+ batched Members with per-member errors, v5 Reason).
// OffsetCommit v0-9: v0 (kept in ZooKeeper by Kafka 3.9 in ZK mode, refused in KRaft mode) is a commit to the
//   coordinator here like any other, seen by every OffsetFetch version; v1 CommitTimestamp is the commit time; v2-4
//   RetentionTimeMs sets an explicit expiry; v6+ CommittedLeaderEpoch; v7+ GroupInstanceId; v9 answers
//   GROUP_ID_NOT_FOUND (not ILLEGAL_GENERATION) for an unknown group with a generation. Answered only once the commit
//   is durable in the offsets log.
// OffsetFetch v0-9: v0 (read from ZooKeeper by Kafka in ZK mode) reads the coordinator's offsets as v1 does; v2+ null
//   topics = all committed partitions and a top-level error; v5+ leader epoch; v7+ RequireStable (partitions with
//   transactional offsets awaiting their marker get UNSTABLE_OFFSET_COMMIT, as Kafka); v8+ several groups per
//   request.
// OffsetDelete v0, DescribeGroups v0-5, ListGroups v0-5 (v4+ state filter, v5+ type filter), DeleteGroups v0-2.
public sealed partial class BrokerHandlers
{
    /// <summary>The group coordinator; when null no group API is registered.</summary>
    public GroupCoordinator? Coordinator { get; init; }

    partial void RegisterGroupApis()
    {
        if (Coordinator is null)
            return;
        Add<FindCoordinatorRequest>(FindCoordinatorRequest.ApiKey, 0, 6, FindCoordinator);
        Add<JoinGroupRequest>(JoinGroupRequest.ApiKey, 0, 9, JoinGroup);
        Add<SyncGroupRequest>(SyncGroupRequest.ApiKey, 0, 5, SyncGroup);
        Add<HeartbeatRequest>(HeartbeatRequest.ApiKey, 0, 4, Heartbeat);
        Add<LeaveGroupRequest>(LeaveGroupRequest.ApiKey, 0, 5, LeaveGroup);
        Add<OffsetCommitRequest>(OffsetCommitRequest.ApiKey, 0, 9, OffsetCommit);
        Add<OffsetFetchRequest>(OffsetFetchRequest.ApiKey, 0, 9, OffsetFetch);
        Add<OffsetDeleteRequest>(OffsetDeleteRequest.ApiKey, 0, 0, OffsetDelete);
        Add<DescribeGroupsRequest>(DescribeGroupsRequest.ApiKey, 0, 5, DescribeGroups);
        Add<ListGroupsRequest>(ListGroupsRequest.ApiKey, 0, 5, ListGroups);
        Add<DeleteGroupsRequest>(DeleteGroupsRequest.ApiKey, 0, 2, DeleteGroups);
    }

    GroupCoordinator Groups => Coordinator!;

    static async ValueTask<IKafkaMessage?> Later<T>(Task<T> task) where T : IKafkaMessage => await task.ConfigureAwait(false);

    /// <summary>A parked JoinGroup / SyncGroup stops waiting when its connection stops reading (it is closing, or the
    /// broker stops) and is dropped with the connection, its answer being possibly far off; the member itself stays in
    /// the group until the phase completes or times out, as in Kafka.</summary>
    static async ValueTask<IKafkaMessage?> Parked<T>(Task<T> task, CancellationToken stopping) where T : IKafkaMessage =>
        await task.WaitAsync(stopping).ConfigureAwait(false);

    ValueTask<IKafkaMessage?> FindCoordinator(RequestContext ctx, FindCoordinatorRequest request)
    {
        bool knownType = request.KeyType is 0 or 1;
        var response = new FindCoordinatorResponse();
        if (ctx.ApiVersion < 4)
        {
            if (knownType && CoordinatorKeyDenied(ctx, request.KeyType, request.Key) is var denied and not ErrorCodes.None)
            {
                response.ErrorCode = denied;
                response.NodeId = -1;
                response.Host = "";
                response.Port = -1;
            }
            else if (knownType)
            {
                response.NodeId = _config.NodeId;
                response.Host = AdvertisedHost(ctx);
                response.Port = AdvertisedPort(ctx);
            }
            else
            {
                response.ErrorCode = ErrorCodes.InvalidRequest;
                response.ErrorMessage = $"unknown coordinator key type {request.KeyType}";
                response.NodeId = -1;
                response.Host = "";
                response.Port = -1;
            }
            return Done(response);
        }
        foreach (string key in request.CoordinatorKeys)
        {
            if (knownType && CoordinatorKeyDenied(ctx, request.KeyType, key) is var keyDenied and not ErrorCodes.None)
            {
                response.Coordinators.Add(new FindCoordinatorResponse.Coordinator { Key = key, NodeId = -1, Host = "", Port = -1, ErrorCode = keyDenied });
                continue;
            }
            response.Coordinators.Add(knownType
                ? new FindCoordinatorResponse.Coordinator { Key = key, NodeId = _config.NodeId, Host = AdvertisedHost(ctx), Port = AdvertisedPort(ctx) }
                : new FindCoordinatorResponse.Coordinator
                {
                    Key = key,
                    NodeId = -1,
                    Host = "",
                    Port = -1,
                    ErrorCode = ErrorCodes.InvalidRequest,
                    ErrorMessage = $"unknown coordinator key type {request.KeyType}",
                });
        }
        return Done(response);
    }

    /// <summary>FindCoordinator: Kafka asks DESCRIBE on the group or the transactional id.</summary>
    short CoordinatorKeyDenied(RequestContext ctx, sbyte keyType, string key) => keyType == 0
        ? Allowed(ctx, AclOperation.Describe, ResourceType.Group, key) ? ErrorCodes.None : ErrorCodes.GroupAuthorizationFailed
        : Allowed(ctx, AclOperation.Describe, ResourceType.TransactionalId, key) ? ErrorCodes.None : ErrorCodes.TransactionalIdAuthorizationFailed;

    bool GroupAllowed(RequestContext ctx, AclOperation op, string groupId) => Allowed(ctx, op, ResourceType.Group, groupId);

    ValueTask<IKafkaMessage?> JoinGroup(RequestContext ctx, JoinGroupRequest request) =>
        !GroupAllowed(ctx, AclOperation.Read, request.GroupId)
            ? Done(new JoinGroupResponse { ErrorCode = ErrorCodes.GroupAuthorizationFailed, GenerationId = -1, ProtocolName = ctx.ApiVersion >= 7 ? null : "", MemberId = request.MemberId })
            : Parked(Groups.JoinGroup(request, ctx.ApiVersion, ctx.ClientId, ctx.Remote), ctx.Stopping);

    ValueTask<IKafkaMessage?> SyncGroup(RequestContext ctx, SyncGroupRequest request) =>
        !GroupAllowed(ctx, AclOperation.Read, request.GroupId)
            ? Done(new SyncGroupResponse { ErrorCode = ErrorCodes.GroupAuthorizationFailed })
            : Parked(Groups.SyncGroup(request, ctx.ApiVersion), ctx.Stopping);

    ValueTask<IKafkaMessage?> Heartbeat(RequestContext ctx, HeartbeatRequest request) =>
        Done(new HeartbeatResponse
        {
            ErrorCode = !GroupAllowed(ctx, AclOperation.Read, request.GroupId) ? ErrorCodes.GroupAuthorizationFailed : Groups.Heartbeat(request, ctx.ApiVersion),
        });

    ValueTask<IKafkaMessage?> LeaveGroup(RequestContext ctx, LeaveGroupRequest request) =>
        Done(!GroupAllowed(ctx, AclOperation.Read, request.GroupId)
            ? new LeaveGroupResponse { ErrorCode = ErrorCodes.GroupAuthorizationFailed }
            : Groups.LeaveGroup(request, ctx.ApiVersion));

    ValueTask<IKafkaMessage?> OffsetCommit(RequestContext ctx, OffsetCommitRequest request)
    {
        // Kafka: READ on the group for all of it, READ on each topic for its partitions; the others are committed.
        bool groupDenied = !GroupAllowed(ctx, AclOperation.Read, request.GroupId);
        List<OffsetCommitRequest.OffsetCommitRequestTopic>? denied = null;
        foreach (var t in request.Topics)
        {
            if (groupDenied || !Allowed(ctx, AclOperation.Read, ResourceType.Topic, t.Name))
                (denied ??= []).Add(t);
        }
        if (denied is null)
            return Later(Groups.CommitOffsets(request, ctx.ApiVersion));
        short error = groupDenied ? ErrorCodes.GroupAuthorizationFailed : ErrorCodes.TopicAuthorizationFailed;
        request.Topics.RemoveAll(denied.Contains);
        return CommitAllowed();

        async ValueTask<IKafkaMessage?> CommitAllowed()
        {
            var response = request.Topics.Count > 0 ? await Groups.CommitOffsets(request, ctx.ApiVersion).ConfigureAwait(false) : new OffsetCommitResponse();
            foreach (var t in denied)
            {
                var rt = new OffsetCommitResponse.OffsetCommitResponseTopic { Name = t.Name };
                foreach (var p in t.Partitions)
                    rt.Partitions.Add(new OffsetCommitResponse.OffsetCommitResponsePartition { PartitionIndex = p.PartitionIndex, ErrorCode = error });
                response.Topics.Add(rt);
            }
            return response;
        }
    }

    ValueTask<IKafkaMessage?> OffsetDelete(RequestContext ctx, OffsetDeleteRequest request)
    {
        // Kafka: DELETE on the group, READ on each topic.
        if (!GroupAllowed(ctx, AclOperation.Delete, request.GroupId))
            return Done(new OffsetDeleteResponse { ErrorCode = ErrorCodes.GroupAuthorizationFailed });
        var denied = request.Topics.Where(t => !Allowed(ctx, AclOperation.Read, ResourceType.Topic, t.Name)).ToList();
        if (denied.Count == 0)
            return Later(Groups.DeleteOffsets(request));
        request.Topics.RemoveAll(denied.Contains);
        return DeleteAllowed();

        async ValueTask<IKafkaMessage?> DeleteAllowed()
        {
            var response = request.Topics.Count > 0 ? await Groups.DeleteOffsets(request).ConfigureAwait(false) : new OffsetDeleteResponse();
            foreach (var t in denied)
            {
                var rt = new OffsetDeleteResponse.OffsetDeleteResponseTopic { Name = t.Name };
                foreach (var p in t.Partitions)
                    rt.Partitions.Add(new OffsetDeleteResponse.OffsetDeleteResponsePartition { PartitionIndex = p.PartitionIndex, ErrorCode = ErrorCodes.TopicAuthorizationFailed });
                response.Topics.Add(rt);
            }
            return response;
        }
    }

    ValueTask<IKafkaMessage?> OffsetFetch(RequestContext ctx, OffsetFetchRequest request)
    {
        short v = ctx.ApiVersion;
        var response = new OffsetFetchResponse();
        if (v >= 8)
        {
            foreach (var g in request.Groups)
            {
                // Kafka: DESCRIBE on the group; topics the principal may not DESCRIBE are left out (or refused when named).
                if (!GroupAllowed(ctx, AclOperation.Describe, g.GroupId))
                {
                    response.Groups.Add(new OffsetFetchResponse.OffsetFetchResponseGroup { GroupId = g.GroupId, ErrorCode = ErrorCodes.GroupAuthorizationFailed });
                    continue;
                }
                List<(string, List<int>)>? wanted = null;
                if (g.Topics is not null)
                {
                    wanted = [];
                    foreach (var t in g.Topics)
                        wanted.Add((t.Name, t.PartitionIndexes));
                }
                var (error, topics) = Groups.FetchOffsets(g.GroupId, wanted);
                var answer = new OffsetFetchResponse.OffsetFetchResponseGroup { GroupId = g.GroupId, ErrorCode = error };
                response.Groups.Add(answer);
                foreach (var (topic, partitions) in topics)
                {
                    bool topicDenied = !Allowed(ctx, AclOperation.Describe, ResourceType.Topic, topic);
                    if (topicDenied && wanted is null)
                        continue;
                    var t = new OffsetFetchResponse.OffsetFetchResponseTopics { Name = topic };
                    answer.Topics.Add(t);
                    foreach (var (partition, offset) in partitions)
                    {
                        if (topicDenied)
                        {
                            t.Partitions.Add(new OffsetFetchResponse.OffsetFetchResponsePartitions { PartitionIndex = partition, CommittedOffset = -1, ErrorCode = ErrorCodes.TopicAuthorizationFailed });
                            continue;
                        }
                        // Kafka: RequireStable and offsets of an open transaction: UNSTABLE_OFFSET_COMMIT, retried.
                        bool unstable = request.RequireStable && Groups.HasPendingTxnOffset(g.GroupId, topic, partition);
                        t.Partitions.Add(new OffsetFetchResponse.OffsetFetchResponsePartitions
                        {
                            PartitionIndex = partition,
                            CommittedOffset = unstable ? -1 : offset?.Offset ?? -1,
                            CommittedLeaderEpoch = unstable ? -1 : offset?.LeaderEpoch ?? -1,
                            Metadata = unstable ? "" : offset?.Metadata ?? "",
                            ErrorCode = unstable ? ErrorCodes.UnstableOffsetCommit : ErrorCodes.None,
                        });
                    }
                }
            }
            return Done(response);
        }
        List<(string, List<int>)>? single = null;
        if (request.Topics is not null)
        {
            single = [];
            foreach (var t in request.Topics)
                single.Add((t.Name, t.PartitionIndexes));
        }
        if (!GroupAllowed(ctx, AclOperation.Describe, request.GroupId))
        {
            if (v >= 2)
                return Done(new OffsetFetchResponse { ErrorCode = ErrorCodes.GroupAuthorizationFailed });
            foreach (var (topic, partitions) in single ?? [])
            {
                var t = new OffsetFetchResponse.OffsetFetchResponseTopic { Name = topic };
                foreach (int p in partitions)
                    t.Partitions.Add(new OffsetFetchResponse.OffsetFetchResponsePartition { PartitionIndex = p, CommittedOffset = -1, ErrorCode = ErrorCodes.GroupAuthorizationFailed });
                response.Topics.Add(t);
            }
            return Done(response);
        }
        var (groupError, found) = Groups.FetchOffsets(request.GroupId, single);
        if (v >= 2)
            response.ErrorCode = groupError;
        if (groupError != ErrorCodes.None && v < 2 && single is not null)
        {
            // v0-1 have no top-level error: repeat it in every partition asked for.
            found = [];
            foreach (var (topic, partitions) in single)
            {
                var list = new List<(int, CommittedOffset?)>();
                foreach (int p in partitions)
                    list.Add((p, null));
                found.Add((topic, list));
            }
        }
        foreach (var (topic, partitions) in found)
        {
            bool topicDenied = !Allowed(ctx, AclOperation.Describe, ResourceType.Topic, topic);
            if (topicDenied && single is null)
                continue;
            var t = new OffsetFetchResponse.OffsetFetchResponseTopic { Name = topic };
            response.Topics.Add(t);
            foreach (var (partition, offset) in partitions)
            {
                if (topicDenied)
                {
                    t.Partitions.Add(new OffsetFetchResponse.OffsetFetchResponsePartition { PartitionIndex = partition, CommittedOffset = -1, ErrorCode = ErrorCodes.TopicAuthorizationFailed });
                    continue;
                }
                bool unstable = v >= 7 && request.RequireStable && groupError == ErrorCodes.None && Groups.HasPendingTxnOffset(request.GroupId, topic, partition);
                t.Partitions.Add(new OffsetFetchResponse.OffsetFetchResponsePartition
                {
                    PartitionIndex = partition,
                    CommittedOffset = unstable ? -1 : offset?.Offset ?? -1,
                    CommittedLeaderEpoch = unstable ? -1 : offset?.LeaderEpoch ?? -1,
                    Metadata = unstable ? "" : offset?.Metadata ?? "",
                    ErrorCode = unstable ? ErrorCodes.UnstableOffsetCommit : v < 2 ? groupError : ErrorCodes.None,
                });
            }
        }
        return Done(response);
    }

    ValueTask<IKafkaMessage?> DescribeGroups(RequestContext ctx, DescribeGroupsRequest request)
    {
        var response = new DescribeGroupsResponse();
        foreach (string id in request.Groups)
        {
            if (!GroupAllowed(ctx, AclOperation.Describe, id))
            {
                response.Groups.Add(new DescribeGroupsResponse.DescribedGroup { GroupId = id, ErrorCode = ErrorCodes.GroupAuthorizationFailed });
                continue;
            }
            var described = Groups.Describe(id);
            if (ctx.ApiVersion >= 3 && request.IncludeAuthorizedOperations)
                described.AuthorizedOperations = AuthorizedOperations(ctx, ResourceType.Group, id, GroupOperations);
            response.Groups.Add(described);
        }
        return Done(response);
    }

    ValueTask<IKafkaMessage?> ListGroups(RequestContext ctx, ListGroupsRequest request)
    {
        var response = Groups.ListGroups(ctx.ApiVersion >= 4 ? request.StatesFilter : null, ctx.ApiVersion >= 5 ? request.TypesFilter : null);
        // Kafka: every group with DESCRIBE on the cluster, else those the principal may DESCRIBE.
        if (Authorizer.Enabled && !AllowedOnCluster(ctx, AclOperation.Describe))
            response.Groups.RemoveAll(g => !GroupAllowed(ctx, AclOperation.Describe, g.GroupId));
        return Done(response);
    }

    async ValueTask<IKafkaMessage?> DeleteGroups(RequestContext ctx, DeleteGroupsRequest request)
    {
        var response = new DeleteGroupsResponse();
        foreach (string id in request.GroupsNames)
        {
            short error = GroupAllowed(ctx, AclOperation.Delete, id) ? await Groups.DeleteGroup(id).ConfigureAwait(false) : ErrorCodes.GroupAuthorizationFailed;
            response.Results.Add(new DeleteGroupsResponse.DeletableGroupResult { GroupId = id, ErrorCode = error });
        }
        return response;
    }
}
