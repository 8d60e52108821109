using Kiou.Broker.Controller;
using Kiou.Broker.Hosting;
using Kiou.Broker.Logs;
using Kiou.Protocol.Records;
using Kiou.Storage;

namespace Kiou.Broker.Groups;

/// <summary>
/// Committed offsets and group metadata in the internal compacted topic <c>__consumer_offsets</c>, through the same
/// partition logs as every topic (Kafka's records, <see cref="OffsetsTopic"/>): created on first use, as Kafka does
/// (before the first group record is queued), appended with waitDurable under the group's lock (the reservation is synchronous, so one group's records reach the
/// log in the order they were queued), replayed at start-up. Transaction markers reach its partitions through the
/// transaction coordinator (<see cref="Transactions.TransactionStateStore"/>), like any partition of a transaction.
/// </summary>
public sealed class OffsetsStore(ClusterController controller, LogManager logs, int partitionsWhenCreated, Log log, TimeProvider time)
{
    readonly SemaphoreSlim _create = new(1, 1);

    /// <summary>Partitions of the topic when it exists, else the count it will be created with.</summary>
    public int Partitions => controller.Find(OffsetsTopic.TopicName)?.Partitions ?? partitionsWhenCreated;

    public int PartitionFor(string groupId) => OffsetsTopic.PartitionFor(groupId, Partitions);

    public bool TopicExists => controller.Find(OffsetsTopic.TopicName) is not null;

    /// <summary>Creates the topic when missing: before the first record of a group is queued (JoinGroup, OffsetCommit,
    /// TxnOffsetCommit, AddOffsetsToTxn), so appends under a group's lock always find its partition.</summary>
    public async Task EnsureTopicAsync()
    {
        if (TopicExists)
            return;
        await _create.WaitAsync().ConfigureAwait(false);
        try
        {
            if (TopicExists)
                return;
            var result = await controller.CreateTopicAsync(OffsetsTopic.TopicName, partitionsWhenCreated, 1, InternalTopics.Configs, validateOnly: false).ConfigureAwait(false);
            if (result.ErrorCode is not (ErrorCodes.None or ErrorCodes.TopicAlreadyExists))
                throw new IOException($"could not create {OffsetsTopic.TopicName}: {result.Message}");
            log.Info($"created the internal topic {OffsetsTopic.TopicName} with {partitionsWhenCreated} partitions (committed offsets and group metadata; KIOU_OFFSETS_TOPIC_NUM_PARTITIONS)");
        }
        finally
        {
            _create.Release();
        }
    }

    /// <summary>
    /// Appends the group's records as one batch (a crash keeps all or none of them); with a producer id, a
    /// transactional batch of that producer. Call under the group's lock: the log order is the call order. The task
    /// completes once the batch is durable; it fails with <see cref="IOException"/>, or <see cref="ProducerStateException"/>
    /// when the partition refuses the producer's epoch.
    /// </summary>
    public Task Append(string groupId, List<(byte[] Key, byte[]? Value)> records, long producerId = -1, short producerEpoch = -1)
    {
        if (records.Count == 0)
            return Task.CompletedTask;
        int partition = PartitionFor(groupId);
        var partitionLog = logs.Get(OffsetsTopic.TopicName, partition);
        if (partitionLog is null)
            return Task.FromException(new IOException($"{OffsetsTopic.TopicName}-{partition} is not open"));
        byte[] batch = OffsetsTopic.Batch(records, time.GetUtcNow().ToUnixTimeMilliseconds(), producerId, producerEpoch);
        ValueTask<AppendResult> pending;
        try
        {
            pending = partitionLog.AppendAsync(batch, waitDurable: true, AppendOrigin.Coordinator);
        }
        catch (Exception e) when (e is ArgumentException or ObjectDisposedException or IOException)
        {
            return Task.FromException(new IOException($"{OffsetsTopic.TopicName}-{partition}: {e.Message}", e));
        }
        return Completed(pending, partition);
    }

    static async Task Completed(ValueTask<AppendResult> pending, int partition)
    {
        try
        {
            await pending.ConfigureAwait(false);
        }
        catch (Exception e) when (e is RecordListTooLargeException or ObjectDisposedException)
        {
            throw new IOException($"{OffsetsTopic.TopicName}-{partition}: {e.Message}", e);
        }
    }

