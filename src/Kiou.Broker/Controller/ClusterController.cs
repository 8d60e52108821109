using System.Collections.Frozen;
using Kiou.Broker.Hosting;
using Kiou.Broker.Logs;
using Kiou.Storage;

namespace Kiou.Broker.Controller;

/// <summary>Outcome of an admin operation on one topic: a Kafka error code and, when it failed, a message for the client.</summary>
public readonly record struct AdminResult(short ErrorCode, string? Message, TopicInfo? Topic = null)
{
    public static AdminResult Ok(TopicInfo? topic = null) => new(0, null, topic);
}

/// <summary>One topic of a CreateTopics request, already checked for request-level errors by the handler.</summary>
public readonly record struct TopicRequest(string Name, int Partitions, short ReplicationFactor, IReadOnlyDictionary<string, string?> Configs);

/// <summary>
/// The controller: sole owner of topic metadata. Changes are serialized by one gate, persisted through
/// <see cref="MetadataStore"/> before they are visible, and then applied to the <see cref="LogManager"/>.
/// Reads are lock-free: <see cref="Topics"/> is an immutable snapshot replaced on every change.
/// Partition directories are created before the metadata naming them is written, and a deletion is recorded by
/// renaming them before the metadata changes; start-up reconciles the two (docs/design/metadata.md).
/// </summary>
public sealed class ClusterController
{
    // 10000: a single node keeps one open segment (and its write handle) per partition; see KIOU_MAX_PARTITIONS.
    public const int DefaultMaxPartitions = 10000;

    readonly MetadataStore _store;
    readonly LogManager _logs;
    readonly BrokerConfig _config;
    readonly Log _log;
    readonly SemaphoreSlim _gate = new(1, 1);
    // Delete markers kept until a metadata write without their topic succeeds (a full disk can postpone it).
    readonly List<string> _markersAwaitingPersist = [];
    volatile FrozenDictionary<string, TopicInfo> _topics = FrozenDictionary<string, TopicInfo>.Empty;
    volatile FrozenDictionary<Guid, TopicInfo> _topicsById = FrozenDictionary<Guid, TopicInfo>.Empty;
    long _partitionCount;

    public ClusterController(BrokerConfig config, MetadataStore store, LogManager logs, Log log)
    {
        _config = config;
        _store = store;
        _logs = logs;
        _log = log;
    }

    public string ClusterId { get; private set; } = "";
    public int NodeId => _config.NodeId;
    public FrozenDictionary<string, TopicInfo> Topics => _topics;
    int MaxPartitions => _config.MaxPartitions ?? DefaultMaxPartitions;

    public TopicInfo? Find(string name) => _topics.GetValueOrDefault(name);
    public TopicInfo? Find(Guid id) => _topicsById.GetValueOrDefault(id);

    /// <summary>
    /// Loads the snapshot (or starts a new cluster), reconciles it with the partition directories and opens every
    /// partition log, recovering as needed. Nothing is deleted because it is missing from the metadata:
    /// <list type="bullet">
    /// <item>a topic with a delete marker of its id: the deletion was recorded before a crash; it is finished;</item>
    /// <item>a partition directory the metadata does not list: adopted (topic rebuilt from its directories, WARN);</item>
    /// <item>a partition directory whose partition.metadata names another id than its topic's: set aside (-stale, WARN);</item>
    /// <item>delete markers of topics no longer listed: removed in the background.</item>
    /// </list>
    /// </summary>
    public void Start()
    {
        var snapshot = _store.Load();
        var (live, deleted) = PartitionDirectories.Scan(_config.DataDir);
        bool changed = false;
        if (snapshot is null)
        {
            string? kept = _store.ReadClusterIdBackup();
            snapshot = new MetadataStore.Snapshot { ClusterId = kept ?? NewClusterId() };
            changed = true;
            if (live.Count > 0)
            {
                _log.Warn($"{_store.FilePath} is missing but {live.Count} partition directories are in {_config.DataDir}: rebuilding the topics from them" +
                    (kept is null ? $"; the cluster id is lost, the new one is {snapshot.ClusterId}" : $", cluster id {kept} from meta.properties"));
            }
            else
            {
                _log.Info($"new cluster {snapshot.ClusterId}: metadata in {_store.FilePath}");
            }
        }
        ClusterId = snapshot.ClusterId;
        var topics = new Dictionary<string, TopicInfo>(StringComparer.Ordinal);
        foreach (var t in snapshot.Topics)
            topics[t.Name] = new TopicInfo(t.Name, t.Id, t.Partitions, t.Configs);

        var markers = new List<string>();
        var deletedIds = new HashSet<Guid>();
        foreach (var d in deleted)
        {
            markers.Add(d.Path);
            deletedIds.Add(d.TopicId);
        }
        foreach (var t in topics.Values.Where(t => deletedIds.Contains(t.Id)).ToList())
        {
            foreach (var dir in live.Where(l => l.Topic == t.Name && (l.TopicId ?? t.Id) == t.Id).ToList())
            {
                string marker = PartitionDirectories.DeletedPath(_config.DataDir, t.Name, dir.Partition, t.Id);
                PartitionDirectories.MarkDeleted(dir.Path, marker);
                markers.Add(marker);
                live.Remove(dir);
            }
            topics.Remove(t.Name);
            changed = true;
            _log.Warn($"finishing the deletion of topic {t.Name} (id {t.Id}) that a stop interrupted: its partition directories carry the -delete marker");
        }
        changed |= Adopt(topics, live);
        if (markers.Count > 0)
            PartitionDirectories.SyncDataDir(_config.DataDir);
        if (changed)
            Persist(topics);
        else
            _store.EnsureReserve();
        try
        {
            _store.WriteClusterIdBackup(ClusterId, _config.NodeId);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.Warn($"could not write the cluster id to meta.properties ({e.Message}); the next start tries again");
        }
        Publish(topics);
        foreach (var t in topics.Values)
            _logs.OpenTopic(t);
        _logs.RemoveMarkersInBackground(markers);
    }

