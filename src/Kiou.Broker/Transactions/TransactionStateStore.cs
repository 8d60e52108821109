using Kiou.Broker.Controller;
using Kiou.Broker.Groups;
using Kiou.Broker.Hosting;
using Kiou.Broker.Logs;
using Kiou.Protocol.Records;
using Kiou.Storage;

namespace Kiou.Broker.Transactions;

/// <summary>
/// The coordinator's records in the internal topic <c>__transaction_state</c>, through the same partition logs as
/// every topic: created on first use (as Kafka does), appended with waitDurable, replayed at start-up. Markers go to
/// the data partitions' logs.
/// </summary>
public sealed class TransactionStateStore(ClusterController controller, LogManager logs, TransactionSettings settings, Log log, GroupCoordinator? groups) : ITransactionStore
{
    readonly SemaphoreSlim _create = new(1, 1);

    async Task<TopicInfo> EnsureTopicAsync()
    {
        if (controller.Find(TransactionLog.TopicName) is { } topic)
            return topic;
        await _create.WaitAsync().ConfigureAwait(false);
        try
        {
            if (controller.Find(TransactionLog.TopicName) is { } again)
                return again;
            var result = await controller.CreateTopicAsync(TransactionLog.TopicName, settings.StateLogPartitions, 1, InternalTopics.Configs, validateOnly: false).ConfigureAwait(false);
            if (result.ErrorCode is not (ErrorCodes.None or ErrorCodes.TopicAlreadyExists))
                throw new IOException($"could not create {TransactionLog.TopicName}: {result.Message}");
            log.Info($"created the internal topic {TransactionLog.TopicName} with {settings.StateLogPartitions} partitions (transaction coordinator state)");
            return controller.Find(TransactionLog.TopicName) ?? throw new IOException($"{TransactionLog.TopicName} vanished after its creation");
        }
        finally
        {
            _create.Release();
        }
    }

    public async Task AppendStateAsync(string transactionalId, byte[] batch)
    {
        var topic = await EnsureTopicAsync().ConfigureAwait(false);
        int partition = TransactionLog.PartitionFor(transactionalId, topic.Partitions);
        var partitionLog = logs.Get(TransactionLog.TopicName, partition)
            ?? throw new IOException($"{TransactionLog.TopicName}-{partition} is not open");
        await partitionLog.AppendAsync(batch, waitDurable: true, AppendOrigin.Coordinator).ConfigureAwait(false);
    }

    public async Task<short> WriteMarkerAsync(TopicPartition tp, byte[] batch)
    {
        bool offsets = tp.Topic == Groups.OffsetsTopic.TopicName && groups is not null;
        // Replay reads the partition up to where it was when it started: a marker appended meanwhile would complete
        // nothing. Until the offsets are loaded the marker waits (retried, as any partition not ready).
        if (offsets && !groups!.IsLoaded)
            return ErrorCodes.CoordinatorLoadInProgress;
        var partitionLog = logs.Get(tp.Topic, tp.Partition);
        if (partitionLog is null)
            return ErrorCodes.UnknownTopicOrPartition;
        try
        {
            await partitionLog.AppendAsync(batch, waitDurable: true, AppendOrigin.Coordinator).ConfigureAwait(false);
            // Kafka's handleTxnCompletion: once the marker is durable in __consumer_offsets, the group coordinator
            // makes the producer's pending offsets of that partition committed, or drops them.
            if (offsets && TransactionLog.ReadMarker(batch) is { } commit)
                groups!.CompleteTxn(RecordBatch.ProducerId(batch), tp.Partition, commit);
            return ErrorCodes.None;
        }
        catch (ObjectDisposedException)
        {
            return logs.Get(tp.Topic, tp.Partition) is null ? ErrorCodes.UnknownTopicOrPartition : ErrorCodes.KafkaStorageError;
        }
        catch (ProducerStateException e)
        {
            // The partition refuses the marker (its producer state knows a newer epoch): nothing a retry changes.
            log.Warn($"partition {tp}: the transaction marker of producer id {RecordBatch.ProducerId(batch)} epoch {RecordBatch.ProducerEpoch(batch)} was refused ({e.Message}); skipped");
            return ErrorCodes.None;
        }
    }

    public bool PartitionExists(TopicPartition tp) => logs.Get(tp.Topic, tp.Partition) is not null;

    public long AllocateProducerId() => logs.ProducerIds.Allocate();

    /// <summary>
    /// Reads every partition of __transaction_state front to back: the latest record per transactional id, a null
    /// value removing it. A record that does not parse is skipped with a WARN; a damaged range ends that partition's
    /// replay with a WARN naming it (the state of ids there may be stale until their producers come back).
    /// </summary>
    public Dictionary<string, TxnSnapshot> Replay()
    {
        var states = new Dictionary<string, TxnSnapshot>(StringComparer.Ordinal);
        var topic = logs.Get(TransactionLog.TopicName);
        if (topic is null)
            return states;
        foreach (var partition in topic.Partitions)
            ReplayPartition(partition, states);
        return states;
    }

    void ReplayPartition(PartitionLog partition, Dictionary<string, TxnSnapshot> states)
    {
        long offset = partition.LogStartOffset;
        long end = partition.HighWatermark;
        int skipped = 0;
        while (offset < end)
        {
            using var read = partition.Read(offset, 1 << 20, minOneBatch: true);
            if (read.Error == ReadError.None && read.Records.IsEmpty)
                return; // only record-less batches left by the cleaner remain below the high watermark
            if (read.Error != ReadError.None)
            {
                log.Warn($"partition {partition.Topic}-{partition.Partition}: replay of transaction state stopped at offset {offset} of {end} ({read.Error}); " +
                    "transactional ids recorded after it keep their earlier state until their producers initialise again");
                return;
            }
            var span = read.Records.Span;
            while (span.Length >= RecordBatch.HeaderSize)
            {
                int size = RecordBatch.TotalSize(span);
                if (size < RecordBatch.HeaderSize || size > span.Length)
                    break;
                var batch = span[..size];
                long last = RecordBatch.LastOffset(batch);
                if (last >= offset && !RecordBatch.IsControl(batch))
                {
                    if (RecordBatch.CompressionCodec(batch) != CompressionType.None)
                        skipped += RecordBatch.RecordsCount(batch);
                    else
                        skipped += ApplyBatch(batch, offset, states);
                }
                offset = Math.Max(offset, last + 1);
                span = span[size..];
            }
        }
        if (skipped > 0)
            log.Warn($"partition {partition.Topic}-{partition.Partition}: {skipped} record(s) of transaction state did not parse and were skipped (they are kept in the log)");
    }

    static int ApplyBatch(ReadOnlySpan<byte> batch, long from, Dictionary<string, TxnSnapshot> states)
    {
        int skipped = 0;
        long baseOffset = RecordBatch.BaseOffset(batch);
        var cursor = RecordCursor.ForBatch(batch);
        while (cursor.MoveNext())
        {
            if (baseOffset + cursor.OffsetDelta < from)
                continue;
            string? id = cursor.KeyLength > 0 ? TransactionLog.ReadKey(cursor.Key) : null;
            if (id is null)
            {
                skipped++;
                continue;
            }
            if (cursor.ValueLength < 0)
            {
                states.Remove(id);
                continue;
            }
            var state = TransactionLog.ReadValue(cursor.Value);
            if (state is null || state.State == TxnState.PrepareEpochFence)
                skipped++; // Kafka never writes PrepareEpochFence
            else if (state.State == TxnState.Dead)
                states.Remove(id); // Kafka's expiry: Dead, then a tombstone
            else
                states[id] = state;
        }
        return skipped;
    }
}
