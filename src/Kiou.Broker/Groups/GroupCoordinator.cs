using System.Collections.Concurrent;
using System.Net;
using Kiou.Broker.Hosting;
using Kiou.Protocol.Messages;
using Kiou.Storage;

namespace Kiou.Broker.Groups;

/// <summary>Group settings (BrokerConfig's KIOU_GROUP_* and KIOU_OFFSETS_* variables).</summary>
public sealed record GroupSettings
{
    public int MinSessionTimeoutMs { get; init; } = 1000;
    public int MaxSessionTimeoutMs { get; init; } = 1800000;
    public int InitialRebalanceDelayMs { get; init; } = 0;
    public int MaxSize { get; init; } = 10000;
    public long OffsetsRetentionMs { get; init; } = 7L * 24 * 60 * 60 * 1000;
    public long OffsetsRetentionCheckIntervalMs { get; init; } = 600000;
    public int OffsetMetadataMaxBytes { get; init; } = 4096;

    /// <summary>KIOU_OFFSETS_TOPIC_NUM_PARTITIONS (Kafka's offsets.topic.num.partitions): partitions of
    /// __consumer_offsets when it is created; an existing topic keeps its count (groups map to partitions by it).</summary>
    public int OffsetsTopicPartitions { get; init; } = DefaultOffsetsTopicPartitions;

    /// <summary>Kafka's default is 50, sized for spreading coordinators over many brokers; one node gains nothing from
    /// that and pays files, descriptors and start-up time per partition (docs/design/groups.md).</summary>
    public const int DefaultOffsetsTopicPartitions = 4;
}

/// <summary>
/// The coordinator of every classic group on this node. Holds the groups (one lock each: the owner of that group's
/// state), the shared <see cref="GroupTimers"/>, and the <see cref="OffsetsStore"/> (the internal topic
/// __consumer_offsets, created on first use) that makes offsets and group metadata durable. Lifecycle: constructed,
/// <see cref="StartLoading"/> migrates an old groups.log and replays the topic in the background (every group request
/// meanwhile gets COORDINATOR_LOAD_IN_PROGRESS), <see cref="DisposeAsync"/> stops timers. Request methods are
/// thread-safe; they never block on I/O while holding a group lock (appends are queued under it, in log order, and
/// awaited outside it).
/// </summary>
public sealed class GroupCoordinator : IAsyncDisposable
{
    readonly ConcurrentDictionary<string, Group> _groups = new(StringComparer.Ordinal);
    readonly GroupSettings _settings;
    readonly TimeProvider _time;
    readonly OffsetsStore _store;
    readonly string _dataDir;
    readonly Func<string, int, bool> _partitionExists;
    readonly ITimer? _expiryTimer;
    Task _loading = Task.CompletedTask;
    volatile int _status; // 0 loading, 1 ready, 2 failed

    /// <param name="partitionExists">Whether a topic partition exists (OffsetCommit answers UNKNOWN_TOPIC_OR_PARTITION otherwise).</param>
    /// <param name="driveTimers">False in unit tests: timers fire only through <see cref="RunTimers"/>.</param>
    public GroupCoordinator(GroupSettings settings, OffsetsStore store, string dataDir, TimeProvider time, Log log, Func<string, int, bool> partitionExists,
        bool driveTimers = true)
    {
        _store = store;
        _dataDir = dataDir;
        _settings = settings;
        _time = time;
        Log = log;
        _partitionExists = partitionExists;
        Timers = new GroupTimers(time, static (g, now) => Fire(g, now), driveTimers);
        if (driveTimers)
        {
            var every = TimeSpan.FromMilliseconds(settings.OffsetsRetentionCheckIntervalMs);
            _expiryTimer = time.CreateTimer(static s => ((GroupCoordinator)s!).ExpireOffsets(), this, every, every);
        }
    }

    public Log Log { get; }
    public GroupTimers Timers { get; }
    public OffsetsStore Store => _store;

    /// <summary>The group's partition of __consumer_offsets (AddOffsetsToTxn adds it to the transaction).</summary>
    public int OffsetsPartitionFor(string groupId) => _store.PartitionFor(groupId);
    public int InitialRebalanceDelayMs => _settings.InitialRebalanceDelayMs;
    public bool IsLoaded => _status == 1;
    public Task Loading => _loading;
    public int GroupCount => _groups.Count;
    internal long NowMs => _time.GetUtcNow().ToUnixTimeMilliseconds();

    static void Fire(Group g, long nowMs)
    {
        lock (g)
            g.OnTimer(nowMs);
    }

    public long RunTimers() => Timers.RunDue(NowMs);

    public Group? Find(string groupId) => _groups.GetValueOrDefault(groupId);

    /// <summary>Every group loaded or created (for metrics; lock a group to read it).</summary>
    public IEnumerable<Group> All => _groups.Values;

    // ---------------------------------------------------------------------------------------------------------------
    // Loading

