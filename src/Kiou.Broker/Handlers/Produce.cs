using System.Runtime.InteropServices;
using Kiou.Broker.Network;
using Kiou.Broker.Security;
using Kiou.Compression;
using Kiou.Protocol;
using Kiou.Protocol.Messages;
using Kiou.Protocol.Records;
using Kiou.Storage;
using Kiou.Storage.Producers;
using Kiou.Broker.Transactions;

namespace Kiou.Broker.Handlers;

// Produce v0-11. v0-2 carry message sets of magic 0 or 1, converted to one record batch v2 before the checks below
// (ConvertLegacy, docs/design/message-formats.md); v0 answers without a timestamp, v2 adds log_append_time.
// - acks 0: no response at all; if any partition failed, the connection is closed afterwards (Kafka's behaviour).
// - acks 1: answered once the batch is written (the completed tail covers it).
// - acks -1: the same on one node, or once the batch is durable when the topic's flush policy is Always (KIOU_FLUSH=always,
//   flush.messages=1 or flush.ms=0).
// - every partition is validated and appended independently; appends of one request start in request order before
//   the first await, so pipelined requests on a connection keep their order.
// - validation walks every record; a compressed batch is decompressed into pooled memory for it (Kiou.Compression,
//   bounded by BatchDecompressor.DecompressedBytesMax) and then stored as it came. A rejected batch appends nothing and
//   names the record at fault in record_errors and error_message (v8+; older versions get the code alone). A compacted
//   topic refuses a record without a key (KIP-467).
// - a batch with a producer id is checked against the partition's producer state in append order (the log does it
//   under its lock): a retry of one of the producer's last five batches is answered with the original offsets once
//   the original is written (durable for acks=all with Flush=Always); a gap, an old epoch or a negative sequence is
//   refused with Kafka's code and appends nothing.
// - a transactional batch that would start a transaction on a partition is first verified with the coordinator
//   (KIP-890, KIOU_TRANSACTION_PARTITION_VERIFICATION_ENABLE; VerifyTransaction below).
public sealed partial class BrokerHandlers
{
    ValueTask<IKafkaMessage?> Produce(RequestContext ctx, ProduceRequest request)
    {
        short acks = request.Acks;
        var response = new ProduceResponse();
        List<(ProduceResponse.PartitionProduceResponse Partition, ValueTask<AppendResult> Append, PartitionLog Log, ReadOnlyMemory<byte> Records)>? appends = null;
        bool failed = false;
        // Kafka's KafkaApis: WRITE on the transactional id fails the whole request, WRITE on each topic its partitions.
        bool transactionDenied = request.TransactionalId is { } txnId && !Allowed(ctx, AclOperation.Write, ResourceType.TransactionalId, txnId);
        foreach (var topic in request.TopicData)
        {
            var topicResponse = new ProduceResponse.TopicProduceResponse { Name = topic.Name };
            response.Responses.Add(topicResponse);
            var topicLogs = _logs.Get(topic.Name);
            bool topicDenied = !transactionDenied && !Allowed(ctx, AclOperation.Write, ResourceType.Topic, topic.Name);
            foreach (var data in topic.PartitionData)
            {
                var pr = new ProduceResponse.PartitionProduceResponse { Index = data.Index, BaseOffset = -1, LogAppendTimeMs = -1, LogStartOffset = -1 };
                topicResponse.PartitionResponses.Add(pr);
                short error = ErrorCodes.None;
                RecordsVerdict verdict = default;
                PartitionLog? log = null;
                ReadOnlyMemory<byte>? records = data.Records;
                if (acks is not (0 or 1 or -1))
                    error = ErrorCodes.InvalidRequiredAcks;
                else if (transactionDenied)
                    error = ErrorCodes.TransactionalIdAuthorizationFailed;
                else if (topicDenied)
                    error = ErrorCodes.TopicAuthorizationFailed;
                else if (request.TransactionalId is not null && Transactions is null)
                    error = ErrorCodes.TransactionalIdAuthorizationFailed; // transactions are not served
                else if (Controller.InternalTopics.IsInternal(topic.Name))
                    error = ErrorCodes.InvalidTopicException; // Kafka: clients cannot append to internal topics
                else if (topicLogs is null || (uint)data.Index >= (uint)topicLogs.Partitions.Length)
                    error = ErrorCodes.UnknownTopicOrPartition;
                else
                {
                    log = topicLogs.Partitions[data.Index];
                    error = ctx.ApiVersion < 3 ? ConvertLegacy(ref records, log.Config, out verdict) : ErrorCodes.None;
                    if (error == ErrorCodes.None)
                        error = Validate(records, log.Config, out verdict);
                }
                if (error != ErrorCodes.None || log is null)
                {
                    pr.ErrorCode = error;
                    pr.ErrorMessage = verdict.Message ?? ProduceErrorMessage(error, log?.Config);
                    if (verdict.RecordIndexes is { } indexes)
                    {
                        string each = $"{RecordsCheck.KeyMissingMessage} in topic partition {topic.Name}-{data.Index}.";
                        foreach (int index in indexes)
                            pr.RecordErrors.Add(new ProduceResponse.BatchIndexAndErrorMessage { BatchIndex = index, BatchIndexErrorMessage = each });
                    }
                    else if (verdict.Message is not null)
                        pr.RecordErrors.Add(new ProduceResponse.BatchIndexAndErrorMessage { BatchIndex = verdict.RecordIndex, BatchIndexErrorMessage = verdict.Message });
                    failed = true;
                    if (error is ErrorCodes.CorruptMessage or ErrorCodes.InvalidRecord)
                        _log.Warn($"{ctx.Client}: rejected a batch of {data.Records?.Length ?? 0} bytes for {topic.Name}-{data.Index}, nothing of it appended: {pr.ErrorMessage}");
                    continue;
                }
                VerificationGuard? verification = null;
                if (request.TransactionalId is { } transactionalId && Transactions!.Settings.PartitionVerificationEnable
                    && VerifyTransaction(transactionalId, new TopicPartition(topic.Name, data.Index), records!.Value.Span, log, out verification) is var refused and not ErrorCodes.None)
                {
                    pr.ErrorCode = refused;
                    pr.ErrorMessage = refused == ErrorCodes.InvalidTxnState ? "Partition was not added to the transaction" : $"Unable to verify the partition has been added to the transaction ({ErrorName(refused)})";
                    failed = true;
                    continue;
                }

                bool waitDurable = acks == -1 && log.Config.Flush.Mode == FlushMode.Always;
                ValueTask<AppendResult> append;
                try
                {
                    append = log.AppendAsync(MemoryMarshal.AsMemory(records!.Value), waitDurable, verification: verification);
                }
                catch (Exception e)
                {
                    append = ValueTask.FromException<AppendResult>(e);
                }
                (appends ??= []).Add((pr, append, log, records!.Value));
            }
        }
        if (appends is null)
            return Finish(ctx, acks, response, failed);
        return FinishAsync(ctx, acks, response, appends, failed);
    }

