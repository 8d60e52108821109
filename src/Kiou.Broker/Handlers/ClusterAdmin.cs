using Kiou.Broker.Controller;
using Kiou.Broker.Network;
using Kiou.Broker.Security;
using Kiou.Protocol;
using Kiou.Protocol.Messages;

namespace Kiou.Broker.Handlers;

// Authorized operations: KIOU has no authorizer, so, as Kafka's AuthHelper.authorizedOperations without one, every
// operation AclEntry.supportedOperations lists for the resource type is authorized (a bit per AclOperation code).
//
// DescribeLogDirs v0-4: the one data directory, each partition's size in bytes, offset lag 0 (no future replicas), and
// from v4 the file system's total and usable bytes. Null topics: every partition; partitions not here are left out.
// ElectLeaders v0-2: this node already leads every partition, which is its only replica: as Kafka's controller answers a
// partition whose preferred replica leads, ELECTION_NOT_NEEDED for both election types. A null partition list means
// every partition; none needs an election, so the answer lists none.
// DescribeTopicPartitions v0: as Kafka's DescribeTopicPartitionsRequestHandler: topics in name order from the cursor,
// at most response_partition_limit partitions (1 to 2000) per answer, next_cursor where the next answer starts.
public sealed partial class BrokerHandlers
{
    // AclOperation codes: READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9,
    // DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12.
    internal const int TopicOperations = 1 << 3 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 8 | 1 << 10 | 1 << 11;
    internal const int ClusterOperations = 1 << 5 | 1 << 7 | 1 << 8 | 1 << 9 | 1 << 10 | 1 << 11 | 1 << 12;
    internal const int GroupOperations = 1 << 3 | 1 << 6 | 1 << 8;

    /// <summary>Kafka's DescribeTopicPartitions partition limit (max.request.partition.size.limit default).</summary>
    const int MaxDescribePartitions = 2000;