    /// <summary>Adopts live partition directories the metadata does not account for; true when the topics changed.</summary>
    bool Adopt(Dictionary<string, TopicInfo> topics, List<PartitionDirectories.Live> live)
    {
        bool changed = false;
        var usedIds = topics.Values.Select(t => t.Id).ToHashSet();
        foreach (var group in live.GroupBy(l => l.Topic, StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            string name = group.Key;
            if (TopicNames.Validate(name) is { } bad)
            {
                _log.Warn($"leaving {string.Join(", ", group.Select(g => g.Path))} alone: '{name}' is not a valid topic name ({bad}); rename or move the directory to use its data");
                continue;
            }
            var dirs = group.OrderBy(g => g.Partition).ToList();
            if (topics.TryGetValue(name, out var known))
            {
                foreach (var stale in dirs.Where(d => d.TopicId is { } id && id != known.Id).ToList())
                {
                    string aside = PartitionDirectories.StalePath(_config.DataDir, name, stale.Partition, stale.TopicId!.Value);
                    Directory.Move(stale.Path, aside);
                    dirs.Remove(stale);
                    _log.Warn($"set aside {stale.Path} as {aside}: it belongs to topic id {stale.TopicId}, but topic {name} has id {known.Id} " +
                        "(left by an earlier topic of that name, or metadata.json restored from an older copy); nothing was deleted, move the directory back under another topic name to read it");
                }
                int highest = dirs.Count > 0 ? dirs[^1].Partition : -1;
                if (highest >= known.Partitions)
                {
                    topics[name] = known with { Partitions = highest + 1 };
                    changed = true;
                    _log.Warn($"adopted {string.Join(", ", dirs.Where(d => d.Partition >= known.Partitions).Select(d => d.Path))}: topic {name} had {known.Partitions} partition(s) in the metadata, it now has {highest + 1}");
                }
                continue;
            }
            var ids = dirs.Select(d => d.TopicId).Distinct().ToList();
            Guid? recovered = ids.Count == 1 && ids[0] is { } only && !usedIds.Contains(only) ? only : null;
            Guid topicId = recovered ?? NewTopicId();
            usedIds.Add(topicId);
            int partitions = dirs[^1].Partition + 1;
            if (InternalTopics.IsInternal(name))
            {
                // Kafka's internal topics have known configs: compacted, so nothing is deleted by retention.
                topics[name] = new TopicInfo(name, topicId, partitions, InternalTopics.Configs.ToDictionary(kv => kv.Key, kv => kv.Value!, StringComparer.Ordinal));
                changed = true;
                _log.Warn($"adopted the internal topic {name} from {dirs.Count} partition directories not listed in {_store.FilePath}: {partitions} partition(s), id {topicId}, its usual configs");
                continue;
            }
            // The topic's configs were in the lost metadata: retention is switched off so nothing adopted is deleted by a default.
            var configs = new Dictionary<string, string>(StringComparer.Ordinal) { ["retention.ms"] = "-1", ["retention.bytes"] = "-1" };
            topics[name] = new TopicInfo(name, topicId, partitions, configs);
            changed = true;
            _log.Warn($"adopted topic {name} from {dirs.Count} partition directories ({string.Join(", ", dirs.Select(d => Path.GetFileName(d.Path)))}) " +
                $"not listed in {_store.FilePath}: {partitions} partition(s), id {topicId} ({(recovered is null ? "new: no consistent partition.metadata" : "from partition.metadata")}), " +
                "retention.ms=-1 and retention.bytes=-1 until you set its configs again (kafka-configs --alter)");
        }
        return changed;
    }

    public Task<AdminResult> CreateTopicAsync(string name, int partitions, short replicationFactor,
        IReadOnlyDictionary<string, string?> configs, bool validateOnly) =>
        CreateTopicsAsync([new TopicRequest(name, partitions, replicationFactor, configs)], validateOnly).ContinueWith(
            static t => t.Result[0], CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

    /// <summary>
    /// Creates the topics of one request: each is checked (name, partitions against KIOU_MAX_PARTITIONS, configs),
    /// its partition logs are created, then one metadata write names all that succeeded and they become visible
    /// together. A topic whose logs cannot be created gets an error and leaves nothing behind; a failed metadata write
    /// fails all of them the same way. Costs O(topics in the request + topics in the broker).
    /// </summary>
    public async Task<AdminResult[]> CreateTopicsAsync(IReadOnlyList<TopicRequest> requests, bool validateOnly)
    {
        var results = new AdminResult[requests.Count];
        var infos = new TopicInfo?[requests.Count];
        for (int i = 0; i < requests.Count; i++)
        {
            var (name, partitions, rf, configs) = requests[i];
            results[i] = Check(name, ref partitions, rf, configs, out var kept);
            if (results[i].ErrorCode == ErrorCodes.None)
                infos[i] = new TopicInfo(name, NewTopicId(), partitions, kept!);
        }
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            var next = new Dictionary<string, TopicInfo>(_topics, StringComparer.Ordinal);
            var normalized = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var name in next.Keys)
                normalized.TryAdd(name.Replace('.', '_'), name);
            long total = _partitionCount;
            var accepted = new List<int>();
            for (int i = 0; i < requests.Count; i++)
            {
                if (infos[i] is not { } topic)
                    continue;
                if (next.ContainsKey(topic.Name))
                {
                    results[i] = new AdminResult(ErrorCodes.TopicAlreadyExists, $"Topic '{topic.Name}' already exists.");
                    continue;
                }
                if (normalized.TryGetValue(topic.Name.Replace('.', '_'), out var other))
                {
                    results[i] = new AdminResult(ErrorCodes.InvalidTopicException,
                        $"Topic '{topic.Name}' collides with existing topic '{other}': names that differ only in '.' and '_' are not allowed together");
                    continue;
                }
                if (total + topic.Partitions > MaxPartitions)
                {
                    results[i] = new AdminResult(ErrorCodes.InvalidPartitions, OverLimit(topic.Name, topic.Partitions, total));
                    continue;
                }
                total += topic.Partitions;
                next[topic.Name] = topic;
                normalized.TryAdd(topic.Name.Replace('.', '_'), topic.Name);
                results[i] = AdminResult.Ok(topic);
                accepted.Add(i);
            }
            if (validateOnly || accepted.Count == 0)
                return results;
            long startTicks = System.Diagnostics.Stopwatch.GetTimestamp();
            var made = await _logs.CreatePartitionsAsync(accepted.Select(i => (infos[i]!, 0)).ToList()).ConfigureAwait(false);
            var created = new List<(int Index, TopicInfo Topic, PartitionLog[] Logs)>();
            for (int k = 0; k < accepted.Count; k++)
            {
                int i = accepted[k];
                var topic = infos[i]!;
                if (made[k].Error is { } e)
                {
                    next.Remove(topic.Name);
                    results[i] = new AdminResult(ErrorCodes.KafkaStorageError, CannotCreate($"topic '{topic.Name}'", e));
                    if (k == 0 || made[k - 1].Error is null)
                        _log.Error(results[i].Message!);
                    continue;
                }
                created.Add((i, topic, made[k].Logs!));
            }
            if (created.Count == 0)
                return results;
            var createdIn = System.Diagnostics.Stopwatch.GetElapsedTime(startTicks);
            try
            {
                PartitionDirectories.SyncDataDir(_config.DataDir); // the new directories' names, before the metadata names them
                Persist(next);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                foreach (var (i, topic, logs) in created)
                {
                    await _logs.RemoveCreatedAsync(logs).ConfigureAwait(false);
                    results[i] = new AdminResult(ErrorCodes.KafkaStorageError, CannotCreate($"topic '{topic.Name}'", e));
                }
                _log.Error(CannotCreate($"{created.Count} topic(s)", e));
                return results;
            }
            foreach (var (_, topic, logs) in created)
                _logs.Attach(topic, logs);
            Publish(next);
            if (created.Count <= 10)
            {
                foreach (var (_, topic, _) in created)
                    _log.Info($"created topic {topic.Name} with {topic.Partitions} partition(s), id {topic.Id}");
            }
            else
            {
                _log.Info($"created {created.Count} topics ({created[0].Topic.Name} ... {created[^1].Topic.Name}) in one request: " +
                    $"partitions in {createdIn.TotalMilliseconds:F0} ms, metadata in {System.Diagnostics.Stopwatch.GetElapsedTime(startTicks).TotalMilliseconds - createdIn.TotalMilliseconds:F0} ms");
            }
            return results;
        }
        finally
        {
            _gate.Release();
        }
    }

