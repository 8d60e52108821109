using System.Buffers.Binary;
using Kiou.Broker.Groups;
using Kiou.Protocol.Records;
using Kiou.Protocol;

namespace Kiou.Broker.Tests;

/// <summary>
/// Writes KIOU's old private offsets log (<c>__consumer_offsets/groups.log</c>, the format before __consumer_offsets
/// became a topic) for the migration tests: "KIOUGRP1", then per record u32 length, u32 crc32c, payload
/// (<see cref="GroupLogMigration"/> documents the payloads). The broker only reads this format now.
/// </summary>
public sealed class OldGroupLogWriter : IDisposable
{
    readonly FileStream _file;

    public OldGroupLogWriter(string dataDir)
    {
        string dir = Path.Combine(dataDir, "__consumer_offsets");
        Directory.CreateDirectory(dir);
        _file = new FileStream(Path.Combine(dir, "groups.log"), FileMode.Create, FileAccess.Write);
        _file.Write("KIOUGRP1"u8);
    }

    void Record(Action<KafkaWriter> body)
    {
        using var w = new KafkaWriter(256);
        body(w);
        var payload = w.WrittenSpan;
        Span<byte> head = stackalloc byte[8];
        BinaryPrimitives.WriteInt32BigEndian(head, payload.Length);
        BinaryPrimitives.WriteUInt32BigEndian(head[4..], Crc32C.Compute(payload));
        _file.Write(head);
        _file.Write(payload);
    }

    static void Offset(KafkaWriter w, in CommittedOffset o)
    {
        w.WriteInt64(o.Offset);
        w.WriteInt32(o.LeaderEpoch);
        w.WriteNullableString(o.Metadata);
        w.WriteInt64(o.CommitTimestampMs);
        w.WriteInt64(o.ExpireTimestampMs);
    }

    public void OffsetCommit(string group, string topic, int partition, CommittedOffset o) => Record(w =>
    {
        w.WriteInt8(1);
        w.WriteString(group);
        w.WriteString(topic);
        w.WriteInt32(partition);
        Offset(w, o);
    });

    public void OffsetTombstone(string group, string topic, int partition) => Record(w =>
    {
        w.WriteInt8(2);
        w.WriteString(group);
        w.WriteString(topic);
        w.WriteInt32(partition);
    });

    public void GroupMetadata(GroupSnapshot s) => Record(w =>
    {
        w.WriteInt8(3);
        w.WriteString(s.GroupId);
        w.WriteNullableString(s.ProtocolType);
        w.WriteInt32(s.GenerationId);
        w.WriteNullableString(s.ProtocolName);
        w.WriteNullableString(s.LeaderId);
        w.WriteInt64(s.StateSinceMs);
        w.WriteInt32(s.Members.Count);
        foreach (var m in s.Members)
        {
            w.WriteString(m.MemberId);
            w.WriteNullableString(m.InstanceId);
            w.WriteString(m.ClientId);
            w.WriteString(m.ClientHost);
            w.WriteInt32(m.SessionTimeoutMs);
            w.WriteInt32(m.RebalanceTimeoutMs);
            w.WriteBytes(m.Subscription);
            w.WriteBytes(m.Assignment);
        }
    });

    public void GroupTombstone(string group) => Record(w =>
    {
        w.WriteInt8(4);
        w.WriteString(group);
    });

    public void TxnOffsetCommit(string group, long producerId, string topic, int partition, CommittedOffset o) => Record(w =>
    {
        w.WriteInt8(5);
        w.WriteString(group);
        w.WriteString(topic);
        w.WriteInt32(partition);
        w.WriteInt64(producerId);
        Offset(w, o);
    });

    public void TxnMarker(string group, long producerId, bool commit) => Record(w =>
    {
        w.WriteInt8(6);
        w.WriteString(group);
        w.WriteInt64(producerId);
        w.WriteInt8(commit ? (sbyte)1 : (sbyte)0);
    });

    public void Dispose()
    {
        _file.Flush(flushToDisk: true);
        _file.Dispose();
    }
}
