namespace Kiou.Protocol.Messages;

// The consumer protocol payloads (JoinGroup protocol metadata, SyncGroup assignments) are opaque
// bytes to the group coordinator. When the broker does need to look inside, they are an INT16
// version followed by the versioned body. As in Kafka's ConsumerProtocol, a version newer than the
// schema knows is parsed with the newest known layout (the schema promises only to append fields).

public sealed partial class ConsumerProtocolSubscription
{
    /// <summary>Parses version-prefixed subscription bytes; null if they are malformed.</summary>
    public static ConsumerProtocolSubscription? Parse(ReadOnlyMemory<byte> bytes, out short version)
    {
        var reader = new KafkaReader(bytes);
        version = reader.ReadInt16();
        if (reader.Failed || version < LowestSupportedVersion)
            return null;
        var result = new ConsumerProtocolSubscription();
        result.Read(ref reader, Math.Min(version, HighestSupportedVersion));
        return reader.Failed ? null : result; // trailing bytes of a newer version are allowed
    }

    /// <summary>Writes the INT16 version and the body.</summary>
    public void WriteWithVersion(KafkaWriter writer, short version)
    {
        writer.WriteInt16(version);
        Write(writer, version);
    }
}

public sealed partial class ConsumerProtocolAssignment
{
    /// <summary>Parses version-prefixed assignment bytes; null if they are malformed.</summary>
    public static ConsumerProtocolAssignment? Parse(ReadOnlyMemory<byte> bytes, out short version)
    {
        var reader = new KafkaReader(bytes);
        version = reader.ReadInt16();
        if (reader.Failed || version < LowestSupportedVersion)
            return null;
        var result = new ConsumerProtocolAssignment();
        result.Read(ref reader, Math.Min(version, HighestSupportedVersion));
        return reader.Failed ? null : result;
    }

    /// <summary>Writes the INT16 version and the body.</summary>
    public void WriteWithVersion(KafkaWriter writer, short version)
    {
        writer.WriteInt16(version);
        Write(writer, version);
    }
}
