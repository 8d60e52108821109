using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using Confluent.Kafka;
using Kiou.Protocol.Messages;
using Kiou.Protocol.Records;
using Kiou.Storage;

namespace Kiou.Broker.Tests;

/// <summary>
/// The read side of transactions through the wire: Fetch with read_committed stops at the last stable offset and lists
/// the aborted transactions, ListOffsets answers the LSO, a parked read_committed fetch wakes when the LSO moves, and
/// librdkafka's read_committed consumer skips aborted records and control batches. The transactional batches and
/// markers are appended in process (the coordinator writes markers through the same AppendAsync).
/// </summary>
public sealed class TransactionReadTests
{
    /// <summary>A transactional batch whose records' values are "{tag}-{i}".</summary>
    internal static byte[] Txn(string tag, int count, long producerId, short epoch, int baseSequence) =>
        Batch(tag, count, producerId, epoch, baseSequence, attributes: 0x10);

    internal static byte[] Plain(string tag, int count) => Batch(tag, count, -1, -1, -1, attributes: 0);

    static byte[] Batch(string tag, int count, long producerId, short epoch, int baseSequence, short attributes)
    {
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var records = new List<byte>();
        for (int i = 0; i < count; i++)
        {
            byte[] value = Encoding.UTF8.GetBytes($"{tag}-{i}");
            var body = new List<byte> { 0 };
            Varint(body, 0); // timestamp delta
            Varint(body, i); // offset delta
            Varint(body, -1); // no key
            Varint(body, value.Length);
            body.AddRange(value);
            Varint(body, 0);
            Varint(records, body.Count);
            records.AddRange(body);
        }

        return Frame(records, count, attributes, producerId, epoch, baseSequence, now);
    }

