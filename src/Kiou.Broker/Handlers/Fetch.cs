using Kiou.Broker.Network;
using Kiou.Broker.Security;
using Kiou.Compression;
using Kiou.Protocol;
using Kiou.Protocol.Messages;
using Kiou.Storage;

namespace Kiou.Broker.Handlers;

// Fetch v0-17: v13+ name topics by id (as Metadata v10+ reports them); an id that names no topic answers
// UNKNOWN_TOPIC_ID on each of its partitions, as Kafka does.
// - v0-3 cannot carry record batches v2: what is read is converted down to message format v0 (Fetch v0-1) or v1
//   (v2-3) in memory, without zero-copy, as Kafka's RecordsUtil.downConvert (LegacyRecords.DownConvert,
//   docs/design/message-formats.md); zstd batches cannot be, and get UNSUPPORTED_COMPRESSION_TYPE.
// - reads never pass the high watermark (the completed tail);
// - partitions are filled in request order, each up to PartitionMaxBytes and the whole response up to
//   min(MaxBytes, KIOU_FETCH_MAX_BYTES); the first batch of the first partition with data is returned whole even
//   when larger (Kafka's rule, so a large batch can't block a consumer);
// - long polling: with fewer than MinBytes available the request parks until an append to one of its partitions
//   publishes (woken by that append, not by a timer) or MaxWaitMs passes; a woken fetch first adds up the
//   partitions' BytesAvailable (cheap: no records read) and builds its response again only once MinBytes is
//   reachable, as Kafka's DelayedFetch.tryComplete does; a connection that stops reading (shutdown) answers it with
//   what there is;
// - fetch sessions are declined: SessionId is always 0 and every request is a full fetch;
// - with KIOU_FETCH_ZERO_COPY=true (default) record data is not read: the response carries file regions that the
//   connection sends with sendfile(2) (docs/design/request-path.md); otherwise it is read into a pooled buffer and sent
//   from there. Either way the records are never copied into the response buffer.
// - damaged data (an offset in a hole that recovery left, or a batch whose header or CRC is bad) is answered with
//   CORRUPT_MESSAGE on that partition alone, as Kafka answers a CorruptRecordException: librdkafka and kafka-python
//   show it to the application, which must seek past it (docs/design/recovery.md). A read error of the file is
//   KAFKA_STORAGE_ERROR. Neither closes the connection.
// - isolation_level=1 (read_committed): reads stop at the last stable offset (below the first batch of the oldest
//   transaction not yet decided, or decided with its marker not yet published) and the partition lists the aborted
//   transactions that overlap [fetch offset, LSO) from the segments' .txnindex, as Kafka's
//   collectAbortedTransactions; the client drops their records and skips control batches. last_stable_offset is the
//   real LSO at every isolation level. The LSO moves only when the high watermark does (a marker's publish), so the
//   long poll's wake-up on the high watermark covers it (docs/design/transactions.md).
public sealed partial class BrokerHandlers
{
    ValueTask<IKafkaMessage?> Fetch(RequestContext ctx, FetchRequest request)
    {
        if (request.SessionId != 0)
        {
            return Done(new FetchResponse { ErrorCode = ErrorCodes.FetchSessionIdNotFound, SessionId = 0 });
        }
        if (ctx.ApiVersion >= 13)
        {
            // Resolved once: the long poll rebuilds from the same names; an empty name marks an unknown id.
            foreach (var topic in request.Topics)
                topic.Topic = _controller.Find(topic.TopicId)?.Name ?? "";
        }
        var denied = DeniedFetchTopics(ctx, request);
        if (request.MaxWaitMs <= 0)
            return Done(Counted(BuildFetchResponse(ctx.ApiVersion, request, out _, out _, out _, seen: null, denied: denied)));
        bool readCommitted = request.IsolationLevel == 1;
        var seen = new List<(PartitionLog Log, long HighWatermark)>();
        var wants = new List<(long FetchOffset, int MaxBytes)>();
        var response = BuildFetchResponse(ctx.ApiVersion, request, out long bytes, out bool anyError, out _, seen, wants, denied);
        if (bytes >= Math.Max(1, request.MinBytes) || anyError)
            return Done(Counted(response));
        return LongPollAsync(ctx, request, response, seen, wants, readCommitted);
    }

    /// <summary>Topics this fetch may not read (Kafka: READ on the topic for a consumer, CLUSTER_ACTION on the cluster
    /// for a follower); null when it may read them all, the usual case, which costs one check per topic.</summary>
    HashSet<string>? DeniedFetchTopics(RequestContext ctx, FetchRequest request)
    {
        if (!Authorizer.Enabled)
            return null;
        bool follower = request.ReplicaId >= 0 || request.ReplicaState.ReplicaId >= 0;
        bool clusterAction = follower && AllowedOnCluster(ctx, AclOperation.ClusterAction);
        HashSet<string>? denied = null;
        foreach (var topic in request.Topics)
        {
            if (follower ? !clusterAction : topic.Topic.Length > 0 && !Allowed(ctx, AclOperation.Read, ResourceType.Topic, topic.Topic))
                (denied ??= new HashSet<string>(StringComparer.Ordinal)).Add(topic.Topic);
        }
        return denied;
    }