    /// <summary>Loads __consumer_offsets in the background; <paramref name="beforeLoad"/> is a test seam.</summary>
    public void StartLoading(Func<Task>? beforeLoad = null)
    {
        _loading = Task.Run(async () =>
        {
            try
            {
                if (beforeLoad is not null)
                    await beforeLoad().ConfigureAwait(false);
                await LoadAsync().ConfigureAwait(false);
                _status = 1;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ConfigException or ProducerStateException)
            {
                _status = 2;
                Log.Error($"group coordinator: cannot load committed offsets ({e.Message}); group requests get COORDINATOR_NOT_AVAILABLE until this is fixed and the broker restarted");
            }
        });
    }

    async Task LoadAsync()
    {
        long start = _time.GetTimestamp();
        await MigrateGroupLogAsync().ConfigureAwait(false);
        var loaded = _store.Replay();
        long now = NowMs;
        int offsets = 0;
        foreach (var (groupId, entry) in loaded)
        {
            var group = new Group(this, groupId, now);
            lock (group)
            {
                if (entry.Metadata is { } snapshot)
                    group.Restore(snapshot, now);
                foreach (var (key, (offset, position)) in entry.Offsets)
                {
                    group.Offsets[key] = offset;
                    group.AppliedCommitSequence[key] = position;
                    offsets++;
                }
                foreach (var (producerId, pending) in entry.Pending)
                    group.PendingTxnOffsets[producerId] = new(pending);
                // Positions in the log order the records; live commits continue past them.
                group.LastCommitSequence = entry.LastPosition + 1;
            }
            _groups[groupId] = group;
        }
        Log.Info($"group coordinator: loaded {_groups.Count} groups and {offsets} committed offsets from {OffsetsTopic.TopicName} in {_time.GetElapsedTime(start).TotalMilliseconds:F0} ms");
    }

    /// <summary>
    /// Writes the live state of KIOU's old private offsets log (<c>__consumer_offsets/groups.log</c>) into the topic,
    /// durably, then renames the file aside (kept). Run again after a crash in between, it writes the same state again:
    /// the topic keeps the latest record per key, so nothing changes.
    /// </summary>
    async Task MigrateGroupLogAsync()
    {
        var old = new GroupLogMigration(_dataDir, Log);
        var live = old.Read();
        if (live is null)
            return;
        if (live.Count > 0)
            await _store.EnsureTopicAsync().ConfigureAwait(false);
        var writes = new List<Task>();
        int offsets = 0, pendingOffsets = 0, groups = 0;
        foreach (var (groupId, entry) in live)
        {
            var records = new List<(byte[] Key, byte[]? Value)>();
            if (entry.Metadata is not null && GroupLogMigration.TryReadGroup(entry.Metadata) is { } snapshot)
                records.Add((OffsetsTopic.GroupKey(groupId), OffsetsTopic.GroupValue(snapshot)));
            foreach (var payload in entry.Offsets.Values)
            {
                if (GroupLogMigration.TryReadOffset(payload, out string topic, out int partition, out var offset))
                {
                    records.Add((OffsetsTopic.OffsetKey(groupId, topic, partition), OffsetsTopic.OffsetValue(offset)));
                    offsets++;
                }
            }
            groups++;
            writes.Add(_store.Append(groupId, records));
            foreach (var (producerId, pending) in entry.Pending)
            {
                var txn = new List<(byte[] Key, byte[]? Value)>();
                foreach (var payload in pending.Values)
                {
                    if (GroupLogMigration.TryReadTxnOffset(payload, out _, out string topic, out int partition, out var offset))
                        txn.Add((OffsetsTopic.OffsetKey(groupId, topic, partition), OffsetsTopic.OffsetValue(offset)));
                }
                pendingOffsets += txn.Count;
                // The old log did not keep the producer epoch: the lowest one, so the transaction's marker (any epoch) completes it.
                writes.Add(MigratePendingAsync(_store.Append(groupId, txn, producerId, 0), groupId, producerId));
            }
        }
        await Task.WhenAll(writes).ConfigureAwait(false);
        string aside = old.FilePath + GroupLogMigration.MigratedSuffix;
        File.Move(old.FilePath, aside, overwrite: true);
        Kiou.IoUring.Interop.FileSync.SyncDirectory(Path.GetDirectoryName(old.FilePath)!);
        Log.Info($"group coordinator: migrated {groups} groups, {offsets} committed offsets and {pendingOffsets} pending transactional offsets " +
            $"from the old offsets log {old.FilePath} into the topic {OffsetsTopic.TopicName}; the old file is kept as {aside} and can be removed");
    }

    /// <summary>A partition that knows the producer at a newer epoch has seen its transaction end: nothing is pending.</summary>
    async Task MigratePendingAsync(Task append, string groupId, long producerId)
    {
        try
        {
            await append.ConfigureAwait(false);
        }
        catch (ProducerStateException e)
        {
            Log.Warn($"group '{groupId}': the pending transactional offsets of producer id {producerId} in the old offsets log were not migrated ({e.Message}); its transaction has ended");
        }
    }