    /// <summary>One group as read back: its metadata, offsets and pending transactional offsets, each with the log
    /// offset of its record (Kafka compares these when a transaction's offsets complete).</summary>
    public sealed class LoadedGroup
    {
        public GroupSnapshot? Metadata;
        public Dictionary<(string Topic, int Partition), (CommittedOffset Offset, long Position)> Offsets = [];
        public Dictionary<long, Dictionary<(string Topic, int Partition), (CommittedOffset Offset, long Position)>> Pending = [];
        public long LastPosition = -1;

        public bool IsEmpty => Metadata is null && Offsets.Count == 0 && Pending.Count == 0;
    }

    /// <summary>
    /// Reads every partition front to back (Kafka's GroupMetadataManager.loadGroupsAndOffsets): the latest record per
    /// key, a tombstone removing it; transactional offsets pending per producer until that producer's marker in the same
    /// partition commits them (kept only when newer in the log than the group's committed offset) or aborts them.
    /// A record that does not parse is skipped with a WARN naming partition and offset; a damaged range ends that
    /// partition's replay with a WARN (offsets recorded after it are older than acknowledged until committed again).
    /// </summary>
    public Dictionary<string, LoadedGroup> Replay()
    {
        var groups = new Dictionary<string, LoadedGroup>(StringComparer.Ordinal);
        var topic = logs.Get(OffsetsTopic.TopicName);
        if (topic is null)
            return groups;
        foreach (var partition in topic.Partitions)
            ReplayPartition(partition, groups);
        foreach (var (id, g) in groups.ToList())
        {
            if (g.IsEmpty)
                groups.Remove(id);
        }
        return groups;
    }

    void ReplayPartition(PartitionLog partition, Dictionary<string, LoadedGroup> groups)
    {
        string name = $"{partition.Topic}-{partition.Partition}";
        var pendingGroups = new Dictionary<long, HashSet<string>>();
        long offset = partition.LogStartOffset;
        long end = partition.HighWatermark;
        int skipped = 0;
        long firstSkipped = -1;
        while (offset < end)
        {
            using var read = partition.Read(offset, 1 << 20, minOneBatch: true);
            if (read.Error == ReadError.Corrupt && NextReadable(partition, offset, end) is { } next)
            {
                // A damaged batch: its records are lost, the acknowledged ones after it are still read.
                log.Warn($"partition {name}: offsets {offset}..{next - 1} of committed offsets or group state are damaged (CRC) and were skipped " +
                    "(a commit or group state of the groups there may be older than acknowledged); the log is kept as it is. Check the disk (dmesg)");
                offset = next;
                continue;
            }
            if (read.Error == ReadError.None && read.Records.IsEmpty)
                break; // only record-less batches left by the cleaner remain below the high watermark
            if (read.Error != ReadError.None)
            {
                log.Warn($"partition {name}: replay of committed offsets stopped at offset {offset} of {end} ({read.Error}); " +
                    "offsets and group state recorded after it are not loaded (consumers resume from older commits or their reset policy); the log is kept as it is");
                break;
            }
            var span = read.Records.Span;
            long before = offset;
            while (span.Length >= RecordBatch.HeaderSize)
            {
                int size = RecordBatch.TotalSize(span);
                if (size < RecordBatch.HeaderSize || size > span.Length)
                    break;
                var batch = span[..size];
                long last = RecordBatch.LastOffset(batch);
                if (last >= offset)
                {
                    int bad = 0;
                    if (!RecordBatch.IsCrcValid(batch) || RecordBatch.CompressionCodec(batch) != CompressionType.None)
                        bad = Math.Max(1, RecordBatch.RecordsCount(batch));
                    else if (RecordBatch.IsControl(batch))
                        ApplyMarker(batch, groups, pendingGroups);
                    else
                        bad = ApplyBatch(batch, offset, groups, pendingGroups);
                    if (bad > 0)
                    {
                        skipped += bad;
                        if (firstSkipped < 0)
                            firstSkipped = RecordBatch.BaseOffset(batch);
                    }
                }
                offset = Math.Max(offset, last + 1);
                span = span[size..];
            }
            if (offset == before)
            {
                log.Warn($"partition {name}: replay of committed offsets stopped at offset {offset} of {end}: the batch there does not parse; " +
                    "offsets and group state recorded after it are not loaded; the log is kept as it is");
                break;
            }
        }
        if (skipped > 0)
            log.Warn($"partition {name}: {skipped} record(s) of committed offsets or group state did not parse and were skipped, the first at offset {firstSkipped} (they are kept in the log)");
    }