    AdminResult Check(string name, ref int partitions, short replicationFactor, IReadOnlyDictionary<string, string?> configs, out Dictionary<string, string>? kept)
    {
        kept = null;
        if (TopicNames.Validate(name) is { } bad)
            return new AdminResult(ErrorCodes.InvalidTopicException, bad);
        if (partitions == -1)
            partitions = _config.DefaultPartitions;
        if (partitions <= 0)
            return new AdminResult(ErrorCodes.InvalidPartitions, $"Number of partitions must be at least 1 (got {partitions})");
        if (partitions > MaxPartitions)
            return new AdminResult(ErrorCodes.InvalidPartitions, OverLimit(name, partitions, Volatile.Read(ref _partitionCount)));
        if (replicationFactor != -1 && replicationFactor != 1)
            return new AdminResult(ErrorCodes.InvalidReplicationFactor,
                $"Replication factor {replicationFactor} is larger than the number of brokers (1): KIOU is a single node, use 1 or -1");
        kept = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in configs)
        {
            if (TopicConfigs.Validate(key, value) is { } why)
                return new AdminResult(ErrorCodes.InvalidConfig, why);
            kept[key] = value!;
        }
        return AdminResult.Ok();
    }

    string OverLimit(string name, long adding, long open) =>
        $"Topic '{name}': {adding} more partition(s) would bring this broker to {open + adding}, above its limit of {MaxPartitions} partitions " +
        "(KIOU_MAX_PARTITIONS; each partition keeps files open); use fewer partitions, delete unused topics, or raise KIOU_MAX_PARTITIONS together with the descriptor limit (ulimit -n)";

    string CannotCreate(string what, Exception e)
    {
        int errno = e is StorageException s ? s.Errno : e.HResult;
        string why = errno switch
        {
            23 or 24 => $"the broker ran out of file descriptors ({e.Message}); raise the descriptor limit (ulimit -n) or lower KIOU_MAX_PARTITIONS ({MaxPartitions})",
            28 or 122 => $"disk full ({e.Message}); free space on the file system of {_config.DataDir}",
            _ => e.Message,
        };
        return $"Could not create {what}: {why}. Nothing was created.";
    }

    /// <summary>
    /// Deletes a topic, crash-safe at every step (docs/design/metadata.md): it stops being served; each partition
    /// directory is renamed to its delete marker (the durable record of the deletion: a start-up that finds a
    /// marker of a listed topic finishes the deletion) and the data dir is fsynced; the logs are closed; the metadata is
    /// written without the topic; the markers are removed in the background. On a full disk the markers' data is
    /// freed and the reserve file given up before the metadata is written again; if even that fails the
    /// deletion stands (the markers record it) and the next metadata write or start-up completes it.
    /// </summary>
    public async Task<AdminResult> DeleteTopicAsync(string name)
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (!_topics.TryGetValue(name, out var topic))
                return new AdminResult(ErrorCodes.UnknownTopicOrPartition, $"Topic '{name}' does not exist");
            var next = new Dictionary<string, TopicInfo>(_topics, StringComparer.Ordinal);
            next.Remove(name);
            Publish(next);
            var logs = _logs.Detach(name);
            var markers = new List<string>();
            try
            {
                for (int p = 0; p < topic.Partitions; p++)
                {
                    string marker = PartitionDirectories.DeletedPath(_config.DataDir, name, p, topic.Id);
                    string dir = Path.Combine(_config.DataDir, $"{name}-{p}");
                    if (RenameFreeingSpace(dir, marker))
                        markers.Add(marker);
                }
                PartitionDirectories.SyncDataDir(_config.DataDir);
            }
            catch (Exception e) when ((e is IOException or UnauthorizedAccessException) && markers.Count == 0)
            {
                // Nothing on disk changed: the topic stays.
                if (logs is not null)
                    _logs.Reattach(logs);
                next[name] = topic;
                Publish(next);
                _log.Error($"could not delete topic {name}: {e.Message}");
                return new AdminResult(ErrorCodes.KafkaStorageError, $"Could not delete topic '{name}': {e.Message}. Nothing was deleted.");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Committed but incomplete: metadata.json keeps the topic, so the next start sees its markers beside
                // the directories not yet renamed and finishes the deletion.
                _log.Warn($"topic {name}: {markers.Count} of {topic.Partitions} partition directories were renamed for deletion before {e.Message}; " +
                    "the deletion stands and the next start finishes it");
                if (logs is not null)
                    await _logs.CloseDeletedAsync(logs).ConfigureAwait(false);
                return AdminResult.Ok(topic);
            }
            if (logs is not null)
                await _logs.CloseDeletedAsync(logs).ConfigureAwait(false);
            _markersAwaitingPersist.AddRange(markers);
            try
            {
                Persist(next);
            }
            catch (Exception e) when (MetadataStore.IsDiskFull(e))
            {
                foreach (string marker in _markersAwaitingPersist)
                    FreeMarker(marker);
                _log.Warn($"disk full writing {_store.FilePath} ({e.Message}): freed the data of {_markersAwaitingPersist.Count} deleted partition(s) first");
                try
                {
                    Persist(next);
                }
                catch (Exception again) when (again is IOException or UnauthorizedAccessException)
                {
                    _log.Warn($"topic {name} (id {topic.Id}) is deleted and its data freed, but {_store.FilePath} could not be rewritten ({again.Message}); " +
                        "its -delete directories record the deletion until the next metadata change or start-up rewrites the file");
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                _log.Warn($"topic {name} (id {topic.Id}) is deleted, but {_store.FilePath} could not be rewritten ({e.Message}); " +
                    "its -delete directories record the deletion until the next metadata change or start-up rewrites the file");
            }
            _log.Info($"deleted topic {name} (id {topic.Id})");
            return AdminResult.Ok(topic);
        }
        finally
        {
            _gate.Release();
        }
    }

    bool RenameFreeingSpace(string dir, string marker)
    {
        try
        {
            return PartitionDirectories.MarkDeleted(dir, marker);
        }
        catch (IOException e) when (MetadataStore.IsDiskFull(e) && _store.ReleaseReserve())
        {
            return PartitionDirectories.MarkDeleted(dir, marker);
        }
    }

    void FreeMarker(string marker)
    {
        try
        {
            PartitionDirectories.EmptyMarker(marker);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.Warn($"could not free {marker}: {e.Message}");
        }
    }

    public async Task<AdminResult> CreatePartitionsAsync(string name, int count, bool validateOnly)
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (!_topics.TryGetValue(name, out var topic))
                return new AdminResult(ErrorCodes.UnknownTopicOrPartition, $"Topic '{name}' does not exist");
            if (count <= topic.Partitions)
                return new AdminResult(ErrorCodes.InvalidPartitions,
                    $"Topic '{name}' has {topic.Partitions} partition(s); the new count must be larger (got {count})");
            if (_partitionCount + count - topic.Partitions > MaxPartitions)
                return new AdminResult(ErrorCodes.InvalidPartitions, OverLimit(name, count - topic.Partitions, _partitionCount));
            var grown = topic with { Partitions = count };
            if (validateOnly)
                return AdminResult.Ok(grown);
            var (logs, error) = (await _logs.CreatePartitionsAsync([(grown, topic.Partitions)]).ConfigureAwait(false))[0];
            if (error is not null)
            {
                var failed = new AdminResult(ErrorCodes.KafkaStorageError, CannotCreate($"partitions {topic.Partitions} to {count - 1} of topic '{name}'", error));
                _log.Error(failed.Message!);
                return failed;
            }
            var next = new Dictionary<string, TopicInfo>(_topics, StringComparer.Ordinal) { [name] = grown };
            try
            {
                PartitionDirectories.SyncDataDir(_config.DataDir);
                Persist(next);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                await _logs.RemoveCreatedAsync(logs!).ConfigureAwait(false);
                var failed = new AdminResult(ErrorCodes.KafkaStorageError, CannotCreate($"partitions of topic '{name}'", e));
                _log.Error(failed.Message!);
                return failed;
            }
            _logs.Attach(grown, logs!);
            Publish(next);
            _log.Info($"topic {name}: partitions increased from {topic.Partitions} to {count}");
            return AdminResult.Ok(grown);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Replaces (incremental: merges) a topic's configs. A null value removes a key (back to its default).</summary>
    public AdminResult AlterConfigs(string name, IReadOnlyDictionary<string, string?> changes, bool incremental, bool validateOnly)
    {
        foreach (var (key, value) in changes)
        {
            if (value is null && incremental)
            {
                if (TopicConfigs.Find(key) is null)
                    return new AdminResult(ErrorCodes.InvalidConfig, $"Unknown topic config name: {key}");
                continue;
            }
            if (TopicConfigs.Validate(key, value) is { } why)
                return new AdminResult(ErrorCodes.InvalidConfig, why);
        }
        _gate.Wait();
        try
        {
            if (!_topics.TryGetValue(name, out var topic))
                return new AdminResult(ErrorCodes.UnknownTopicOrPartition, $"Topic '{name}' does not exist");
            var configs = incremental
                ? new Dictionary<string, string>(topic.Configs, StringComparer.Ordinal)
                : new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var (key, value) in changes)
            {
                if (value is null)
                    configs.Remove(key);
                else
                    configs[key] = value;
            }
            var changed = topic with { Configs = configs };
            if (validateOnly)
                return AdminResult.Ok(changed);
            var next = new Dictionary<string, TopicInfo>(_topics, StringComparer.Ordinal) { [name] = changed };
            Persist(next);
            _logs.UpdateConfigs(changed);
            Publish(next);
            _log.Info($"topic {name}: configs changed");
            return AdminResult.Ok(changed);
        }
        finally
        {
            _gate.Release();
        }
    }

    void Persist(Dictionary<string, TopicInfo> topics)
    {
        var snapshot = new MetadataStore.Snapshot { ClusterId = ClusterId };
        foreach (var t in topics.Values.OrderBy(t => t.Name, StringComparer.Ordinal))
        {
            snapshot.Topics.Add(new MetadataStore.TopicRecord
            {
                Name = t.Name,
                Id = t.Id,
                Partitions = t.Partitions,
                Configs = new Dictionary<string, string>(t.Configs, StringComparer.Ordinal),
            });
        }
        _store.Save(snapshot);
        if (_markersAwaitingPersist.Count > 0)
        {
            _logs.RemoveMarkersInBackground(_markersAwaitingPersist.ToArray());
            _markersAwaitingPersist.Clear();
        }
    }

    void Publish(Dictionary<string, TopicInfo> topics)
    {
        long count = 0;
        foreach (var t in topics.Values)
            count += t.Partitions;
        Volatile.Write(ref _partitionCount, count);
        _topicsById = topics.Values.ToFrozenDictionary(t => t.Id);
        _topics = topics.ToFrozenDictionary(StringComparer.Ordinal);
    }

    /// <summary>A random non-zero UUID whose Kafka base64 form does not start with '-' (Kafka's Uuid.randomUuid rules).</summary>
    static Guid NewTopicId()
    {
        while (true)
        {
            var id = Guid.NewGuid();
            Span<byte> b = stackalloc byte[16];
            id.TryWriteBytes(b, bigEndian: true, out _);
            if ((b[0] >> 2) == 62) // base64url index 62 is '-'
                continue;
            return id;
        }
    }

    static string NewClusterId()
    {
        Span<byte> b = stackalloc byte[16];
        NewTopicId().TryWriteBytes(b, bigEndian: true, out _);
        return Convert.ToBase64String(b).TrimEnd('=').Replace('+', '-').Replace('/', '_');
    }
}
