using System.Collections.Concurrent;
using System.Text;
using Confluent.Kafka;
using Kiou.Broker.Transactions;
using Kiou.Protocol.Records;

namespace Kiou.Broker.Tests;

/// <summary>
/// Issue 14: kill -9 of the broker (KIOU_FLUSH=always) while a Confluent.Kafka transactional producer commits and aborts
/// in a loop, at random points (open, preparing or completing transactions). After the restarts every transaction
/// ends completed (open ones aborted by the timeout, prepared ones finished by the coordinator), no partition keeps a
/// transactional batch without a later marker of its producer (a read_committed consumer would wait on it forever),
/// and every record of an acknowledged commit is there.
/// </summary>
public sealed class TransactionCrashTests
{
    [Fact]
    public async Task Transactions_complete_after_repeated_SIGKILLs()
    {
        int seed = Environment.TickCount;
        var rng = new Random(seed);
        string dataDir = Path.Combine(Path.GetTempPath(), "kiou-txn-crash-" + Guid.NewGuid().ToString("N"));
        var env = new Dictionary<string, string> { ["KIOU_FLUSH"] = "always", ["KIOU_TRANSACTION_ABORT_TIMED_OUT_CLEANUP_INTERVAL_MS"] = "200" };
        const string topic = "txn-crash";
        const string transactionalId = "txn-crash-1";
        const int partitions = 3;
        var committed = new ConcurrentBag<string>();
        var aborted = new ConcurrentBag<string>();
        int port = BrokerProcess.FreePort();
        try
        {
            for (int round = 0; round < 4; round++)
            {
                using var broker = BrokerProcess.Start(dataDir, env, port);
                if (round == 0)
                    await Clients.CreateTopicAsync(broker.Bootstrap, topic, partitions);
                using var stop = new CancellationTokenSource();
                int r = round;
                var producing = Task.Run(() =>
                {
                    using var producer = Clients.Producer(broker.Bootstrap, Acks.All, configure: c =>
                    {
                        c.TransactionalId = transactionalId;
                        c.TransactionTimeoutMs = 3000;
                        c.MessageTimeoutMs = 3000;
                        c.LingerMs = 1;
                        c.SocketTimeoutMs = 3000;
                    });
                    try
                    {
                        producer.InitTransactions(TimeSpan.FromSeconds(20));
                        for (int txn = 0; !stop.IsCancellationRequested; txn++)
                        {
                            producer.BeginTransaction();
                            var values = new List<string>();
                            for (int i = 0; i < partitions * 2; i++)
                            {
                                string value = $"r{r}-t{txn}-{i}";
                                producer.Produce(new Confluent.Kafka.TopicPartition(topic, i % partitions), new Message<byte[]?, byte[]?> { Value = Encoding.UTF8.GetBytes(value) });
                                values.Add(value);
                            }
                            if (txn % 3 == 2)
                            {
                                producer.AbortTransaction(TimeSpan.FromSeconds(5));
                                foreach (var v in values)
                                    aborted.Add(v);
                            }
                            else
                            {
                                producer.CommitTransaction(TimeSpan.FromSeconds(5));
                                foreach (var v in values)
                                    committed.Add(v);
                            }
                        }
                    }
                    catch (KafkaException)
                    {
                        // The broker is gone mid-transaction: what the coordinator decided is checked below.
                    }
                });
                await Task.Delay(rng.Next(400, 1500));
                // On a slow machine InitTransactions alone may outlast the window: the last round waits for one commit,
                // so the test always checks acknowledged commits across the kills.
                for (var until = DateTime.UtcNow.AddSeconds(20); round == 3 && DateTime.UtcNow < until && committed.IsEmpty;)
                    await Task.Delay(100);
                broker.Kill();
                stop.Cancel();
                await producing.WaitAsync(TimeSpan.FromSeconds(60));
            }

            // The last start: the coordinator finishes what was prepared and aborts what was open once it times out.
            await using var final = TestBroker.Start(c => c with { Transactions = c.Transactions with { AbortTimedOutIntervalMs = 100 } }, dataDir);
            var deadline = DateTime.UtcNow.AddSeconds(20);
            TxnSnapshot? state = null;
            while (DateTime.UtcNow < deadline)
            {
                state = final.Broker.Transactions.IsLoaded ? final.Broker.Transactions.Find(transactionalId)?.Current : null;
                if (state is { State: TxnState.CompleteCommit or TxnState.CompleteAbort or TxnState.Empty })
                    break;
                await Task.Delay(100);
            }
            Assert.True(state is { State: TxnState.CompleteCommit or TxnState.CompleteAbort or TxnState.Empty }, $"transaction left {state?.State} (seed {seed})");
            await final.Broker.Transactions.WhenIdleAsync();

            for (int p = 0; p < partitions; p++)
            {
                var open = new HashSet<long>();
                foreach (var (isMarker, pid, transactional) in BatchesOf(final, topic, p))
                {
                    if (isMarker)
                        open.Remove(pid);
                    else if (transactional)
                        open.Add(pid);
                }
                Assert.True(open.Count == 0, $"partition {p}: transactional batches of producer(s) {string.Join(",", open)} have no marker after them (seed {seed})");
                var log = final.Broker.Logs.Get(topic, p)!;
                Assert.True(log.LastStableOffset == log.HighWatermark, $"partition {p}: last stable offset {log.LastStableOffset} behind the high watermark {log.HighWatermark}: read_committed consumers would wait (seed {seed})");
            }

            // A read_committed consumer reaches the end, with every acknowledged commit and no acknowledged abort.
            var present = Clients.ReadAll(final.Bootstrap, topic, partitions, isolation: IsolationLevel.ReadCommitted).Select(m => Encoding.UTF8.GetString(m.Message.Value!)).ToHashSet();
            var lost = committed.Where(v => !present.Contains(v)).ToList();
            Assert.True(lost.Count == 0, $"{lost.Count} committed record(s) lost, e.g. {string.Join(",", lost.Take(5))} (seed {seed})");
            var leaked = aborted.Where(present.Contains).ToList();
            Assert.True(leaked.Count == 0, $"{leaked.Count} aborted record(s) served to read_committed, e.g. {string.Join(",", leaked.Take(5))} (seed {seed})");
            Assert.NotEmpty(committed);
        }
        finally
        {
            try
            {
                Directory.Delete(dataDir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    static List<(bool Marker, long ProducerId, bool Transactional)> BatchesOf(TestBroker broker, string topic, int partition)
    {
        var log = broker.Broker.Logs.Get(topic, partition)!;
        var batches = new List<(bool, long, bool)>();
        long offset = log.LogStartOffset;
        while (offset < log.HighWatermark)
        {
            using var read = log.Read(offset, 1 << 20, minOneBatch: true);
            var span = read.Records.Span;
            if (span.IsEmpty)
                break;
            while (span.Length >= RecordBatch.HeaderSize)
            {
                int size = RecordBatch.TotalSize(span);
                var batch = span[..size];
                batches.Add((TransactionLog.ReadMarker(batch) is not null, RecordBatch.ProducerId(batch), RecordBatch.IsTransactional(batch)));
                offset = RecordBatch.LastOffset(batch) + 1;
                span = span[size..];
            }
        }
        return batches;
    }
}