    /// <summary>How far past a damaged batch replay looks for the next readable one (a batch of one request holds at
    /// most this many records in practice); beyond it, replay of the partition stops.</summary>
    const int MaxDamagedOffsets = 10_000;

    static long? NextReadable(PartitionLog partition, long damaged, long end)
    {
        for (long probe = damaged + 1; probe < end && probe <= damaged + MaxDamagedOffsets; probe++)
        {
            using var read = partition.Read(probe, 1 << 16, minOneBatch: true);
            if (read.Error == ReadError.None && !read.Records.IsEmpty && RecordBatch.LastOffset(read.Records.Span) >= probe
                && RecordBatch.BaseOffset(read.Records.Span) > damaged)
                return RecordBatch.BaseOffset(read.Records.Span);
            if (read.Error is not (ReadError.None or ReadError.Corrupt))
                return null;
        }
        return damaged + MaxDamagedOffsets < end ? null : end;
    }

    static LoadedGroup For(Dictionary<string, LoadedGroup> groups, string id)
    {
        if (!groups.TryGetValue(id, out var g))
            groups[id] = g = new LoadedGroup();
        return g;
    }

    static int ApplyBatch(ReadOnlySpan<byte> batch, long from, Dictionary<string, LoadedGroup> groups, Dictionary<long, HashSet<string>> pendingGroups)
    {
        int skipped = 0;
        long baseOffset = RecordBatch.BaseOffset(batch);
        bool transactional = RecordBatch.IsTransactional(batch);
        long producerId = RecordBatch.ProducerId(batch);
        var cursor = RecordCursor.ForBatch(batch);
        while (cursor.MoveNext())
        {
            long position = baseOffset + cursor.OffsetDelta;
            if (position < from)
                continue;
            var key = cursor.KeyLength > 0 ? OffsetsTopic.ReadKey(cursor.Key) : null;
            if (key is not { } k)
            {
                if (cursor.KeyLength <= 0 || !OffsetsTopic.IsForeignKey(cursor.Key))
                    skipped++;
                continue;
            }
            bool tombstone = cursor.ValueLength < 0;
            var g = For(groups, k.Group);
            g.LastPosition = Math.Max(g.LastPosition, position);
            if (k.Topic is null)
            {
                if (tombstone)
                {
                    g.Metadata = null;
                }
                else if (OffsetsTopic.ReadGroupValue(k.Group, cursor.Value) is { } snapshot)
                {
                    g.Metadata = snapshot;
                }
                else
                {
                    skipped++;
                }
                continue;
            }
            var tp = (k.Topic, k.Partition);
            if (transactional && producerId >= 0)
            {
                if (!g.Pending.TryGetValue(producerId, out var pending))
                    g.Pending[producerId] = pending = [];
                if (!pendingGroups.TryGetValue(producerId, out var names))
                    pendingGroups[producerId] = names = new HashSet<string>(StringComparer.Ordinal);
                names.Add(k.Group);
                if (tombstone)
                    pending.Remove(tp);
                else if (OffsetsTopic.ReadOffsetValue(cursor.Value) is { } pendingOffset)
                    pending[tp] = (pendingOffset, position);
                else
                    skipped++;
                continue;
            }
            if (tombstone)
            {
                g.Offsets.Remove(tp);
            }
            else if (OffsetsTopic.ReadOffsetValue(cursor.Value) is { } committed)
            {
                g.Offsets[tp] = (committed, position);
            }
            else
            {
                skipped++;
            }
        }
        if (cursor.Error != 0)
            skipped++;
        return skipped;
    }

    static void ApplyMarker(ReadOnlySpan<byte> batch, Dictionary<string, LoadedGroup> groups, Dictionary<long, HashSet<string>> pendingGroups)
    {
        if (Transactions.TransactionLog.ReadMarker(batch) is not { } commit)
            return;
        long producerId = RecordBatch.ProducerId(batch);
        if (!pendingGroups.Remove(producerId, out var names))
            return;
        foreach (string id in names)
        {
            if (!groups.TryGetValue(id, out var g) || !g.Pending.Remove(producerId, out var pending) || !commit)
                continue;
            foreach (var (tp, entry) in pending)
            {
                if (!g.Offsets.TryGetValue(tp, out var current) || current.Position < entry.Position)
                    g.Offsets[tp] = entry;
            }
        }
    }
}