    // The fetch parks (FetchPurgatory) with the high watermarks that the reads which built the response saw, not
    // read again afterwards: an append published after a read releases it at once, so none can be missed.
    async ValueTask<IKafkaMessage?> LongPollAsync(RequestContext ctx, FetchRequest request, FetchResponse first,
        List<(PartitionLog Log, long HighWatermark)> seen, List<(long FetchOffset, int MaxBytes)> wants, bool readCommitted)
    {
        long deadline = NowMs + request.MaxWaitMs;
        int minBytes = Math.Max(1, request.MinBytes);
        FetchResponse response = first;
        while (true)
        {
            long remaining = deadline - NowMs;
            if (remaining <= 0 || ctx.Stopping.IsCancellationRequested)
                return Counted(response);
            _config.BeforeFetchParks?.Invoke();
            response.Dispose();
            while (true)
            {
                _router.Metrics?.FetchParked(1);
                try
                {
                    using var parked = _fetchPurgatory.Park(seen, deadline, ctx.Stopping);
                    await parked.Task.ConfigureAwait(false);
                }
                finally
                {
                    _router.Metrics?.FetchParked(-1);
                }
                ctx.ConnectionClosed.ThrowIfCancellationRequested();
                if (ctx.Stopping.IsCancellationRequested || NowMs >= deadline || MinBytesReachable(seen, wants, minBytes, readCommitted))
                    break;
            }
            seen.Clear();
            wants.Clear();
            _config.OnFetchRebuilt?.Invoke();
            response = BuildFetchResponse(ctx.ApiVersion, request, out long bytes, out bool anyError, out _, seen, wants);
            if (bytes >= minBytes || anyError || ctx.Stopping.IsCancellationRequested)
                return Counted(response);
        }
    }

    /// <summary>Bytes and records out per topic, from the response that is sent (a long poll builds several); its error
    /// codes are counted with every other API's when it is answered.</summary>
    FetchResponse Counted(FetchResponse response)
    {
        if (_router.Metrics is not { } metrics)
            return response;
        foreach (var topic in response.Responses)
            foreach (var p in topic.Partitions)
                if (p.Records is { Length: > 0 } records)
                    metrics.FetchedFrom(topic.Topic, records);
        return response;
    }

    /// <summary>
    /// After a wake-up: true when the response may now be worth building (MinBytes reachable, or a partition changed
    /// in a way only a read can answer: moved below the fetch offset, or did not move at all). Otherwise each entry of
    /// <paramref name="seen"/> takes the high watermark read before its bytes were counted, so an append after that
    /// count wakes the fetch again.
    /// </summary>
    static bool MinBytesReachable(List<(PartitionLog Log, long HighWatermark)> seen, List<(long FetchOffset, int MaxBytes)> wants, int minBytes, bool readCommitted)
    {
        long bytes = 0;
        bool moved = false;
        for (int i = 0; i < seen.Count; i++)
        {
            var (log, before) = seen[i];
            var (offset, maxBytes) = wants[i];
            long hw = log.HighWatermark;
            if (offset < log.LogStartOffset || offset > hw)
                return true; // out of range now: the read answers it
            moved |= hw != before;
            try
            {
                bytes += Math.Min(log.BytesAvailable(offset, readCommitted ? log.LastStableOffset : long.MaxValue), maxBytes);
            }
            catch (StorageException)
            {
                return true; // the read reports it
            }
            seen[i] = (log, hw);
        }
        return bytes >= minBytes || !moved;
    }