    /// <summary>Kafka's EndTransactionMarker in a control batch, as the coordinator builds it.</summary>
    internal static byte[] Marker(long producerId, short epoch, bool commit, int coordinatorEpoch = 0)
    {
        var body = new List<byte> { 0 };
        Varint(body, 0);
        Varint(body, 0);
        Varint(body, 4);
        body.AddRange([0, 0, 0, (byte)(commit ? 1 : 0)]);
        Varint(body, 6);
        var value = new byte[6];
        BinaryPrimitives.WriteInt32BigEndian(value.AsSpan(2), coordinatorEpoch);
        body.AddRange(value);
        Varint(body, 0);
        var records = new List<byte>();
        Varint(records, body.Count);
        records.AddRange(body);
        return Frame(records, 1, 0x30, producerId, epoch, -1, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
    }

    static byte[] Frame(List<byte> records, int count, short attributes, long producerId, short epoch, int baseSequence, long timestamp)
    {
        var batch = new byte[61 + records.Count];
        var s = batch.AsSpan();
        BinaryPrimitives.WriteInt32BigEndian(s[8..], batch.Length - 12);
        BinaryPrimitives.WriteInt32BigEndian(s[12..], -1);
        s[16] = 2;
        BinaryPrimitives.WriteInt16BigEndian(s[21..], attributes);
        BinaryPrimitives.WriteInt32BigEndian(s[23..], count - 1);
        BinaryPrimitives.WriteInt64BigEndian(s[27..], timestamp);
        BinaryPrimitives.WriteInt64BigEndian(s[35..], timestamp);
        BinaryPrimitives.WriteInt64BigEndian(s[43..], producerId);
        BinaryPrimitives.WriteInt16BigEndian(s[51..], epoch);
        BinaryPrimitives.WriteInt32BigEndian(s[53..], baseSequence);
        BinaryPrimitives.WriteInt32BigEndian(s[57..], count);
        records.CopyTo(batch, 61);
        BinaryPrimitives.WriteUInt32BigEndian(s[17..], Crc32C.Compute(s[21..]));
        return batch;
    }

    static void Varint(List<byte> output, long value)
    {
        ulong v = (ulong)((value << 1) ^ (value >> 63));
        while (v >= 0x80)
        {
            output.Add((byte)(v | 0x80));
            v >>= 7;
        }
        output.Add((byte)v);
    }

    static async Task<long> Append(PartitionLog log, byte[] batch) => (await log.AppendAsync(batch, waitDurable: false)).BaseOffset;

    static async Task<long> EndTxn(PartitionLog log, long producerId, bool commit) =>
        (await log.AppendAsync(Marker(producerId, 0, commit), waitDurable: true, AppendOrigin.Coordinator)).BaseOffset;

    static FetchRequest Fetch(string topic, long offset, sbyte isolation, int maxWaitMs = 0) => new()
    {
        MaxWaitMs = maxWaitMs,
        MinBytes = 1,
        MaxBytes = 1 << 20,
        IsolationLevel = isolation,
        Topics = [new() { Topic = topic, Partitions = [new() { Partition = 0, FetchOffset = offset, PartitionMaxBytes = 1 << 20 }] }],
    };

    static long NextOffset(FetchResponse.PartitionData data)
    {
        ReadOnlySpan<byte> span = data.Records is { } r ? r.Span : default;
        long next = -1;
        while (RecordBatch.TryReadHeader(span, out BatchHeader h) && h.TotalSize <= span.Length)
        {
            next = h.NextOffset;
            span = span[h.TotalSize..];
        }
        return next;
    }

    [Fact]
    public async Task Read_committed_fetches_stop_at_the_LSO_and_list_aborted_transactions()
    {
        const string topic = "txn-wire";
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);
        var log = broker.Broker.Logs.Get(topic, 0)!;
        Assert.Equal(0, await Append(log, Plain("p", 2))); // 0..1
        Assert.Equal(2, await Append(log, Txn("a", 2, 7, 0, 0))); // 2..3 producer 7
        Assert.Equal(4, await Append(log, Txn("b", 2, 8, 0, 0))); // 4..5 producer 8, left open
        Assert.Equal(6, await EndTxn(log, 7, commit: false)); // 6
        Assert.Equal(7, await Append(log, Plain("q", 1))); // 7

        using var wire = await SegmentFilesTests.Wire.ConnectAsync(broker.Broker.BrokerEndPoint);
        var committed = (await wire.SendAsync<FetchResponse>(1, 11, Fetch(topic, 0, 1))).Responses.Single().Partitions.Single();
        Assert.Equal(ErrorCodes.None, committed.ErrorCode);
        Assert.Equal(8, committed.HighWatermark);
        Assert.Equal(4, committed.LastStableOffset);
        Assert.Equal(4, NextOffset(committed)); // below producer 8's open transaction
        var aborted = Assert.Single(committed.AbortedTransactions!);
        Assert.Equal((7L, 2L), (aborted.ProducerId, aborted.FirstOffset));

        var uncommitted = (await wire.SendAsync<FetchResponse>(1, 11, Fetch(topic, 0, 0))).Responses.Single().Partitions.Single();
        Assert.Equal(8, NextOffset(uncommitted));
        Assert.Equal(4, uncommitted.LastStableOffset); // the real LSO at every isolation level
        Assert.True(uncommitted.AbortedTransactions is null or { Count: 0 });

        var atLso = (await wire.SendAsync<FetchResponse>(1, 11, Fetch(topic, 4, 1))).Responses.Single().Partitions.Single();
        Assert.Equal(ErrorCodes.None, atLso.ErrorCode);
        Assert.True(atLso.Records is not { Length: > 0 });

        // Fetch v4 (the first with isolation_level and aborted_transactions) takes the same path.
        var v4 = (await wire.SendAsync<FetchResponse>(1, 4, Fetch(topic, 0, 1))).Responses.Single().Partitions.Single();
        Assert.Equal(4, v4.LastStableOffset);
        Assert.Single(v4.AbortedTransactions!);

        // ListOffsets latest: the LSO for read_committed, the high watermark otherwise.
        async Task<long> Latest(sbyte isolation) => (await wire.SendAsync<ListOffsetsResponse>(2, 5, new ListOffsetsRequest
        {
            ReplicaId = -1,
            IsolationLevel = isolation,
            Topics = [new() { Name = topic, Partitions = [new() { PartitionIndex = 0, Timestamp = -1, CurrentLeaderEpoch = -1 }] }],
        })).Topics.Single().Partitions.Single().Offset;
        Assert.Equal(4, await Latest(1));
        Assert.Equal(8, await Latest(0));

        // The commit moves the LSO to the end; producer 7's abort is still listed for ranges that hold it.
        Assert.Equal(8, await EndTxn(log, 8, commit: true));
        var after = (await wire.SendAsync<FetchResponse>(1, 11, Fetch(topic, 0, 1))).Responses.Single().Partitions.Single();
        Assert.Equal(9, after.LastStableOffset);
        Assert.Equal(9, NextOffset(after));
        Assert.Single(after.AbortedTransactions!);
        Assert.Equal(9, await Latest(1));
        var later = (await wire.SendAsync<FetchResponse>(1, 11, Fetch(topic, 7, 1))).Responses.Single().Partitions.Single();
        Assert.Empty(later.AbortedTransactions!); // its marker (6) is below the fetch offset

        // A transaction left open and the aborted index survive a restart (snapshot and .txnindex).
        Assert.Equal(9, await Append(broker.Broker.Logs.Get(topic, 0)!, Txn("c", 1, 8, 0, 2)));
        wire.Dispose();
        await broker.RestartAsync();
        using var wire2 = await SegmentFilesTests.Wire.ConnectAsync(broker.Broker.BrokerEndPoint);
        var restarted = (await wire2.SendAsync<FetchResponse>(1, 11, Fetch(topic, 0, 1))).Responses.Single().Partitions.Single();
        Assert.Equal(10, restarted.HighWatermark);
        Assert.Equal(9, restarted.LastStableOffset);
        Assert.Equal(9, NextOffset(restarted));
        Assert.Equal((7L, 2L), (restarted.AbortedTransactions!.Single().ProducerId, restarted.AbortedTransactions!.Single().FirstOffset));
        Assert.Equal(10, await EndTxn(broker.Broker.Logs.Get(topic, 0)!, 8, commit: false));
        var aborted8 = (await wire2.SendAsync<FetchResponse>(1, 11, Fetch(topic, 9, 1))).Responses.Single().Partitions.Single();
        Assert.Equal(11, aborted8.LastStableOffset);
        Assert.Equal((8L, 9L), (aborted8.AbortedTransactions!.Single().ProducerId, aborted8.AbortedTransactions!.Single().FirstOffset));
    }

