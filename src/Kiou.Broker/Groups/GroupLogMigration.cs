using System.Buffers.Binary;
using Kiou.Protocol;
using Kiou.Protocol.Records;

namespace Kiou.Broker.Groups;

/// <summary>
/// Reads the group offsets log of KIOU before __consumer_offsets became a topic (<c>&lt;data dir&gt;/__consumer_offsets/groups.log</c>)
/// so its live state can be written into the topic once, at start-up (<see cref="GroupCoordinator"/>). Read-only: the
/// file is never changed here; the caller renames it aside once its state is durable in the topic.
///
/// Layout: an 8-byte file header "KIOUGRP1", then records laid end to end:
/// <code>
///   u32 payloadLength (big-endian, 1..MaxRecordBytes)
///   u32 crc32c(payload)
///   payload: u8 kind, then per kind (strings: INT16 length, -1 = null, UTF-8; bytes: INT32 length):
///     1 OffsetCommit:    group, topic, i32 partition, i64 offset, i32 leaderEpoch, nullable metadata, i64 commitTs, i64 expireTs
///     2 OffsetTombstone: group, topic, i32 partition
///     3 GroupMetadata:   group, nullable protocolType, i32 generation, nullable protocol, nullable leader, i64 stateSinceMs,
///                        i32 memberCount, per member: memberId, nullable instanceId, clientId, clientHost,
///                        i32 sessionTimeoutMs, i32 rebalanceTimeoutMs, bytes subscription, bytes assignment
///     4 GroupTombstone:  group (removes the group's metadata and every offset of it)
///     5 TxnOffsetCommit: group, topic, i32 partition, i64 producerId, then as OffsetCommit from the offset on: an offset
///                        committed in that producer's open transaction, pending until its marker
///     6 TxnMarker:       group, i64 producerId, u8 commit (1: the producer's pending offsets become committed; 0: dropped)
/// </code>
/// Records are read in order into the live map (latest value per key). A record whose CRC fails with records after it
/// is skipped with a WARN; the first record whose length does not fit, or a bad CRC at the end, ends the read (a
/// write torn by a crash, never acknowledged).
/// </summary>
public sealed class GroupLogMigration
{
    public const int MaxRecordBytes = 16 * 1024 * 1024; // 16 MiB: a group metadata record of a very large group
    static readonly byte[] FileMagic = "KIOUGRP1"u8.ToArray();
    const int RecordHeaderBytes = 8;

    public enum Kind : byte { OffsetCommit = 1, OffsetTombstone = 2, GroupMetadata = 3, GroupTombstone = 4, TxnOffsetCommit = 5, TxnMarker = 6 }

    /// <summary>The live state per group: its latest metadata record and its latest offset records (payloads).</summary>
    public sealed class LiveGroup
    {
        public byte[]? Metadata;
        public Dictionary<(string Topic, int Partition), byte[]> Offsets = [];

        /// <summary>Transactional offsets per producer id, awaiting that transaction's marker (TxnOffsetCommit payloads).</summary>
        public Dictionary<long, Dictionary<(string Topic, int Partition), byte[]>> Pending = [];
    }

    readonly string _path;
    readonly Hosting.Log _log;
    readonly Dictionary<string, LiveGroup> _live = new(StringComparer.Ordinal);
    FileStream? _file;

    public GroupLogMigration(string dataDir, Hosting.Log log)
    {
        _path = Path.Combine(dataDir, OldDirectory, FileName);
        _log = log;
    }

    /// <summary>The directory and file of the old log; the directory name has no partition suffix, so the partition
    /// directory scan (which also skips "__" names) never takes it for a partition of the topic.</summary>
    public const string OldDirectory = "__consumer_offsets";
    public const string FileName = "groups.log";
    public const string MigratedSuffix = ".migrated";

    public string FilePath => _path;