    /// <param name="seen">When given, receives each partition read without error with the high watermark that read
    /// saw (what a long poll waits to pass).</param>
    /// <param name="denied">Topics answered TOPIC_AUTHORIZATION_FAILED; a denied topic is an error, so such a fetch
    /// never parks and is never rebuilt.</param>
    FetchResponse BuildFetchResponse(short version, FetchRequest request, out long bytes, out bool anyError, out int partitions,
        List<(PartitionLog Log, long HighWatermark)>? seen, List<(long FetchOffset, int MaxBytes)>? wants = null, HashSet<string>? denied = null)
    {
        var response = new FetchResponse { ErrorCode = ErrorCodes.None, SessionId = 0 };
        long budget = Math.Min(request.MaxBytes, _config.FetchMaxBytes);
        bool readCommitted = request.IsolationLevel == 1;
        // v0-1 carry message sets of magic 0, v2-3 of magic 1 (docs/design/message-formats.md)
        int legacyMagic = version < 2 ? 0 : version < 4 ? 1 : -1;
        bytes = 0;
        anyError = false;
        partitions = 0;
        foreach (var topic in request.Topics)
        {
            var topicResponse = new FetchResponse.FetchableTopicResponse { Topic = topic.Topic, TopicId = topic.TopicId };
            response.Responses.Add(topicResponse);
            var topicLogs = _logs.Get(topic.Topic);
            bool topicDenied = denied is not null && denied.Contains(topic.Topic);
            foreach (var p in topic.Partitions)
            {
                partitions++;
                var pd = new FetchResponse.PartitionData
                {
                    PartitionIndex = p.Partition,
                    HighWatermark = -1,
                    LastStableOffset = -1,
                    LogStartOffset = -1,
                    Records = ReadOnlyMemory<byte>.Empty,
                };
                topicResponse.Partitions.Add(pd);
                if (topicDenied)
                {
                    pd.ErrorCode = ErrorCodes.TopicAuthorizationFailed;
                    anyError = true;
                    continue;
                }
                if (topicLogs is null || (uint)p.Partition >= (uint)topicLogs.Partitions.Length)
                {
                    pd.ErrorCode = topic.Topic.Length == 0 && topic.TopicId != Guid.Empty ? ErrorCodes.UnknownTopicId : ErrorCodes.UnknownTopicOrPartition;
                    anyError = true;
                    continue;
                }
                var log = topicLogs.Partitions[p.Partition];
                short epochError = CheckLeaderEpoch(p.CurrentLeaderEpoch);
                if (epochError != ErrorCodes.None)
                {
                    pd.ErrorCode = epochError;
                    anyError = true;
                    continue;
                }
                int limit = (int)Math.Min(Math.Max(0, p.PartitionMaxBytes), Math.Max(0, budget - bytes));
                ReadResult read;
                long lastStable = log.LastStableOffset; // before the read: the read's high watermark is at least this
                try
                {
                    read = log.Read(p.FetchOffset, limit, minOneBatch: bytes == 0, zeroCopy: _config.FetchZeroCopy && legacyMagic < 0 && limit >= Connection.DeferRecordsFrom,
                        maxOffset: readCommitted ? lastStable : long.MaxValue);
                }
                catch (StorageException e)
                {
                    // An error for this partition only (a segment that cannot be opened, EMFILE, corrupt bytes).
                    _log.Warn($"fetch of {topic.Topic}-{p.Partition} at offset {p.FetchOffset} failed: {e.Message}");
                    pd.ErrorCode = ErrorCodes.KafkaStorageError;
                    pd.HighWatermark = log.HighWatermark;
                    pd.LastStableOffset = Math.Min(lastStable, pd.HighWatermark);
                    pd.LogStartOffset = log.LogStartOffset;
                    anyError = true;
                    continue;
                }
                pd.HighWatermark = read.HighWatermark;
                pd.LastStableOffset = Math.Min(lastStable, read.HighWatermark);
                pd.LogStartOffset = read.LogStartOffset;
                if (read.Error != ReadError.None)
                {
                    read.Dispose();
                    pd.ErrorCode = read.Error switch
                    {
                        ReadError.OffsetOutOfRange => ErrorCodes.OffsetOutOfRange,
                        ReadError.Corrupt => ErrorCodes.CorruptMessage,
                        _ => ErrorCodes.KafkaStorageError,
                    };
                    anyError = true;
                    continue;
                }
                seen?.Add((log, read.HighWatermark));
                wants?.Add((p.FetchOffset, Math.Max(0, p.PartitionMaxBytes)));
                if (read.Records.Length == 0)
                {
                    read.Dispose();
                    continue;
                }
                if (readCommitted && log.CollectAbortedTransactions(p.FetchOffset, lastStable) is { } aborted)
                {
                    // [fetch offset, LSO) covers every returned batch; a client uses the entries of the producers it meets.
                    foreach (var txn in aborted)
                        pd.AbortedTransactions!.Add(new FetchResponse.AbortedTransaction { ProducerId = txn.ProducerId, FirstOffset = txn.FirstOffset });
                }
                if (legacyMagic >= 0)
                {
                    // Built in memory, bounded by the read's limit (plus the first message, which is always whole).
                    var converted = LegacyRecords.DownConvert(read.Records, (byte)legacyMagic, p.FetchOffset, Math.Max(limit, 1),
                        BatchDecompressor.DecompressedBytesMax(log.Config.MaxMessageBytes), out byte[] messages);
                    read.Dispose();
                    if (!converted.IsOk)
                    {
                        if (converted.ErrorCode == ErrorCodes.CorruptMessage)
                            _log.Warn($"fetch v{version} of {topic.Topic}-{p.Partition} at offset {p.FetchOffset}: the stored records could not be converted to message format v{legacyMagic}: {converted.Message}");
                        pd.ErrorCode = converted.ErrorCode;
                        anyError = true;
                        continue;
                    }
                    pd.Records = messages;
                    bytes += messages.Length;
                    continue;
                }
                pd.Records = read.Records;
                response.AddLease(read);
                bytes += read.Records.Length;
            }
        }
        return response;
    }
}
