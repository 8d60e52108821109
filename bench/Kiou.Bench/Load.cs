using System.Diagnostics;
using Confluent.Kafka;
using Confluent.Kafka.Admin;

namespace Kiou.Bench;

sealed record RunResult(string Name, long Records, long Bytes, double Seconds, double BrokerCpuSeconds, double BrokerPeakRssMiB,
    double? P50Ms = null, double? P99Ms = null, double? P999Ms = null, double? MachineIdlePercent = null, double? ClientCpuSeconds = null)
{
    public double RecordsPerSecond => Records / Seconds;
    public double MBps => Bytes / Seconds / 1e6;
    public double CpuSecondsPerGB => Bytes == 0 ? 0 : BrokerCpuSeconds / (Bytes / 1e9);
}

/// <summary>Load generated with librdkafka (Confluent.Kafka): the same client library as kcat and the perf tools.</summary>
static class Load
{
    public static void CreateTopic(string bootstrap, string topic, int partitions, Dictionary<string, string>? configs = null)
    {
        using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = bootstrap }).Build();
        admin.CreateTopicsAsync([new TopicSpecification { Name = topic, NumPartitions = partitions, ReplicationFactor = 1, Configs = configs }])
            .GetAwaiter().GetResult();
    }

    public static ProducerConfig ProducerConfig(string bootstrap, Acks acks, int batchBytes, int lingerMs) => new()
    {
        BootstrapServers = bootstrap,
        Acks = acks,
        LingerMs = lingerMs,
        BatchSize = batchBytes,
        MessageMaxBytes = Math.Max(1_000_000, batchBytes + 1000),
        QueueBufferingMaxKbytes = 1024 * 1024,
        QueueBufferingMaxMessages = 2_000_000,
        EnableIdempotence = false,
        CompressionType = CompressionType.None,
    };

    /// <summary>Produces <paramref name="count"/> records of <paramref name="recordBytes"/> spread over the topic's partitions,
    /// from <paramref name="clients"/> producer instances (each its own TCP connection), as fast as they go.</summary>
    /// <remarks>The driver must not be the bottleneck it measures: no per-record delivery report crosses into managed code
    /// (librdkafka still waits for every ack); instead the partitions' end offsets are checked after the flush, so a
    /// record that was not stored still fails the run.</remarks>
    /// <param name="compression">The producers' compression.type; with anything but None the records are
    /// <see cref="CompressibleRecords"/>, distinct and compressible as log lines are, instead of random bytes.</param>
    public static RunResult Produce(string name, BrokerUnderTest broker, string topic, int partitions, int recordBytes, long count,
        Acks acks, int batchBytes, int clients = 1, int lingerMs = 5, CompressionType compression = CompressionType.None, bool idempotent = false, int? maxInFlight = null)
    {
        var payload = new byte[recordBytes];
        new Random(42).NextBytes(payload);
        byte[][] payloads = compression == CompressionType.None ? [payload] : CompressibleRecords(recordBytes);
        var producers = new IProducer<Null, byte[]>[clients];
        for (int i = 0; i < clients; i++)
        {
            ProducerConfig config = ProducerConfig(broker.Bootstrap, acks, batchBytes, lingerMs);
            config.CompressionType = compression;
            config.EnableDeliveryReports = false;
            config.EnableIdempotence = idempotent;
            if (maxInFlight is int inFlight)
                config.MaxInFlight = inFlight;
            producers[i] = new ProducerBuilder<Null, byte[]>(config).Build();
        }
        var tps = Enumerable.Range(0, partitions).Select(p => new TopicPartition(topic, p)).ToArray();
        // Warm the connections and metadata before timing.
        foreach (var p in producers)
        {
            p.Produce(tps[0], new Message<Null, byte[]> { Value = payload });
            p.Flush(TimeSpan.FromSeconds(30));
        }
        long before = EndOffsets(broker.Bootstrap, tps);
        double cpu0 = broker.CpuSeconds();
        var idle0 = MachineCpu.Read();
        var sw = Stopwatch.StartNew();
        var threads = new Thread[clients];
        for (int c = 0; c < clients; c++)
        {
            int client = c;
            threads[c] = new Thread(() =>
            {
                var producer = producers[client];
                var messages = payloads.Select(p => new Message<Null, byte[]> { Value = p }).ToArray();
                long mine = count / clients + (client < count % clients ? 1 : 0);
                for (long i = 0; i < mine; i++)
                {
                    var tp = tps[(int)((i * clients + client) % partitions)];
                    var message = messages[i % messages.Length];
                    while (true)
                    {
                        try
                        {
                            producer.Produce(tp, message);
                            break;
                        }
                        catch (ProduceException<Null, byte[]> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
                        {
                            producer.Poll(TimeSpan.FromMilliseconds(1));
                        }
                    }
                }
                producer.Flush(TimeSpan.FromMinutes(5));
            });
            threads[c].Start();
        }
        foreach (var t in threads)
            t.Join();
        sw.Stop();
        double cpu = broker.CpuSeconds() - cpu0;
        double idlePercent = MachineCpu.IdlePercentSince(idle0);
        foreach (var p in producers)
            p.Dispose();
        long stored = EndOffsets(broker.Bootstrap, tps) - before;
        if (stored != count)
            throw new InvalidOperationException($"{name}: {count} records produced but the partitions' end offsets grew by {stored}");
        return new RunResult(name, count, count * recordBytes, sw.Elapsed.TotalSeconds, cpu, broker.PeakRssMiB(), MachineIdlePercent: idlePercent);
    }

    /// <summary>
    /// The client's own ceiling: the same produce loop as <see cref="Produce"/>, against librdkafka's in-process mock
    /// cluster (<c>test.mock.num.brokers=1</c>, which stores nothing and answers at once), so that what the client
    /// costs can be told from what the broker costs.
    /// </summary>
    public static RunResult ProduceToMockCluster(string name, int recordBytes, long count, Acks acks, int batchBytes, int lingerMs = 5,
        bool idempotent = false, int? maxInFlight = null)
    {
        var payload = new byte[recordBytes];
        new Random(42).NextBytes(payload);
        ProducerConfig config = ProducerConfig("", acks, batchBytes, lingerMs);
        config.BootstrapServers = null;
        config.Set("test.mock.num.brokers", "1");
        config.EnableDeliveryReports = false;
        config.EnableIdempotence = idempotent;
        if (maxInFlight is int inFlight)
            config.MaxInFlight = inFlight;
        using var producer = new ProducerBuilder<Null, byte[]>(config).Build();
        var tp = new TopicPartition("mock-ceiling", 0);
        var message = new Message<Null, byte[]> { Value = payload };
        producer.Produce(tp, message);
        producer.Flush(TimeSpan.FromSeconds(30));
        var idle0 = MachineCpu.Read();
        var sw = Stopwatch.StartNew();
        for (long i = 0; i < count; i++)
        {
            while (true)
            {
                try
                {
                    producer.Produce(tp, message);
                    break;
                }
                catch (ProduceException<Null, byte[]> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
                {
                    producer.Poll(TimeSpan.FromMilliseconds(1));
                }
            }
        }
        if (producer.Flush(TimeSpan.FromMinutes(5)) != 0)
            throw new InvalidOperationException($"{name}: records still queued after the flush");
        sw.Stop();
        return new RunResult(name, count, count * recordBytes, sw.Elapsed.TotalSeconds, 0, 0, MachineIdlePercent: MachineCpu.IdlePercentSince(idle0));
    }

    /// <summary>
    /// 4,096 distinct records of <paramref name="recordBytes"/> that look like JSON log lines (ids, words from a small
    /// vocabulary, numbers), so that a batch compresses about as real data does (gzip: about 4:1), not like identical
    /// or random records.
    /// </summary>
    public static byte[][] CompressibleRecords(int recordBytes)
    {
        string[] words = ["GET", "POST", "/api/orders", "/api/users", "/health", "ok", "timeout", "eu-west-1", "us-east-2",
            "checkout", "payment", "inventory", "retry", "cache-miss", "cache-hit", "warn", "info", "debug"];
        var rng = new Random(7);
        var records = new byte[4096][];
        var text = new System.Text.StringBuilder();
        for (int i = 0; i < records.Length; i++)
        {
            text.Clear();
            while (text.Length < recordBytes)
            {
                text.Append("{\"ts\":").Append(1_700_000_000_000L + rng.Next(1_000_000)).Append(",\"id\":\"")
                    .Append(rng.Next().ToString("x8", System.Globalization.CultureInfo.InvariantCulture)).Append("\",\"op\":\"")
                    .Append(words[rng.Next(words.Length)]).Append("\",\"path\":\"").Append(words[rng.Next(words.Length)])
                    .Append("\",\"ms\":").Append(rng.Next(2000)).Append(",\"status\":\"").Append(words[rng.Next(words.Length)]).Append("\"}\n");
            }
            records[i] = System.Text.Encoding.ASCII.GetBytes(text.ToString(0, recordBytes));
        }
        return records;
    }

    /// <summary>Sum of the partitions' end offsets (ListOffsets, latest).</summary>
    internal static long EndOffsets(string bootstrap, TopicPartition[] tps)
    {
        using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = bootstrap }).Build();
        var result = admin.ListOffsetsAsync(tps.Select(tp => new TopicPartitionOffsetSpec { TopicPartition = tp, OffsetSpec = OffsetSpec.Latest() }))
            .GetAwaiter().GetResult();
        return result.ResultInfos.Sum(r => r.TopicPartitionOffsetError.Offset.Value);
    }

    /// <summary>A value "deserializer" that only measures: the driver counts bytes without copying each value out.</summary>
    sealed class LengthOnly : IDeserializer<int>
    {
        public int Deserialize(ReadOnlySpan<byte> data, bool isNull, SerializationContext context) => isNull ? 0 : data.Length;
    }

    /// <summary>Consumes <paramref name="count"/> records from the beginning of every partition.</summary>
    public static RunResult Consume(string name, BrokerUnderTest broker, string topic, int partitions, long count)
    {
        using var consumer = new ConsumerBuilder<Ignore, int>(new ConsumerConfig
        {
            BootstrapServers = broker.Bootstrap,
            GroupId = "kiou-bench",
            EnableAutoCommit = false,
            FetchMaxBytes = 52428800,
            MaxPartitionFetchBytes = 10485760,
            QueuedMaxMessagesKbytes = 1024 * 1024,
            ConsumeResultFields = "none",
        }).SetValueDeserializer(new LengthOnly()).Build();
        consumer.Assign(Enumerable.Range(0, partitions).Select(p => new TopicPartitionOffset(topic, p, Offset.Beginning)));
        long n = 0, bytes = 0;
        double cpu0 = broker.CpuSeconds();
        var sw = Stopwatch.StartNew();
        while (n < count)
        {
            var r = consumer.Consume(TimeSpan.FromSeconds(10)) ?? throw new TimeoutException($"{name}: stalled after {n} records");
            n++;
            bytes += r.Message.Value;
        }
        sw.Stop();
        double cpu = broker.CpuSeconds() - cpu0;
        consumer.Close();
        return new RunResult(name, n, bytes, sw.Elapsed.TotalSeconds, cpu, broker.PeakRssMiB());
    }

    /// <summary>End-to-end latency (produce call to consumer receipt) at a fixed rate, in one process so one clock serves both.</summary>
    public static RunResult Latency(string name, BrokerUnderTest broker, string topic, int ratePerSecond, TimeSpan duration, int recordBytes = 100)
    {
        using var consumer = new ConsumerBuilder<Ignore, byte[]>(new ConsumerConfig
        {
            BootstrapServers = broker.Bootstrap,
            GroupId = "kiou-bench-latency",
            EnableAutoCommit = false,
            FetchWaitMaxMs = 100,
            FetchMinBytes = 1,
        }).Build();
        consumer.Assign(new TopicPartitionOffset(topic, 0, Offset.End));
        using var producer = new ProducerBuilder<Null, byte[]>(ProducerConfig(broker.Bootstrap, Acks.Leader, 16384, 0)).Build();
        // Let the consumer settle at the end of the log.
        producer.ProduceAsync(new TopicPartition(topic, 0), new Message<Null, byte[]> { Value = new byte[recordBytes] }).GetAwaiter().GetResult();
        var warm = Stopwatch.StartNew();
        while (warm.Elapsed < TimeSpan.FromSeconds(5) && consumer.Consume(TimeSpan.FromMilliseconds(200)) is null)
        {
        }
        long total = (long)(ratePerSecond * duration.TotalSeconds);
        var latencies = new double[total];
        long received = 0;
        var consumerThread = new Thread(() =>
        {
            var deadline = Stopwatch.StartNew();
            while (received < total && deadline.Elapsed < duration + TimeSpan.FromSeconds(20))
            {
                var r = consumer.Consume(TimeSpan.FromMilliseconds(100));
                if (r is null || r.Message.Value.Length < 8)
                    continue;
                long sent = BitConverter.ToInt64(r.Message.Value, 0);
                if (sent == 0)
                    continue;
                latencies[received++] = (Stopwatch.GetTimestamp() - sent) * 1000.0 / Stopwatch.Frequency;
            }
        });
        consumerThread.Start();
        double cpu0 = broker.CpuSeconds();
        var sw = Stopwatch.StartNew();
        var tp = new TopicPartition(topic, 0);
        for (long i = 0; i < total; i++)
        {
            long due = (long)(i * (double)Stopwatch.Frequency / ratePerSecond);
            while (sw.ElapsedTicks < due) // both in Stopwatch ticks
                Thread.SpinWait(20);
            var value = new byte[recordBytes];
            BitConverter.TryWriteBytes(value, Stopwatch.GetTimestamp());
            producer.Produce(tp, new Message<Null, byte[]> { Value = value });
        }
        producer.Flush(TimeSpan.FromSeconds(30));
        consumerThread.Join();
        sw.Stop();
        double cpu = broker.CpuSeconds() - cpu0;
        var got = latencies.AsSpan(0, (int)received).ToArray();
        Array.Sort(got);
        double P(double q) => got.Length == 0 ? double.NaN : got[Math.Min(got.Length - 1, (int)(q * got.Length))];
        return new RunResult(name, received, received * recordBytes, sw.Elapsed.TotalSeconds, cpu, broker.PeakRssMiB(), P(0.50), P(0.99), P(0.999));
    }
}

/// <summary>
/// The whole machine's CPU time from /proc/stat: how much of the cores nobody used during a run. A run that leaves the
/// cores idle is limited by waiting (the client's own locks, round trips), not by CPU, so the broker's CPU cost per
/// byte does not show in its records/s.
/// </summary>
static class MachineCpu
{
    public readonly record struct Sample(long Idle, long Total);

    public static Sample Read()
    {
        // "cpu  user nice system idle iowait irq softirq steal guest guest_nice", in clock ticks.
        string? line = File.Exists("/proc/stat") ? File.ReadLines("/proc/stat").FirstOrDefault() : null;
        if (line is null || !line.StartsWith("cpu ", StringComparison.Ordinal))
            return default;
        long[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Take(8).Select(long.Parse).ToArray();
        return new Sample(f[3] + f[4], f.Sum());
    }

    public static double IdlePercentSince(Sample start)
    {
        Sample now = Read();
        long total = now.Total - start.Total;
        return total <= 0 ? double.NaN : 100.0 * (now.Idle - start.Idle) / total;
    }
}
