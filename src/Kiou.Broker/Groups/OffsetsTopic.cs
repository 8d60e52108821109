using System.Buffers.Binary;
using Kiou.Protocol;
using Kiou.Protocol.Messages;
using Kiou.Protocol.Records;

namespace Kiou.Broker.Groups;

/// <summary>
/// The bytes of <c>__consumer_offsets</c>, as Kafka's group coordinator writes them (CoordinatorRecordHelpers), so
/// Kafka's tools and lag exporters read them: a key is int16 key version + key struct (OffsetCommitKey at version 1,
/// GroupMetadataKey at version 2), a value int16 value version + value struct (OffsetCommitValue v1 when the commit
/// carries an expire timestamp, else v3; GroupMetadataValue v3), a null value a tombstone. Keys of other versions
/// (KIP-848's ConsumerGroup* records) are not ours and are ignored.
/// </summary>
public static class OffsetsTopic
{
    public const string TopicName = Controller.InternalTopics.ConsumerOffsets;

    public const short OffsetCommitKeyVersion = 1;
    public const short GroupMetadataKeyVersion = 2;
    public const short GroupMetadataValueVersion = 3;

    /// <summary>Kafka's Utils.abs(groupId.hashCode) % offsets.topic.num.partitions.</summary>
    public static int PartitionFor(string groupId, int partitionCount) => Transactions.TransactionLog.PartitionFor(groupId, partitionCount);

    public static byte[] OffsetKey(string group, string topic, int partition)
    {
        using var w = new KafkaWriter(16 + group.Length + topic.Length);
        w.WriteInt16(OffsetCommitKeyVersion);
        new OffsetCommitKey { group = group, topic = topic, partition = partition }.Write(w, OffsetCommitKeyVersion);
        return w.WrittenSpan.ToArray();
    }

    public static byte[] OffsetValue(in CommittedOffset o)
    {
        short version = o.ExpireTimestampMs >= 0 ? (short)1 : (short)3;
        using var w = new KafkaWriter(32 + (o.Metadata?.Length ?? 0) * 3);
        w.WriteInt16(version);
        new OffsetCommitValue
        {
            offset = o.Offset,
            leaderEpoch = o.LeaderEpoch,
            metadata = o.Metadata ?? "",
            commitTimestamp = o.CommitTimestampMs,
            expireTimestamp = o.ExpireTimestampMs,
        }.Write(w, version);
        return w.WrittenSpan.ToArray();
    }

    public static byte[] GroupKey(string group)
    {
        using var w = new KafkaWriter(8 + group.Length);
        w.WriteInt16(GroupMetadataKeyVersion);
        new GroupMetadataKey { group = group }.Write(w, GroupMetadataKeyVersion);
        return w.WrittenSpan.ToArray();
    }

    public static byte[] GroupValue(GroupSnapshot s)
    {
        var value = new GroupMetadataValue
        {
            protocolType = s.ProtocolType ?? "",
            generation = s.GenerationId,
            protocol = s.ProtocolName,
            leader = s.LeaderId,
            currentStateTimestamp = s.StateSinceMs,
        };
        foreach (var m in s.Members)
        {
            value.members.Add(new GroupMetadataValue.MemberMetadata
            {
                memberId = m.MemberId,
                groupInstanceId = m.InstanceId,
                clientId = m.ClientId,
                clientHost = m.ClientHost,
                rebalanceTimeout = m.RebalanceTimeoutMs,
                sessionTimeout = m.SessionTimeoutMs,
                subscription = m.Subscription,
                assignment = m.Assignment,
            });
        }
        using var w = new KafkaWriter(256);
        w.WriteInt16(GroupMetadataValueVersion);
        value.Write(w, GroupMetadataValueVersion);
        return w.WrittenSpan.ToArray();
    }

    /// <summary>What a key names: an offset (Topic set), a group's metadata (Topic null), or nothing we know (null).</summary>
    public readonly record struct Key(string Group, string? Topic, int Partition);

    public static Key? ReadKey(ReadOnlySpan<byte> key)
    {
        if (key.Length < 2)
            return null;
        short version = BinaryPrimitives.ReadInt16BigEndian(key);
        var reader = new KafkaReader(key[2..].ToArray());
        if (version is 0 or 1)
        {
            var k = new OffsetCommitKey();
            k.Read(ref reader, version);
            return reader.Failed || reader.Remaining != 0 ? null : new Key(k.group, k.topic, k.partition);
        }
        if (version == GroupMetadataKeyVersion)
        {
            var k = new GroupMetadataKey();
            k.Read(ref reader, version);
            return reader.Failed || reader.Remaining != 0 ? null : new Key(k.group, null, 0);
        }
        return null;
    }

    /// <summary>True when the key is one of Kafka's other record types (newer key versions): not an error.</summary>
    public static bool IsForeignKey(ReadOnlySpan<byte> key) => key.Length >= 2 && BinaryPrimitives.ReadInt16BigEndian(key) > GroupMetadataKeyVersion;

    public static CommittedOffset? ReadOffsetValue(ReadOnlySpan<byte> value)
    {
        if (value.Length < 2)
            return null;
        short version = BinaryPrimitives.ReadInt16BigEndian(value);
        if (version is < 0 or > OffsetCommitValue.HighestSupportedVersion)
            return null;
        var reader = new KafkaReader(value[2..].ToArray());
        var v = new OffsetCommitValue();
        v.Read(ref reader, version);
        if (reader.Failed)
            return null;
        return new CommittedOffset(v.offset, v.leaderEpoch, v.metadata, v.commitTimestamp, version == 1 ? v.expireTimestamp : -1);
    }

    public static GroupSnapshot? ReadGroupValue(string group, ReadOnlySpan<byte> value)
    {
        if (value.Length < 2)
            return null;
        short version = BinaryPrimitives.ReadInt16BigEndian(value);
        if (version is < 0 or > GroupMetadataValue.HighestSupportedVersion)
            return null;
        var reader = new KafkaReader(value[2..].ToArray());
        var v = new GroupMetadataValue();
        v.Read(ref reader, version);
        if (reader.Failed)
            return null;
        var members = new List<MemberSnapshot>(v.members.Count);
        foreach (var m in v.members)
        {
            members.Add(new MemberSnapshot(m.memberId, m.groupInstanceId, m.clientId, m.clientHost, m.sessionTimeout,
                m.rebalanceTimeout < 0 ? m.sessionTimeout : m.rebalanceTimeout, m.subscription, m.assignment));
        }
        return new GroupSnapshot(group, v.protocolType.Length == 0 ? null : v.protocolType, v.generation, v.protocol, v.leader,
            v.currentStateTimestamp, members);
    }

    /// <summary>
    /// One RecordBatch v2 holding <paramref name="records"/> (null value: tombstone). With a producer id it is a
    /// transactional batch of that producer (TxnOffsetCommit), as Kafka writes it: base sequence 0, no sequence check
    /// for the coordinator's appends.
    /// </summary>
    public static byte[] Batch(List<(byte[] Key, byte[]? Value)> records, long timestampMs, long producerId = -1, short producerEpoch = -1) =>
        Logs.CoordinatorBatch.Build(records, timestampMs, producerId >= 0 ? (short)0x10 : (short)0, producerId, producerEpoch,
            baseSequence: producerId >= 0 ? 0 : -1);
}
