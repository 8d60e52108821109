using System.Text;
using Confluent.Kafka;
using Kiou.Broker.Transactions;
using TopicPartition = Confluent.Kafka.TopicPartition;
using Kiou.Protocol.Records;

namespace Kiou.Broker.Tests;

/// <summary>
/// Issue 14 with a real client: Confluent.Kafka's transactional producer (librdkafka) commits and aborts across four
/// partitions, and a second producer with the same transactional.id fences the first. read_committed filtering is the
/// partition side's (another branch): here a read_uncommitted consumer sees every record, and each transaction's
/// markers are checked in the partition logs.
/// </summary>
public sealed class TransactionalClientTests
{
    static IProducer<byte[]?, byte[]?> TransactionalProducer(string bootstrap, string transactionalId) =>
        Clients.Producer(bootstrap, Acks.All, configure: c =>
        {
            c.TransactionalId = transactionalId;
            c.TransactionTimeoutMs = 30000;
            c.LingerMs = 1;
        });

    static List<(long Offset, bool? Marker, long ProducerId, short Epoch)> Batches(TestBroker broker, string topic, int partition)
    {
        var log = broker.Broker.Logs.Get(topic, partition)!;
        var batches = new List<(long, bool?, long, short)>();
        long offset = 0;
        while (offset < log.HighWatermark)
        {
            using var read = log.Read(offset, 1 << 20, minOneBatch: true);
            var span = read.Records.Span;
            while (span.Length >= RecordBatch.HeaderSize)
            {
                int size = RecordBatch.TotalSize(span);
                var batch = span[..size];
                batches.Add((RecordBatch.BaseOffset(batch), TransactionLog.ReadMarker(batch), RecordBatch.ProducerId(batch), RecordBatch.ProducerEpoch(batch)));
                offset = RecordBatch.LastOffset(batch) + 1;
                span = span[size..];
            }
        }
        return batches;
    }

    [Fact]
    public async Task Commits_and_aborts_across_four_partitions()
    {
        await using var broker = TestBroker.Start();
        const string topic = "txn-client";
        const int partitions = 4;
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, partitions);
        using var producer = TransactionalProducer(broker.Bootstrap, "txn-client-1");
        producer.InitTransactions(TimeSpan.FromSeconds(30));
        var committed = new List<string>();
        var aborted = new List<string>();
        for (int txn = 0; txn < 6; txn++)
        {
            bool commit = txn % 2 == 0;
            producer.BeginTransaction();
            for (int i = 0; i < 8; i++)
            {
                string value = $"t{txn}-{i}";
                await producer.ProduceAsync(new TopicPartition(topic, i % partitions), new Message<byte[]?, byte[]?> { Value = Encoding.UTF8.GetBytes(value) });
                (commit ? committed : aborted).Add(value);
            }
            if (commit)
                producer.CommitTransaction(TimeSpan.FromSeconds(30));
            else
                producer.AbortTransaction(TimeSpan.FromSeconds(30));
        }
        await broker.Broker.Transactions.WhenIdleAsync();

