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
            // 3 s, or longer (up to 30 s) on a machine so loaded that 3 s gave the two threads few rounds.
            while ((until.Elapsed < TimeSpan.FromSeconds(3) || rounds <= 1_000) && until.Elapsed < TimeSpan.FromSeconds(30) && rounds < 5_000_000)
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

/// <summary>Measures the process's managed heap, so it runs alone: no other test's broker allocates meanwhile.</summary>
[CollectionDefinition(nameof(RequestMemoryTests), DisableParallelization = true)]
[Collection(nameof(RequestMemoryTests))]
public sealed class RequestMemoryTests
{
    /// <summary>
    /// Memory follows the bytes that arrived, not the sizes that were declared: connections that each announce a
    /// request of 100 MB and then stall must not make the broker allocate those buffers up front.
    /// </summary>
    [Fact]
    public async Task Declared_sizes_that_never_arrive_do_not_take_memory()
    {
        await using var broker = TestBroker.Start();
        var sockets = new List<System.Net.Sockets.Socket>();
        try
        {
            GC.Collect();
            long before = GC.GetTotalMemory(forceFullCollection: true);
            byte[] start = new byte[4 + 70_000];
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(start, 100_000_000);
            System.Buffers.Binary.BinaryPrimitives.WriteInt16BigEndian(start.AsSpan(4), 0); // Produce
            System.Buffers.Binary.BinaryPrimitives.WriteInt16BigEndian(start.AsSpan(6), 7);
            for (int i = 0; i < 20; i++)
            {
                var s = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
                sockets.Add(s);
                await s.ConnectAsync(broker.Broker.BrokerEndPoint);
                await s.SendAsync(start, System.Net.Sockets.SocketFlags.None); // then stall
            }
            await Task.Delay(1000);
            long held = (GC.GetTotalMemory(forceFullCollection: true) - before) >> 20;
            Assert.True(held < 200, $"the broker holds {held} MiB more managed memory while 20 connections have declared 100 MB each and sent 70 kB");

            using var producer = Clients.Producer(broker.Bootstrap, Acks.Leader);
            await Clients.CreateTopicAsync(broker.Bootstrap, "declared", 1, new() { ["max.message.bytes"] = "16777216" });
            var delivered = await producer.ProduceAsync(new TopicPartition("declared", 0), new Message<byte[]?, byte[]?> { Value = [1] })
                .WaitAsync(TimeSpan.FromSeconds(15));
            Assert.Equal(PersistenceStatus.Persisted, delivered.Status);

            // A request far larger than the first buffer still arrives whole as its buffer grows.
            byte[] records = TestBatches.Uncompressed(500_000);
            var request = new Kiou.Protocol.Messages.ProduceRequest
            {
                Acks = 1,
                TimeoutMs = 5000,
                TopicData = [new() { Name = "declared", PartitionData = [new() { Index = 0, Records = records }] }],
            };
            var w = new Kiou.Protocol.KafkaWriter();
            int at = w.ReserveInt32();
            new Kiou.Protocol.Messages.RequestHeader { RequestApiKey = 0, RequestApiVersion = 7, CorrelationId = 9, ClientId = "large" }
                .Write(w, Kiou.Protocol.Messages.ApiMessageTypes.RequestHeaderVersion(0, 7));
            request.Write(w, 7);
            w.PatchInt32(at, w.Length - 4);
            Assert.True(w.Length > 4 << 20);
            using var large = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            await large.ConnectAsync(broker.Broker.BrokerEndPoint);
            await large.SendAsync(w.WrittenSpan.ToArray(), System.Net.Sockets.SocketFlags.None);
            byte[] size = new byte[4];
            await ReceiveExactlyAsync(large, size);
            byte[] body = new byte[System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(size)];
            await ReceiveExactlyAsync(large, body);
            var reader = new Kiou.Protocol.KafkaReader(body.AsMemory(4));
            var response = new Kiou.Protocol.Messages.ProduceResponse();
            response.Read(ref reader, 7);
            Assert.False(reader.Failed);
            Assert.Equal(0, response.Responses[0].PartitionResponses[0].ErrorCode);
            Assert.Equal(500_001, broker.Broker.Logs.Get("declared", 0)!.HighWatermark);
        }
        finally
        {
            foreach (var s in sockets)
                s.Dispose();
        }
    }

