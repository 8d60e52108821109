using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Immutable;
using Kiou.Protocol;
using Kiou.Protocol.Messages;
using Kiou.Protocol.Records;

namespace Kiou.Broker.Transactions;

/// <summary>
/// The bytes of <c>__transaction_state</c>, as Kafka's TransactionLog writes them, so Kafka's tools read them: each
/// record's key is int16 key version 0 + TransactionLogKey v0, its value int16 value version + TransactionLogValue
/// (version 0, what Kafka writes for clients below transaction version 2), a null value a tombstone. One record per
/// RecordBatch v2 without producer id. Also the control batches (transaction markers) written to data partitions.
/// </summary>
public static class TransactionLog
{
    public const string TopicName = Controller.InternalTopics.TransactionState;

    /// <summary>Kafka's transaction.state.log.num.partitions default.</summary>
    public const int DefaultPartitions = 50;

    /// <summary>Kafka's Utils.abs(transactionalId.hashCode) % count, with Java's String.hashCode over UTF-16 units.</summary>
    public static int PartitionFor(string transactionalId, int partitionCount)
    {
        int h = 0;
        foreach (char c in transactionalId)
            h = unchecked((31 * h) + c);
        int abs = h == int.MinValue ? 0 : Math.Abs(h);
        return abs % partitionCount;
    }

    public static byte[] KeyBytes(string transactionalId)
    {
        using var w = new KafkaWriter(transactionalId.Length + 8);
        w.WriteInt16(0);
        new TransactionLogKey { TransactionalId = transactionalId }.Write(w, 0);
        return w.WrittenSpan.ToArray();
    }

    public static byte[] ValueBytes(TxnSnapshot s)
    {
        if (s.State == TxnState.Empty && s.Partitions.Count > 0)
            throw new InvalidOperationException("an Empty transaction state cannot hold partitions");
        List<TransactionLogValue.PartitionsSchema>? partitions = null;
        if (s.State != TxnState.Empty)
        {
            partitions = [];
            foreach (var group in s.Partitions.GroupBy(p => p.Topic, StringComparer.Ordinal))
                partitions.Add(new TransactionLogValue.PartitionsSchema { Topic = group.Key, PartitionIds = group.Select(p => p.Partition).ToList() });
        }
        var value = new TransactionLogValue
        {
            ProducerId = s.ProducerId,
            ProducerEpoch = s.ProducerEpoch,
            TransactionTimeoutMs = s.TimeoutMs,
            TransactionStatus = (sbyte)s.State,
            TransactionPartitions = partitions,
            TransactionLastUpdateTimestampMs = s.LastUpdateTimestampMs,
            TransactionStartTimestampMs = s.StartTimestampMs,
        };
        using var w = new KafkaWriter(64);
        w.WriteInt16(0);
        value.Write(w, 0);
        return w.WrittenSpan.ToArray();
    }

    /// <summary>The transactional id of a key, or null when the key is not a version-0 transaction log key.</summary>
    public static string? ReadKey(ReadOnlySpan<byte> key)
    {
        if (key.Length < 2 || BinaryPrimitives.ReadInt16BigEndian(key) != 0)
            return null;
        var reader = new KafkaReader(key[2..].ToArray());
        var k = new TransactionLogKey();
        k.Read(ref reader, 0);
        return reader.Failed || reader.Remaining != 0 ? null : k.TransactionalId;
    }

    /// <summary>A value of version 0 or 1, or null when it does not parse (the caller logs and skips it).</summary>
    public static TxnSnapshot? ReadValue(ReadOnlySpan<byte> value)
    {
        if (value.Length < 2)
            return null;
        short version = BinaryPrimitives.ReadInt16BigEndian(value);
        if (version is < 0 or > 1)
            return null;
        var reader = new KafkaReader(value[2..].ToArray());
        var v = new TransactionLogValue();
        v.Read(ref reader, version);
        if (reader.Failed || v.TransactionStatus is < 0 or > 7)
            return null;
        var partitions = ImmutableSortedSet<TopicPartition>.Empty;
        if (v.TransactionPartitions is { } list)
        {
            var builder = ImmutableSortedSet.CreateBuilder<TopicPartition>();
            foreach (var t in list)
                foreach (int p in t.PartitionIds)
                    builder.Add(new TopicPartition(t.Topic, p));
            partitions = builder.ToImmutable();
        }
        return new TxnSnapshot(v.ProducerId, v.PreviousProducerId, v.ProducerEpoch, TxnSnapshot.NoProducerEpoch, v.TransactionTimeoutMs,
            (TxnState)v.TransactionStatus, partitions, v.TransactionStartTimestampMs, v.TransactionLastUpdateTimestampMs);
    }

    /// <summary>One record in a batch without producer id: a state record (value) or a tombstone (null value).</summary>
    public static byte[] StateBatch(string transactionalId, TxnSnapshot? state, long timestampMs) =>
        SingleRecordBatch(KeyBytes(transactionalId), state is null ? null : ValueBytes(state), timestampMs, attributes: 0,
            producerId: -1, producerEpoch: -1);

    /// <summary>Kafka's EndTransactionMarker in a control batch: key version 0 + type (0 abort, 1 commit), value
    /// version 0 + coordinator epoch; control and transactional bits; base sequence -1.</summary>
    public static byte[] MarkerBatch(long producerId, short producerEpoch, bool commit, int coordinatorEpoch, long timestampMs)
    {
        var key = new byte[4];
        BinaryPrimitives.WriteInt16BigEndian(key.AsSpan(2), commit ? (short)1 : (short)0);
        var value = new byte[6];
        BinaryPrimitives.WriteInt32BigEndian(value.AsSpan(2), coordinatorEpoch);
        return SingleRecordBatch(key, value, timestampMs, attributes: 0x20 | 0x10, producerId, producerEpoch);
    }

    /// <summary>The marker's type (true: commit) if <paramref name="batch"/> is a control batch holding an
    /// EndTransactionMarker, else null.</summary>
    public static bool? ReadMarker(ReadOnlySpan<byte> batch)
    {
        if (!RecordBatch.IsControl(batch))
            return null;
        var cursor = RecordCursor.ForBatch(batch);
        if (!cursor.MoveNext() || cursor.KeyLength != 4)
            return null;
        short type = BinaryPrimitives.ReadInt16BigEndian(cursor.Key[2..]);
        return type switch { 0 => false, 1 => true, _ => null };
    }

    static byte[] SingleRecordBatch(byte[] key, byte[]? value, long timestampMs, short attributes, long producerId, short producerEpoch) =>
        Logs.CoordinatorBatch.Build([(key, value)], timestampMs, attributes, producerId, producerEpoch, baseSequence: -1);
}