    [Fact]
    public async Task A_parked_read_committed_fetch_wakes_when_the_LSO_moves_not_for_uncommitted_data()
    {
        const string topic = "txn-wake";
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);
        var log = broker.Broker.Logs.Get(topic, 0)!;
        Assert.Equal(0, await Append(log, Txn("t", 1, 7, 0, 0)));

        using var wire = await SegmentFilesTests.Wire.ConnectAsync(broker.Broker.BrokerEndPoint);
        var clock = Stopwatch.StartNew();
        var fetch = wire.SendAsync<FetchResponse>(1, 11, Fetch(topic, 0, 1, maxWaitMs: 10_000));
        await Task.Delay(300);
        Assert.Equal(1, await Append(log, Plain("u", 1))); // the high watermark moves, the LSO does not
        await Task.Delay(500);
        Assert.False(fetch.IsCompleted, "a read_committed fetch answered for data above the LSO");

        Assert.Equal(2, await EndTxn(log, 7, commit: true));
        var data = (await fetch).Responses.Single().Partitions.Single();
        Assert.True(clock.ElapsedMilliseconds < 5000, $"woken after {clock.ElapsedMilliseconds} ms: the LSO's move was missed");
        Assert.Equal(3, data.LastStableOffset);
        Assert.Equal(3, NextOffset(data));
    }

    [Fact]
    public async Task A_librdkafka_read_committed_consumer_skips_aborted_records_and_control_batches()
    {
        const string topic = "txn-client";
        const int partitions = 2;
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, partitions);
        var expectedCommitted = new List<string>[partitions];
        var expectedAll = new List<string>[partitions];
        for (int p = 0; p < partitions; p++)
        {
            var log = broker.Broker.Logs.Get(topic, p)!;
            var committed = expectedCommitted[p] = [];
            var all = expectedAll[p] = [];
            int seq7 = 0, seq8 = 0;
            for (int round = 0; round < 8; round++)
            {
                // Two producers' transactions interleaved; producer 7 aborts every other round, producer 8 every third.
                bool commit7 = round % 2 == 0;
                bool commit8 = round % 3 != 0;
                string t7 = $"p{p}-r{round}-seven";
                string t8 = $"p{p}-r{round}-eight";
                string plain = $"p{p}-r{round}-plain";
                await Append(log, Txn(t7, 3, 7, 0, seq7));
                seq7 += 3;
                await Append(log, Txn(t8, 2, 8, 0, seq8));
                seq8 += 2;
                await Append(log, Plain(plain, 1));
                await Append(log, Txn(t7 + "x", 1, 7, 0, seq7));
                seq7 += 1;
                await EndTxn(log, 7, commit7);
                await EndTxn(log, 8, commit8);
                var seven = Enumerable.Range(0, 3).Select(i => $"{t7}-{i}").Append($"{t7}x-0").ToList();
                var eight = Enumerable.Range(0, 2).Select(i => $"{t8}-{i}").ToList();
                all.AddRange([.. seven.Take(3), .. eight, $"{plain}-0", seven[3]]);
                // In offset order, as the consumer sees them.
                foreach (string v in all.Skip(all.Count - 7))
                {
                    bool isSeven = v.Contains("-seven", StringComparison.Ordinal);
                    bool isEight = v.Contains("-eight", StringComparison.Ordinal);
                    if ((!isSeven && !isEight) || (isSeven && commit7) || (isEight && commit8))
                        committed.Add(v);
                }
            }
            // An open transaction at the end, followed by plain data: read_committed stops before both.
            await Append(log, Txn($"p{p}-open", 1, 9, 0, 0));
            await Append(log, Plain($"p{p}-tail", 1));
            all.AddRange([$"p{p}-open-0", $"p{p}-tail-0"]);
        }

        var readCommitted = Read(broker.Bootstrap, topic, partitions, IsolationLevel.ReadCommitted);
        var readUncommitted = Read(broker.Bootstrap, topic, partitions, IsolationLevel.ReadUncommitted);
        for (int p = 0; p < partitions; p++)
        {
            Assert.Equal(expectedCommitted[p], readCommitted[p]);
            Assert.Equal(expectedAll[p], readUncommitted[p]);
        }

        // Once the open transaction commits, read_committed reaches the end.
        for (int p = 0; p < partitions; p++)
        {
            await EndTxn(broker.Broker.Logs.Get(topic, p)!, 9, commit: true);
            expectedCommitted[p].AddRange([$"p{p}-open-0", $"p{p}-tail-0"]);
        }
        readCommitted = Read(broker.Bootstrap, topic, partitions, IsolationLevel.ReadCommitted);
        for (int p = 0; p < partitions; p++)
            Assert.Equal(expectedCommitted[p], readCommitted[p]);
    }

    /// <summary>Every record's value per partition, from the beginning to EOF (the LSO for read_committed).</summary>
    static List<string>[] Read(string bootstrap, string topic, int partitions, IsolationLevel isolation)
    {
        using var consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
        {
            BootstrapServers = bootstrap,
            GroupId = "txn-reader",
            EnableAutoCommit = false,
            EnablePartitionEof = true,
            IsolationLevel = isolation,
            CheckCrcs = true,
        }).Build();
        consumer.Assign(Enumerable.Range(0, partitions).Select(p => new TopicPartitionOffset(topic, p, Offset.Beginning)));
        var values = Enumerable.Range(0, partitions).Select(_ => new List<string>()).ToArray();
        var eof = new HashSet<int>();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (eof.Count < partitions)
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"{isolation}: {values.Sum(v => v.Count)} records; partitions at EOF: {string.Join(",", eof)}");
            var r = consumer.Consume(TimeSpan.FromMilliseconds(500));
            if (r is null)
                continue;
            if (r.IsPartitionEOF)
            {
                eof.Add(r.Partition.Value);
                continue;
            }
            eof.Remove(r.Partition.Value);
            values[r.Partition.Value].Add(Encoding.UTF8.GetString(r.Message.Value!));
        }
        // Nothing more arrives after EOF (no aborted or uncommitted record shows up late).
        var extra = consumer.Consume(TimeSpan.FromMilliseconds(700));
        Assert.True(extra is null || extra.IsPartitionEOF, $"{isolation}: a record after EOF: {(extra?.Message?.Value is { } v ? Encoding.UTF8.GetString(v) : "")}");
        consumer.Close();
        return values;
    }
}