    /// <summary>Creates __consumer_offsets on first use; NONE, or COORDINATOR_NOT_AVAILABLE when it cannot be created.</summary>
    public ValueTask<short> EnsureOffsetsTopicAsync() =>
        _store.TopicExists ? ValueTask.FromResult(ErrorCodes.None) : new ValueTask<short>(CreateOffsetsTopicAsync());

    async Task<short> CreateOffsetsTopicAsync()
    {
        try
        {
            await _store.EnsureTopicAsync().ConfigureAwait(false);
            return ErrorCodes.None;
        }
        catch (IOException e)
        {
            Log.Error($"group coordinator: {e.Message}; group requests get COORDINATOR_NOT_AVAILABLE until it can be created");
            return ErrorCodes.CoordinatorNotAvailable;
        }
    }

    /// <summary>NONE when ready, else the error every group request gets.</summary>
    /// <summary>The checks every group request starts with: offsets loaded, and a group id given.</summary>
    short CheckGroupId(string groupId) => NotReady is var notReady && notReady != ErrorCodes.None ? notReady
        : groupId.Length == 0 ? ErrorCodes.InvalidGroupId : ErrorCodes.None;

    short NotReady => _status switch
    {
        1 => ErrorCodes.None,
        0 => ErrorCodes.CoordinatorLoadInProgress,
        _ => ErrorCodes.CoordinatorNotAvailable,
    };

    /// <summary>Queues the group's metadata (in log order, under the group's lock); the task completes once it is durable.</summary>
    internal Task PersistGroup(Group group, bool assigned = false)
    {
        var snapshot = group.Snapshot(assigned);
        return _store.Append(group.GroupId, [(OffsetsTopic.GroupKey(group.GroupId), OffsetsTopic.GroupValue(snapshot))]);
    }

    static string HostOf(EndPoint? remote) => remote is IPEndPoint ip ? "/" + ip.Address : "/" + remote;

    /// <summary>Looks a group up, creating it if asked; a group found Dead (deleted meanwhile) is replaced.</summary>
    Group? Lookup(string groupId, bool create)
    {
        while (true)
        {
            if (_groups.TryGetValue(groupId, out var existing))
            {
                bool dead;
                lock (existing)
                    dead = existing.State == GroupState.Dead;
                if (!dead)
                    return existing;
                _groups.TryRemove(new KeyValuePair<string, Group>(groupId, existing));
                continue;
            }
            if (!create)
                return null;
            var fresh = new Group(this, groupId, NowMs);
            if (_groups.TryAdd(groupId, fresh))
                return fresh;
        }
    }

    // ---------------------------------------------------------------------------------------------------------------
    // JoinGroup, SyncGroup, Heartbeat, LeaveGroup

    public async Task<JoinGroupResponse> JoinGroup(JoinGroupRequest request, short version, string? clientId, EndPoint? remote)
    {
        static JoinGroupResponse Error(short code, string memberId) => new() { ErrorCode = code, GenerationId = -1, MemberId = memberId, Leader = "" };
        if (CheckGroupId(request.GroupId) is var groupIdError && groupIdError != ErrorCodes.None)
            return Error(groupIdError, request.MemberId);
        if (request.SessionTimeoutMs < _settings.MinSessionTimeoutMs || request.SessionTimeoutMs > _settings.MaxSessionTimeoutMs)
            return Error(ErrorCodes.InvalidSessionTimeout, request.MemberId);
        if (await EnsureOffsetsTopicAsync().ConfigureAwait(false) is var topicError && topicError != ErrorCodes.None)
            return Error(topicError, request.MemberId);
        var group = Lookup(request.GroupId, create: request.MemberId.Length == 0);
        if (group is null)
            return Error(ErrorCodes.UnknownMemberId, request.MemberId);
        Task<JoinGroupResponse> answer;
        lock (group)
        {
            bool newMember = request.MemberId.Length == 0 || group.PendingMembers.ContainsKey(request.MemberId);
            bool knownStatic = version >= 5 && request.GroupInstanceId is not null && group.StaticMembers.ContainsKey(request.GroupInstanceId);
            if (newMember && !knownStatic && group.Members.Count + group.PendingMembers.Count >= _settings.MaxSize
                && !group.PendingMembers.ContainsKey(request.MemberId))
            {
                Log.Warn($"group '{request.GroupId}': refusing a new member from client '{clientId}': the group has {_settings.MaxSize} members (KIOU_GROUP_MAX_SIZE)");
                return Error(ErrorCodes.GroupMaxSizeReached, request.MemberId);
            }
            answer = group.Join(request, version, clientId ?? "", HostOf(remote), NowMs);
        }
        return await answer.ConfigureAwait(false);
    }

    public async Task<SyncGroupResponse> SyncGroup(SyncGroupRequest request, short version)
    {
        if (CheckGroupId(request.GroupId) is var groupIdError && groupIdError != ErrorCodes.None)
            return new SyncGroupResponse { ErrorCode = groupIdError, Assignment = [] };
        var group = Lookup(request.GroupId, create: false);
        if (group is null)
            return new SyncGroupResponse { ErrorCode = ErrorCodes.UnknownMemberId, Assignment = [] };
        Task<SyncGroupResponse> answer;
        lock (group)
            answer = group.Sync(request, version, NowMs);
        return await answer.ConfigureAwait(false);
    }

