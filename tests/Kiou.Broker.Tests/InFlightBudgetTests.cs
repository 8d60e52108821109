using Confluent.Kafka;
using Kiou.Broker.Network;

namespace Kiou.Broker.Tests;

/// <summary>
/// KIOU_MAX_INFLIGHT_BYTES_PER_CONNECTION and KIOU_QUEUED_MAX_REQUEST_BYTES: a read loop stops at a full budget and
/// goes on once answers free it; a single request larger than the budget still gets through, so a tiny budget slows
/// clients down but never wedges them.
/// </summary>
public sealed class InFlightBudgetTests
{
    [Fact]
    public async Task A_full_budget_waits_until_released_below_its_limit()
    {
        var budget = new InFlightBudget(100);
        Assert.False(budget.Add(60));
        Assert.True(budget.Add(60)); // 120: full
        ValueTask wait = budget.WaitForRoomAsync(CancellationToken.None);
        await Task.Delay(50);
        Assert.False(wait.IsCompleted);
        budget.Release(10); // 110: still full
        await Task.Delay(50);
        Assert.False(wait.IsCompleted);
        budget.Release(60); // 50
        await wait.AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(50, budget.Bytes);
    }

    /// <summary>
    /// A release racing a wait must always wake it: the budget is full, one thread releases while the other starts
    /// waiting, over and over. A lost wake-up shows as a wait that never completes.
    /// </summary>
    [Fact]
    public async Task A_release_racing_a_wait_is_never_lost()
    {
        var budget = new InFlightBudget(1);
        int go = 0, stop = 0;
        var releaser = new Thread(() =>
        {
            while (true)
            {
                int g;
                while ((g = Volatile.Read(ref go)) == 0)
                    if (Volatile.Read(ref stop) != 0)
                        return;
                Volatile.Write(ref go, 0);
                budget.Release(1);
            }
        })
        { IsBackground = true };
        releaser.Start();
        var until = System.Diagnostics.Stopwatch.StartNew();
        long rounds = 0;
        try
        {
            while (until.Elapsed < TimeSpan.FromSeconds(3) && rounds < 5_000_000)
            {
                Assert.True(budget.Add(1)); // full
                Volatile.Write(ref go, 1);
                ValueTask wait = budget.WaitForRoomAsync(CancellationToken.None);
                if (!wait.IsCompleted)
                {
                    var woke = wait.AsTask();
                    await Task.WhenAny(woke, Task.Delay(TimeSpan.FromSeconds(2)));
                    Assert.True(woke.IsCompleted, $"a release was lost after {rounds} rounds: the wait never woke (bytes {budget.Bytes})");
                }
                while (Volatile.Read(ref go) != 0)
                    Thread.SpinWait(1); // the releaser has taken this round
                rounds++;
            }
        }
        finally
        {
            Volatile.Write(ref stop, 1);
            releaser.Join();
        }
        Assert.Equal(0, budget.Bytes);
        Assert.True(rounds > 1_000, $"only {rounds} rounds ran");
    }

