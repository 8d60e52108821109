using Kiou.Broker.Network;
using Kiou.Broker.Security;
using Kiou.Protocol;
using Kiou.Protocol.Messages;
using Kiou.Storage;

namespace Kiou.Broker.Handlers;

// DeleteRecords v0-2, as Kafka's ReplicaManager.deleteRecords and Partition.deleteRecordsOnLeader: per partition the
// log start offset moves up to the offset given (-1: the high watermark) and low_watermark answers the new log start.
// Internal topics: INVALID_TOPIC_EXCEPTION; a topic whose cleanup.policy lacks "delete": POLICY_VIOLATION; an offset
// below -1 or above the high watermark: OFFSET_OUT_OF_RANGE; an offset at or below the log start changes nothing.
// The answer waits until the new start is durable (the records below fdatasync'ed, the checkpoint written); with one
// replica Kafka's purgatory has nothing more to wait for, so timeout_ms does not bound anything here.
public sealed partial class BrokerHandlers
{
    async ValueTask<IKafkaMessage?> DeleteRecords(RequestContext ctx, DeleteRecordsRequest request)
    {
        var response = new DeleteRecordsResponse();
        var work = new List<(DeleteRecordsResponse.DeleteRecordsPartitionResult Result, Task<long> Task, PartitionLog Log, long Offset)>();
        foreach (var topic in request.Topics)
        {
            var topicResult = new DeleteRecordsResponse.DeleteRecordsTopicResult { Name = topic.Name };
            response.Topics.Add(topicResult);
            bool topicDenied = !Allowed(ctx, AclOperation.Delete, ResourceType.Topic, topic.Name);
            foreach (var p in topic.Partitions)
            {
                var result = new DeleteRecordsResponse.DeleteRecordsPartitionResult { PartitionIndex = p.PartitionIndex, LowWatermark = -1 };
                topicResult.Partitions.Add(result);
                if (topicDenied)
                {
                    result.ErrorCode = ErrorCodes.TopicAuthorizationFailed;
                    continue;
                }
                var log = _logs.Get(topic.Name, p.PartitionIndex);
                if (log is null)
                {
                    result.ErrorCode = ErrorCodes.UnknownTopicOrPartition;
                    continue;
                }
                if (IsInternalTopic(topic.Name))
                {
                    result.ErrorCode = ErrorCodes.InvalidTopicException;
                    continue;
                }
                if (!log.Config.DeleteRetention)
                {
                    result.ErrorCode = ErrorCodes.PolicyViolation;
                    continue;
                }
                long offset = p.Offset == -1 ? log.HighWatermark : p.Offset;
                if (offset < 0 || offset > log.HighWatermark)
                {
                    result.ErrorCode = ErrorCodes.OffsetOutOfRange;
                    continue;
                }
                work.Add((result, log.DeleteRecordsBeforeAsync(offset), log, offset));
            }
        }
        foreach (var (result, task, log, offset) in work)
        {
            try
            {
                result.LowWatermark = await task.ConfigureAwait(false);
            }
            catch (ArgumentOutOfRangeException)
            {
                result.ErrorCode = ErrorCodes.OffsetOutOfRange; // the partition was emptied and recreated meanwhile
            }
            catch (StorageException e)
            {
                _log.Warn($"DeleteRecords on partition {log.Topic}-{log.Partition} up to offset {offset} failed: {e.Message}; its log start offset stays {log.LogStartOffset}");
                result.ErrorCode = ErrorCodes.KafkaStorageError;
            }
        }
        return response;
    }
}
