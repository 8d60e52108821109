using System.Globalization;
using Kiou.Storage;

namespace Kiou.Broker.Controller;

/// <summary>
/// The topic-level configs KIOU accepts, with Kafka's defaults and validation. Values are kept as the
/// strings the client sent (DescribeConfigs returns them as such) and turned into a <see cref="LogConfig"/>.
/// </summary>
public static class TopicConfigs
{
    public enum Kind { Long, Int, Bool, Double, String }

    public sealed record Definition(string Name, string Default, Kind Kind, long Min = long.MinValue, string[]? Choices = null, string? Note = null);

    // Defaults: Kafka 4.0's topic config table (shared/kafka-protocol/README.md §7).
    public static readonly IReadOnlyList<Definition> All =
    [
        new("cleanup.policy", "delete", Kind.String, Choices: ["delete", "compact", "compact,delete", "delete,compact"]),
        new("compression.type", "producer", Kind.String, Choices: ["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]),
        new("delete.retention.ms", "86400000", Kind.Long, 0),
        new("file.delete.delay.ms", "60000", Kind.Long, 0),
        new("flush.messages", "9223372036854775807", Kind.Long, 1),
        new("flush.ms", "9223372036854775807", Kind.Long, 0),
        new("index.interval.bytes", "4096", Kind.Int, 0),
        new("max.compaction.lag.ms", "9223372036854775807", Kind.Long, 1),
        new("max.message.bytes", "1048588", Kind.Int, 0),
        new("message.timestamp.after.max.ms", "9223372036854775807", Kind.Long, 0),
        new("message.timestamp.before.max.ms", "9223372036854775807", Kind.Long, 0),
        new("message.timestamp.difference.max.ms", "9223372036854775807", Kind.Long, 0),
        new("message.timestamp.type", "CreateTime", Kind.String, Choices: ["CreateTime", "LogAppendTime"]),
        new("min.cleanable.dirty.ratio", "0.5", Kind.Double),
        new("min.compaction.lag.ms", "0", Kind.Long, 0),
        new("min.insync.replicas", "1", Kind.Int, 1),
        new("preallocate", "false", Kind.Bool),
        new("retention.bytes", "-1", Kind.Long),
        new("retention.ms", "604800000", Kind.Long, -1),
        new("segment.bytes", "1073741824", Kind.Int, 14),
        new("segment.index.bytes", "10485760", Kind.Int, 4),
        new("segment.jitter.ms", "0", Kind.Long, 0),
        new("segment.ms", "604800000", Kind.Long, 1),
        new("unclean.leader.election.enable", "false", Kind.Bool),
        new("message.downconversion.enable", "true", Kind.Bool),
    ];

    static readonly Dictionary<string, Definition> ByName = All.ToDictionary(d => d.Name, StringComparer.Ordinal);

    public static Definition? Find(string name) => ByName.GetValueOrDefault(name);

    /// <summary>Null when valid, else a sentence for the client (INVALID_CONFIG).</summary>
    public static string? Validate(string name, string? value)
    {
        if (!ByName.TryGetValue(name, out var d))
            return $"Unknown topic config name: {name}";
        if (value is null)
            return $"Config {name} needs a value";
        switch (d.Kind)
        {
            case Kind.Long:
                if (!long.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l) || l < d.Min)
                    return $"Invalid value {value} for configuration {name}: expected a whole number of at least {d.Min}";
                break;
            case Kind.Int:
                if (!int.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int i) || i < d.Min)
                    return $"Invalid value {value} for configuration {name}: expected a whole number from {d.Min} to {int.MaxValue}";
                break;
            case Kind.Bool:
                if (value is not ("true" or "false"))
                    return $"Invalid value {value} for configuration {name}: expected true or false";
                break;
            case Kind.Double:
                if (!double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double x) || x < 0 || x > 1)
                    return $"Invalid value {value} for configuration {name}: expected a number from 0 to 1";
                break;
            case Kind.String:
                if (d.Choices is not null && Array.IndexOf(d.Choices, value) < 0)
                    return $"Invalid value {value} for configuration {name}: expected one of {string.Join(", ", d.Choices)}";
                break;
        }
        return null;
    }

    /// <summary>The topic's own value, else the broker's (<paramref name="brokerDefaults"/>: dynamic broker configs and
    /// KIOU_* settings, by topic config name), else Kafka's default.</summary>
    public static string Effective(IReadOnlyDictionary<string, string> configs, string name, IReadOnlyDictionary<string, string>? brokerDefaults = null) =>
        configs.TryGetValue(name, out var v) ? v : brokerDefaults?.GetValueOrDefault(name) ?? ByName[name].Default;

    /// <summary>The storage view of a topic's configs. flush.ms / flush.messages (the topic's, else the broker's
    /// log.flush.interval.*) override the broker's KIOU_FLUSH.</summary>
    public static LogConfig ToLogConfig(IReadOnlyDictionary<string, string> configs, FlushPolicy brokerFlush, IReadOnlyDictionary<string, string>? brokerDefaults = null)
    {
        string Effective(IReadOnlyDictionary<string, string> c, string n) => TopicConfigs.Effective(c, n, brokerDefaults);
        long L(string n) => long.Parse(Effective(configs, n), CultureInfo.InvariantCulture);
        var flush = brokerFlush;
        bool hasMs = configs.ContainsKey("flush.ms") || brokerDefaults?.ContainsKey("flush.ms") == true;
        bool hasMessages = configs.ContainsKey("flush.messages") || brokerDefaults?.ContainsKey("flush.messages") == true;
        if (hasMs || hasMessages)
        {
            long ms = hasMs ? L("flush.ms") : long.MaxValue;
            long messages = hasMessages ? L("flush.messages") : long.MaxValue;
            // flush.messages=1 or flush.ms=0 is Kafka's "fsync every write": our Always mode, with group commit.
            if (messages == 1 || ms == 0)
                flush = new FlushPolicy(FlushMode.Always, 0, 0);
            else if (ms != long.MaxValue)
                flush = new FlushPolicy(FlushMode.Interval, ms, messages == long.MaxValue ? 0 : messages);
            else
                flush = new FlushPolicy(brokerFlush.Mode, brokerFlush.IntervalMs, messages);
        }
        return new LogConfig
        {
            SegmentBytes = L("segment.bytes"),
            SegmentMs = L("segment.ms"),
            RetentionMs = L("retention.ms"),
            RetentionBytes = L("retention.bytes"),
            MaxMessageBytes = (int)L("max.message.bytes"),
            LogAppendTime = Effective(configs, "message.timestamp.type") == "LogAppendTime",
            IndexIntervalBytes = (int)L("index.interval.bytes"),
            Flush = flush,
            DeleteRetention = Effective(configs, "cleanup.policy").Split(',').Contains("delete"),
            Compact = Effective(configs, "cleanup.policy").Split(',').Contains("compact"),
            MinCleanableDirtyRatio = double.Parse(Effective(configs, "min.cleanable.dirty.ratio"), NumberStyles.Float, CultureInfo.InvariantCulture),
            MinCompactionLagMs = L("min.compaction.lag.ms"),
            MaxCompactionLagMs = L("max.compaction.lag.ms"),
            DeleteRetentionMs = L("delete.retention.ms"),
        };
    }
}