    /// <summary>
    /// Clients that pipeline large produce requests and then vanish (reset, or close without reading) must give back
    /// every byte they held of the listener's budget; otherwise a handful of them stalls every connection.
    /// </summary>
    [Fact]
    public async Task Clients_killed_mid_pipeline_give_back_the_listener_budget()
    {
        await using var broker = TestBroker.Start(c => c with { QueuedMaxRequestBytes = 8L << 20 });
        await Clients.CreateTopicAsync(broker.Bootstrap, "dying", 1);
        byte[] records = TestBatches.Uncompressed(100_000); // about 1 MiB
        var request = new Kiou.Protocol.Messages.ProduceRequest
        {
            Acks = 1,
            TimeoutMs = 5000,
            TopicData = [new() { Name = "dying", PartitionData = [new() { Index = 0, Records = records }] }],
        };
        var w = new Kiou.Protocol.KafkaWriter();
        int at = w.ReserveInt32();
        new Kiou.Protocol.Messages.RequestHeader { RequestApiKey = 0, RequestApiVersion = 7, CorrelationId = 1, ClientId = "dying" }
            .Write(w, Kiou.Protocol.Messages.ApiMessageTypes.RequestHeaderVersion(0, 7));
        request.Write(w, 7);
        w.PatchInt32(at, w.Length - 4);
        byte[] frame = w.WrittenSpan.ToArray();
        byte[] pipeline = [.. Enumerable.Range(0, 6).SelectMany(_ => frame)];

        await Task.WhenAll(Enumerable.Range(0, 16).Select(i => Task.Run(async () =>
        {
            using var s = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            s.ReceiveBufferSize = 4096; // responses back up quickly, so the broker's writes fail once the client is gone
            await s.ConnectAsync(broker.Broker.BrokerEndPoint);
            var send = s.SendAsync(pipeline, System.Net.Sockets.SocketFlags.None);
            await Task.WhenAny(send, Task.Delay(300 + 50 * (i % 4)));
            if (i % 2 == 0)
                s.LingerState = new System.Net.Sockets.LingerOption(true, 0); // reset
            s.Close();
            try
            {
                await send;
            }
            catch (Exception)
            {
                // the send was cut by the close
            }
        })));

        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (broker.Broker.QueuedRequestBytes != 0 && DateTime.UtcNow < deadline)
            await Task.Delay(50);
        Assert.Equal(0, broker.Broker.QueuedRequestBytes);

        using var producer = Clients.Producer(broker.Bootstrap, Acks.Leader);
        var delivered = await producer.ProduceAsync(new TopicPartition("dying", 0), new Message<byte[]?, byte[]?> { Value = [1, 2, 3] })
            .WaitAsync(TimeSpan.FromSeconds(15));
        Assert.Equal(PersistenceStatus.Persisted, delivered.Status);
    }

    [Fact]
    public async Task Pipelined_produce_requests_larger_than_both_budgets_all_land()
    {
        string dataDir = Path.Combine(Path.GetTempPath(), "kiou-budget-" + Guid.NewGuid().ToString("N"));
        var env = new Dictionary<string, string>
        {
            ["KIOU_MAX_INFLIGHT_BYTES_PER_CONNECTION"] = "65536",
            ["KIOU_QUEUED_MAX_REQUEST_BYTES"] = "65536",
        };
        try
        {
            using var broker = BrokerProcess.Start(dataDir, env);
            await Clients.CreateTopicAsync(broker.Bootstrap, "budget", 2);
            const int producers = 3, perProducer = 120;
            var sent = new Dictionary<string, byte[]>();
            await Task.WhenAll(Enumerable.Range(0, producers).Select(p => Task.Run(async () =>
            {
                using var producer = Clients.Producer(broker.Bootstrap, Acks.Leader, configure: c =>
                {
                    c.BatchSize = 1 << 20; // requests of up to 1 MiB against a 64 KiB budget
                    c.LingerMs = 20;
                });
                var sends = new List<Task<DeliveryResult<byte[]?, byte[]?>>>();
                for (int i = 0; i < perProducer; i++)
                {
                    var value = new byte[50_000];
                    Random.Shared.NextBytes(value);
                    lock (sent)
                        sent[$"{p}-{i}"] = value;
                    sends.Add(producer.ProduceAsync(new TopicPartition("budget", i % 2),
                        new Message<byte[]?, byte[]?> { Key = System.Text.Encoding.UTF8.GetBytes($"{p}-{i}"), Value = value }));
                }
                await Task.WhenAll(sends);
            })));

            var read = Clients.ReadAll(broker.Bootstrap, "budget", 2);
            Assert.Equal(producers * perProducer, read.Count);
            foreach (var r in read)
                Assert.Equal(sent[System.Text.Encoding.UTF8.GetString(r.Message.Key!)], r.Message.Value);
            Assert.Equal(0, broker.Terminate());
        }
        finally
        {
            Directory.Delete(dataDir, recursive: true);
        }
    }
}
