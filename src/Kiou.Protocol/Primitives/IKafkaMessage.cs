namespace Kiou.Protocol;

/// <summary>
/// A generated Kafka message (request, response, header or embedded data) that decodes from and
/// encodes to one schema version. Implementations live in Kiou.Protocol.Messages.
/// </summary>
public interface IKafkaMessage
{
    /// <summary>
    /// Decodes the fields of <paramref name="version"/> into this freshly constructed instance.
    /// Fields absent from that version keep their defaults. Malformed input sets
    /// <see cref="KafkaReader.Failed"/>; nothing throws.
    /// </summary>
    void Read(ref KafkaReader reader, short version);

    /// <summary>
    /// Encodes the fields of <paramref name="version"/>. Values the version cannot carry are
    /// dropped silently; a null in a version where the field is not nullable is written as empty.
    /// </summary>
    void Write(KafkaWriter writer, short version);
}
