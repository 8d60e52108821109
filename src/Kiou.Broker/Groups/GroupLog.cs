using System.Buffers.Binary;
using Kiou.IoUring.Interop;
using Kiou.Protocol;
using Kiou.Protocol.Records;

namespace Kiou.Broker.Groups;

/// <summary>
/// The broker's internal log of committed offsets and group metadata, KIOU's __consumer_offsets: one append-only file
/// <c>&lt;data dir&gt;/__consumer_offsets/groups.log</c>, never listed as a topic.
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
/// Replay reads records in order into the live map (latest value per key). The first record whose length or CRC
/// is wrong ends the log: it and everything after it are a torn tail from a crash, truncated with a warning.
///
/// Threads: <see cref="Append"/> is thread-safe and returns a task completed once the record is durable. One writer
/// thread takes every queued record, writes them with one pwrite and makes them durable with one fdatasync (group
/// commit), then completes their tasks. The writer alone owns the file and the live map after <see cref="Open"/>.
/// Compaction (on the writer thread): when the file is over <see cref="CompactMinBytes"/> and more than half of it is
/// dead records, the live map is written to groups.log.tmp, fdatasynced, renamed over groups.log and the directory
/// fsynced, so start-up time follows the live state, not the history.
/// A failed write or fdatasync fails that batch and every later append (the log is offline until restart): the
/// kernel may have dropped the dirty pages, so nothing after it can be acknowledged.
/// </summary>
public sealed class GroupLog : IDisposable
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

    readonly string _dir;
    readonly string _path;
    readonly Hosting.Log _log;
    readonly Dictionary<string, LiveGroup> _live = new(StringComparer.Ordinal);
    readonly object _gate = new();
    List<Pending> _queue = [];
    List<Pending> _spare = [];
    FileStream? _file;
    long _fileBytes;
    long _liveBytes;
    Thread? _writer;
    bool _stopping;
    string? _failure;

    public long CompactMinBytes { get; init; } = 16 * 1024 * 1024;

    readonly record struct Pending(Kind Kind, string Group, string? Topic, int Partition, byte[] Payload, TaskCompletionSource? Done);

    public GroupLog(string dataDir, Hosting.Log log)
    {
        _dir = Path.Combine(dataDir, "__consumer_offsets");
        _path = Path.Combine(_dir, "groups.log");
        _log = log;
    }

    public string FilePath => _path;
    public long FileBytes => Interlocked.Read(ref _fileBytes);
    public int Compactions { get; private set; }

    /// <summary>Replays the file (truncating a torn tail). Returns the live state, which the caller reads before
    /// <see cref="StartWriter"/>.</summary>
    public IReadOnlyDictionary<string, LiveGroup> Open()
    {
        Directory.CreateDirectory(_dir);
        string tmp = _path + ".tmp";
        if (File.Exists(tmp))
            File.Delete(tmp); // a compaction that did not reach its rename: groups.log is still whole
        _file = new FileStream(_path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read, 1, FileOptions.None);
        long length = _file.Length;
        if (length < FileMagic.Length)
        {
            if (length > 0)
                _log.Warn($"group offsets log {_path}: {length} bytes without a complete header (torn at creation); starting it afresh");
            _file.SetLength(0);
            _file.Write(FileMagic);
            Sync(_file, "creating");
            FileSync.SyncDirectory(_dir);
            _fileBytes = FileMagic.Length;
        }
        else
        {
            _fileBytes = Replay(length);
        }
        _file.Position = _fileBytes;
        return _live;
    }

    /// <summary>Starts the writer thread; from here on the writer owns the live map.</summary>
    public void StartWriter()
    {
        _writer = new Thread(WriterLoop) { IsBackground = true, Name = "kiou-group-log" };
        _writer.Start();
    }

    long Replay(long length)
    {
        var file = _file!;
        var header = new byte[FileMagic.Length];
        file.Position = 0;
        file.ReadExactly(header);
        if (!header.AsSpan().SequenceEqual(FileMagic))
            throw new Hosting.ConfigException($"{_path} is not a KIOU group offsets log (bad header); move it away to start with no committed offsets");
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
            // Usually a write torn by a crash (never acknowledged); it could also be damage with acknowledged records
            // behind it, so the bytes are kept aside before the log is cut.
            string aside = $"{_path}.damaged-{DateTime.UtcNow:yyyyMMddTHHmmssZ}-at-{position}";
            try
            {
                using var copy = new FileStream(aside, FileMode.Create, FileAccess.Write);
                file.Position = position;
                file.CopyTo(copy);
                copy.Flush(flushToDisk: true);
            }
            catch (IOException e)
            {
                throw new Hosting.ConfigException($"group offsets log {_path}: {stop} at byte {position}, and the {length - position} bytes from there cannot be kept aside in {aside} ({e.Message}); free space and start again");
            }
            _log.Warn($"group offsets log {_path}: {stop} at byte {position}; cut the {length - position} bytes from there, kept in {aside} " +
                "(usually a write torn by a crash, never acknowledged; if records follow the damage, they are in that file)");
            file.SetLength(position);
            Sync(file, "truncating");
        }
        _log.Info($"group offsets log {_path}: replayed {records} records ({position} bytes) into {_live.Count} groups" + (skipped > 0 ? $"; {skipped} damaged record(s) skipped" : ""));
        return position;
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
                var g = LiveFor(group);
                if (g.Metadata is not null)
                    _liveBytes -= g.Metadata.Length + RecordHeaderBytes;
                g.Metadata = payload;
                _liveBytes += payload.Length + RecordHeaderBytes;
                return true;
            case Kind.GroupTombstone:
                if (r.Failed)
                    return false;
                if (_live.Remove(group, out var dead))
                {
                    if (dead.Metadata is not null)
                        _liveBytes -= dead.Metadata.Length + RecordHeaderBytes;
                    foreach (var o in dead.Offsets.Values)
                        _liveBytes -= o.Length + RecordHeaderBytes;
                    foreach (var pending in dead.Pending.Values)
                        foreach (var o in pending.Values)
                            _liveBytes -= o.Length + RecordHeaderBytes;
                }
                return true;
            case Kind.TxnOffsetCommit:
                {
                    if (!TryReadTxnOffset(payload, out long producerId, out string topic, out int partition, out _))
                        return false;
                    var live = LiveFor(group);
                    if (!live.Pending.TryGetValue(producerId, out var offsets))
                        live.Pending[producerId] = offsets = [];
                    if (offsets.TryGetValue((topic, partition), out var old))
                        _liveBytes -= old.Length + RecordHeaderBytes;
                    offsets[(topic, partition)] = payload;
                    _liveBytes += payload.Length + RecordHeaderBytes;
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
                            _liveBytes -= pending.Length + RecordHeaderBytes;
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
        var g = LiveFor(group);
        if (g.Offsets.TryGetValue((topic, partition), out var old))
            _liveBytes -= old.Length + RecordHeaderBytes;
        g.Offsets[(topic, partition)] = payload;
        _liveBytes += payload.Length + RecordHeaderBytes;
    }

    void RemoveOffset(string group, string topic, int partition)
    {
        if (_live.TryGetValue(group, out var g) && g.Offsets.Remove((topic, partition), out var old))
        {
            _liveBytes -= old.Length + RecordHeaderBytes;
            if (g.Offsets.Count == 0 && g.Metadata is null && g.Pending.Count == 0)
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

    public static byte[] TxnOffsetCommit(string group, long producerId, string topic, int partition, in CommittedOffset o)
    {
        using var w = new KafkaWriter(72 + group.Length + topic.Length + (o.Metadata?.Length ?? 0) * 3);
        w.WriteInt8((sbyte)Kind.TxnOffsetCommit);
        w.WriteString(group);
        w.WriteString(topic);
        w.WriteInt32(partition);
        w.WriteInt64(producerId);
        w.WriteInt64(o.Offset);
        w.WriteInt32(o.LeaderEpoch);
        w.WriteNullableString(o.Metadata);
        w.WriteInt64(o.CommitTimestampMs);
        w.WriteInt64(o.ExpireTimestampMs);
        return w.WrittenSpan.ToArray();
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

    public static byte[] TxnMarker(string group, long producerId, bool commit)
    {
        using var w = new KafkaWriter(16 + group.Length);
        w.WriteInt8((sbyte)Kind.TxnMarker);
        w.WriteString(group);
        w.WriteInt64(producerId);
        w.WriteInt8(commit ? (sbyte)1 : (sbyte)0);
        return w.WrittenSpan.ToArray();
    }

    public static byte[] OffsetTombstone(string group, string topic, int partition)
    {
        using var w = new KafkaWriter(16 + group.Length + topic.Length);
        w.WriteInt8((sbyte)Kind.OffsetTombstone);
        w.WriteString(group);
        w.WriteString(topic);
        w.WriteInt32(partition);
        return w.WrittenSpan.ToArray();
    }

    public static byte[] GroupMetadata(GroupSnapshot s)
    {
        using var w = new KafkaWriter(256);
        w.WriteInt8((sbyte)Kind.GroupMetadata);
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
        return w.WrittenSpan.ToArray();
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

    public static byte[] GroupTombstone(string group)
    {
        using var w = new KafkaWriter(8 + group.Length);
        w.WriteInt8((sbyte)Kind.GroupTombstone);
        w.WriteString(group);
        return w.WrittenSpan.ToArray();
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Appending

    /// <summary>Queues one record; the task completes once it is durable (or fails if the log is offline).</summary>
    public Task Append(Kind kind, string group, string? topic, int partition, byte[] payload, bool awaitDurable = true) =>
        Enqueue([(kind, group, topic, partition, payload)], awaitDurable);

    /// <summary>
    /// Appends several records as one unit: they are queued under one lock, so the writer puts them in the same batch
    /// (one pwrite, one fdatasync) and a crash keeps all or, on a torn tail, a prefix of them. One OffsetCommit request
    /// is one such unit, as Kafka writes one commit as one record batch. The task completes once all are durable.
    /// </summary>
    public Task AppendAll(List<(Kind Kind, string Group, string? Topic, int Partition, byte[] Payload)> records) =>
        records.Count == 0 ? Task.CompletedTask : Enqueue(records, awaitDurable: true);

    /// <summary>Queues the records under one lock, so the writer takes them into the same batch.</summary>
    Task Enqueue(List<(Kind Kind, string Group, string? Topic, int Partition, byte[] Payload)> records, bool awaitDurable)
    {
        foreach (var r in records)
        {
            if (r.Payload.Length > MaxRecordBytes)
                return Task.FromException(new IOException($"group offsets record of {r.Payload.Length} bytes is over the {MaxRecordBytes} byte limit"));
        }
        var done = awaitDurable ? new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously) : null;
        lock (_gate)
        {
            if (_failure is not null)
                return Task.FromException(new IOException(_failure));
            if (_stopping)
                return Task.FromException(new ObjectDisposedException(nameof(GroupLog), "the broker is stopping"));
            bool wasEmpty = _queue.Count == 0;
            foreach (var r in records)
                _queue.Add(new Pending(r.Kind, r.Group, r.Topic, r.Partition, r.Payload, done));
            if (wasEmpty)
                Monitor.PulseAll(_gate);
        }
        return done?.Task ?? Task.CompletedTask;
    }

    void WriterLoop()
    {
        var buffer = new KafkaWriter(64 * 1024);
        while (true)
        {
            List<Pending> batch;
            lock (_gate)
            {
                while (_queue.Count == 0 && !_stopping)
                    Monitor.Wait(_gate);
                if (_queue.Count == 0)
                    return;
                batch = _queue;
                _queue = _spare;
                _spare = batch;
            }
            string? error = null;
            try
            {
                buffer.Reset();
                foreach (var p in batch)
                {
                    buffer.WriteInt32(p.Payload.Length);
                    buffer.WriteUInt32(Crc32C.Compute(p.Payload));
                    buffer.WriteRaw(p.Payload);
                }
                RandomAccess.Write(_file!.SafeFileHandle, buffer.WrittenSpan, _fileBytes);
                Sync(_file!, "appending to");
                Interlocked.Add(ref _fileBytes, buffer.Length);
                foreach (var p in batch)
                    ApplyToLive(p.Payload);
            }
            catch (IOException e)
            {
                error = e.Message;
            }
            if (error is not null)
            {
                string message = $"group offsets log {_path} failed ({error}); committed offsets cannot be stored until the broker is restarted";
                _log.Error(message);
                lock (_gate)
                    _failure = message;
                foreach (var p in batch)
                    p.Done?.TrySetException(new IOException(message));
            }
            else
            {
                foreach (var p in batch)
                    p.Done?.TrySetResult();
            }
            batch.Clear();
            if (error is null && _fileBytes > CompactMinBytes && _fileBytes > 2 * (_liveBytes + FileMagic.Length))
                Compact();
        }
    }

    static void Sync(FileStream file, string what)
    {
        int rc = FileSync.DataSync(file.SafeFileHandle);
        if (rc != 0)
            throw new IOException($"fdatasync while {what} the file returned errno {-rc}");
    }

    /// <summary>Rewrites the live records into a fresh file and renames it over the log (writer thread only).</summary>
    void Compact()
    {
        string tmp = _path + ".tmp";
        long before = _fileBytes;
        try
        {
            using (var fresh = new FileStream(tmp, FileMode.Create, FileAccess.ReadWrite, FileShare.None, 1 << 16))
            {
                fresh.Write(FileMagic);
                Span<byte> head = stackalloc byte[RecordHeaderBytes];
                foreach (var g in _live.Values)
                {
                    if (g.Metadata is not null)
                        WriteRecord(fresh, head, g.Metadata);
                    foreach (var o in g.Offsets.Values)
                        WriteRecord(fresh, head, o);
                    foreach (var pending in g.Pending.Values)
                        foreach (var o in pending.Values)
                            WriteRecord(fresh, head, o);
                }
                fresh.Flush();
                Sync(fresh, "compacting");
            }
            var old = _file!;
            File.Move(tmp, _path, overwrite: true);
            FileSync.SyncDirectory(_dir);
            old.Dispose();
            _file = new FileStream(_path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read, 1, FileOptions.None);
            Interlocked.Exchange(ref _fileBytes, _file.Length);
            Compactions++;
            _log.Info($"group offsets log {_path}: compacted {before} bytes to {_fileBytes} bytes of live records");
        }
        catch (IOException e)
        {
            // The old file is still whole and still ours; appends continue on it and compaction is tried again later.
            _log.Warn($"group offsets log {_path}: compaction failed ({e.Message}); keeping the uncompacted log");
            try
            {
                File.Delete(tmp);
            }
            catch (IOException)
            {
            }
        }
    }

    static void WriteRecord(FileStream file, Span<byte> head, byte[] payload)
    {
        BinaryPrimitives.WriteInt32BigEndian(head, payload.Length);
        BinaryPrimitives.WriteUInt32BigEndian(head[4..], Crc32C.Compute(payload));
        file.Write(head);
        file.Write(payload);
    }

    /// <summary>Writes what is queued, stops the writer and closes the file.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _stopping = true;
            Monitor.PulseAll(_gate);
        }
        _writer?.Join();
        _file?.Dispose();
    }
}
