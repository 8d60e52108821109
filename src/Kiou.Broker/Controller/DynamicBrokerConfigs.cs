using System.Collections.Frozen;
using System.Globalization;
using System.Text.Json;
using Kiou.IoUring.Interop;

namespace Kiou.Broker.Controller;

/// <summary>
/// Broker configs changed at run time (AlterConfigs / IncrementalAlterConfigs on the BROKER resource), as Kafka's
/// DynamicBrokerConfig: per-broker values (resource name = this node's id) over cluster defaults (empty name) over
/// static KIOU_* settings over Kafka's defaults. KIOU takes the broker synonyms of topic configs (Kafka's
/// DynamicLogConfig.ReconfigurableConfigs): topics without their own value follow them at once. Other settings stay
/// read-only (KIOU_* variables and a restart). Kept in <c>__cluster/broker-configs.json</c>, written as metadata.json
/// is (temporary file, fdatasync, rename, directory sync); a damaged file is set aside, never used or deleted.
/// Thread-safety: changes are serialized under a lock; readers see immutable snapshots.
/// </summary>
public sealed class DynamicBrokerConfigs
{
    public enum Kind { Int, Long, Bool, Double, String, List }

    /// <summary>A dynamic broker config: Kafka's type, validation and default; the topic config it is the broker
    /// default of (null for a broker setting of its own), and the factor from its unit to that topic config's (hours
    /// and minutes to milliseconds).</summary>
    public sealed record Definition(string Name, Kind Kind, string? Default, string? Topic, long Min = long.MinValue, double Max = double.NaN, string[]? Choices = null, long Factor = 1);

    const long Hour = 3_600_000, Minute = 60_000;
    const string LongMax = "9223372036854775807";

