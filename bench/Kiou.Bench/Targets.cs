using System.Globalization;
using System.Text.Json;

namespace Kiou.Bench;

/// <summary>One target of issue 18: the measured figure, what it is compared with, and whether it is met.</summary>
sealed record TargetRow(string Target, string Figure, string Reference, double? Ratio, string Goal, bool? Met);

/// <summary>
/// <c>--suite targets</c> (issue 18): every target in one run, with the C driver (bench/perf/kiou-perf.c) so that the
/// client is not what is measured, against the client's own ceiling (librdkafka's mock cluster, same driver and
/// settings) and the machine's references (loopback TCP, disk write, cold disk read), each as a ratio.
/// </summary>
sealed class Targets
{
    readonly string _broker;
    readonly string _dataRoot;
    readonly bool _quick;
    readonly int _rounds;
    readonly int _clients;
    readonly double _loopback;
    readonly Dictionary<string, object> _env;
    readonly Action<string, RunResult, string, double> _report;
    readonly Func<BrokerUnderTest, int, string> _newTopic;
    readonly List<TargetRow> _rows = [];
    readonly string[]? _only;

    /// <param name="only">Comma-separated sections to run (rss, produce, durable, consume, latency); null: all.</param>
    public Targets(string broker, string dataRoot, bool quick, int rounds, int clients, double loopback, Dictionary<string, object> env,
        Action<string, RunResult, string, double> report, Func<BrokerUnderTest, int, string> newTopic, string? only = null)
    {
        _only = only?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        _broker = broker;
        _dataRoot = dataRoot;
        _quick = quick;
        _rounds = rounds;
        _clients = clients;
        _loopback = loopback;
        _env = env;
        _report = report;
        _newTopic = newTopic;
    }

    static Dictionary<string, string> Env(string flush = "roll") => new() { ["KIOU_IO"] = "uring", ["KIOU_FLUSH"] = flush };

    static string P(double ratio) => ratio.ToString("P0", CultureInfo.InvariantCulture);

    static string F(double v, string format) => v.ToString(format, CultureInfo.InvariantCulture);

    void Row(string target, string figure, string reference, double? ratio, string goal, bool? met)
    {
        _rows.Add(new TargetRow(target, figure, reference, ratio, goal, met));
        Console.Error.WriteLine($"  target: {target}: {figure}{(reference.Length > 0 ? $" vs {reference}" : "")}{(ratio is double r ? $" = {P(r)}" : "")}; goal {goal}: {(met is null ? "-" : met.Value ? "met" : "MISSED")}");
    }

    bool Want(string section) => _only is null || _only.Contains(section, StringComparer.OrdinalIgnoreCase);

    static RunResult Median(List<RunResult> runs, Func<RunResult, double> key) => runs.OrderBy(key).ElementAt(runs.Count / 2);

    static string Runs(List<RunResult> runs, Func<RunResult, double> key, string format) =>
        string.Join(" ", runs.Select(key).Order().Select(v => F(v, format)));

