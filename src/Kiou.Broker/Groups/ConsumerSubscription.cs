using Kiou.Protocol;
using Kiou.Protocol.Messages;

namespace Kiou.Broker.Groups;

/// <summary>Reads the topics out of a "consumer" protocol subscription (INT16 version, then that version's fields;
/// never flexible). The coordinator otherwise treats subscriptions as opaque.</summary>
public static class ConsumerSubscription
{
    /// <summary>The subscribed topics, or null when the bytes do not parse.</summary>
    public static HashSet<string>? Topics(byte[] metadata)
    {
        var reader = new KafkaReader(metadata);
        short version = reader.ReadInt16();
        if (reader.Failed || version < 0)
            return null;
        var subscription = new ConsumerProtocolSubscription();
        // Newer versions than we know start with the fields of the newest known one (Kafka reads them the same way).
        subscription.Read(ref reader, Math.Min(version, ConsumerProtocolSubscription.HighestSupportedVersion));
        return reader.Failed ? null : new HashSet<string>(subscription.Topics, StringComparer.Ordinal);
    }
}