    // Kafka 3.9's ServerLogConfigs types, validators and defaults; the order inside each topic config's group is
    // Kafka's synonym order (the first one set wins: log.retention.ms over .minutes over .hours).
    public static readonly IReadOnlyList<Definition> All =
    [
        new("log.segment.bytes", Kind.Int, "1073741824", "segment.bytes", Min: 14),
        new("log.roll.ms", Kind.Long, null, "segment.ms", Min: 1),
        new("log.roll.hours", Kind.Int, "168", "segment.ms", Min: 1, Factor: Hour),
        new("log.roll.jitter.ms", Kind.Long, null, "segment.jitter.ms", Min: 0),
        new("log.roll.jitter.hours", Kind.Int, "0", "segment.jitter.ms", Min: 0, Factor: Hour),
        new("log.index.size.max.bytes", Kind.Int, "10485760", "segment.index.bytes", Min: 4),
        new("log.flush.interval.messages", Kind.Long, LongMax, "flush.messages", Min: 1),
        new("log.flush.interval.ms", Kind.Long, null, "flush.ms", Min: 0),
        new("log.retention.bytes", Kind.Long, "-1", "retention.bytes"),
        new("log.retention.ms", Kind.Long, null, "retention.ms"),
        new("log.retention.minutes", Kind.Int, null, "retention.ms", Factor: Minute),
        new("log.retention.hours", Kind.Int, "168", "retention.ms", Factor: Hour),
        new("message.max.bytes", Kind.Int, "1048588", "max.message.bytes", Min: 0),
        new("log.index.interval.bytes", Kind.Int, "4096", "index.interval.bytes", Min: 0),
        new("log.cleaner.delete.retention.ms", Kind.Long, "86400000", "delete.retention.ms", Min: 0),
        new("log.cleaner.min.compaction.lag.ms", Kind.Long, "0", "min.compaction.lag.ms", Min: 0),
        new("log.cleaner.max.compaction.lag.ms", Kind.Long, LongMax, "max.compaction.lag.ms", Min: 1),
        new("log.segment.delete.delay.ms", Kind.Long, "60000", "file.delete.delay.ms", Min: 0),
        new("log.cleaner.min.cleanable.ratio", Kind.Double, "0.5", "min.cleanable.dirty.ratio", Min: 0, Max: 1),
        new("log.cleanup.policy", Kind.List, "delete", "cleanup.policy", Choices: ["compact", "delete"]),
        new("compression.type", Kind.String, "producer", "compression.type", Choices: ["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        new("log.preallocate", Kind.Bool, "false", "preallocate"),
        new("log.message.timestamp.type", Kind.String, "CreateTime", "message.timestamp.type", Choices: ["CreateTime", "LogAppendTime"]),
        new("log.message.timestamp.difference.max.ms", Kind.Long, LongMax, "message.timestamp.difference.max.ms", Min: 0),
        new("log.message.timestamp.before.max.ms", Kind.Long, LongMax, "message.timestamp.before.max.ms", Min: 0),
        new("log.message.timestamp.after.max.ms", Kind.Long, LongMax, "message.timestamp.after.max.ms", Min: 0),
        new("unclean.leader.election.enable", Kind.Bool, "false", "unclean.leader.election.enable"),
        new("min.insync.replicas", Kind.Int, "1", "min.insync.replicas", Min: 1),
        new("log.message.downconversion.enable", Kind.Bool, "true", "message.downconversion.enable"),

        // Kafka's LogCleaner.ReconfigurableConfigs and DynamicConnectionQuota, with KIOU's defaults and the ranges of
        // their KIOU_* settings: KIOU runs one cleaner thread, and its offset map is indexed by int.
        new("log.cleaner.threads", Kind.Int, "1", null, Min: 1, Max: 1),
        new("log.cleaner.dedupe.buffer.size", Kind.Long, "33554432", null, Min: 1 << 16, Max: int.MaxValue),
        new("log.cleaner.io.max.bytes.per.second", Kind.Double, "33554432", null, Min: 1 << 16),
        new("log.cleaner.backoff.ms", Kind.Long, "15000", null, Min: 1, Max: int.MaxValue),
        new("max.connections", Kind.Int, "10000", null, Min: 1),
        new("max.connections.per.ip", Kind.Int, "2147483647", null, Min: 1),
        new("max.connections.per.ip.overrides", Kind.String, "", null),
    ];

    static readonly FrozenDictionary<string, Definition> ByName = All.ToFrozenDictionary(d => d.Name, StringComparer.Ordinal);

    /// <summary>Topic config name -> its broker synonyms in Kafka's order.</summary>
    static readonly FrozenDictionary<string, string[]> TopicSynonyms =
        All.Where(d => d.Topic is not null).GroupBy(d => d.Topic!).ToFrozenDictionary(g => g.Key, g => g.Select(d => d.Name).ToArray(), StringComparer.Ordinal);

    public static Definition? Find(string name) => ByName.GetValueOrDefault(name);

    /// <summary>The broker synonyms of a broker config (Kafka's DynamicBrokerConfig.brokerConfigSynonyms).</summary>
    public static string[] BrokerSynonyms(string name) => ByName.TryGetValue(name, out var d) && d.Topic is not null ? TopicSynonyms[d.Topic] : [name];

    /// <summary>The broker synonyms of a topic config; empty when it has none.</summary>
    public static string[] SynonymsOfTopicConfig(string topicConfig) => TopicSynonyms.GetValueOrDefault(topicConfig) ?? [];

    public const sbyte SourceDynamicBroker = 2;
    public const sbyte SourceDynamicDefault = 3;
    public const sbyte SourceStatic = 4;
    public const sbyte SourceDefault = 5;

    public const string FileName = "broker-configs.json";
    const int FormatVersion = 1;
    const int MaxFileBytes = 1 << 20;

    readonly string _dir;
    readonly string _path;
    readonly string _nodeId;
    readonly FrozenDictionary<string, string> _static;
    readonly Lock _gate = new();
    State _state = State.Empty;

    /// <summary>Both dynamic levels, immutable.</summary>
    sealed record State(FrozenDictionary<string, string> PerBroker, FrozenDictionary<string, string> Default)
    {
        public static readonly State Empty = new(FrozenDictionary<string, string>.Empty, FrozenDictionary<string, string>.Empty);
    }

    /// <param name="staticConfigs">Broker configs set by KIOU_* settings, by Kafka name.</param>
    public DynamicBrokerConfigs(string dataDir, int nodeId, IReadOnlyDictionary<string, string> staticConfigs)
    {
        _dir = Path.Combine(dataDir, "__cluster");
        _path = Path.Combine(_dir, FileName);
        _nodeId = nodeId.ToString(CultureInfo.InvariantCulture);
        _static = staticConfigs.ToFrozenDictionary(StringComparer.Ordinal);
        TopicDefaults = ComputeTopicDefaults(_state);
    }

    public string FilePath => _path;

    /// <summary>Topic config name -> the broker-level value topics without their own take (converted to the topic
    /// config's unit). Replaced whole on every change.</summary>
    public FrozenDictionary<string, string> TopicDefaults { get; private set; }

    /// <summary>Dynamic values of a level: this broker (<paramref name="perBroker"/>) or the cluster default.</summary>
    public IReadOnlyDictionary<string, string> Level(bool perBroker) => perBroker ? _state.PerBroker : _state.Default;

    /// <summary>
    /// Reads the file. A file that cannot be used is renamed aside (<c>.damaged-&lt;time&gt;</c>) and reported through
    /// <paramref name="warn"/>: the broker then runs on its static settings, and the operator can restore the values.
    /// </summary>
    public void Load(Action<string> info, Action<string> warn)
    {
        if (!File.Exists(_path))
            return;
        string? why;
        State? loaded = null;
        try
        {
            // Bounded read: a damaged or hostile file cannot make the broker allocate its size.
            var bytes = Kiou.Storage.SmallFiles.ReadAllBytes(_path, MaxFileBytes);
            if (bytes is null)
                why = $"it is larger than {MaxFileBytes} bytes";
            else
                (loaded, why) = Parse(bytes);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            why = $"it cannot be read ({e.Message})";
        }
        if (loaded is null)
        {
            string aside = $"{_path}.damaged-{DateTime.UtcNow:yyyyMMddTHHmmssZ}";
            try
            {
                File.Move(_path, aside);
                warn($"{_path} cannot be used: {why}. It was moved aside to {aside}; the broker starts with its KIOU_* settings " +
                    "and no dynamic broker configs. Look at the file kept aside and set the values again with bin/configs.sh --entity-type brokers");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                warn($"{_path} cannot be used: {why}, and could not be moved aside ({e.Message}); the broker starts with its KIOU_* settings " +
                    "and no dynamic broker configs. Move the file away or fix it, then set the values again with bin/configs.sh --entity-type brokers");
            }
            return;
        }
        _state = loaded;
        TopicDefaults = ComputeTopicDefaults(loaded);
        if (loaded.PerBroker.Count + loaded.Default.Count > 0)
        {
            info($"dynamic broker configs from {_path}: " +
                string.Join(", ", loaded.Default.Select(kv => $"{kv.Key}={kv.Value} (cluster default)").Concat(loaded.PerBroker.Select(kv => $"{kv.Key}={kv.Value} (broker {_nodeId})"))));
        }
    }

    (State?, string?) Parse(byte[] bytes)
    {
        try
        {
            using var doc = JsonDocument.Parse(bytes);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                return (null, "it is not a JSON object");
            if (!root.TryGetProperty("Version", out var v) || v.ValueKind != JsonValueKind.Number || v.GetInt32() != FormatVersion)
                return (null, $"it has no format version {FormatVersion}");
            var (dflt, why) = ReadLevel(root, "Default", perBroker: false);
            if (why is not null)
                return (null, why);
            var perBroker = new Dictionary<string, string>(StringComparer.Ordinal);
            if (root.TryGetProperty("Brokers", out var brokers))
            {
                if (brokers.ValueKind != JsonValueKind.Object)
                    return (null, "its Brokers entry is not an object");
                if (brokers.TryGetProperty(_nodeId, out _))
                {
                    (perBroker, why) = ReadLevel(brokers, _nodeId, perBroker: true);
                    if (why is not null)
                        return (null, why);
                }
            }
            return (new State(perBroker.ToFrozenDictionary(StringComparer.Ordinal), dflt.ToFrozenDictionary(StringComparer.Ordinal)), null);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            return (null, $"it is not valid JSON ({e.Message})");
        }
    }

    static (Dictionary<string, string>, string?) ReadLevel(JsonElement parent, string name, bool perBroker)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!parent.TryGetProperty(name, out var level))
            return (values, null);
        if (level.ValueKind != JsonValueKind.Object)
            return (values, $"its {name} entry is not an object");
        foreach (var p in level.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.String)
                return (values, $"config {p.Name} has no string value");
            string value = p.Value.GetString()!;
            if (Validate(p.Name, value) is { } bad)
                return (values, $"{(perBroker ? "broker " + name : "the cluster default")}: {bad}");
            values[p.Name] = value;
        }
        return (values, null);
    }

    /// <summary>Null when the value is valid for the config, else Kafka's ConfigException sentence.</summary>
    public static string? Validate(string name, string value)
    {
        if (!ByName.TryGetValue(name, out var d))
            return $"Cannot update these configs dynamically: Set({name})";
        string Invalid(string why) => $"Invalid value {value} for configuration {name}: {why}";
        string v = value.Trim();
        switch (d.Kind)
        {
            case Kind.Int:
                if (!int.TryParse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int i))
                    return Invalid("Not a number of type INT");
                if (i < d.Min)
                    return Invalid($"Value must be at least {d.Min}");
                if (i > d.Max)
                    return Invalid($"Value must be no more than {d.Max.ToString(CultureInfo.InvariantCulture)}");
                break;
            case Kind.Long:
                if (!long.TryParse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l))
                    return Invalid("Not a number of type LONG");
                if (l < d.Min)
                    return Invalid($"Value must be at least {d.Min}");
                if (l > d.Max)
                    return Invalid($"Value must be no more than {d.Max.ToString(CultureInfo.InvariantCulture)}");
                break;
            case Kind.Double:
                if (!double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double x) || double.IsNaN(x))
                    return Invalid("Not a number of type DOUBLE");
                if (x < d.Min)
                    return Invalid($"Value must be at least {d.Min}");
                if (x > d.Max)
                    return Invalid($"Value must be no more than {d.Max.ToString(CultureInfo.InvariantCulture)}");
                break;
            case Kind.Bool:
                if (!v.Equals("true", StringComparison.OrdinalIgnoreCase) && !v.Equals("false", StringComparison.OrdinalIgnoreCase))
                    return Invalid("Expected value to be either true or false");
                break;
            case Kind.String when d.Name == "max.connections.per.ip.overrides":
                if (ParseOverrides(v) is null)
                    return Invalid("Expected a comma-separated list of host:count, each count a non-negative INT");
                break;
            case Kind.String:
                if (Array.IndexOf(d.Choices!, v) < 0)
                    return Invalid($"String must be one of: {string.Join(", ", d.Choices!)}");
                break;
            case Kind.List:
                var items = v.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
                if (items.Length == 0)
                    return Invalid("Empty list");
                foreach (var item in items)
                {
                    if (Array.IndexOf(d.Choices!, item) < 0)
                        return $"Invalid value {item} for configuration {name}: String must be one of: {string.Join(", ", d.Choices!)}";
                }
                break;
        }
        return null;
    }

    /// <summary>max.connections.per.ip.overrides (Kafka's "host:count,host:count"): host -> count; null when it does
    /// not parse.</summary>
    public static Dictionary<string, int>? ParseOverrides(string value)
    {
        var result = new Dictionary<string, int>(StringComparer.OrdinalIgnoreCase);
        foreach (var item in value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            int colon = item.LastIndexOf(':');
            if (colon <= 0 || !int.TryParse(item.AsSpan(colon + 1).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int count))
                return null;
            result[item[..colon].Trim().Trim('[', ']')] = count;
        }
        return result;
    }

    /// <summary>
    /// Read-modify-write of one level under the lock: <paramref name="change"/> edits a copy of the level's values and
    /// returns an error sentence or null; every value is then validated; unless <paramref name="validateOnly"/>, the
    /// new values are persisted, then handed to <paramref name="applyTopicDefaults"/>. Returns the error (Kafka's sentence) or null. Throws IOException
    /// when the file cannot be written: then nothing changed.
    /// </summary>
    public string? Alter(bool perBroker, Func<Dictionary<string, string>, string?> change, bool validateOnly, Action<FrozenDictionary<string, string>> applyTopicDefaults)
    {
        lock (_gate)
        {
            var values = new Dictionary<string, string>(Level(perBroker), StringComparer.Ordinal);
            if (change(values) is { } refused)
                return refused;
            foreach (var (name, value) in values)
            {
                if (Validate(name, value) is { } bad)
                    return bad;
            }
            if (validateOnly)
                return null;
            var frozen = values.ToFrozenDictionary(StringComparer.Ordinal);
            var next = perBroker ? _state with { PerBroker = frozen } : _state with { Default = frozen };
            Save(next);
            _state = next;
            TopicDefaults = ComputeTopicDefaults(next);
            // Under the lock, so that concurrent changes reach the partitions in the order they were persisted.
            applyTopicDefaults(TopicDefaults);
            Reconfigure?.Invoke(this);
            return null;
        }
    }

    void Save(State state)
    {
        Directory.CreateDirectory(_dir);
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteNumber("Version", FormatVersion);
            w.WriteStartObject("Default");
            foreach (var kv in state.Default.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                w.WriteString(kv.Key, kv.Value);
            w.WriteEndObject();
            w.WriteStartObject("Brokers");
            w.WriteStartObject(_nodeId);
            foreach (var kv in state.PerBroker.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                w.WriteString(kv.Key, kv.Value);
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
        }
        FileSync.ReplaceDurably(_path, buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
    }

    /// <summary>Hands the broker settings of their own (cleaner, connection limits) to their owners: called after
    /// every change, under the lock, and once by the host after <see cref="Load"/>.</summary>
    public Action<DynamicBrokerConfigs>? Reconfigure { get; set; }

    /// <summary>The effective value of a numeric config (validated when set; Kafka's default when unset).</summary>
    public long EffectiveLong(string name)
    {
        string v = (Effective(name) ?? ByName[name].Default!).Trim();
        if (ByName[name].Kind != Kind.Double)
            return long.Parse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
        double x = double.Parse(v, NumberStyles.Float, CultureInfo.InvariantCulture);
        return x >= long.MaxValue ? long.MaxValue : (long)x;
    }

    /// <summary>The value of a broker config from the levels together: per-broker over default over static.</summary>
    public string? Effective(string name)
    {
        var s = _state;
        return s.PerBroker.GetValueOrDefault(name) ?? s.Default.GetValueOrDefault(name) ?? _static.GetValueOrDefault(name);
    }

    FrozenDictionary<string, string> ComputeTopicDefaults(State s)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (topic, synonyms) in TopicSynonyms)
        {
            foreach (var name in synonyms)
            {
                string? value = s.PerBroker.GetValueOrDefault(name) ?? s.Default.GetValueOrDefault(name) ?? _static.GetValueOrDefault(name);
                if (value is null)
                    continue;
                result[topic] = ToTopicValue(ByName[name], value);
                break;
            }
        }
        return result.ToFrozenDictionary(StringComparer.Ordinal);
    }

    static string ToTopicValue(Definition d, string value)
    {
        string v = value.Trim();
        switch (d.Kind)
        {
            case Kind.Int or Kind.Long:
                long n = long.Parse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
                // As KafkaConfig.logRetentionTimeMillis: any negative retention means unlimited (-1).
                if (n < 0 && d.Topic == "retention.ms")
                    n = -1;
                else if (d.Factor != 1)
                    n = n > long.MaxValue / d.Factor ? long.MaxValue : n * d.Factor;
                return n.ToString(CultureInfo.InvariantCulture);
            case Kind.Bool:
                return v.ToLowerInvariant();
            case Kind.List:
                return string.Join(',', v.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Distinct());
            default:
                return v;
        }
    }

    /// <summary>(name, value, source) of the synonyms of <paramref name="name"/>, as Kafka's ConfigHelper.configSynonyms:
    /// per-broker, cluster default, static, then Kafka's default, each in synonym order, from <paramref name="name"/> on.</summary>
    public List<(string Name, string Value, sbyte Source)> Synonyms(string name, string[] synonyms, bool perBroker)
    {
        var s = _state;
        var all = new List<(string, string, sbyte)>();
        void Add(IReadOnlyDictionary<string, string> level, sbyte source)
        {
            foreach (var n in synonyms)
                if (level.TryGetValue(n, out var v))
                    all.Add((n, v, source));
        }
        if (perBroker)
            Add(s.PerBroker, SourceDynamicBroker);
        Add(s.Default, SourceDynamicDefault);
        Add(_static, SourceStatic);
        foreach (var n in synonyms)
            if (ByName.TryGetValue(n, out var d) && d.Default is not null)
                all.Add((n, d.Default, SourceDefault));
        int first = all.FindIndex(x => x.Item1 == name);
        return first < 0 ? [] : all.GetRange(first, all.Count - first);
    }
}
