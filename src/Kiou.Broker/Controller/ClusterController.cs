using System.Collections.Frozen;
using Kiou.Broker.Hosting;
using Kiou.Broker.Logs;

namespace Kiou.Broker.Controller;

/// <summary>Outcome of an admin operation on one topic: a Kafka error code and, when it failed, a message for the client.</summary>
public readonly record struct AdminResult(short ErrorCode, string? Message, TopicInfo? Topic = null)
{
    public static AdminResult Ok(TopicInfo? topic = null) => new(0, null, topic);
}

/// <summary>
/// The controller: sole owner of topic metadata. Changes are serialized by one lock, persisted through
/// <see cref="MetadataStore"/> before they are visible, and then applied to the <see cref="LogManager"/>.
/// Reads are lock-free: <see cref="Topics"/> is an immutable snapshot replaced on every change.
/// </summary>
public sealed class ClusterController
{
    readonly MetadataStore _store;
    readonly LogManager _logs;
    readonly BrokerConfig _config;
    readonly Log _log;
    readonly Lock _gate = new();
    volatile FrozenDictionary<string, TopicInfo> _topics = FrozenDictionary<string, TopicInfo>.Empty;
    volatile FrozenDictionary<Guid, TopicInfo> _topicsById = FrozenDictionary<Guid, TopicInfo>.Empty;

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

    public TopicInfo? Find(string name) => _topics.GetValueOrDefault(name);
    public TopicInfo? Find(Guid id) => _topicsById.GetValueOrDefault(id);

    /// <summary>Loads the snapshot (or starts a new cluster) and opens every partition log, recovering as needed.</summary>
    public void Start()
    {
        var snapshot = _store.Load();
        if (snapshot is null)
        {
            snapshot = new MetadataStore.Snapshot { ClusterId = NewClusterId() };
            _store.Save(snapshot);
            _log.Info($"new cluster {snapshot.ClusterId}: metadata in {_store.FilePath}");
        }
        ClusterId = snapshot.ClusterId;
        var topics = new Dictionary<string, TopicInfo>(StringComparer.Ordinal);
        foreach (var t in snapshot.Topics)
            topics[t.Name] = new TopicInfo(t.Name, t.Id, t.Partitions, t.Configs);
        Publish(topics);
        _logs.RemoveOrphans(topics);
        foreach (var t in topics.Values)
            _logs.OpenTopic(t);
    }

    public AdminResult CreateTopic(string name, int partitions, short replicationFactor,
        IReadOnlyDictionary<string, string?> configs, bool validateOnly)
    {
        if (TopicNames.Validate(name) is { } bad)
            return new AdminResult(ErrorCodes.InvalidTopicException, bad);
        if (partitions == -1)
            partitions = _config.DefaultPartitions;
        if (partitions <= 0)
            return new AdminResult(ErrorCodes.InvalidPartitions, $"Number of partitions must be at least 1 (got {partitions})");
        if (replicationFactor != -1 && replicationFactor != 1)
            return new AdminResult(ErrorCodes.InvalidReplicationFactor,
                $"Replication factor {replicationFactor} is larger than the number of brokers (1): KIOU is a single node, use 1 or -1");
        var kept = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in configs)
        {
            if (TopicConfigs.Validate(key, value) is { } why)
                return new AdminResult(ErrorCodes.InvalidConfig, why);
            kept[key] = value!;
        }
        lock (_gate)
        {
            if (_topics.ContainsKey(name))
                return new AdminResult(ErrorCodes.TopicAlreadyExists, $"Topic '{name}' already exists.");
            if (CollidesWithExisting(name) is { } other)
                return new AdminResult(ErrorCodes.InvalidTopicException,
                    $"Topic '{name}' collides with existing topic '{other}': names that differ only in '.' and '_' are not allowed together");
            var topic = new TopicInfo(name, NewTopicId(), partitions, kept);
            if (validateOnly)
                return AdminResult.Ok(topic);
            var next = new Dictionary<string, TopicInfo>(_topics, StringComparer.Ordinal) { [name] = topic };
            Persist(next);
            _logs.OpenTopic(topic);
            Publish(next);
            _log.Info($"created topic {name} with {partitions} partition(s), id {topic.Id}");
            return AdminResult.Ok(topic);
        }
    }

    public async Task<AdminResult> DeleteTopicAsync(string name)
    {
        TopicInfo? topic;
        lock (_gate)
        {
            if (!_topics.TryGetValue(name, out topic))
                return new AdminResult(ErrorCodes.UnknownTopicOrPartition, $"Topic '{name}' does not exist");
            var next = new Dictionary<string, TopicInfo>(_topics, StringComparer.Ordinal);
            next.Remove(name);
            Persist(next);
            Publish(next);
        }
        await _logs.DeleteTopicAsync(name).ConfigureAwait(false);
        _log.Info($"deleted topic {name} (id {topic.Id})");
        return AdminResult.Ok(topic);
    }

    public AdminResult CreatePartitions(string name, int count, bool validateOnly)
    {
        lock (_gate)
        {
            if (!_topics.TryGetValue(name, out var topic))
                return new AdminResult(ErrorCodes.UnknownTopicOrPartition, $"Topic '{name}' does not exist");
            if (count <= topic.Partitions)
                return new AdminResult(ErrorCodes.InvalidPartitions,
                    $"Topic '{name}' has {topic.Partitions} partition(s); the new count must be larger (got {count})");
            var grown = topic with { Partitions = count };
            if (validateOnly)
                return AdminResult.Ok(grown);
            var next = new Dictionary<string, TopicInfo>(_topics, StringComparer.Ordinal) { [name] = grown };
            Persist(next);
            _logs.OpenTopic(grown);
            Publish(next);
            _log.Info($"topic {name}: partitions increased from {topic.Partitions} to {count}");
            return AdminResult.Ok(grown);
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
        lock (_gate)
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
    }

    string? CollidesWithExisting(string name)
    {
        string norm = name.Replace('.', '_');
        foreach (var existing in _topics.Keys)
        {
            if (existing != name && existing.Replace('.', '_') == norm)
                return existing;
        }
        return null;
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
    }

    void Publish(Dictionary<string, TopicInfo> topics)
    {
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
