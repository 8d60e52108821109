using System.Diagnostics;
using System.Globalization;
using Confluent.Kafka;

namespace Kiou.Bench;

/// <summary>
/// The log cleaner's figures (issue 15): how fast it cleans a dirty compacted partition and at what CPU cost, and what
/// its running does to produce latency on another topic. The dirty log is written with the cleaner off, then the broker
/// restarts on the same data dir with it on, so the clean is timed alone.
/// </summary>
static class Compaction
{
    public const string Topic = "dirty";

    /// <summary>Writes <paramref name="count"/> records of <paramref name="recordBytes"/> over <paramref name="keys"/>
    /// keys (each key overwritten count/keys times) to a compacted topic, with the cleaner off; returns the data dir.</summary>
    public static string WriteDirtyLog(string brokerBinary, string dataRoot, long count, int recordBytes, int keys, CompressionType compression)
    {
        using var b = BrokerUnderTest.Start(brokerBinary, dataRoot, new Dictionary<string, string> { ["KIOU_LOG_CLEANER_ENABLE"] = "false" });
        Load.CreateTopic(b.Bootstrap, Topic, 1, new Dictionary<string, string>
        {
            ["cleanup.policy"] = "compact",
            ["segment.bytes"] = (16 << 20).ToString(CultureInfo.InvariantCulture), // compressed rows need several segments too
        });
        var config = Load.ProducerConfig(b.Bootstrap, Acks.Leader, 1048576, 5);
        config.CompressionType = compression;
        config.EnableDeliveryReports = false;
        using (var producer = new ProducerBuilder<byte[], byte[]>(config).Build())
        {
            byte[][] values = compression == CompressionType.None ? [RandomBytes(recordBytes)] : Load.CompressibleRecords(recordBytes);
            var keyBytes = Enumerable.Range(0, keys).Select(k => System.Text.Encoding.ASCII.GetBytes($"key-{k:D8}")).ToArray();
            var tp = new TopicPartition(Topic, 0);
            for (long i = 0; i < count; i++)
            {
                var message = new Message<byte[], byte[]> { Key = keyBytes[i % keys], Value = values[i % values.Length] };
                while (true)
                {
                    try
                    {
                        producer.Produce(tp, message);
                        break;
                    }
                    catch (ProduceException<byte[], byte[]> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
                    {
                        producer.Poll(TimeSpan.FromMilliseconds(1));
                    }
                }
            }
            producer.Flush(TimeSpan.FromMinutes(5));
        }
        long end = Load.EndOffsets(b.Bootstrap, [new TopicPartition(Topic, 0)]);
        if (end != count)
            throw new InvalidOperationException($"{count} records produced, the end offset is {end}");
        return b.KeepDataDir();
    }

    /// <summary>Bytes of the partition's sealed segments: what the cleaner may clean.</summary>
    public static long SealedBytes(string dataDir) => SealedSegments(dataDir).Sum(f => new FileInfo(f).Length);

    static List<string> SealedSegments(string dataDir)
    {
        var logs = Directory.GetFiles(Path.Combine(dataDir, Topic + "-0"), "*.log").Order(StringComparer.Ordinal).ToList();
        logs.RemoveAt(logs.Count - 1); // the active segment
        return logs;
    }

    /// <summary>The active segment's base offset: the clean is done once the cleaner's checkpoint reaches it.</summary>
    static long ActiveBase(string dataDir) =>
        long.Parse(Path.GetFileNameWithoutExtension(Directory.GetFiles(Path.Combine(dataDir, Topic + "-0"), "*.log").Order(StringComparer.Ordinal).Last()), CultureInfo.InvariantCulture);

    /// <summary>The cleaned-up-to offset of the partition in Kafka's cleaner-offset-checkpoint file, -1 if none yet.</summary>
    static long Checkpoint(string dataDir)
    {
        string path = Path.Combine(dataDir, "cleaner-offset-checkpoint");
        try
        {
            foreach (string line in File.ReadLines(path).Skip(2))
            {
                var parts = line.Split(' ');
                if (parts.Length == 3 && parts[0] == Topic && parts[1] == "0")
                    return long.Parse(parts[2], CultureInfo.InvariantCulture);
            }
        }
        catch (IOException)
        {
            // not written yet, or being replaced
        }
        return -1;
    }

    /// <summary>Restarts on <paramref name="dataDir"/> with the cleaner unthrottled and times the clean: from the broker
    /// being up until its checkpoint covers every sealed segment. Bytes are the sealed segments' before cleaning.</summary>
    public static RunResult Clean(string name, string brokerBinary, string dataDir, long records)
    {
        long dirtyBytes = SealedBytes(dataDir);
        long target = ActiveBase(dataDir);
        if (target == 0)
            throw new InvalidOperationException($"{name}: the dirty log is one segment; nothing to clean");
        using var b = BrokerUnderTest.StartOn(brokerBinary, dataDir, new Dictionary<string, string>
        {
            ["KIOU_LOG_CLEANER_ENABLE"] = "true",
            ["KIOU_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND"] = int.MaxValue.ToString(CultureInfo.InvariantCulture), // its upper bound: unthrottled
        });
        double cpu0 = b.CpuSeconds();
        var sw = Stopwatch.StartNew();
        while (Checkpoint(dataDir) < target)
        {
            if (sw.Elapsed > TimeSpan.FromMinutes(10))
                throw new TimeoutException($"{name}: the cleaner did not reach offset {target} in 10 minutes (checkpoint {Checkpoint(dataDir)})");
            Thread.Sleep(20);
        }
        sw.Stop();
        double cpu = b.CpuSeconds() - cpu0;
        long after = SealedBytes(dataDir);
        Console.Error.WriteLine($"  {name}: sealed segments {dirtyBytes / 1e6:F0} MB → {after / 1e6:F0} MB");
        return new RunResult(name, records, dirtyBytes, sw.Elapsed.TotalSeconds, cpu, b.PeakRssMiB());
    }

    /// <summary>Produce latency (send to acknowledgement, acks=all) of 1 KiB records at a fixed rate to a fresh topic,
    /// on a broker over <paramref name="dataDir"/> with the cleaner on or off, the cleaner's own settings otherwise
    /// at their defaults.</summary>
    public static RunResult ProduceLatency(string name, string brokerBinary, string dataDir, bool cleaner, int ratePerSecond, TimeSpan duration)
    {
        long target = ActiveBase(dataDir);
        using var b = BrokerUnderTest.StartOn(brokerBinary, dataDir, new Dictionary<string, string> { ["KIOU_LOG_CLEANER_ENABLE"] = cleaner ? "true" : "false" });
        string topic = "latency-" + Guid.NewGuid().ToString("N")[..6];
        Load.CreateTopic(b.Bootstrap, topic, 1);
        var config = Load.ProducerConfig(b.Bootstrap, Acks.All, 16384, 0);
        using var producer = new ProducerBuilder<Null, byte[]>(config).Build();
        var tp = new TopicPartition(topic, 0);
        producer.ProduceAsync(tp, new Message<Null, byte[]> { Value = new byte[1024] }).GetAwaiter().GetResult();
        long total = (long)(ratePerSecond * duration.TotalSeconds);
        var latencies = new double[total];
        long done = 0;
        var value = RandomBytes(1024);
        double cpu0 = b.CpuSeconds();
        var sw = Stopwatch.StartNew();
        for (long i = 0; i < total; i++)
        {
            long due = (long)(i * (double)Stopwatch.Frequency / ratePerSecond);
            while (sw.ElapsedTicks < due)
                Thread.SpinWait(20);
            long sent = Stopwatch.GetTimestamp();
            long index = i;
            producer.Produce(tp, new Message<Null, byte[]> { Value = value }, report =>
            {
                if (report.Error.IsError)
                    throw new InvalidOperationException($"{name}: produce failed: {report.Error}");
                latencies[index] = (Stopwatch.GetTimestamp() - sent) * 1000.0 / Stopwatch.Frequency;
                Interlocked.Increment(ref done);
            });
        }
        producer.Flush(TimeSpan.FromSeconds(60));
        sw.Stop();
        double cpu = b.CpuSeconds() - cpu0;
        bool cleaning = cleaner && Checkpoint(dataDir) < target;
        if (cleaner)
            Console.Error.WriteLine($"  {name}: the cleaner was {(cleaning ? "still cleaning at the end (as intended)" : "done before the end: make the dirty log larger")}");
        Array.Sort(latencies);
        double P(double q) => latencies[Math.Min(latencies.Length - 1, (int)(q * latencies.Length))];
        return new RunResult(name, done, done * 1024, sw.Elapsed.TotalSeconds, cpu, b.PeakRssMiB(), P(0.50), P(0.99), P(0.999));
    }

    public static void CopyDirectory(string from, string to)
    {
        var p = Process.Start("cp", ["-a", "--reflink=auto", from, to])!;
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new IOException($"cp -a {from} {to} failed");
    }

    static byte[] RandomBytes(int n)
    {
        var b = new byte[n];
        new Random(7).NextBytes(b);
        return b;
    }
}