    public List<TargetRow> Run()
    {
        long scale(long full) => _quick ? full / 5 : full;

        double diskDirect = 0, diskBuffered = 0;
        if (Want("consume"))
        {
            // Disk read references: a new file, written, synced and dropped from the page cache, then read cold.
            long readFile = scale(1L << 30);
            string path = Path.Combine(_dataRoot, "kiou-bench-read-" + Guid.NewGuid().ToString("N")[..8]);
            try
            {
                string size = readFile.ToString(CultureInfo.InvariantCulture);
                var direct = KiouPerf.Run("diskread", "--file", path, "--size", size, "--direct", "--qd", "8", "--block", "1048576");
                var buffered = KiouPerf.Run("diskread", "--file", path, "--size", size, "--block", "65536");
                diskDirect = direct.GetProperty("MBps").GetDouble();
                diskBuffered = buffered.GetProperty("MBps").GetDouble();
                Console.Error.WriteLine($"disk read, cold, {readFile >> 20} MiB: {diskDirect:F0} MB/s O_DIRECT 1 MiB queue depth 8, {diskBuffered:F0} MB/s buffered 64 KiB" +
                    $" (cached before: {direct.GetProperty("cached_before_bytes").GetInt64() >> 20} and {buffered.GetProperty("cached_before_bytes").GetInt64() >> 20} MiB)");
            }
            finally
            {
                File.Delete(path);
            }
            _env["disk_read_cold_direct_1MiB_qd8_MBps"] = diskDirect;
            _env["disk_read_cold_buffered_64KiB_MBps"] = diskBuffered;
        }

        // Idle RSS of a fresh broker, then its peak with two producers of 1 MiB batches.
        if (Want("rss"))
        {
            using var b = BrokerUnderTest.Start(_broker, _dataRoot, Env());
            Thread.Sleep(2000);
            double idle = b.RssMiB();
            var r = KiouPerf.Produce("peak RSS: produce 1 KiB, 1 MiB batches, two producers, acks=1", b, _newTopic(b, 1), 1, 1024, scale(1_000_000), "1", producers: 2);
            _report("targets", r, "loopback", _loopback);
            Row("idle RSS after start", $"{idle:F0} MiB", "", null, "≤ 64 MiB", idle <= 64);
            Row("peak RSS, two producers of 1 MiB batches", $"{r.BrokerPeakRssMiB:F0} MiB", "", null, "≤ 256 MiB", r.BrokerPeakRssMiB <= 256);
        }

        // Produce 100 B and 1 KiB, acks=1: KIOU against the client's ceiling, the order alternating per round.
        if (Want("produce"))
        {
            using var b = BrokerUnderTest.Start(_broker, _dataRoot, Env());
            var rows = new (string Label, int Size, long Count)[] { ("100 B", 100, scale(3_000_000)), ("1 KiB", 1024, scale(1_000_000)) };
            var medians = new Dictionary<string, RunResult>();
            var runsBySize = new Dictionary<string, List<RunResult>>();
            foreach (var (label, size, count) in rows)
            {
                var kiou = new List<RunResult>();
                var mock = new List<RunResult>();
                for (int round = 0; round < _rounds; round++)
                {
                    foreach (bool toMock in round % 2 == 0 ? new[] { false, true } : [true, false])
                    {
                        string name = $"produce {label}, acks=1, {(toMock ? "librdkafka's mock cluster" : "KIOU")}, round {round + 1}";
                        var r = toMock
                            ? KiouPerf.Produce(name, null, "mock-ceiling", 1, size, count, "1", producers: _clients)
                            : KiouPerf.Produce(name, b, _newTopic(b, 1), 1, size, count, "1", producers: _clients);
                        (toMock ? mock : kiou).Add(r);
                        Console.Error.WriteLine($"  {name}: {r.RecordsPerSecond:F0} rec/s, {r.MBps:F0} MB/s, broker {r.CpuSecondsPerGB:F2} CPU-s/GB, client {r.ClientCpuSeconds:F2} CPU-s, machine idle {r.MachineIdlePercent:F0} %");
                    }
                }
                var k = Median(kiou, r => r.RecordsPerSecond);
                var m = Median(mock, r => r.RecordsPerSecond);
                _report("targets", k with { Name = $"produce {label}, acks=1, KIOU (median of {kiou.Count}: {Runs(kiou, r => r.RecordsPerSecond / 1000, "F0")} k rec/s)" }, "loopback", _loopback);
                _report("targets", m with { Name = $"produce {label}, acks=1, librdkafka's mock cluster (median of {mock.Count}: {Runs(mock, r => r.RecordsPerSecond / 1000, "F0")} k rec/s)" }, "-", 0);
                double ratio = k.RecordsPerSecond / m.RecordsPerSecond;
                Row($"produce {label}, acks=1", $"{k.RecordsPerSecond / 1e6:F2} M rec/s ({k.MBps:F0} MB/s)", $"mock cluster {m.RecordsPerSecond / 1e6:F2} M rec/s", ratio, "≥ 90 % of the client ceiling", ratio >= 0.9);
                medians[label] = k;
                runsBySize[label] = kiou;
            }
            var oneKiB = medians["1 KiB"];
            var cpu = Median(runsBySize["1 KiB"], r => r.CpuSecondsPerGB).CpuSecondsPerGB;
            Row("broker CPU, produce 1 KiB, acks=1", $"{cpu:F2} CPU-s/GB (median; runs {Runs(runsBySize["1 KiB"], r => r.CpuSecondsPerGB, "F2")})", "", null, "≤ 0.5 CPU-s/GB", cpu <= 0.5);

            // 1,000 partitions against the one-partition figure, on the same broker.
            var spread = KiouPerf.Produce("produce 1 KiB over 1,000 partitions, acks=1", b, _newTopic(b, 1000), 1000, 1024, scale(1_000_000), "1", producers: _clients);
            _report("targets", spread, "loopback", _loopback);
            double spreadRatio = spread.MBps / oneKiB.MBps;
            Row("1,000 partitions of 1 KiB records", $"{spread.MBps:F0} MB/s", $"one partition {oneKiB.MBps:F0} MB/s", spreadRatio, "≥ 70 %", spreadRatio >= 0.7);
        }

        // Durable produce: KIOU_FLUSH=always, acks=all.
        if (Want("durable"))
        {
            using var b = BrokerUnderTest.Start(_broker, _dataRoot, Env("always"));
            var runs = new List<RunResult>();
            for (int round = 0; round < _rounds; round++)
                runs.Add(KiouPerf.Produce($"produce 1 KiB, acks=all, KIOU_FLUSH=always, round {round + 1}", b, _newTopic(b, 1), 1, 1024, scale(1_000_000), "all", producers: _clients));
            var r = Median(runs, x => x.CpuSecondsPerGB);
            _report("targets", r with { Name = $"produce 1 KiB, acks=all, KIOU_FLUSH=always (median CPU-s/GB of {runs.Count}: {Runs(runs, x => x.CpuSecondsPerGB, "F2")})" }, "loopback", _loopback);
            Row("broker CPU, produce 1 KiB, acks=all, KIOU_FLUSH=always", $"{r.CpuSecondsPerGB:F2} CPU-s/GB ({r.MBps:F0} MB/s)", "", null, "≤ 0.5 CPU-s/GB", r.CpuSecondsPerGB <= 0.5);
        }

        // Catch-up consume: 1 GB written just before, its files dropped from the page cache, read from the start;
        // then the same consumer over the same data again (warm). Fresh data every round.
        if (Want("consume"))
        {
            using var b = BrokerUnderTest.Start(_broker, _dataRoot, Env());
            long records = scale(1_000_000);
            var cold = new List<RunResult>();
            var warm = new List<RunResult>();
            var coldDeviceReads = new List<long>();
            for (int round = 0; round < _rounds; round++)
            {
                // Every round writes its own data just before reading it: the first read after a large write is the
                // case the target is about (the device may still be busy with that write).
                string t = _newTopic(b, 1);
                var fill = KiouPerf.Produce($"catch-up data: produce 1 KiB, acks=1, round {round + 1}", b, t, 1, 1024, records, "1");
                Console.Error.WriteLine($"  {fill.Name}: {fill.MBps:F0} MB/s");
                var dropped = KiouPerf.Run("dropcache", b.DataDir);
                long reads0 = b.DeviceReadBytes();
                var c = KiouPerf.Consume($"catch-up consume 1 KiB, not in the page cache ({dropped.GetProperty("cached_bytes").GetInt64() >> 20} MiB of the files cached after the drop), round {round + 1}", b, t, 1);
                long reads = b.DeviceReadBytes() - reads0;
                coldDeviceReads.Add(reads);
                cold.Add(c);
                var cached = KiouPerf.Run("cachestat", b.DataDir);
                var w = KiouPerf.Consume($"warm consume 1 KiB, the same data again ({cached.GetProperty("cached_bytes").GetInt64() >> 20} MiB of the files cached), round {round + 1}", b, t, 1);
                warm.Add(w);
                Console.Error.WriteLine($"  round {round + 1}: catch-up {c.MBps:F0} MB/s (broker read {reads >> 20} MiB from the device), warm {w.MBps:F0} MB/s");
            }
            var cm = Median(cold, r => r.MBps);
            var wm = Median(warm, r => r.MBps);
            _report("targets", cm with { Name = $"catch-up consume 1 KiB, not in the page cache (median of {cold.Count}: {Runs(cold, r => r.MBps, "F0")} MB/s; broker device reads {string.Join(" ", coldDeviceReads.Select(x => (x >> 20).ToString(CultureInfo.InvariantCulture)))} MiB)" }, "disk read direct", diskDirect);
            _report("targets", wm with { Name = $"warm consume 1 KiB (median of {warm.Count}: {Runs(warm, r => r.MBps, "F0")} MB/s)" }, "loopback", _loopback);
            double reference = Math.Min(diskDirect, wm.MBps);
            string refName = diskDirect <= wm.MBps ? $"cold disk read {diskDirect:F0} MB/s (warm consume {wm.MBps:F0})" : $"warm consume {wm.MBps:F0} MB/s (cold disk read {diskDirect:F0})";
            double ratio = cm.MBps / reference;
            Row($"catch-up consume of {records * 1024 / 1e9:F2} GB not in the page cache", $"{cm.MBps:F0} MB/s", refName, ratio, "≥ 90 %", ratio >= 0.9);
            double warmRatio = wm.MBps / _loopback;
            Row("warm consume", $"{wm.MBps:F0} MB/s", $"loopback TCP {_loopback:F0} MB/s", warmRatio, "≥ 75 %", warmRatio >= 0.75);

            // A consumer 64 MiB behind a producer: a head start of 64 MiB, then both at the same rate. The partition has
            // a reader before the head start (a first record, read), as a consumer falls behind a partition it reads:
            // the broker keeps written bytes in memory only for partitions being read (docs/design/read-cache.md).
            string behind = _newTopic(b, 1);
            const long head = 64L << 10; // records of 1 KiB
            KiouPerf.Produce("the first record", b, behind, 1, 1024, 1, "1");
            KiouPerf.Consume("a reader of the partition", b, behind, 1, 1);
            KiouPerf.Produce("64 MiB head start", b, behind, 1, 1024, head, "1");
            int rate = 50_000;
            long more = rate * (_quick ? 4L : 12L);
            long reads1 = b.DeviceReadBytes();
            double cpu0 = b.CpuSeconds();
            string rateText = rate.ToString(CultureInfo.InvariantCulture);
            var producer = KiouPerf.Start("produce", "-b", b.Bootstrap, "-t", behind, "-s", "1024", "-c", more.ToString(CultureInfo.InvariantCulture), "--rate", rateText);
            var consumer = KiouPerf.Start("consume", "-b", b.Bootstrap, "-t", behind, "-c", (1 + head + more).ToString(CultureInfo.InvariantCulture), "--rate", rateText);
            var pr = KiouPerf.Finish(producer);
            var cr = KiouPerf.Finish(consumer);
            long deviceReads = b.DeviceReadBytes() - reads1;
            var consumed = KiouPerf.ToResult($"consume 64 MiB behind a producer at {rate:N0} rec/s of 1 KiB (produced {pr.GetProperty("records").GetInt64():N0} in {pr.GetProperty("seconds").GetDouble():F1} s; broker device reads {deviceReads >> 20} MiB)", cr, b.CpuSeconds() - cpu0, b.PeakRssMiB(), null);
            _report("targets", consumed, "loopback", _loopback);
            double share = (double)deviceReads / consumed.Bytes;
            Row("a consumer 64 MiB behind the producer reads from memory", $"{deviceReads / 1048576.0:F1} MiB read from the device", $"{consumed.Bytes >> 20} MiB consumed", share, "(near) zero: ≤ 1 % of the bytes consumed", share <= 0.01);
        }

        // End-to-end latency at 10,000 records/s, a fresh broker.
        if (Want("latency"))
        {
            using var b = BrokerUnderTest.Start(_broker, _dataRoot, Env());
            var r = KiouPerf.Latency("end-to-end latency at 10,000 rec/s (C driver)", b, _newTopic(b, 1), 10_000, TimeSpan.FromSeconds(_quick ? 3 : 10));
            _report("targets", r, "-", 0);
            Row("end-to-end latency p50 at 10,000 rec/s", $"{r.P50Ms:F3} ms", "", null, "≤ 0.2 ms", r.P50Ms <= 0.2);
            Row("end-to-end latency p99 at 10,000 rec/s", $"{r.P99Ms:F3} ms", $"p99.9 {r.P999Ms:F3} ms", null, "≤ 2 ms", r.P99Ms <= 2);
        }
        return _rows;
    }
}
