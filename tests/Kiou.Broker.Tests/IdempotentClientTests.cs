using System.Buffers.Binary;
using System.Diagnostics;
using Confluent.Kafka;
using Xunit.Abstractions;

namespace Kiou.Broker.Tests;

/// <summary>
/// Issue 13 with a real client: librdkafka (Confluent.Kafka) with enable.idempotence=true and acks=all. Through a proxy
/// that cuts connections at random (requests retried, some after they were appended), and across a kill -9 loop of the
/// broker (KIOU_FLUSH=always), every record lands exactly once per partition, in the order sent.
/// KIOU_IDEMPOTENCE_RECORDS sets the chaos run's records (scripts/soak-idempotence.sh runs a million);
/// KIOU_IDEMPOTENCE_CYCLES the kill -9 cycles.
/// </summary>
public sealed class IdempotentClientTests(ITestOutputHelper output)
{
    const int Partitions = 4;

    [Fact]
    public async Task Records_through_a_proxy_cutting_connections_land_exactly_once_in_order()
    {
        int count = int.TryParse(Environment.GetEnvironmentVariable("KIOU_IDEMPOTENCE_RECORDS"), out int n) && n > 0 ? n : 100_000;
        int port = BrokerProcess.FreePort();
        await using var broker = TestBroker.Start(c => c with { Port = port, AdvertisedHost = "127.0.0.2" });
        await using var proxy = ChaosProxy.ForBroker(port, new ChaosOptions { Seed = 13, CutProbability = 0.9, ToClientShare = 0.2, MinBytesBeforeCut = 1_000, MaxBytesBeforeCut = 600_000 });
        const string topic = "idempotent-chaos";
        proxy.ChaosEnabled = false; // CreateTopics is not retried by the admin client
        await Clients.CreateTopicAsync(proxy.Bootstrap, topic, Partitions);
        proxy.ChaosEnabled = true;

        var clock = Stopwatch.StartNew();
        long delivered = 0;
        long failed = 0;
        string? fatal = null;
        string? firstFailure = null;
        using (var producer = new ProducerBuilder<byte[]?, byte[]?>(new ProducerConfig
        {
            BootstrapServers = proxy.Bootstrap,
            EnableIdempotence = true,
            Acks = Acks.All,
            LingerMs = 5,
            MessageTimeoutMs = 300_000,
            ReconnectBackoffMs = 10,
            ReconnectBackoffMaxMs = 100,
        }).SetErrorHandler((_, e) =>
        {
            if (e.IsFatal)
                fatal ??= e.ToString();
        }).Build())
        {
            Action<DeliveryReport<byte[]?, byte[]?>> onDelivery = r =>
            {
                if (r.Error.Code != ErrorCode.NoError)
                {
                    Interlocked.Increment(ref failed);
                    firstFailure ??= r.Error.ToString();
                }
                // Besides the proxy's own random cuts: every connection at once, with requests in flight on each.
                if (Interlocked.Increment(ref delivered) % 8_000 == 0)
                    _ = Task.Run(proxy.CutAll);
            };
            for (int i = 0; i < count; i++)
            {
                var value = new byte[100];
                BinaryPrimitives.WriteInt32BigEndian(value, i);
                while (true)
                {
                    try
                    {
                        producer.Produce(new TopicPartition(topic, i % Partitions), new Message<byte[]?, byte[]?> { Value = value }, onDelivery);
                        break;
                    }
                    catch (ProduceException<byte[]?, byte[]?> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
                    {
                        producer.Poll(TimeSpan.FromMilliseconds(50));
                    }
                }
            }
            while (producer.Flush(TimeSpan.FromSeconds(5)) > 0)
                Assert.True(clock.Elapsed < TimeSpan.FromMinutes(30), $"still unacknowledged after {clock.Elapsed}; {proxy}");
        }
        Assert.True(fatal is null, $"fatal client error: {fatal}");
        Assert.True(failed == 0, $"{failed} records failed, first: {firstFailure}");
        double produceSeconds = clock.Elapsed.TotalSeconds;

        proxy.ChaosEnabled = false;
        var next = new int[Partitions];
        for (int p = 0; p < Partitions; p++)
            next[p] = p;
        long read = 0;
        foreach (var r in Clients.ReadAll(proxy.Bootstrap, topic, Partitions, TimeSpan.FromMinutes(5)))
        {
            int p = r.Partition.Value;
            int id = BinaryPrimitives.ReadInt32BigEndian(r.Message.Value);
            Assert.True(id == next[p], $"partition {p} offset {r.Offset.Value}: record {id} where {next[p]} was expected (a duplicate, a gap or a reordering); {proxy}");
            next[p] += Partitions;
            read++;
        }
        Assert.Equal(count, read);
        Assert.True(proxy.ConnectionsCut > 5, proxy.ToString());
        output.WriteLine($"{count} idempotent records in {produceSeconds:F1} s through the proxy ({proxy}); read back exactly once, in order");
    }

    [Fact]
    public async Task An_idempotent_producer_keeps_going_through_a_kill_9_loop_without_duplicates_or_gaps()
    {
        int cycles = int.TryParse(Environment.GetEnvironmentVariable("KIOU_IDEMPOTENCE_CYCLES"), out int c) && c > 0 ? c : 6;
        int seed = Environment.TickCount;
        var rng = new Random(seed);
        string dataDir = Path.Combine(Path.GetTempPath(), "kiou-idem-killloop-" + Guid.NewGuid().ToString("N"));
        const string topic = "idempotent-killloop";
        int port = BrokerProcess.FreePort();
        var env = new Dictionary<string, string> { ["KIOU_FLUSH"] = "always" };
        // id -> (partition, offset) as acknowledged.
        var acked = new Dictionary<int, (int Partition, long Offset)>();
        long failed = 0;
        string? fatal = null;
        string? firstFailure = null;
        try
        {
            BrokerProcess broker = BrokerProcess.Start(dataDir, env, port);
            try
            {
                await Clients.CreateTopicAsync(broker.Bootstrap, topic, Partitions, new Dictionary<string, string> { ["segment.bytes"] = "262144" });
                using var producer = new ProducerBuilder<byte[]?, byte[]?>(new ProducerConfig
                {
                    BootstrapServers = broker.Bootstrap,
                    EnableIdempotence = true,
                    Acks = Acks.All,
                    LingerMs = 2,
                    BatchSize = 100_000, // below segment.bytes even when records pile up while the broker is down
                    MessageTimeoutMs = 120_000,
                    ReconnectBackoffMs = 20,
                    ReconnectBackoffMaxMs = 200,
                }).SetErrorHandler((_, e) =>
                {
                    if (e.IsFatal)
                        fatal ??= e.ToString();
                }).Build();
                int sent = 0;
                for (int cycle = 0; cycle < cycles; cycle++)
                {
                    var until = DateTime.UtcNow.AddMilliseconds(rng.Next(200, 800));
                    while (DateTime.UtcNow < until)
                    {
                        int id = sent++;
                        var value = new byte[64];
                        BinaryPrimitives.WriteInt32BigEndian(value, id);
                        producer.Produce(new TopicPartition(topic, id % Partitions), new Message<byte[]?, byte[]?> { Value = value }, r =>
                        {
                            lock (acked)
                            {
                                if (r.Error.Code == ErrorCode.NoError)
                                    acked[id] = (r.Partition.Value, r.Offset.Value);
                                else
                                {
                                    failed++;
                                    firstFailure ??= r.Error.ToString();
                                }
                            }
                        });
                        if (id % 50 == 0)
                            await Task.Delay(1);
                    }
                    broker.Kill();
                    broker.Dispose();
                    await Task.Delay(rng.Next(0, 300));
                    broker = BrokerProcess.Start(dataDir, env, port);
                }
                Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(120)));
                Assert.True(fatal is null, $"fatal client error: {fatal} (seed {seed})");
                Assert.True(failed == 0, $"{failed} records failed, first: {firstFailure} (seed {seed})");
                Assert.Equal(sent, acked.Count);

                var seen = new Dictionary<int, (int Partition, long Offset)>();
                var last = new int[Partitions];
                Array.Fill(last, -1);
                foreach (var r in Clients.ReadAll(broker.Bootstrap, topic, Partitions, TimeSpan.FromMinutes(2)))
                {
                    int id = BinaryPrimitives.ReadInt32BigEndian(r.Message.Value);
                    int p = r.Partition.Value;
                    Assert.True(seen.TryAdd(id, (p, r.Offset.Value)), $"record {id} stored twice: at {seen.GetValueOrDefault(id)} and {p}/{r.Offset.Value} (seed {seed})");
                    Assert.True(id > last[p], $"partition {p}: record {id} after {last[p]} (seed {seed})");
                    last[p] = id;
                }
                foreach (var (id, at) in acked)
                    Assert.True(seen.TryGetValue(id, out var stored) && stored == at, $"record {id} acknowledged at {at} but stored at {(seen.TryGetValue(id, out var s) ? s.ToString() : "nowhere")} (seed {seed})");
                output.WriteLine($"kill -9 loop: {cycles} cycles, {sent} records sent, {acked.Count} acknowledged, {seen.Count} stored, 0 duplicates, 0 gaps (seed {seed})");
                Assert.Equal(0, broker.Terminate());
            }
            finally
            {
                broker.Dispose();
            }
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
}