    async ValueTask<IKafkaMessage?> FinishAsync(RequestContext ctx, short acks, ProduceResponse response,
        List<(ProduceResponse.PartitionProduceResponse Partition, ValueTask<AppendResult> Append, PartitionLog Log, ReadOnlyMemory<byte> Records)> appends, bool failed)
    {
        bool parked = false;
        foreach (var a in appends)
            parked |= !a.Append.IsCompleted;
        if (parked)
            _router.Metrics?.ProduceParked(1);
        try
        {
            foreach (var (pr, append, log, records) in appends)
            {
                try
                {
                    var result = await append.ConfigureAwait(false);
                    pr.BaseOffset = result.BaseOffset;
                    pr.LogAppendTimeMs = result.LogAppendTimeMs;
                    pr.LogStartOffset = result.LogStartOffset;
                    _router.Metrics?.ProducedTo(log.Topic, records.Span);
                }
                catch (ProducerStateException e)
                {
                    // OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH, INVALID_TXN_STATE or INVALID_RECORD, as Kafka.
                    pr.ErrorCode = e.ErrorCode;
                    pr.ErrorMessage = e.Message;
                    failed = true;
                }
                catch (RecordListTooLargeException e)
                {
                    pr.ErrorCode = ErrorCodes.RecordListTooLarge;
                    pr.ErrorMessage = e.Message;
                    failed = true;
                }
                catch (StorageException e)
                {
                    // KAFKA_STORAGE_ERROR exists from Produce v4; Kafka answers older versions with NOT_LEADER_OR_FOLLOWER.
                    pr.ErrorCode = ctx.ApiVersion >= 4 ? ErrorCodes.KafkaStorageError : ErrorCodes.NotLeaderOrFollower;
                    pr.ErrorMessage = e.Message;
                    failed = true;
                }
                catch (Exception e)
                {
                    // Every append is awaited before the request's frame goes back: a later one may still be copying from it.
                    _log.Warn($"{ctx.Client}: the append to {log.Topic}-{log.Partition} failed unexpectedly ({e.GetType().Name}: {e.Message}); answered UNKNOWN_SERVER_ERROR");
                    pr.ErrorCode = ErrorCodes.UnknownServerError;
                    pr.ErrorMessage = "the broker failed to append: " + e.Message;
                    failed = true;
                }
            }
        }
        finally
        {
            if (parked)
                _router.Metrics?.ProduceParked(-1);
        }
        return Finish(ctx, acks, response, failed).Result;
    }

