using System.Diagnostics;
using System.Globalization;
using Confluent.Kafka;

namespace Kiou.Cli;

/// <summary>
/// bin/producer-perf.sh, after Kafka's kafka-producer-perf-test.sh (ProducerPerformance.java): sends N records of
/// S bytes, at most R per second, prints a progress line every 5 s (standard error) and Kafka's summary line at
/// the end (standard output). Per record: one Produce call with a shared message and a shared delivery callback;
/// latency comes from the record's CreateTime (milliseconds, as Kafka's tool measures), no allocation of ours.
/// </summary>
public static class ProducerPerf
{
    static readonly Flag[] Flags =
    [
        Kafka.BootstrapFlag,
        new("topic", "topic to produce to", "TOPIC"),
        new("num-records", "how many records to send", "N"),
        new("record-size", "bytes per record value", "S"),
        new("throughput", "at most R records/sec, -1 for no limit", "R"),
        new("producer-props", "producer properties such as acks=1 linger.ms=5 (one or more after the flag)", "K=V...", Repeatable: true),
        new("producer.config", "file of producer properties (key=value lines)", "FILE", Aliases: ["command-config"]),
        new("reporting-interval", "ms between progress lines (default 5000)", "MS"),
    ];

    // Kafka samples at most 500,000 latencies for the percentiles.
    const int LatencySamplesMax = 500_000;

    public static int Run(string[] args)
    {
        var o = Options.Parse(ExpandProps(args), "bin/producer-perf.sh --topic T --num-records N --record-size S --throughput R|-1 [--producer-props K=V ...]",
            "Measures produce throughput and latency (Kafka's kafka-producer-perf-test.sh).", Flags);
        if (o is null)
            return Program.ExitOk;
        string topic = o.Required("topic");
        long numRecords = o.Long("num-records", -1, 1);
        if (numRecords < 0)
            throw o.Fail("--num-records is required");
        int recordSize = o.Int("record-size", -1, 0, 100 * 1024 * 1024);
        if (recordSize < 0)
            throw o.Fail("--record-size is required");
        if (!o.Has("throughput"))
            throw o.Fail("--throughput is required (-1 for no limit)");
        double throughput = o.Double("throughput", -1);
        long reportingMs = o.Long("reporting-interval", 5000, 1);
        var kafka = new Kafka("producer-perf", o);
        var config = new ProducerConfig
        {
            BootstrapServers = kafka.Bootstrap,
            Acks = Acks.All,
            LingerMs = 5,
            QueueBufferingMaxKbytes = 1 << 20,
            MessageTimeoutMs = 30000,
            TopicMetadataPropagationMaxMs = 10000,
            DeliveryReportFields = "timestamp,status",
        };
        Kafka.Apply(config, o, "producer-props", "producer.config");
        // As Kafka's producer since 3.0: idempotent unless set otherwise or acks is not all (then silently off).
        config.EnableIdempotence ??= config.Acks == Acks.All;
        using var producer = kafka.Build(() => new ProducerBuilder<Null, byte[]>(config)
            .SetErrorHandler((_, e) => kafka.OnError(e)).SetLogHandler((_, m) => kafka.OnLog(m)).Build(), o);
        using (var admin = new DependentAdminClientBuilder(producer.Handle).Build())
            kafka.Reach(admin);

        // Kafka's payload: random upper-case letters, made once.
        var payload = new byte[recordSize];
        var random = new Random(0);
        for (int i = 0; i < payload.Length; i++)
            payload[i] = (byte)('A' + random.Next(26));
        var message = new Message<Null, byte[]> { Value = payload };
        var stats = new Stats(numRecords, recordSize, reportingMs);
        Action<DeliveryReport<Null, byte[]>> onDelivery = stats.OnDelivery;

        var clock = Stopwatch.StartNew();
        for (long i = 0; i < numRecords; i++)
        {
            if (throughput > 0)
            {
                // Kafka's ThroughputThrottler: sleep while ahead of the target rate.
                double aheadMs = i * 1000.0 / throughput - clock.Elapsed.TotalMilliseconds;
                if (aheadMs >= 1)
                    Thread.Sleep((int)aheadMs);
            }
            while (true)
            {
                try
                {
                    producer.Produce(topic, message, onDelivery);
                    break;
                }
                catch (ProduceException<Null, byte[]> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
                {
                    producer.Poll(TimeSpan.FromMilliseconds(1));
                }
                catch (ProduceException<Null, byte[]> e)
                {
                    // Refused by the client before sending (librdkafka reports its own size limit with the broker's code).
                    throw new FailedException(e.Error.Code == ErrorCode.MsgSizeTooLarge
                        ? $"a record of {recordSize} bytes is larger than the producer's message.max.bytes ({config.MessageMaxBytes ?? 1000000}): raise it with --producer-props message.max.bytes=N (the topic's max.message.bytes must allow it too) or lower --record-size"
                        : $"cannot produce to topic '{topic}': {e.Error.Reason} ({e.Error.Code})");
                }
            }
        }
        var deadline = DateTime.UtcNow.AddMilliseconds(config.MessageTimeoutMs!.Value + 10000);
        while (producer.Flush(TimeSpan.FromSeconds(1)) > 0)
        {
            if (DateTime.UtcNow > deadline)
                throw new FailedException("records are still unacknowledged after the message timeout");
        }
        Console.Out.WriteLine(stats.Summary(clock.Elapsed.TotalMilliseconds));
        if (stats.Failed > 0)
        {
            string hint = stats.FirstCode == ErrorCode.MsgSizeTooLarge
                ? $"; raise the topic's max.message.bytes (bin/topics.sh --alter --topic {topic} --config max.message.bytes=N) or lower --record-size"
                : "";
            Console.Error.WriteLine($"producer-perf: {stats.Failed} of {numRecords} records were not delivered to topic '{topic}': {stats.FirstError}{hint}");
            return Program.ExitFailed;
        }
        return Program.ExitOk;
    }

    /// <summary>Kafka's --producer-props takes several k=v words after one flag: make each its own flag.</summary>
    static string[] ExpandProps(string[] args)
    {
        var list = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            list.Add(args[i]);
            if (args[i] != "--producer-props")
                continue;
            int j = i + 1;
            for (; j < args.Length && !args[j].StartsWith("--", StringComparison.Ordinal); j++)
            {
                if (j > i + 1)
                    list.Add("--producer-props");
                list.Add(args[j]);
            }
            i = j - 1;
        }
        return list.ToArray();
    }

