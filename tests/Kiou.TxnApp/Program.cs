// A consume-transform-produce application with exactly-once semantics, as Confluent.Kafka users write one: it reads
// the input topic in a group (read_committed), and for each batch writes the transformed records and the consumed
// offsets in one transaction. Tests kill it with SIGKILL at random moments and start it again; the output must hold
// every input record exactly once, in order per partition.
//   kiou-txn-app BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID
// Prints "assigned", then "committed N" after each transaction (N: records so far in this run) on stdout; exits 0
// once every assigned partition is at its end with nothing left to commit.
using Confluent.Kafka;

if (args.Length != 5)
{
    Console.Error.WriteLine("usage: kiou-txn-app BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID");
    return 2;
}

string bootstrap = args[0], input = args[1], output = args[2], group = args[3], transactionalId = args[4];
using var producer = new ProducerBuilder<byte[]?, byte[]?>(new ProducerConfig
{
    BootstrapServers = bootstrap,
    TransactionalId = transactionalId,
    EnableIdempotence = true,
    Acks = Acks.All,
    LingerMs = 1,
}).Build();
producer.InitTransactions(TimeSpan.FromSeconds(30)); // fences an earlier instance and aborts its open transaction

var assignment = new List<TopicPartition>();
using var consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
{
    BootstrapServers = bootstrap,
    GroupId = group,
    GroupInstanceId = transactionalId, // static membership: a restarted instance takes its place at once
    SessionTimeoutMs = 10000,
    EnableAutoCommit = false,
    IsolationLevel = IsolationLevel.ReadCommitted,
    AutoOffsetReset = AutoOffsetReset.Earliest,
    EnablePartitionEof = true,
}).SetPartitionsAssignedHandler((_, partitions) =>
{
    assignment = partitions;
    Console.WriteLine("assigned");
}).Build();
consumer.Subscribe(input);

var atEnd = new HashSet<int>();
long total = 0;
while (true)
{
    var batch = new List<ConsumeResult<byte[]?, byte[]?>>();
    var deadline = DateTime.UtcNow.AddMilliseconds(50);
    while (batch.Count < 20 && DateTime.UtcNow < deadline)
    {
        var r = consumer.Consume(TimeSpan.FromMilliseconds(20));
        if (r is null)
            continue;
        if (r.IsPartitionEOF)
        {
            atEnd.Add(r.Partition.Value);
            continue;
        }

        atEnd.Remove(r.Partition.Value);
        batch.Add(r);
    }

    if (batch.Count == 0)
    {
        if (assignment.Count > 0 && assignment.All(tp => atEnd.Contains(tp.Partition.Value)))
            return 0;
        continue;
    }

    producer.BeginTransaction();
    foreach (var r in batch)
    {
        byte[] value = System.Text.Encoding.UTF8.GetBytes($"{System.Text.Encoding.UTF8.GetString(r.Message.Value!)}->out");
        producer.Produce(new TopicPartition(output, r.Partition), new Message<byte[]?, byte[]?> { Key = r.Message.Key, Value = value });
    }

    var offsets = batch.GroupBy(r => r.TopicPartition).Select(g => new TopicPartitionOffset(g.Key, g.Max(r => r.Offset.Value) + 1));
    producer.SendOffsetsToTransaction(offsets, consumer.ConsumerGroupMetadata, TimeSpan.FromSeconds(30));
    producer.CommitTransaction(TimeSpan.FromSeconds(30));
    total += batch.Count;
    Console.WriteLine($"committed {total}");
}