    ValueTask<IKafkaMessage?> Finish(RequestContext ctx, short acks, ProduceResponse response, bool failed)
    {
        // A response's error codes are counted when it is answered; acks=0 has none, so its refusals are counted here.
        if (failed && acks == 0 && _router.Metrics is { } metrics)
        {
            foreach (var topic in response.Responses)
                foreach (var p in topic.PartitionResponses)
                    if (p.ErrorCode != ErrorCodes.None)
                        metrics.Error(ctx.ApiKey, p.ErrorCode);
        }
        if (acks != 0)
            return Done(response);
        if (failed)
            ctx.CloseConnection = true;
        return ValueTask.FromResult<IKafkaMessage?>(null);
    }

    /// <summary>
    /// KIP-890 (Kafka's ReplicaManager.appendRecordsWithTransactionVerification, docs/design/transactions.md): a
    /// transactional batch of a producer with no transaction open on the partition is appended only if the coordinator
    /// (in process: this is one node) has the partition in the producer's open transaction, and only with the guard
    /// taken before asking, so a marker written in between refuses it. Errors as Kafka's AddPartitionsToTxnManager and
    /// ReplicaManager map them: PRODUCER_FENCED becomes INVALID_PRODUCER_EPOCH; a busy or loading coordinator
    /// NOT_ENOUGH_REPLICAS, which every client retries.
    /// </summary>
    short VerifyTransaction(string transactionalId, TopicPartition partition, ReadOnlySpan<byte> batch, PartitionLog log, out VerificationGuard? verification)
    {
        verification = null;
        if (!RecordBatch.IsTransactional(batch) || RecordBatch.ProducerId(batch) < 0)
            return ErrorCodes.None; // the append refuses what is not a transactional batch as before
        long producerId = RecordBatch.ProducerId(batch);
        short epoch = RecordBatch.ProducerEpoch(batch);
        VerificationGuard guard = log.StartTransactionVerification(producerId, epoch);
        verification = guard;
        if (!guard.NeedsCoordinator)
            return ErrorCodes.None;
        short error = Transactions!.VerifyPartition(transactionalId, producerId, epoch, partition);
        if (error == ErrorCodes.None)
            return ErrorCodes.None;
        log.AbandonTransactionVerification(guard);
        verification = null;
        return error switch
        {
            ErrorCodes.ProducerFenced => ErrorCodes.InvalidProducerEpoch,
            ErrorCodes.ConcurrentTransactions or ErrorCodes.CoordinatorLoadInProgress or ErrorCodes.CoordinatorNotAvailable or ErrorCodes.NotCoordinator => ErrorCodes.NotEnoughReplicas,
            _ => error,
        };
    }