    /// <summary>Kafka's ProducerPerformance.Stats, updated by delivery reports under its own lock.</summary>
    sealed class Stats
    {
        readonly object _gate = new();
        readonly long _reportingMs;
        readonly int _recordSize;
        readonly int[] _latencies;
        readonly int _sampling;
        long _count, _bytes, _totalLatency, _index;
        int _maxLatency;
        long _windowStart = Environment.TickCount64, _windowCount, _windowBytes, _windowTotalLatency;
        int _windowMaxLatency;

        public long Failed;
        public string? FirstError;
        public ErrorCode FirstCode;

        public Stats(long numRecords, int recordSize, long reportingMs)
        {
            _recordSize = recordSize;
            _reportingMs = reportingMs;
            _sampling = (int)(numRecords / Math.Min(numRecords, LatencySamplesMax));
            _latencies = new int[(int)(numRecords / _sampling) + 1];
        }

        public void OnDelivery(DeliveryReport<Null, byte[]> r)
        {
            // Callbacks come from librdkafka's poll thread and from whoever calls Poll or Flush (they serve the same
            // queue): one uncontended lock keeps the counters exact.
            lock (_gate)
                Record(r);
        }

        void Record(DeliveryReport<Null, byte[]> r)
        {
            if (r.Error.Code != ErrorCode.NoError)
            {
                if (Interlocked.Increment(ref Failed) == 1)
                {
                    FirstError = $"{r.Error.Reason} ({r.Error.Code})";
                    FirstCode = r.Error.Code;
                }
                return;
            }
            long now = Environment.TickCount64;
            int latency = (int)Math.Max(0, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - r.Message.Timestamp.UnixTimestampMs);
            if (_count % _sampling == 0 && _index < _latencies.Length)
                _latencies[_index++] = latency;
            _count++;
            _bytes += _recordSize;
            _totalLatency += latency;
            _maxLatency = Math.Max(_maxLatency, latency);
            _windowCount++;
            _windowBytes += _recordSize;
            _windowTotalLatency += latency;
            _windowMaxLatency = Math.Max(_windowMaxLatency, latency);
            if (now - _windowStart >= _reportingMs)
            {
                double ms = now - _windowStart;
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{_windowCount} records sent, {1000.0 * _windowCount / ms:0.0} records/sec ({1000.0 * _windowBytes / ms / (1024 * 1024):0.00} MB/sec), {(double)_windowTotalLatency / _windowCount:0.0} ms avg latency, {(double)_windowMaxLatency:0.0} ms max latency."));
                _windowStart = now;
                _windowCount = _windowBytes = _windowTotalLatency = 0;
                _windowMaxLatency = 0;
            }
        }

        public string Summary(double elapsedMs)
        {
            lock (_gate)
                return SummaryLocked(elapsedMs);
        }

        string SummaryLocked(double elapsedMs)
        {
            double recsPerSec = 1000.0 * _count / elapsedMs;
            double mbPerSec = 1000.0 * _bytes / elapsedMs / (1024 * 1024);
            var sorted = _latencies.AsSpan(0, (int)_index).ToArray();
            Array.Sort(sorted);
            int P(double q) => sorted.Length == 0 ? 0 : sorted[(int)(q * sorted.Length)];
            return string.Create(CultureInfo.InvariantCulture,
                $"{_count} records sent, {recsPerSec:0.000000} records/sec ({mbPerSec:0.00} MB/sec), {(_count == 0 ? 0 : (double)_totalLatency / _count):0.00} ms avg latency, {(double)_maxLatency:0.00} ms max latency, {P(0.5)} ms 50th, {P(0.95)} ms 95th, {P(0.99)} ms 99th, {P(0.999)} ms 99.9th.");
        }
    }
}