    /// <summary>Reads the whole file (null when it is not there, or not a KIOU group log: then logged and left alone).</summary>
    public IReadOnlyDictionary<string, LiveGroup>? Read()
    {
        if (!File.Exists(_path))
            return null;
        using (_file = new FileStream(_path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16))
        {
            long length = _file.Length;
            if (length < FileMagic.Length)
                return _live;
            var header = new byte[FileMagic.Length];
            _file.ReadExactly(header);
            if (!header.AsSpan().SequenceEqual(FileMagic))
            {
                _log.Warn($"{_path} is not a KIOU group offsets log (bad header): not migrated into {OffsetsTopic.TopicName} and left where it is; " +
                    "committed offsets in it (if any) are not loaded. Move it away once you have checked it");
                return null;
            }
            Replay(length);
        }
        _file = null;
        return _live;
    }

    void Replay(long length)
    {
        var file = _file!;
        long position = FileMagic.Length;
        var head = new byte[RecordHeaderBytes];
        byte[] payload = [];
        int records = 0;
        int skipped = 0;
        string? stop = null;
        while (position < length)
        {
            if (length - position < RecordHeaderBytes)
            {
                stop = "a partial record header";
                break;
            }
            file.ReadExactly(head);
            int size = BinaryPrimitives.ReadInt32BigEndian(head);
            uint crc = BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(4));
            if (size <= 0 || size > MaxRecordBytes || size > length - position - RecordHeaderBytes)
            {
                stop = $"a record of {size} bytes that does not fit";
                break;
            }
            payload = new byte[size];
            file.ReadExactly(payload);
            if (Crc32C.Compute(payload) != crc)
            {
                if (position + RecordHeaderBytes + size == length)
                {
                    stop = "a record with a bad CRC";
                    break;
                }
                // Its length still fits and records follow: damage, not a torn write. Only this record is lost;
                // the ones after it were acknowledged and are kept.
                _log.Warn($"group offsets log {_path}: the record of {size} bytes at byte {position} fails its CRC check and is skipped " +
                    "(a commit or group state of one group may be older than acknowledged); the records after it are kept. Check the disk (dmesg)");
                position += RecordHeaderBytes + size;
                skipped++;
                continue;
            }
            if (!ApplyToLive(payload))
            {
                stop = "a record that does not parse";
                break;
            }
            position += RecordHeaderBytes + size;
            records++;
        }
        if (stop is not null)
        {
            // Usually a write torn by a crash (never acknowledged); the file itself is kept as it is, renamed aside.
            _log.Warn($"group offsets log {_path}: {stop} at byte {position}; the {length - position} bytes from there are not migrated " +
                "(usually a write torn by a crash, never acknowledged); the whole file is kept aside after the migration");
        }
        _log.Info($"group offsets log {_path}: read {records} records ({position} bytes) into {_live.Count} groups" + (skipped > 0 ? $"; {skipped} damaged record(s) skipped" : ""));
    }

    /// <summary>Applies one payload to the live map; false if it does not parse.</summary>
    bool ApplyToLive(byte[] payload)
    {
        var r = new KafkaReader(payload);
        var kind = (Kind)r.ReadInt8();
        string group = r.ReadString();
        switch (kind)
        {
            case Kind.OffsetCommit or Kind.OffsetTombstone:
                {
                    string topic = r.ReadString();
                    int partition = r.ReadInt32();
                    if (r.Failed)
                        return false;
                    if (kind == Kind.OffsetCommit)
                        SetOffset(group, topic, partition, payload);
                    else
                        RemoveOffset(group, topic, partition);
                    return true;
                }
            case Kind.GroupMetadata:
                if (r.Failed)
                    return false;
                LiveFor(group).Metadata = payload;
                return true;
            case Kind.GroupTombstone:
                if (r.Failed)
                    return false;
                _live.Remove(group);
                return true;
            case Kind.TxnOffsetCommit:
                {
                    if (!TryReadTxnOffset(payload, out long producerId, out string topic, out int partition, out _))
                        return false;
                    var live = LiveFor(group);
                    if (!live.Pending.TryGetValue(producerId, out var offsets))
                        live.Pending[producerId] = offsets = [];
                    offsets[(topic, partition)] = payload;
                    return true;
                }
            case Kind.TxnMarker:
                {
                    long producerId = r.ReadInt64();
                    bool commit = r.ReadInt8() == 1;
                    if (r.Failed)
                        return false;
                    if (_live.TryGetValue(group, out var live) && live.Pending.Remove(producerId, out var offsets))
                    {
                        foreach (var ((topic, partition), pending) in offsets)
                        {
                            if (commit && TryReadTxnOffset(pending, out _, out _, out _, out var offset))
                                SetOffset(group, topic, partition, OffsetCommit(group, topic, partition, offset));
                        }
                        if (live.Offsets.Count == 0 && live.Metadata is null && live.Pending.Count == 0)
                            _live.Remove(group);
                    }
                    return true;
                }
            default:
                return false;
        }
    }

    LiveGroup LiveFor(string group)
    {
        if (!_live.TryGetValue(group, out var g))
            _live[group] = g = new LiveGroup();
        return g;
    }

    void SetOffset(string group, string topic, int partition, byte[] payload)
    {
        LiveFor(group).Offsets[(topic, partition)] = payload;
    }

    void RemoveOffset(string group, string topic, int partition)
    {
        if (_live.TryGetValue(group, out var g) && g.Offsets.Remove((topic, partition))
            && g.Offsets.Count == 0 && g.Metadata is null && g.Pending.Count == 0)
        {
            _live.Remove(group);
        }
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Encoding

    public static byte[] OffsetCommit(string group, string topic, int partition, in CommittedOffset o)
    {
        using var w = new KafkaWriter(64 + group.Length + topic.Length + (o.Metadata?.Length ?? 0) * 3);
        w.WriteInt8((sbyte)Kind.OffsetCommit);
        w.WriteString(group);
        w.WriteString(topic);
        w.WriteInt32(partition);
        w.WriteInt64(o.Offset);
        w.WriteInt32(o.LeaderEpoch);
        w.WriteNullableString(o.Metadata);
        w.WriteInt64(o.CommitTimestampMs);
        w.WriteInt64(o.ExpireTimestampMs);
        return w.WrittenSpan.ToArray();
    }

    public static bool TryReadOffset(byte[] payload, out string topic, out int partition, out CommittedOffset offset)
    {
        var r = new KafkaReader(payload);
        r.ReadInt8();
        r.ReadString();
        topic = r.ReadString();
        partition = r.ReadInt32();
        offset = new CommittedOffset(r.ReadInt64(), r.ReadInt32(), r.ReadNullableString(), r.ReadInt64(), r.ReadInt64());
        return !r.Failed;
    }

    public static bool TryReadTxnOffset(byte[] payload, out long producerId, out string topic, out int partition, out CommittedOffset offset)
    {
        var r = new KafkaReader(payload);
        r.ReadInt8();
        r.ReadString();
        topic = r.ReadString();
        partition = r.ReadInt32();
        producerId = r.ReadInt64();
        offset = new CommittedOffset(r.ReadInt64(), r.ReadInt32(), r.ReadNullableString(), r.ReadInt64(), r.ReadInt64());
        return !r.Failed;
    }

    public static GroupSnapshot? TryReadGroup(byte[] payload)
    {
        var r = new KafkaReader(payload);
        r.ReadInt8();
        string group = r.ReadString();
        string? protocolType = r.ReadNullableString();
        int generation = r.ReadInt32();
        string? protocol = r.ReadNullableString();
        string? leader = r.ReadNullableString();
        long since = r.ReadInt64();
        int count = r.ReadInt32();
        if (r.Failed || count < 0 || count > r.Remaining)
            return null;
        var members = new List<MemberSnapshot>(count);
        for (int i = 0; i < count; i++)
        {
            members.Add(new MemberSnapshot(r.ReadString(), r.ReadNullableString(), r.ReadString(), r.ReadString(), r.ReadInt32(), r.ReadInt32(),
                r.ReadBytes(), r.ReadBytes()));
        }
        return r.Failed ? null : new GroupSnapshot(group, protocolType, generation, protocol, leader, since, members);
    }
}
