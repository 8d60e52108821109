namespace Kiou.Broker.Controller;

/// <summary>Kafka's topic name rules (org.apache.kafka.common.internals.Topic).</summary>
public static class TopicNames
{
    public const int MaxLength = 249;

    /// <summary>Null when legal, else the reason (INVALID_TOPIC_EXCEPTION).</summary>
    public static string? Validate(string? name)
    {
        if (string.IsNullOrEmpty(name))
            return "Topic name is empty";
        if (name is "." or "..")
            return $"Topic name cannot be \"{name}\"";
        if (name.Length > MaxLength)
            return $"Topic name is {name.Length} characters long; the limit is {MaxLength}";
        foreach (char c in name)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
                return $"Topic name \"{name}\" is illegal: it may contain only ASCII letters, digits, '.', '_' and '-'";
        }
        return null;
    }
}

/// <summary>Kafka's internal topics (org.apache.kafka.common.internals.Topic): created by the broker only, never
/// deleted, altered in partition count or produced to by clients; listed with is_internal.</summary>
public static class InternalTopics
{
    public const string ConsumerOffsets = "__consumer_offsets";
    public const string TransactionState = "__transaction_state";

    public static bool IsInternal(string name) => name is ConsumerOffsets or TransactionState;

    /// <summary>Both as Kafka creates them: compacted (the cleaner keeps the latest record per group, offset and
    /// transactional id), 100 MiB segments (offsets.topic.segment.bytes, transaction.state.log.segment.bytes).</summary>
    public static IReadOnlyDictionary<string, string?> Configs { get; } = new Dictionary<string, string?>(StringComparer.Ordinal)
    {
        ["cleanup.policy"] = "compact",
        ["segment.bytes"] = "104857600",
    };

    /// <summary>Names starting with "__" are the broker's: auto-creation never creates one.</summary>
    public static bool IsReserved(string name) => name.StartsWith("__", StringComparison.Ordinal);
}