    static string ErrorName(short error) => error switch
    {
        ErrorCodes.NotEnoughReplicas => "the transaction coordinator is busy or loading; retry",
        ErrorCodes.InvalidProducerEpoch => "the producer was fenced by a newer epoch",
        ErrorCodes.InvalidProducerIdMapping => "the transactional id has no such producer id",
        _ => $"error {error}",
    };

    /// <summary>
    /// Produce v0-2: a message set of magic 0 or 1 becomes one record batch v2 (LegacyRecords.ToBatch, as Kafka's
    /// LogValidator converts on append), which is then validated and appended like any other. A v2 batch in an old
    /// request passes unchanged, as Kafka accepts it.
    /// </summary>
    static short ConvertLegacy(ref ReadOnlyMemory<byte>? records, LogConfig config, out RecordsVerdict verdict)
    {
        verdict = default;
        if (records is not { Length: > 0 } r || (r.Length > RecordBatch.MagicPosition && r.Span[RecordBatch.MagicPosition] == RecordBatch.CurrentMagic))
            return ErrorCodes.None;
        var legacy = LegacyRecords.ToBatch(r, config.MaxMessageBytes, BatchDecompressor.DecompressedBytesMax(config.MaxMessageBytes), config.Compact, out byte[]? batch);
        if (!legacy.IsOk)
        {
            verdict = new RecordsVerdict(legacy.ErrorCode, 0, legacy.Message);
            return legacy.ErrorCode;
        }
        records = batch;
        return ErrorCodes.None;
    }

    static short Validate(ReadOnlyMemory<byte>? records, LogConfig config, out RecordsVerdict verdict)
    {
        verdict = default;
        if (records is not { Length: > 0 } r)
            return ErrorCodes.InvalidRecord;
        short error = RecordBatch.ValidateForProduce(r.Span, config.MaxMessageBytes, out var info, out verdict, requireKeys: config.Compact);
        if (error != ErrorCodes.None)
            return error;
        if (info.TimestampType == TimestampType.LogAppendTime)
            return ErrorCodes.InvalidTimestamp; // only the broker may set LogAppendTime
        if (info.Codec != CompressionType.None)
        {
            verdict = CompressedBatchCheck.Validate(r, info, BatchDecompressor.DecompressedBytesMax(config.MaxMessageBytes), requireKeys: config.Compact);
            return verdict.ErrorCode;
        }
        return ErrorCodes.None;
    }

    static string? ProduceErrorMessage(short error, LogConfig? config) => error switch
    {
        ErrorCodes.None => null,
        ErrorCodes.InvalidRequiredAcks => "acks must be 0, 1 or -1 (all)",
        ErrorCodes.TransactionalIdAuthorizationFailed => "Transactional Id authorization failed.",
        ErrorCodes.TopicAuthorizationFailed => "Topic authorization failed.",
        ErrorCodes.InvalidTopicException => "Cannot append to internal topic",
        ErrorCodes.UnknownTopicOrPartition => "This server does not host this topic-partition.",
        ErrorCodes.CorruptMessage => "the record batch is corrupt (CRC-32C mismatch, truncated, or inconsistent lengths)",
        ErrorCodes.InvalidRecord => "the record batch is invalid (not a single magic-2 batch, offsets or count inconsistent, or a control batch)",
        ErrorCodes.MessageTooLarge => $"the record batch is larger than max.message.bytes ({config?.MaxMessageBytes})",
        ErrorCodes.UnsupportedCompressionType => "unknown compression codec in the batch attributes",
        ErrorCodes.InvalidTimestamp => "the batch already carries LogAppendTime; only the broker may set it",
        _ => null,
    };
}
