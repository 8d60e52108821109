using Kiou.Broker.Network;
using Kiou.Broker.Security;
using Kiou.Protocol;
using Kiou.Protocol.Messages;

namespace Kiou.Broker.Handlers;

// ListOffsets v0-10.
// v0 (Kafka's legacyFetchOffsetsBefore, what Burrow and other old tools send) answers a descending list of at most
// MaxNumOffsets offsets: -1 (or a time not yet reached) the high watermark then the log start offset, -2 the log start
// offset; another time the log start offset when the newest record is not after it, else nothing. Kafka lists every
// segment base whose file was last modified by then; KIOU lists the log start alone (where a reader can begin).
// Timestamp -1: the high watermark; -2: the log start offset; -3 (v7): the record with the largest timestamp;
// >= 0: the first offset whose timestamp is at least that, through the time index; -1/-1 with NONE when none is.
// A partition listed twice gets INVALID_REQUEST, as in Kafka.
// isolation_level=1 (read_committed), as Kafka's fetchOffsetForTimestamp: -1 answers the last stable offset, and a
// lookup (>= 0, -3) that lands at or past it finds nothing (-1/-1).
//
// OffsetForLeaderEpoch v0-4 (v0 answers no epoch): one epoch (0) for the life of every partition. Epoch 0 ends at the high watermark;
// any other epoch is unknown (-1/-1), which is Kafka's answer for an epoch above every known one.
public sealed partial class BrokerHandlers
{
    ValueTask<IKafkaMessage?> ListOffsets(RequestContext ctx, ListOffsetsRequest request)
    {
        var response = new ListOffsetsResponse();
        foreach (var topic in request.Topics)
        {
            var topicResponse = new ListOffsetsResponse.ListOffsetsTopicResponse { Name = topic.Name };
            response.Topics.Add(topicResponse);
            var seen = new HashSet<int>();
            bool topicDenied = !Allowed(ctx, AclOperation.Describe, ResourceType.Topic, topic.Name);
            foreach (var p in topic.Partitions)
            {
                var pr = new ListOffsetsResponse.ListOffsetsPartitionResponse { PartitionIndex = p.PartitionIndex, Timestamp = -1, Offset = -1, LeaderEpoch = -1 };
                topicResponse.Partitions.Add(pr);
                if (topicDenied)
                {
                    pr.ErrorCode = ErrorCodes.TopicAuthorizationFailed;
                    continue;
                }
                if (!seen.Add(p.PartitionIndex))
                {
                    pr.ErrorCode = ErrorCodes.InvalidRequest;
                    continue;
                }
                var log = _logs.Get(topic.Name, p.PartitionIndex);
                if (log is null)
                {
                    pr.ErrorCode = ErrorCodes.UnknownTopicOrPartition;
                    continue;
                }
                if (ctx.ApiVersion == 0)
                {
                    AnswerV0(pr, log, p.Timestamp, p.MaxNumOffsets);
                    continue;
                }
                pr.ErrorCode = CheckLeaderEpoch(p.CurrentLeaderEpoch);
                if (pr.ErrorCode != ErrorCodes.None)
                    continue;
                pr.LeaderEpoch = LeaderEpoch;
                bool readCommitted = request.IsolationLevel == 1;
                switch (p.Timestamp)
                {
                    case -1:
                        pr.Offset = readCommitted ? log.LastStableOffset : log.HighWatermark;
                        break;
                    case -2:
                        pr.Offset = log.LogStartOffset;
                        break;
                    case -3:
                        (pr.Offset, pr.Timestamp) = log.MaxTimestampEntry();
                        break;
                    case -4:
                        // v8 earliest local offset: without tiered storage the whole log is local.
                        pr.Offset = log.LogStartOffset;
                        break;
                    case -5:
                        // v9 latest tiered offset: nothing is tiered, Kafka answers -1 with remote storage off.
                        pr.LeaderEpoch = -1;
                        break;
                    case >= 0:
                        (pr.Offset, pr.Timestamp) = log.LookupByTimestamp(p.Timestamp);
                        if (pr.Offset < 0)
                            pr.LeaderEpoch = -1;
                        break;
                    default:
                        // Anything else: not a timestamp we know.
                        pr.ErrorCode = ErrorCodes.InvalidRequest;
                        break;
                }
                if (readCommitted && p.Timestamp is >= 0 or -3 && pr.Offset >= 0 && pr.Offset >= log.LastStableOffset)
                {
                    pr.Offset = -1;
                    pr.Timestamp = -1;
                    pr.LeaderEpoch = -1;
                }
            }
        }
        return Done(response);
    }

    void AnswerV0(ListOffsetsResponse.ListOffsetsPartitionResponse pr, Kiou.Storage.PartitionLog log, long timestamp, int maxNumOffsets)
    {
        long start = log.LogStartOffset;
        long hw = log.HighWatermark;
        var offsets = pr.OldStyleOffsets;
        switch (timestamp)
        {
            case -1:
            case >= 0 when timestamp >= NowMs:
                offsets.Add(hw);
                if (start != hw)
                    offsets.Add(start);
                break;
            case -2:
                offsets.Add(start);
                break;
            case >= 0:
                // The log's newest record time stands for the active segment's modification time.
                if (hw == start || timestamp >= log.MaxTimestampEntry().Timestamp)
                    offsets.Add(start);
                break;
            default:
                pr.ErrorCode = ErrorCodes.InvalidRequest;
                break;
        }
        if (offsets.Count > Math.Max(0, maxNumOffsets))
            offsets.RemoveRange(Math.Max(0, maxNumOffsets), offsets.Count - Math.Max(0, maxNumOffsets));
    }

    ValueTask<IKafkaMessage?> OffsetForLeaderEpoch(RequestContext ctx, OffsetForLeaderEpochRequest request)
    {
        var response = new OffsetForLeaderEpochResponse();
        foreach (var topic in request.Topics)
        {
            var topicResponse = new OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult { Topic = topic.Topic };
            response.Topics.Add(topicResponse);
            bool topicDenied = !Allowed(ctx, AclOperation.Describe, ResourceType.Topic, topic.Topic);
            foreach (var p in topic.Partitions)
            {
                var pr = new OffsetForLeaderEpochResponse.EpochEndOffset { Partition = p.Partition, LeaderEpoch = -1, EndOffset = -1 };
                topicResponse.Partitions.Add(pr);
                if (topicDenied)
                {
                    pr.ErrorCode = ErrorCodes.TopicAuthorizationFailed;
                    continue;
                }
                var log = _logs.Get(topic.Topic, p.Partition);
                if (log is null)
                {
                    pr.ErrorCode = ErrorCodes.UnknownTopicOrPartition;
                    continue;
                }
                pr.ErrorCode = CheckLeaderEpoch(p.CurrentLeaderEpoch);
                if (pr.ErrorCode == ErrorCodes.None && p.LeaderEpoch == LeaderEpoch)
                {
                    pr.LeaderEpoch = LeaderEpoch;
                    pr.EndOffset = log.HighWatermark;
                }
            }
        }
        return Done(response);
    }
}