    public short Heartbeat(HeartbeatRequest request, short version)
    {
        if (CheckGroupId(request.GroupId) is var groupIdError && groupIdError != ErrorCodes.None)
            return groupIdError;
        var group = Lookup(request.GroupId, create: false);
        if (group is null)
            return ErrorCodes.UnknownMemberId;
        lock (group)
            return group.Heartbeat(request, version, NowMs);
    }

    public LeaveGroupResponse LeaveGroup(LeaveGroupRequest request, short version)
    {
        var response = new LeaveGroupResponse();
        var leaving = new List<(string MemberId, string? InstanceId, string? Reason)>();
        if (version <= 2)
            leaving.Add((request.MemberId, null, null));
        else
        {
            foreach (var m in request.Members)
                leaving.Add((m.MemberId, m.GroupInstanceId, version >= 5 ? m.Reason : null));
        }
        if (CheckGroupId(request.GroupId) is var groupIdError && groupIdError != ErrorCodes.None)
        {
            response.ErrorCode = groupIdError;
            return response;
        }
        var group = Lookup(request.GroupId, create: false);
        var errors = new List<short>(leaving.Count);
        if (group is null)
        {
            foreach (var _ in leaving)
                errors.Add(ErrorCodes.UnknownMemberId);
        }
        else
        {
            lock (group)
            {
                if (group.State == GroupState.Dead)
                {
                    response.ErrorCode = ErrorCodes.CoordinatorNotAvailable;
                    return response;
                }
                long now = NowMs;
                foreach (var (memberId, instanceId, reason) in leaving)
                    errors.Add(group.Leave(memberId, instanceId, reason, now));
            }
        }
        if (version <= 2)
        {
            response.ErrorCode = errors[0];
            return response;
        }
        for (int i = 0; i < leaving.Count; i++)
        {
            response.Members.Add(new LeaveGroupResponse.MemberResponse
            {
                MemberId = leaving[i].MemberId,
                GroupInstanceId = leaving[i].InstanceId,
                ErrorCode = errors[i],
            });
        }
        return response;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // OffsetCommit, OffsetFetch, OffsetDelete

    public async Task<OffsetCommitResponse> CommitOffsets(OffsetCommitRequest request, short version)
    {
        var response = new OffsetCommitResponse();
        short groupError = NotReady;
        if (groupError == ErrorCodes.None && request.GroupId.Length == 0)
            groupError = ErrorCodes.InvalidGroupId;
        if (groupError == ErrorCodes.None)
            groupError = await EnsureOffsetsTopicAsync().ConfigureAwait(false);
        Group? group = null;
        if (groupError == ErrorCodes.None)
        {
            group = Lookup(request.GroupId, create: request.GenerationIdOrMemberEpoch < 0);
            if (group is null)
                groupError = version >= 9 ? ErrorCodes.GroupIdNotFound : ErrorCodes.IllegalGeneration;
        }
        string? instanceId = version >= 7 ? request.GroupInstanceId : null;
        long now = NowMs;
        var writes = new List<(OffsetCommitResponse.OffsetCommitResponsePartition Answer, string Topic, int Partition, CommittedOffset Offset, Task Durable)>();
        long deleteSequence = 0;
        long commitSequence = 0;
        if (group is not null)
        {
            lock (group)
            {
                groupError = group.ValidateCommit(request.GenerationIdOrMemberEpoch, request.MemberId, instanceId, now);
                deleteSequence = group.OffsetDeleteSequence;
                if (groupError == ErrorCodes.None)
                {
                    group.CommitsInFlight++;
                    commitSequence = ++group.LastCommitSequence;
                }
                // Queued under the group's lock: the log order of this group's commits is the sequence order.
                BuildCommitAnswers(request, version, response, groupError, group, now, writes);
            }
        }
        else
        {
            BuildCommitAnswers(request, version, response, groupError, null, now, writes);
        }
        if (group is null || groupError != ErrorCodes.None)
            return response;
        var failed = new bool[writes.Count];
        for (int i = 0; i < writes.Count; i++)
        {
            try
            {
                await writes[i].Durable.ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
                failed[i] = true;
            }
        }
        lock (group)
        {
            group.CommitsInFlight--;
            bool apply = group.State != GroupState.Dead && group.OffsetDeleteSequence == deleteSequence;
            for (int i = 0; i < writes.Count; i++)
            {
                var w = writes[i];
                if (failed[i])
                {
                    w.Answer.ErrorCode = ErrorCodes.CoordinatorNotAvailable;
                }
                else if (apply && (!group.AppliedCommitSequence.TryGetValue((w.Topic, w.Partition), out long applied) || applied < commitSequence))
                {
                    group.Offsets[(w.Topic, w.Partition)] = w.Offset;
                    group.AppliedCommitSequence[(w.Topic, w.Partition)] = commitSequence;
                }
            }
        }
        return response;
    }

    void BuildCommitAnswers(OffsetCommitRequest request, short version, OffsetCommitResponse response, short groupError, Group? group, long now,
        List<(OffsetCommitResponse.OffsetCommitResponsePartition, string, int, CommittedOffset, Task)> writes)
    {
        var records = new List<(byte[] Key, byte[]? Value)>();
        var accepted = new List<(OffsetCommitResponse.OffsetCommitResponsePartition, string, int, CommittedOffset)>();
        foreach (var topic in request.Topics)
        {
            var t = new OffsetCommitResponse.OffsetCommitResponseTopic { Name = topic.Name };
            response.Topics.Add(t);
            foreach (var p in topic.Partitions)
            {
                var answer = new OffsetCommitResponse.OffsetCommitResponsePartition { PartitionIndex = p.PartitionIndex, ErrorCode = groupError };
                t.Partitions.Add(answer);
                if (groupError != ErrorCodes.None)
                    continue;
                if (!_partitionExists(topic.Name, p.PartitionIndex))
                {
                    answer.ErrorCode = ErrorCodes.UnknownTopicOrPartition;
                    continue;
                }
                if (p.CommittedMetadata is not null && System.Text.Encoding.UTF8.GetByteCount(p.CommittedMetadata) > _settings.OffsetMetadataMaxBytes)
                {
                    answer.ErrorCode = ErrorCodes.OffsetMetadataTooLarge;
                    continue;
                }
                long commitTs = version == 1 && p.CommitTimestamp >= 0 ? p.CommitTimestamp : now;
                long expireTs = version is >= 2 and <= 4 && request.RetentionTimeMs > 0 ? commitTs + request.RetentionTimeMs : -1;
                var offset = new CommittedOffset(p.CommittedOffset, version >= 6 ? p.CommittedLeaderEpoch : -1, p.CommittedMetadata ?? "", commitTs, expireTs);
                records.Add((OffsetsTopic.OffsetKey(group!.GroupId, topic.Name, p.PartitionIndex), OffsetsTopic.OffsetValue(offset)));
                accepted.Add((answer, topic.Name, p.PartitionIndex, offset));
            }
        }
        // One request's offsets are written as one unit: a crash never keeps some of them and loses others.
        Task durable = records.Count == 0 ? Task.CompletedTask : _store.Append(group!.GroupId, records);
        foreach (var (answer, topicName, partition, offset) in accepted)
            writes.Add((answer, topicName, partition, offset, durable));
    }

    /// <summary>
    /// TxnOffsetCommit v0-4 (Kafka's handleTxnCommitOffsets): the offsets are written durably as pending offsets of the
    /// producer and become committed only when the transaction's COMMIT marker reaches the group
    /// (<see cref="CompleteTxnAsync"/>); an ABORT drops them. The group is created when unknown, as in Kafka.
    /// </summary>
    public async Task<TxnOffsetCommitResponse> TxnCommitOffsets(TxnOffsetCommitRequest request, short version)
    {
        var response = new TxnOffsetCommitResponse();
        short groupError = NotReady;
        if (groupError == ErrorCodes.None && request.GroupId.Length == 0)
            groupError = ErrorCodes.InvalidGroupId;
        if (groupError == ErrorCodes.None)
            groupError = await EnsureOffsetsTopicAsync().ConfigureAwait(false);
        Group? group = groupError == ErrorCodes.None ? Lookup(request.GroupId, create: true) : null;
        var accepted = new List<(TxnOffsetCommitResponse.TxnOffsetCommitResponsePartition Answer, string Topic, int Partition, CommittedOffset Offset)>();
        Task durable = Task.CompletedTask;
        long sequence = 0;
        long now = NowMs;
        if (group is not null)
        {
            lock (group)
            {
                groupError = group.ValidateTxnCommit(version >= 3 ? request.GenerationId : -1, version >= 3 ? request.MemberId : "", version >= 3 ? request.GroupInstanceId : null);
                var records = new List<(byte[] Key, byte[]? Value)>();
                sequence = ++group.LastCommitSequence;
                foreach (var topic in request.Topics)
                {
                    var t = new TxnOffsetCommitResponse.TxnOffsetCommitResponseTopic { Name = topic.Name };
                    response.Topics.Add(t);
                    foreach (var p in topic.Partitions)
                    {
                        var answer = new TxnOffsetCommitResponse.TxnOffsetCommitResponsePartition { PartitionIndex = p.PartitionIndex, ErrorCode = groupError };
                        t.Partitions.Add(answer);
                        if (groupError != ErrorCodes.None)
                            continue;
                        if (!_partitionExists(topic.Name, p.PartitionIndex))
                        {
                            answer.ErrorCode = ErrorCodes.UnknownTopicOrPartition;
                            continue;
                        }
                        if (p.CommittedMetadata is not null && System.Text.Encoding.UTF8.GetByteCount(p.CommittedMetadata) > _settings.OffsetMetadataMaxBytes)
                        {
                            answer.ErrorCode = ErrorCodes.OffsetMetadataTooLarge;
                            continue;
                        }
                        var offset = new CommittedOffset(p.CommittedOffset, version >= 2 ? p.CommittedLeaderEpoch : -1, p.CommittedMetadata ?? "", now, -1);
                        records.Add((OffsetsTopic.OffsetKey(group.GroupId, topic.Name, p.PartitionIndex), OffsetsTopic.OffsetValue(offset)));
                        accepted.Add((answer, topic.Name, p.PartitionIndex, offset));
                    }
                }
                // Kafka's transactional batch of the producer: the partition's producer state fences an old epoch.
                durable = _store.Append(group.GroupId, records, request.ProducerId, request.ProducerEpoch);
            }
        }
        else
        {
            foreach (var topic in request.Topics)
            {
                response.Topics.Add(new TxnOffsetCommitResponse.TxnOffsetCommitResponseTopic
                {
                    Name = topic.Name,
                    Partitions = topic.Partitions.Select(p => new TxnOffsetCommitResponse.TxnOffsetCommitResponsePartition { PartitionIndex = p.PartitionIndex, ErrorCode = groupError }).ToList(),
                });
            }
        }
        if (group is null || accepted.Count == 0)
            return response;
        try
        {
            await durable.ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or ProducerStateException)
        {
            short code = e is ProducerStateException refused ? refused.ErrorCode : ErrorCodes.CoordinatorNotAvailable;
            foreach (var a in accepted)
                a.Answer.ErrorCode = code;
            return response;
        }
        lock (group)
        {
            if (!group.PendingTxnOffsets.TryGetValue(request.ProducerId, out var pending))
                group.PendingTxnOffsets[request.ProducerId] = pending = [];
            foreach (var a in accepted)
                pending[(a.Topic, a.Partition)] = (a.Offset, sequence);
        }
        return response;
    }

    /// <summary>
    /// A transaction marker of the producer is durable in partition <paramref name="offsetsPartition"/> of
    /// __consumer_offsets (Kafka's handleTxnCompletion): on COMMIT the producer's pending offsets of every group of that
    /// partition become committed where they are newer in the log than the committed offset; on ABORT they are dropped.
    /// </summary>
    public void CompleteTxn(long producerId, int offsetsPartition, bool commit)
    {
        foreach (var group in _groups.Values)
        {
            if (_store.PartitionFor(group.GroupId) != offsetsPartition)
                continue;
            lock (group)
            {
                if (!group.PendingTxnOffsets.Remove(producerId, out var pending) || !commit)
                    continue;
                foreach (var (key, (offset, sequence)) in pending)
                {
                    if (!group.AppliedCommitSequence.TryGetValue(key, out long applied) || applied < sequence)
                    {
                        group.Offsets[key] = offset;
                        group.AppliedCommitSequence[key] = sequence;
                    }
                }
            }
        }
    }

    /// <summary>Whether a partition of the group has transactional offsets awaiting their marker (RequireStable).</summary>
    public bool HasPendingTxnOffset(string groupId, string topic, int partition)
    {
        var group = Lookup(groupId, create: false);
        if (group is null)
            return false;
        lock (group)
            return group.HasPendingTxnOffset(topic, partition);
    }

    /// <summary>One group's committed offsets: null topics = every committed partition; missing ones are -1.</summary>
    public (short Error, List<(string Topic, List<(int Partition, CommittedOffset? Offset)> Partitions)> Topics) FetchOffsets(
        string groupId, IEnumerable<(string Topic, List<int> Partitions)>? topics)
    {
        var result = new List<(string, List<(int, CommittedOffset?)>)>();
        if (CheckGroupId(groupId) is var groupIdError && groupIdError != ErrorCodes.None)
            return (groupIdError, result);
        var group = Lookup(groupId, create: false);
        if (group is null)
        {
            if (topics is not null)
            {
                foreach (var (topic, partitions) in topics)
                {
                    var list = new List<(int, CommittedOffset?)>();
                    foreach (int p in partitions)
                        list.Add((p, null));
                    result.Add((topic, list));
                }
            }
            return (ErrorCodes.None, result);
        }
        lock (group)
        {
            if (topics is null)
            {
                var byTopic = new SortedDictionary<string, List<(int, CommittedOffset?)>>(StringComparer.Ordinal);
                foreach (var ((topic, partition), offset) in group.Offsets)
                {
                    if (!byTopic.TryGetValue(topic, out var list))
                        byTopic[topic] = list = [];
                    list.Add((partition, offset));
                }
                foreach (var (topic, list) in byTopic)
                {
                    list.Sort((a, b) => a.Item1.CompareTo(b.Item1));
                    result.Add((topic, list));
                }
            }
            else
            {
                foreach (var (topic, partitions) in topics)
                {
                    var list = new List<(int, CommittedOffset?)>();
                    foreach (int p in partitions)
                        list.Add((p, group.Offsets.TryGetValue((topic, p), out var o) ? o : null));
                    result.Add((topic, list));
                }
            }
        }
        return (ErrorCodes.None, result);
    }

    public async Task<OffsetDeleteResponse> DeleteOffsets(OffsetDeleteRequest request)
    {
        var response = new OffsetDeleteResponse();
        if (CheckGroupId(request.GroupId) is var groupIdError && groupIdError != ErrorCodes.None)
        {
            response.ErrorCode = groupIdError;
            return response;
        }
        var group = Lookup(request.GroupId, create: false);
        if (group is null)
        {
            response.ErrorCode = ErrorCodes.GroupIdNotFound;
            return response;
        }
        var durable = new List<Task>();
        lock (group)
        {
            if (group.State == GroupState.Dead)
            {
                response.ErrorCode = ErrorCodes.GroupIdNotFound;
                return response;
            }
            if (group.State != GroupState.Empty && group.ProtocolType != "consumer")
            {
                response.ErrorCode = ErrorCodes.NonEmptyGroup;
                return response;
            }
            bool deleted = false;
            var tombstones = new List<(byte[] Key, byte[]? Value)>();
            foreach (var topic in request.Topics)
            {
                var t = new OffsetDeleteResponse.OffsetDeleteResponseTopic { Name = topic.Name };
                response.Topics.Add(t);
                bool subscribed = group.IsSubscribedTo(topic.Name);
                foreach (var p in topic.Partitions)
                {
                    var answer = new OffsetDeleteResponse.OffsetDeleteResponsePartition { PartitionIndex = p.PartitionIndex };
                    t.Partitions.Add(answer);
                    if (subscribed)
                    {
                        answer.ErrorCode = ErrorCodes.GroupSubscribedToTopic;
                        continue;
                    }
                    if (!_partitionExists(topic.Name, p.PartitionIndex))
                    {
                        answer.ErrorCode = ErrorCodes.UnknownTopicOrPartition;
                        continue;
                    }
                    if (group.RemoveOffset(topic.Name, p.PartitionIndex))
                    {
                        deleted = true;
                        tombstones.Add((OffsetsTopic.OffsetKey(group.GroupId, topic.Name, p.PartitionIndex), null));
                    }
                }
            }
            if (deleted)
            {
                group.OffsetDeleteSequence++;
                durable.Add(_store.Append(group.GroupId, tombstones));
            }
        }
        try
        {
            await Task.WhenAll(durable).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            response.ErrorCode = ErrorCodes.CoordinatorNotAvailable;
        }
        return response;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // DescribeGroups, ListGroups, DeleteGroups

    /// <summary>Runs the group's deadlines that are already due (a session that ran out, a join phase over), so an
    /// answer about its members never depends on when the timer thread gets to them. Caller holds the group lock.</summary>
    void ExpireDue(Group group)
    {
        long now = NowMs;
        // A removal can end the join phase at once, which may make the next deadline due too; a few rounds settle it.
        for (int i = 0; i < 4 && group.State != GroupState.Dead && group.NextDeadlineMs() <= now; i++)
            group.OnTimer(now);
    }

    public DescribeGroupsResponse.DescribedGroup Describe(string groupId)
    {
        var d = new DescribeGroupsResponse.DescribedGroup { GroupId = groupId, GroupState = "Dead", ProtocolType = "", ProtocolData = "" };
        if (CheckGroupId(groupId) is var groupIdError && groupIdError != ErrorCodes.None)
        {
            d.ErrorCode = groupIdError;
            return d;
        }
        var group = Lookup(groupId, create: false);
        if (group is null)
            return d;
        lock (group)
        {
            ExpireDue(group);
            d.GroupState = group.StateName;
            d.ProtocolType = group.ProtocolType ?? "";
            bool stable = group.State == GroupState.Stable;
            d.ProtocolData = stable ? group.ProtocolName ?? "" : "";
            foreach (var m in group.OrderedMembers())
            {
                d.Members.Add(new DescribeGroupsResponse.DescribedGroupMember
                {
                    MemberId = m.MemberId,
                    GroupInstanceId = m.InstanceId,
                    ClientId = m.ClientId,
                    ClientHost = m.ClientHost,
                    MemberMetadata = stable ? m.MetadataFor(group.ProtocolName) ?? [] : [],
                    MemberAssignment = stable ? m.Assignment : [],
                });
            }
        }
        return d;
    }

    public ListGroupsResponse ListGroups(List<string>? statesFilter, List<string>? typesFilter)
    {
        var response = new ListGroupsResponse { ErrorCode = NotReady };
        if (response.ErrorCode != ErrorCodes.None)
            return response;
        if (typesFilter is { Count: > 0 } && !typesFilter.Exists(t => string.Equals(t, "classic", StringComparison.OrdinalIgnoreCase)))
            return response;
        foreach (var group in _groups.Values)
        {
            lock (group)
            {
                ExpireDue(group);
                if (group.State == GroupState.Dead)
                    continue;
                string state = group.StateName;
                if (statesFilter is { Count: > 0 } && !statesFilter.Exists(s => string.Equals(s, state, StringComparison.OrdinalIgnoreCase)))
                    continue;
                response.Groups.Add(new ListGroupsResponse.ListedGroup
                {
                    GroupId = group.GroupId,
                    ProtocolType = group.ProtocolType ?? "",
                    GroupState = state,
                    GroupType = "classic",
                });
            }
        }
        response.Groups.Sort((a, b) => string.CompareOrdinal(a.GroupId, b.GroupId));
        return response;
    }

    public async Task<short> DeleteGroup(string groupId)
    {
        if (CheckGroupId(groupId) is var groupIdError && groupIdError != ErrorCodes.None)
            return groupIdError;
        var group = Lookup(groupId, create: false);
        if (group is null)
            return ErrorCodes.GroupIdNotFound;
        Task durable;
        lock (group)
        {
            ExpireDue(group);
            if (group.State == GroupState.Dead)
                return ErrorCodes.GroupIdNotFound;
            if (group.State != GroupState.Empty || group.Members.Count > 0)
                return ErrorCodes.NonEmptyGroup;
            var tombstones = GroupTombstones(group);
            group.MarkDead(NowMs);
            _groups.TryRemove(new KeyValuePair<string, Group>(groupId, group));
            durable = _store.Append(groupId, tombstones);
        }
        Log.Info($"group '{groupId}': deleted with its committed offsets");
        try
        {
            await durable.ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            return ErrorCodes.CoordinatorNotAvailable;
        }
        return ErrorCodes.None;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Offset expiry

    void ExpireOffsets()
    {
        if (_status == 1)
            ExpireOffsets(NowMs);
    }

    /// <summary>Kafka's offset expiry: an Empty group's offsets expire offsets.retention after it became Empty (a
    /// group that only stores offsets: after each commit), or at an explicit expire time (OffsetCommit v2-4). An
    /// Empty group left with no offsets is removed. Groups with members keep their offsets. Returns offsets removed.</summary>
    public int ExpireOffsets(long nowMs)
    {
        int removed = 0;
        foreach (var group in _groups.Values)
        {
            lock (group)
            {
                if (group.State != GroupState.Empty || group.CommitsInFlight > 0)
                    continue;
                List<(string, int)>? expired = null;
                foreach (var (key, offset) in group.Offsets)
                {
                    long baseMs = group.ProtocolType is null ? offset.CommitTimestampMs : Math.Max(group.StateSinceMs, offset.CommitTimestampMs);
                    long expireAt = offset.ExpireTimestampMs >= 0 ? offset.ExpireTimestampMs : baseMs + _settings.OffsetsRetentionMs;
                    if (expireAt <= nowMs)
                        (expired ??= []).Add(key);
                }
                if (expired is not null)
                {
                    var tombstones = new List<(byte[] Key, byte[]? Value)>();
                    foreach (var (topic, partition) in expired)
                    {
                        group.RemoveOffset(topic, partition);
                        tombstones.Add((OffsetsTopic.OffsetKey(group.GroupId, topic, partition), null));
                    }
                    Observe(_store.Append(group.GroupId, tombstones));
                    group.OffsetDeleteSequence++;
                    removed += expired.Count;
                    Log.Info($"group '{group.GroupId}': {expired.Count} committed offsets expired (the group has been empty longer than the offsets retention)");
                }
                if (group.Offsets.Count == 0 && group.PendingMembers.Count == 0 && group.PendingTxnOffsets.Count == 0)
                {
                    var tombstones = GroupTombstones(group);
                    group.MarkDead(nowMs);
                    _groups.TryRemove(new KeyValuePair<string, Group>(group.GroupId, group));
                    Observe(_store.Append(group.GroupId, tombstones));
                }
            }
        }
        return removed;
    }

    /// <summary>A deleted group's records, as Kafka writes them: a tombstone for its metadata and for each offset.</summary>
    static List<(byte[] Key, byte[]? Value)> GroupTombstones(Group group)
    {
        var tombstones = new List<(byte[] Key, byte[]? Value)> { (OffsetsTopic.GroupKey(group.GroupId), null) };
        foreach (var (topic, partition) in group.Offsets.Keys)
            tombstones.Add((OffsetsTopic.OffsetKey(group.GroupId, topic, partition), null));
        return tombstones;
    }

    /// <summary>Expiry does not wait for its tombstones: a failure is logged; the offsets come back at the next start
    /// and expire again.</summary>
    void Observe(Task durable) =>
        _ = durable.ContinueWith(static (t, s) => ((Log)s!).Warn($"group coordinator: writing expired offsets' tombstones to {OffsetsTopic.TopicName} failed " +
            $"({t.Exception!.InnerException!.Message}); they expire again after the next start"), Log, CancellationToken.None,
            TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

    public async ValueTask DisposeAsync()
    {
        _expiryTimer?.Dispose();
        Timers.Dispose();
        try
        {
            await _loading.ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException)
        {
        }
    }
}