    ValueTask<IKafkaMessage?> DescribeLogDirs(RequestContext ctx, DescribeLogDirsRequest request)
    {
        string dir = Path.GetFullPath(_config.DataDir);
        var result = new DescribeLogDirsResponse.DescribeLogDirsResult { LogDir = dir };
        var response = new DescribeLogDirsResponse { Results = [result] };
        if (!AllowedOnCluster(ctx, AclOperation.Describe))
            return Done(new DescribeLogDirsResponse { ErrorCode = ErrorCodes.ClusterAuthorizationFailed });
        if (ctx.ApiVersion >= 4)
        {
            try
            {
                var drive = new DriveInfo(dir);
                result.TotalBytes = drive.TotalSize;
                result.UsableBytes = drive.AvailableFreeSpace;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
            {
                _log.Warn($"DescribeLogDirs: could not read the size of the file system holding {dir} ({e.Message}); answering -1 for its total and usable bytes");
            }
        }
        IEnumerable<(string Topic, IEnumerable<int>? Partitions)> wanted = request.Topics is null
            ? _logs.All.Select(t => (t.Info.Name, (IEnumerable<int>?)null))
            : request.Topics.Select(t => (t.Topic, (IEnumerable<int>?)t.Partitions));
        foreach (var (name, partitions) in wanted.OrderBy(w => w.Topic, StringComparer.Ordinal))
        {
            var logs = _logs.Get(name);
            if (logs is null)
                continue;
            var topic = new DescribeLogDirsResponse.DescribeLogDirsTopic { Name = name };
            foreach (int p in partitions ?? Enumerable.Range(0, logs.Partitions.Length))
            {
                if ((uint)p >= (uint)logs.Partitions.Length || topic.Partitions.Exists(x => x.PartitionIndex == p))
                    continue;
                topic.Partitions.Add(new DescribeLogDirsResponse.DescribeLogDirsPartition { PartitionIndex = p, PartitionSize = logs.Partitions[p].SizeBytes, OffsetLag = 0, IsFutureKey = false });
            }
            if (topic.Partitions.Count > 0 && !result.Topics.Exists(t => t.Name == name))
                result.Topics.Add(topic);
        }
        return Done(response);
    }

    ValueTask<IKafkaMessage?> ElectLeaders(RequestContext ctx, ElectLeadersRequest request)
    {
        var response = new ElectLeadersResponse();
        if (request.ElectionType is not (0 or 1))
        {
            response.ErrorCode = ErrorCodes.InvalidRequest;
            return Done(response);
        }
        bool denied = !AllowedOnCluster(ctx, AclOperation.Alter);
        if (denied && ctx.ApiVersion >= 1)
            response.ErrorCode = ErrorCodes.ClusterAuthorizationFailed;
        if (request.TopicPartitions is null)
            return Done(response);
        foreach (var t in request.TopicPartitions)
        {
            var result = new ElectLeadersResponse.ReplicaElectionResult { Topic = t.Topic };
            response.ReplicaElectionResults.Add(result);
            var topic = _controller.Find(t.Topic);
            foreach (int p in t.Partitions)
            {
                var pr = new ElectLeadersResponse.PartitionResult { PartitionId = p };
                if (denied)
                    (pr.ErrorCode, pr.ErrorMessage) = (ErrorCodes.ClusterAuthorizationFailed, null);
                else if (topic is null)
                    (pr.ErrorCode, pr.ErrorMessage) = (ErrorCodes.UnknownTopicOrPartition, $"No such topic as {t.Topic}");
                else if (p < 0 || p >= topic.Partitions)
                    (pr.ErrorCode, pr.ErrorMessage) = (ErrorCodes.UnknownTopicOrPartition, $"No such partition as {t.Topic}-{p}");
                else
                    (pr.ErrorCode, pr.ErrorMessage) = (ErrorCodes.ElectionNotNeeded, "Leader election not needed for topic partition.");
                result.PartitionResult.Add(pr);
            }
        }
        return Done(response);
    }

    ValueTask<IKafkaMessage?> DescribeTopicPartitions(RequestContext ctx, DescribeTopicPartitionsRequest request)
    {
        var response = new DescribeTopicPartitionsResponse();
        bool all = request.Topics.Count == 0;
        var cursor = request.Cursor;
        string from = cursor?.TopicName ?? "";
        var names = new SortedSet<string>(StringComparer.Ordinal);
        if (all)
        {
            foreach (var name in _controller.Topics.Keys)
                if (string.CompareOrdinal(name, from) >= 0)
                    names.Add(name);
        }
        else
        {
            foreach (var t in request.Topics)
                if (string.CompareOrdinal(t.Name, from) >= 0)
                    names.Add(t.Name);
        }
        string? invalid = null;
        if (cursor is not null && !all && !names.Contains(cursor.TopicName))
            invalid = $"DescribeTopicPartitionsRequest topic list should contain the cursor topic: {cursor.TopicName}";
        else if (cursor is not null && cursor.PartitionIndex < 0)
            invalid = $"DescribeTopicPartitionsRequest cursor partition must be valid: {cursor.TopicName}-{cursor.PartitionIndex}";
        if (invalid is not null)
        {
            // As Kafka's error response: every requested topic carries the error.
            foreach (var t in request.Topics)
                response.Topics.Add(new DescribeTopicPartitionsResponse.DescribeTopicPartitionsResponseTopic { Name = t.Name, ErrorCode = ErrorCodes.InvalidRequest });
            return Done(response);
        }
        int remaining = Math.Max(Math.Min(request.ResponsePartitionLimit, MaxDescribePartitions), 1);
        foreach (var name in names)
        {
            if (remaining <= 0)
            {
                response.NextCursor = new DescribeTopicPartitionsResponse.Cursor { TopicName = name, PartitionIndex = 0 };
                break;
            }
            if (!Allowed(ctx, AclOperation.Describe, ResourceType.Topic, name))
            {
                // As Kafka: left out of "all topics", TOPIC_AUTHORIZATION_FAILED when named.
                if (!all)
                    response.Topics.Add(new DescribeTopicPartitionsResponse.DescribeTopicPartitionsResponseTopic { Name = name, ErrorCode = ErrorCodes.TopicAuthorizationFailed });
                continue;
            }
            var topic = _controller.Find(name);
            int start = cursor is not null && name == cursor.TopicName ? cursor.PartitionIndex : 0;
            if (topic is null || start >= topic.Partitions)
            {
                // Kafka leaves unknown topics out of an "all topics" answer; a cursor past the end reads as unknown.
                if (!all)
                {
                    response.Topics.Add(new DescribeTopicPartitionsResponse.DescribeTopicPartitionsResponseTopic
                    {
                        Name = name,
                        ErrorCode = TopicNames.Validate(name) is null ? ErrorCodes.UnknownTopicOrPartition : ErrorCodes.InvalidTopicException,
                        IsInternal = IsInternalTopic(name),
                    });
                }
                continue;
            }
            var described = new DescribeTopicPartitionsResponse.DescribeTopicPartitionsResponseTopic
            {
                Name = name,
                TopicId = topic.Id,
                IsInternal = IsInternalTopic(name),
                TopicAuthorizedOperations = AuthorizedOperations(ctx, ResourceType.Topic, name, TopicOperations),
            };
            int end = (int)Math.Min(topic.Partitions, (long)start + remaining);
            for (int p = start; p < end; p++)
            {
                described.Partitions.Add(new DescribeTopicPartitionsResponse.DescribeTopicPartitionsResponsePartition
                {
                    PartitionIndex = p,
                    LeaderId = _config.NodeId,
                    LeaderEpoch = LeaderEpoch,
                    ReplicaNodes = [_config.NodeId],
                    IsrNodes = [_config.NodeId],
                    EligibleLeaderReplicas = [],
                    LastKnownElr = [],
                    OfflineReplicas = [],
                });
            }
            remaining -= end - start;
            response.Topics.Add(described);
            if (end < topic.Partitions)
            {
                response.NextCursor = new DescribeTopicPartitionsResponse.Cursor { TopicName = name, PartitionIndex = end };
                break;
            }
        }
        return Done(response);
    }
}