    /// <summary>
    /// Large produce requests are read into native frames from the listener's pool, not into arrays on the managed
    /// heap (which kept 2 MiB arrays per 1 MiB batch on the large-object heap), and every frame goes back once its
    /// request is answered: none stays rented, and the pool keeps no more than its cap.
    /// </summary>
    [Fact]
    public async Task Large_produce_requests_use_native_frames_and_give_every_one_back()
    {
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, "frames", 1);
        byte[] records = TestBatches.Uncompressed(60_000); // just under max.message.bytes (1 MiB)
        var request = new Kiou.Protocol.Messages.ProduceRequest
        {
            Acks = 1,
            TimeoutMs = 5000,
            TopicData = [new() { Name = "frames", PartitionData = [new() { Index = 0, Records = records }] }],
        };
        var w = new Kiou.Protocol.KafkaWriter();
        int at = w.ReserveInt32();
        new Kiou.Protocol.Messages.RequestHeader { RequestApiKey = 0, RequestApiVersion = 7, CorrelationId = 1, ClientId = "frames" }
            .Write(w, Kiou.Protocol.Messages.ApiMessageTypes.RequestHeaderVersion(0, 7));
        request.Write(w, 7);
        w.PatchInt32(at, w.Length - 4);
        byte[] frame = w.WrittenSpan.ToArray();
        const int perConnection = 24, pipelined = 4;
        byte[] burst = [.. Enumerable.Range(0, pipelined).SelectMany(_ => frame)];

        GC.Collect();
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        await Task.WhenAll(Enumerable.Range(0, 2).Select(_ => Task.Run(async () =>
        {
            using var s = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            await s.ConnectAsync(broker.Broker.BrokerEndPoint);
            byte[] mySize = new byte[4], myBody = new byte[1 << 16];
            for (int i = 0; i < perConnection / pipelined; i++)
            {
                await s.SendAsync(burst, System.Net.Sockets.SocketFlags.None);
                for (int r = 0; r < pipelined; r++)
                {
                    await ReceiveExactlyAsync(s, mySize);
                    int n = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(mySize);
                    await ReceiveExactlyAsync(s, myBody, n);
                    var reader = new Kiou.Protocol.KafkaReader(myBody.AsMemory(4, n - 4));
                    var response = new Kiou.Protocol.Messages.ProduceResponse();
                    response.Read(ref reader, 7);
                    Assert.Equal(0, response.Responses[0].PartitionResponses[0].ErrorCode);
                }
            }
        })));
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;

        Assert.Equal(2L * perConnection * 60_000, broker.Broker.Logs.Get("frames", 0)!.HighWatermark);
        long produced = 2L * perConnection * frame.Length;
        Assert.True(allocated < produced / 8, $"{allocated >> 20} MiB allocated on the managed heap for {produced >> 20} MiB of produce requests");
        var (rented, retained, retainedMax) = broker.Broker.FrameBytes;
        Assert.Equal(0, rented);
        Assert.True(retained > 0, "no frame came from the native pool");
        Assert.True(retained <= retainedMax, $"the pool keeps {retained} bytes, more than its cap {retainedMax}");
    }

    static async Task ReceiveExactlyAsync(System.Net.Sockets.Socket s, byte[] buffer, int count)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        for (int read = 0; read < count;)
        {
            int n = await s.ReceiveAsync(buffer.AsMemory(read, count - read), System.Net.Sockets.SocketFlags.None, cts.Token);
            Assert.True(n > 0, "the broker closed the connection");
            read += n;
        }
    }

    static async Task ReceiveExactlyAsync(System.Net.Sockets.Socket s, byte[] buffer)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        for (int read = 0; read < buffer.Length;)
        {
            int n = await s.ReceiveAsync(buffer.AsMemory(read), System.Net.Sockets.SocketFlags.None, cts.Token);
            Assert.True(n > 0, "the broker closed the connection");
            read += n;
        }
    }
}
