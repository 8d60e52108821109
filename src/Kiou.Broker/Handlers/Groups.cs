using Kiou.Broker.Groups;
using Kiou.Broker.Network;
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
            if (knownType)
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

    ValueTask<IKafkaMessage?> JoinGroup(RequestContext ctx, JoinGroupRequest request) =>
        Parked(Groups.JoinGroup(request, ctx.ApiVersion, ctx.ClientId, ctx.Remote), ctx.Stopping);

    ValueTask<IKafkaMessage?> SyncGroup(RequestContext ctx, SyncGroupRequest request) => Parked(Groups.SyncGroup(request, ctx.ApiVersion), ctx.Stopping);

    ValueTask<IKafkaMessage?> Heartbeat(RequestContext ctx, HeartbeatRequest request) =>
        Done(new HeartbeatResponse { ErrorCode = Groups.Heartbeat(request, ctx.ApiVersion) });

    ValueTask<IKafkaMessage?> LeaveGroup(RequestContext ctx, LeaveGroupRequest request) => Done(Groups.LeaveGroup(request, ctx.ApiVersion));

    ValueTask<IKafkaMessage?> OffsetCommit(RequestContext ctx, OffsetCommitRequest request) => Later(Groups.CommitOffsets(request, ctx.ApiVersion));

    ValueTask<IKafkaMessage?> OffsetDelete(RequestContext ctx, OffsetDeleteRequest request) => Later(Groups.DeleteOffsets(request));

    ValueTask<IKafkaMessage?> OffsetFetch(RequestContext ctx, OffsetFetchRequest request)
    {
        short v = ctx.ApiVersion;
        var response = new OffsetFetchResponse();
        if (v >= 8)
        {
            foreach (var g in request.Groups)
            {
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
                    var t = new OffsetFetchResponse.OffsetFetchResponseTopics { Name = topic };
                    answer.Topics.Add(t);
                    foreach (var (partition, offset) in partitions)
                    {
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
            var t = new OffsetFetchResponse.OffsetFetchResponseTopic { Name = topic };
            response.Topics.Add(t);
            foreach (var (partition, offset) in partitions)
            {
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
            var described = Groups.Describe(id);
            if (ctx.ApiVersion >= 3 && request.IncludeAuthorizedOperations)
                described.AuthorizedOperations = GroupOperations;
            response.Groups.Add(described);
        }
        return Done(response);
    }

    ValueTask<IKafkaMessage?> ListGroups(RequestContext ctx, ListGroupsRequest request) =>
        Done(Groups.ListGroups(ctx.ApiVersion >= 4 ? request.StatesFilter : null, ctx.ApiVersion >= 5 ? request.TypesFilter : null));

    async ValueTask<IKafkaMessage?> DeleteGroups(RequestContext ctx, DeleteGroupsRequest request)
    {
        var response = new DeleteGroupsResponse();
        foreach (string id in request.GroupsNames)
        {
            short error = await Groups.DeleteGroup(id).ConfigureAwait(false);
            response.Results.Add(new DeleteGroupsResponse.DeletableGroupResult { GroupId = id, ErrorCode = error });
        }
        return response;
    }
}