        // Every record is there for read_uncommitted (the client skips the control batches); read_committed sees
        // exactly the committed ones, in the order sent within each partition.
        var all = Clients.ReadAll(broker.Bootstrap, topic, partitions, isolation: IsolationLevel.ReadUncommitted);
        var values = all.Select(r => Encoding.UTF8.GetString(r.Message.Value!)).ToList();
        Assert.Equal(committed.Concat(aborted).Order(), values.Order());
        var readCommitted = Clients.ReadAll(broker.Bootstrap, topic, partitions, isolation: IsolationLevel.ReadCommitted);
        for (int p = 0; p < partitions; p++)
        {
            Assert.Equal(committed.Where((_, i) => i % partitions == p),
                readCommitted.Where(r => r.Partition.Value == p).Select(r => Encoding.UTF8.GetString(r.Message.Value!)));
        }
        // Each partition: per transaction two records then its marker, COMMIT for even transactions, ABORT for odd.
        var state = broker.Broker.Transactions.Find("txn-client-1")!.Current;
        Assert.Equal(TxnState.CompleteAbort, state.State);
        for (int p = 0; p < partitions; p++)
        {
            var markers = Batches(broker, topic, p).Where(b => b.Marker is not null).ToList();
            Assert.Equal(new bool?[] { true, false, true, false, true, false }, markers.Select(m => m.Marker));
            Assert.All(markers, m => Assert.Equal(state.ProducerId, m.ProducerId));
            Assert.All(markers, m => Assert.Equal(state.ProducerEpoch, m.Epoch));
        }
    }

    [Fact]
    public async Task Consume_transform_produce_commits_the_consumed_offsets_with_the_output()
    {
        await using var broker = TestBroker.Start();
        const string input = "ctp-in", output = "ctp-out", group = "ctp-group";
        await Clients.CreateTopicAsync(broker.Bootstrap, input, 1);
        await Clients.CreateTopicAsync(broker.Bootstrap, output, 1);
        using (var plain = Clients.Producer(broker.Bootstrap, Acks.All))
        {
            for (int i = 0; i < 10; i++)
                await plain.ProduceAsync(input, new Message<byte[]?, byte[]?> { Value = Encoding.UTF8.GetBytes($"in-{i}") });
        }
        using var consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
        {
            BootstrapServers = broker.Bootstrap,
            GroupId = group,
            EnableAutoCommit = false,
            AutoOffsetReset = AutoOffsetReset.Earliest,
            SessionTimeoutMs = 6000,
        }).Build();
        consumer.Subscribe(input);
        using var producer = TransactionalProducer(broker.Bootstrap, "ctp-1");
        producer.InitTransactions(TimeSpan.FromSeconds(30));

        // Two transactions: the first commits records 0-4 and offset 5, the second (5-9, offset 10) aborts.
        for (int txn = 0; txn < 2; txn++)
        {
            producer.BeginTransaction();
            for (int i = 0; i < 5; i++)
            {
                var record = consumer.Consume(TimeSpan.FromSeconds(30));
                Assert.NotNull(record);
                await producer.ProduceAsync(output, new Message<byte[]?, byte[]?> { Value = Encoding.UTF8.GetBytes("out-" + Encoding.UTF8.GetString(record.Message.Value!)) });
            }
            producer.SendOffsetsToTransaction(consumer.Assignment.Select(tp => new TopicPartitionOffset(tp, consumer.Position(tp))),
                consumer.ConsumerGroupMetadata, TimeSpan.FromSeconds(30));
            if (txn == 0)
                producer.CommitTransaction(TimeSpan.FromSeconds(30));
            else
                producer.AbortTransaction(TimeSpan.FromSeconds(30));
            await broker.Broker.Transactions.WhenIdleAsync();
            var committed = consumer.Committed([new TopicPartition(input, 0)], TimeSpan.FromSeconds(10));
            Assert.Equal(5, committed[0].Offset.Value); // the aborted transaction's offset 10 is not committed
        }
    }

    [Fact]
    public async Task A_second_producer_with_the_same_transactional_id_fences_the_first()
    {
        await using var broker = TestBroker.Start();
        const string topic = "txn-fence";
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 2);
        using var first = TransactionalProducer(broker.Bootstrap, "fence-me");
        first.InitTransactions(TimeSpan.FromSeconds(30));
        first.BeginTransaction();
        await first.ProduceAsync(new TopicPartition(topic, 0), new Message<byte[]?, byte[]?> { Value = "open"u8.ToArray() });

        // The second producer's InitTransactions aborts the first's open transaction and bumps the epoch.
        using var second = TransactionalProducer(broker.Bootstrap, "fence-me");
        second.InitTransactions(TimeSpan.FromSeconds(30));
        var ex = Assert.ThrowsAny<KafkaException>(() => first.CommitTransaction(TimeSpan.FromSeconds(30)));
        Assert.True(ex.Error.Code is ErrorCode.Local_Fenced or ErrorCode.ProducerFenced or ErrorCode.InvalidProducerEpoch,
            $"expected the fenced error, got {ex.Error.Code}: {ex.Error.Reason}");
        Assert.True(ex.Error.IsFatal, $"fencing is fatal to the old producer: {ex.Error}");

        // The aborted record's partition has an ABORT marker at the new epoch; the second producer works.
        await broker.Broker.Transactions.WhenIdleAsync();
        var marker = Batches(broker, topic, 0).Last();
        Assert.False(marker.Marker);
        second.BeginTransaction();
        await second.ProduceAsync(new TopicPartition(topic, 1), new Message<byte[]?, byte[]?> { Value = "second"u8.ToArray() });
        second.CommitTransaction(TimeSpan.FromSeconds(30));
        await broker.Broker.Transactions.WhenIdleAsync();
        var secondState = broker.Broker.Transactions.Find("fence-me")!.Current;
        Assert.Equal(TxnState.CompleteCommit, secondState.State);
        Assert.True(secondState.ProducerEpoch > marker.Epoch, $"epoch {secondState.ProducerEpoch} after the fence at {marker.Epoch}");
        Assert.True(Batches(broker, topic, 1).Last().Marker);
    }
}
