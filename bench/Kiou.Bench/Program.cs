using System.Globalization;
using System.Text;
using System.Text.Json;
using Confluent.Kafka;
using Kiou.Bench;

// KIOU's benchmark. One run on one machine: it measures the machine's reference figures, then the broker (a child
// process on free ports with a fresh data dir) under load from librdkafka, and reports each figure with broker
// CPU-seconds per GB, peak RSS and the ratio to the reference. Writes a markdown table and a JSON file.
//
//   bench/run.sh [--suite io|all|reqpath|idempotence] [--quick] [--out DIR] [--data-dir DIR] [--rounds N] [--only TEXT] [--threads] [--modes uring,sync]
//     io:  KIOU_IO=uring vs KIOU_IO=sync for 100 B and 1 KiB records at several batch sizes, and KIOU_FLUSH=always
//     all: the six scenarios of BENCHMARKS.md (throughput, durable acks, consume, latency, 1,000 partitions, 200 connections)
//     latency: scenario 5 (end-to-end latency at 10,000 records/s) per write mode (--modes, default uring,uring-ring,sync)
//     reqpath: produce 100 B / 1 KiB and consume, with KIOU_FETCH_ZERO_COPY=false and true (docs/design/request-path.md)
//     tls: produce and consume 1 KiB over a PLAINTEXT and an SSL listener of one broker (C driver; docs/design/security-tls.md)
//     validate: compressed 1 KiB produce per codec; --baseline BROKER runs another build (the code before) alongside
//     compare: produce, consume, durable and latency rows, this build against --baseline BROKER (and latency against sync)
//     compaction: the log cleaner's throughput and CPU per GB, and produce latency with and without it cleaning
//     targets: every target of issue 18 with its ratio, driven by bench/perf/kiou-perf.c (--perf PATH) against
//       librdkafka's mock cluster and the machine's references, disk read included

Kiou.BundledLibrdkafka.Load();

string suite = "io", outDir = "bench/results", dataRoot = Path.GetTempPath(), broker = "artifacts/kiou/kiou";
string? baseline = null;
bool quick = false, showThreads = false, modesGiven = false, clientsGiven = false, cDriver = false;
int rounds = 3;
int ioClients = 2;
string[] modes = ["uring", "sync"];
string? only = null;
var ratios = new List<(string Row, double Records, double CpuPerGB)>();
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--suite": suite = args[++i]; break;
        case "--quick": quick = true; break;
        case "--out": outDir = args[++i]; break;
        case "--data-dir": dataRoot = args[++i]; break;
        case "--broker": broker = args[++i]; break;
        case "--rounds": rounds = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--only": only = args[++i]; break;
        case "--threads": showThreads = true; break;
        case "--modes": modes = args[++i].Split(','); modesGiven = true; break;
        case "--clients": ioClients = int.Parse(args[++i], CultureInfo.InvariantCulture); clientsGiven = true; break;
        case "--perf": KiouPerf.Binary = args[++i]; break;
        case "--driver": cDriver = args[++i] == "c"; break;
        case "--baseline": baseline = args[++i]; break;
        default:
            Console.Error.WriteLine($"unknown argument {args[i]}; usage: bench/run.sh [--suite io|all|reqpath|idempotence|targets|...] [--quick] [--out DIR] [--data-dir DIR] [--rounds N] [--only TEXT] [--threads] [--modes uring,sync] [--clients N] [--baseline BROKER] [--perf PATH] [--driver c|dotnet]");
            return 2;
    }
}
if (ioClients < 1)
{
    Console.Error.WriteLine($"--clients {ioClients}: a run needs at least one producer");
    return 2;
}
double scale = quick ? 0.2 : 1.0;
var results = new List<(string Group, RunResult Result, string Reference, double Ratio)>();
var env = new Dictionary<string, object>
{
    ["date"] = DateTime.UtcNow.ToString("u", CultureInfo.InvariantCulture),
    ["cores"] = Environment.ProcessorCount,
    ["kernel"] = File.Exists("/proc/sys/kernel/osrelease") ? File.ReadAllText("/proc/sys/kernel/osrelease").Trim() : "?",
    ["librdkafka"] = Library.VersionString,
    ["suite"] = suite,
};
if (suite == "io")
    env["io_producers"] = ioClients;
if ((suite == "targets" || cDriver) && !KiouPerf.Available)
{
    Console.Error.WriteLine($"--suite targets needs the C driver at {KiouPerf.Binary} (bench/run.sh builds it from bench/perf/kiou-perf.c with gcc and Debian's librdkafka-dev)");
    return 2;
}
var targetRows = new List<TargetRow>();
env["driver"] = suite is "targets" or "tls" || cDriver ? "kiou-perf (C, librdkafka " + KiouPerf.LibrdkafkaVersion() + ")" : "Confluent.Kafka";

Console.Error.WriteLine("measuring the machine's reference figures...");
double loopback = Reference.LoopbackMBps(TimeSpan.FromSeconds(3));
// Median of three 2-second runs, alternating: one run is at the mercy of whatever else the machine does.
var buffered = new List<double>();
var synced = new List<double>();
for (int i = 0; i < 3; i++)
{
    buffered.Add(Reference.DiskWriteMBps(dataRoot, 1 << 20, 0, TimeSpan.FromSeconds(2)));
    synced.Add(Reference.DiskWriteMBps(dataRoot, 1 << 20, 1 << 20, TimeSpan.FromSeconds(2)));
}
double diskBuffered = buffered.Order().ElementAt(1);
double diskSynced = synced.Order().ElementAt(1);
env["loopback_MBps"] = loopback;
env["disk_buffered_1MiB_MBps"] = diskBuffered;
env["disk_fdatasync_every_1MiB_MBps"] = diskSynced;
Console.Error.WriteLine($"loopback TCP {loopback:F0} MB/s; disk 1 MiB writes {diskBuffered:F0} MB/s buffered, {diskSynced:F0} MB/s with fdatasync each");

void Report(string group, RunResult r, string reference, double referenceMBps)
{
    double ratio = referenceMBps > 0 ? r.MBps / referenceMBps : double.NaN;
    results.Add((group, r, reference, ratio));
    Console.Error.WriteLine($"  {r.Name}: {r.RecordsPerSecond:F0} rec/s, {r.MBps:F1} MB/s, {r.CpuSecondsPerGB:F2} broker CPU-s/GB, peak RSS {r.BrokerPeakRssMiB:F0} MiB" +
        (r.P50Ms is null ? "" : $", p50 {r.P50Ms:F2} ms, p99 {r.P99Ms:F2} ms, p99.9 {r.P999Ms:F2} ms"));
}

Dictionary<string, string> Env(string io, string flush = "roll")
{
    // "uring-inline": io_uring with KIOU_URING_WRITES=inline (writes executed by the ring thread, see docs/design/io_uring.md).
    var e = new Dictionary<string, string> { ["KIOU_IO"] = io.Split('-')[0], ["KIOU_FLUSH"] = flush };
    if (io.Contains('-'))
        e["KIOU_URING_WRITES"] = io[(io.IndexOf('-') + 1)..];
    return e;
}
// The io, latency, reqpath, all and compare suites' load: Confluent.Kafka (Load), or with --driver c the C driver
// (KiouPerf, bench/perf/kiou-perf.c), which makes no managed call per record.
RunResult Produce(string name, BrokerUnderTest b, string topic, int partitions, int recordBytes, long count, Acks acks, int batchBytes, int clients = 1) =>
    cDriver
        ? KiouPerf.Produce(name, b, topic, partitions, recordBytes, count, acks == Acks.All ? "all" : acks == Acks.None ? "0" : "1", clients, batchBytes)
        : Load.Produce(name, b, topic, partitions, recordBytes, count, acks, batchBytes, clients: clients);
RunResult Consume(string name, BrokerUnderTest b, string topic, int partitions, long count) =>
    cDriver ? KiouPerf.Consume(name, b, topic, partitions, count) : Load.Consume(name, b, topic, partitions, count);
RunResult Latency(string name, BrokerUnderTest b, string topic, int ratePerSecond, TimeSpan duration) =>
    cDriver ? KiouPerf.Latency(name, b, topic, ratePerSecond, duration) : Load.Latency(name, b, topic, ratePerSecond, duration);
int topicSeq = 0;
string NewTopic(BrokerUnderTest b, int partitions)
{
    string t = $"bench-{topicSeq++}";
    Load.CreateTopic(b.Bootstrap, t, partitions);
    return t;
}

if (suite == "io")
{
    // Both modes run side by side (two brokers, one idle while the other is measured), row by row, and every row is
    // repeated --rounds times with the order of the modes alternating, so that load from elsewhere on the machine and
    // the page cache filling up hit both modes alike. The median round (by records/s) of each mode is reported.
    // --clients producers (default 2, each its own librdkafka instance and connection) write to the one partition: a
    // single producer of 100 B records is limited by librdkafka itself (its producer thread and broker thread contend
    // for one lock) and leaves ~15 % of the cores idle, so every write mode then measures the same client limit; two
    // keep the cores busy, and the broker's own cost decides. The machine idle column shows which case a run is.
    var rows = new List<(string Label, int Size, int Batch, Acks Acks, string Flush, long Count)>();
    foreach (int size in new[] { 100, 1024 })
    {
        foreach (int batch in new[] { 16384, 131072, 1048576 })
            rows.Add(($"{size} B batch {batch / 1024} KiB acks=1", size, batch, Acks.Leader, "roll", (long)((size == 100 ? 3_000_000 : 600_000) * scale)));
    }
    rows.Add(("1024 B batch 1024 KiB acks=all KIOU_FLUSH=always", 1024, 1048576, Acks.All, "always", (long)(600_000 * scale)));
    var brokers = new Dictionary<(string Io, string Flush), BrokerUnderTest>();
    try
    {
        foreach (string flush in new[] { "roll", "always" })
        {
            foreach (string io in modes)
                brokers[(io, flush)] = BrokerUnderTest.Start(broker, dataRoot, Env(io, flush));
        }
        foreach (var row in rows)
        {
            if (only is not null && !row.Label.Contains(only, StringComparison.Ordinal))
                continue;
            var byMode = modes.ToDictionary(m => m, _ => new List<RunResult>());
            for (int round = 0; round < rounds; round++)
            {
                string[] order = round % 2 == 0 ? modes : modes.Reverse().ToArray();
                foreach (string io in order)
                {
                    var b = brokers[(io, row.Flush)];
                    string t = NewTopic(b, 1);
                    var threads0 = showThreads ? b.ThreadCpuSeconds() : null;
                    var r = Produce($"{io} {row.Label}", b, t, 1, row.Size, row.Count, row.Acks, row.Batch, clients: ioClients);
                    byMode[io].Add(r);
                    string load = File.ReadAllText("/proc/loadavg").Trim();
                    Console.Error.WriteLine($"  round {round + 1} {r.Name}: {r.RecordsPerSecond:F0} rec/s, {r.MBps:F1} MB/s, {r.CpuSecondsPerGB:F2} CPU-s/GB, machine idle {r.MachineIdlePercent:F0} %; load {load}");
                    if (threads0 is not null)
                    {
                        var threads1 = b.ThreadCpuSeconds();
                        Console.Error.WriteLine("    broker threads (CPU-s): " + string.Join(", ", threads1
                            .Select(kv => (kv.Key, Seconds: kv.Value - threads0.GetValueOrDefault(kv.Key)))
                            .Where(x => x.Seconds > 0).OrderByDescending(x => x.Seconds).Select(x => $"{x.Key} {x.Seconds:F2}")));
                    }
                }
            }
            var medians = new Dictionary<string, RunResult>();
            foreach (string io in modes)
            {
                var sorted = byMode[io].OrderBy(r => r.RecordsPerSecond).ToList();
                RunResult median = sorted[sorted.Count / 2];
                string group = "io-" + io;
                string reference = row.Flush == "always" ? "disk fdatasync" : "disk buffered";
                Report(group, median with { Name = $"{median.Name} (median of {sorted.Count}: {string.Join(" ", sorted.Select(r => (r.RecordsPerSecond / 1000).ToString("F0", CultureInfo.InvariantCulture)))} k rec/s)" },
                    reference, row.Flush == "always" ? diskSynced : diskBuffered);
                medians[io] = median;
            }
            if (medians.TryGetValue("sync", out var syncMedian))
            {
                foreach (var (io, m) in medians.Where(kv => kv.Key != "sync"))
                    ratios.Add(($"{row.Label} ({io}/sync)", m.RecordsPerSecond / syncMedian.RecordsPerSecond, m.CpuSecondsPerGB / syncMedian.CpuSecondsPerGB));
            }
        }
    }
    finally
    {
        foreach (var b in brokers.Values)
            b.Dispose();
    }
}
else if (suite == "latency")
{
    // Scenario 5 alone, per write mode (--modes, default uring,uring-ring,sync) and --rounds times with the order of the
    // modes alternating: end-to-end latency at 10,000 records/s, a fresh broker per run.
    string[] latencyModes = modesGiven ? modes : ["uring", "uring-ring", "sync"];
    for (int round = 0; round < rounds; round++)
    {
        foreach (string io in round % 2 == 0 ? latencyModes : latencyModes.Reverse().ToArray())
        {
            using var b = BrokerUnderTest.Start(broker, dataRoot, Env(io));
            string t = NewTopic(b, 1);
            Report("latency-" + io, Latency($"{io} round {round + 1}: end-to-end latency at 10,000 rec/s", b, t, 10_000, TimeSpan.FromSeconds(quick ? 3 : 10)), "-", 0);
        }
    }
}
else if (suite == "reqpath")
{
    // The request path in isolation (docs/design/request-path.md): produce 100 B and 1 KiB records, then consume the
    // 1 KiB data, once with the copying fetch path and once with the zero-copy (sendfile) one.
    // --only false|true runs one mode (A/B runs close in time, or a profile of one mode).
    foreach (var zeroCopy in new[] { "false", "true" }.Where(z => only is null || z == only))
    {
        var e = Env("uring");
        e["KIOU_FETCH_ZERO_COPY"] = zeroCopy;
        using var b = BrokerUnderTest.Start(broker, dataRoot, e);
        string t100 = NewTopic(b, 1);
        Report("reqpath", Produce($"zero-copy={zeroCopy} produce 100 B, acks=1", b, t100, 1, 100, (long)(3_000_000 * scale), Acks.Leader, 1048576), "loopback", loopback);
        string t1k = NewTopic(b, 1);
        long n1k = (long)(1_000_000 * scale);
        Report("reqpath", Produce($"zero-copy={zeroCopy} produce 1 KiB, acks=1", b, t1k, 1, 1024, n1k, Acks.Leader, 1048576), "loopback", loopback);
        Report("reqpath", Consume($"zero-copy={zeroCopy} consume 1 KiB from the beginning", b, t1k, 1, n1k), "loopback", loopback);
        string t16 = NewTopic(b, 1);
        Report("reqpath", Produce($"zero-copy={zeroCopy} produce 1 KiB, 16 KiB batches, acks=1", b, t16, 1, 1024, n1k / 2, Acks.Leader, 16384), "loopback", loopback);
    }
}
else if (suite == "tls")
{
    // Produce and consume 1 KiB records over a PLAINTEXT and an SSL listener of one broker, alternating, with the C
    // driver (librdkafka's security.protocol=ssl): the cost of TLS, and of losing sendfile on the fetch path. The
    // certificate is a throw-away self-signed one made with openssl.
    if (!KiouPerf.Available)
    {
        Console.Error.WriteLine("--suite tls needs the C driver (artifacts/kiou-perf: gcc and librdkafka-dev)");
        return 2;
    }
    string certDir = Directory.CreateTempSubdirectory("kiou-bench-tls").FullName;
    string cert = Path.Combine(certDir, "cert.pem"), key = Path.Combine(certDir, "key.pem");
    using (var openssl = System.Diagnostics.Process.Start("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])!)
    {
        openssl.WaitForExit();
        if (openssl.ExitCode != 0)
            throw new InvalidOperationException("openssl could not make the bench certificate");
    }
    int sslPort = BrokerUnderTest.FreePort();
    var e = Env("uring");
    e["KIOU_LISTENERS"] = $"PLAINTEXT://127.0.0.1:{{port}},SSL://127.0.0.1:{sslPort}";
    e["KIOU_SSL_CERTIFICATE_LOCATION"] = cert;
    e["KIOU_SSL_KEY_LOCATION"] = key;
    using var b = BrokerUnderTest.Start(broker, dataRoot, e);
    string[] ssl = ["security.protocol=ssl", $"ssl.ca.location={cert}"];
    long n = (long)(1_000_000 * scale);
    for (int round = 0; round < rounds; round++)
    {
        foreach (bool tls in round % 2 == 0 ? new[] { false, true } : [true, false])
        {
            string label = tls ? "SSL" : "PLAINTEXT";
            string bootstrap = tls ? $"127.0.0.1:{sslPort}" : b.Bootstrap;
            string[]? props = tls ? ssl : null;
            string t = NewTopic(b, 1);
            Report("tls", KiouPerf.Produce($"{label} round {round + 1}: produce 1 KiB, acks=1", b, t, 1, 1024, n, "1", bootstrap: bootstrap, properties: props), "loopback", loopback);
            Report("tls", KiouPerf.Consume($"{label} round {round + 1}: consume 1 KiB from the beginning", b, t, 1, n, bootstrap, props), "loopback", loopback);
        }
    }
    Directory.Delete(certDir, true);
}
else if (suite == "idempotence")
{
    // Issue 13: idempotent produce (enable.idempotence=true) against plain produce, 1 KiB and 100 B records, acks=all,
    // one broker, --rounds times with the order alternating so that neither always runs on a warmer page cache.
    // --only TEXT keeps the rows whose name contains TEXT (e.g. "raw", "mock", "1 KiB").
    using var b = BrokerUnderTest.Start(broker, dataRoot, Env("uring"));
    long n1k = (long)(1_000_000 * scale);
    bool Want(string row) => only is null || row.Contains(only, StringComparison.OrdinalIgnoreCase);
    for (int round = 0; round < rounds; round++)
    {
        // librdkafka's idempotent producer keeps one request in flight per partition whenever a batch holds more than
        // 5 records (it counts in-flight records against the limit of 5 requests: librdkafka PR #4989), so "plain, 1
        // in flight" pipelines as it does and separates what the client's pipelining costs from what the broker's
        // producer-state checks cost.
        var contenders = new (string Name, bool Idempotent, int? InFlight)[] { ("plain", false, null), ("plain, 1 in flight", false, 1), ("idempotent", true, null) };
        foreach (var (name, idempotent, inFlight) in round % 2 == 0 ? contenders : contenders.Reverse().ToArray())
        {
            string row1k = $"round {round + 1}: {name} produce 1 KiB, acks=all";
            if (Want(row1k))
                Report("idempotence", Load.Produce(row1k, b, NewTopic(b, 1), 1, 1024, n1k, Acks.All, 1048576, idempotent: idempotent, maxInFlight: inFlight), "loopback", loopback);
            string row100 = $"round {round + 1}: {name} produce 100 B, acks=all";
            if (Want(row100))
                Report("idempotence", Load.Produce(row100, b, NewTopic(b, 1), 1, 100, n1k * 3, Acks.All, 1048576, idempotent: idempotent, maxInFlight: inFlight), "loopback", loopback);
        }

        // The broker's own cost: identical 1 MiB batches from a raw-protocol driver, 5 requests in flight as Java's
        // producer pipelines them, with and without a producer id.
        var raw = new[] { ("plain", false), ("idempotent", true) };
        foreach (var (name, idempotent) in round % 2 == 0 ? raw : raw.Reverse().ToArray())
        {
            string row = $"round {round + 1}: raw-protocol {name} produce 1 KiB, acks=all, 5 in flight";
            if (Want(row))
                Report("idempotence", RawProduce.Run(row, b, NewTopic(b, 1), 1024, n1k, 1048576, idempotent, 5), "loopback", loopback);
        }

        // The client's ceiling: the same librdkafka rows against its in-process mock cluster.
        foreach (var (name, idempotent, inFlight) in round % 2 == 0 ? contenders : contenders.Reverse().ToArray())
        {
            string row = $"round {round + 1}: {name} produce 1 KiB, acks=all, to librdkafka's mock cluster";
            if (Want(row))
                Report("idempotence", Load.ProduceToMockCluster(row, 1024, n1k, Acks.All, 1048576, idempotent: idempotent, maxInFlight: inFlight), "loopback", loopback);
        }
    }
}
else if (suite == "validate")
{
    // Produce-time validation of compressed batches (README §5.6): 1 KiB log-line records, 1 MiB batches, acks=1, one
    // row per codec. With --baseline BROKER (a build of the code before), both brokers run every row, --rounds times
    // with their order alternating; the median round of each is reported with the ratios after/before. Broker
    // CPU-s/GB is the figure to read: the client's own compression limits records/s on two shared cores.
    var contenders = baseline is null ? new[] { ("after", broker) } : new[] { ("before", baseline), ("after", broker) };
    var codecs = new[] { CompressionType.None, CompressionType.Gzip, CompressionType.Snappy, CompressionType.Lz4, CompressionType.Zstd };
    long count = (long)(300_000 * scale);
    foreach (var codec in codecs)
    {
        if (only is not null && !codec.ToString().Contains(only, StringComparison.OrdinalIgnoreCase))
            continue;
        var byBroker = contenders.ToDictionary(c => c.Item1, _ => new List<RunResult>());
        for (int round = 0; round < rounds; round++)
        {
            foreach (var (label, binary) in round % 2 == 0 ? contenders : contenders.Reverse().ToArray())
            {
                using var b = BrokerUnderTest.Start(binary, dataRoot, Env("uring"));
                string t = NewTopic(b, 1);
                var r = Load.Produce($"{label} produce 1 KiB {codec.ToString().ToLowerInvariant()}", b, t, 1, 1024, count, Acks.Leader, 1048576, compression: codec);
                byBroker[label].Add(r);
                Console.Error.WriteLine($"  round {round + 1} {r.Name}: {r.RecordsPerSecond:F0} rec/s, {r.CpuSecondsPerGB:F2} CPU-s/GB, machine idle {r.MachineIdlePercent:F0} %");
            }
        }
        var medians = new Dictionary<string, RunResult>();
        foreach (var (label, _) in contenders)
        {
            var sorted = byBroker[label].OrderBy(r => r.CpuSecondsPerGB).ToList();
            RunResult median = sorted[sorted.Count / 2];
            Report("validate-" + label, median with { Name = $"{median.Name} (median CPU-s/GB of {sorted.Count}: {string.Join(" ", sorted.Select(r => r.CpuSecondsPerGB.ToString("F2", CultureInfo.InvariantCulture)))})" }, "loopback", loopback);
            medians[label] = median;
        }
        if (medians.TryGetValue("before", out var before))
            ratios.Add(($"produce 1 KiB {codec.ToString().ToLowerInvariant()} (after/before)", medians["after"].RecordsPerSecond / before.RecordsPerSecond, medians["after"].CpuSecondsPerGB / before.CpuSecondsPerGB));
    }
}
else if (suite == "compare")
{
    // Before and after a change to the storage or request path (issue 12): the produce, consume, durable and latency
    // rows, each run by every contender --rounds times with their order alternating, a fresh broker per run, and the
    // median round reported. Contenders: --baseline BROKER (the code before) and this build with KIOU_IO=uring; the
    // latency row also runs this build's sync path, the reference the io_uring path must not be slower than.
    if (baseline is null)
    {
        Console.Error.WriteLine("--suite compare needs --baseline BROKER (a build of the code before the change)");
        return 2;
    }
    long n100 = (long)(1_500_000 * scale), n1k = (long)(500_000 * scale);
    var rows = new (string Name, string Flush, string[] Contenders, Func<BrokerUnderTest, string, RunResult> Run, bool Latency)[]
    {
        ("produce 100 B, acks=1", "roll", ["before", "after"], (b, l) => Produce($"{l} produce 100 B, acks=1", b, NewTopic(b, 1), 1, 100, n100, Acks.Leader, 1048576), false),
        ("produce 1 KiB, acks=1", "roll", ["before", "after"], (b, l) => Produce($"{l} produce 1 KiB, acks=1", b, NewTopic(b, 1), 1, 1024, n1k, Acks.Leader, 1048576), false),
        ("consume 1 KiB from the beginning", "roll", ["before", "after"], (b, l) =>
        {
            string t = NewTopic(b, 1);
            Produce($"{l} fill", b, t, 1, 1024, n1k, Acks.Leader, 1048576);
            return Consume($"{l} consume 1 KiB from the beginning", b, t, 1, n1k);
        }, false),
        ("produce 1 KiB, acks=all, KIOU_FLUSH=always", "always", ["before", "after"], (b, l) => Produce($"{l} produce 1 KiB, acks=all, KIOU_FLUSH=always", b, NewTopic(b, 1), 1, 1024, n1k, Acks.All, 1048576), false),
        ("end-to-end latency at 10,000 rec/s", "roll", ["before", "after", "after-sync"], (b, l) => Latency($"{l} end-to-end latency at 10,000 rec/s", b, NewTopic(b, 1), 10_000, TimeSpan.FromSeconds(quick ? 3 : 10)), true),
    };
    foreach (var row in rows)
    {
        if (only is not null && !row.Name.Contains(only, StringComparison.OrdinalIgnoreCase))
            continue;
        var byLabel = row.Contenders.ToDictionary(c => c, _ => new List<RunResult>());
        for (int round = 0; round < rounds; round++)
        {
            foreach (string label in round % 2 == 0 ? row.Contenders : row.Contenders.Reverse().ToArray())
            {
                using var b = BrokerUnderTest.Start(label == "before" ? baseline : broker, dataRoot, Env(label == "after-sync" ? "sync" : "uring", row.Flush));
                var r = row.Run(b, label);
                byLabel[label].Add(r);
                Console.Error.WriteLine($"  round {round + 1} {r.Name}: {r.RecordsPerSecond:F0} rec/s, {r.CpuSecondsPerGB:F2} CPU-s/GB" + (r.P50Ms is null ? "" : $", p50 {r.P50Ms:F2} ms, p99 {r.P99Ms:F2} ms"));
            }
        }
        var medians = new Dictionary<string, RunResult>();
        foreach (string label in row.Contenders)
        {
            // Throughput rows: the median by records/s; the latency row: the median by p50.
            var sorted = row.Latency ? byLabel[label].OrderBy(r => r.P50Ms).ToList() : byLabel[label].OrderBy(r => r.RecordsPerSecond).ToList();
            RunResult median = sorted[sorted.Count / 2];
            string all = row.Latency
                ? string.Join(" ", sorted.Select(r => r.P50Ms!.Value.ToString("F2", CultureInfo.InvariantCulture)))
                : string.Join(" ", sorted.Select(r => r.RecordsPerSecond.ToString("N0", CultureInfo.InvariantCulture)));
            Report("compare-" + label, median with { Name = $"{median.Name} (median of {sorted.Count}: {all})" }, row.Latency ? "-" : "loopback", row.Latency ? 0 : loopback);
            medians[label] = median;
        }
        if (row.Latency)
        {
            ratios.Add(($"{row.Name}: p50 after / before", medians["after"].P50Ms!.Value / medians["before"].P50Ms!.Value, double.NaN));
            ratios.Add(($"{row.Name}: p50 after / sync path", medians["after"].P50Ms!.Value / medians["after-sync"].P50Ms!.Value, double.NaN));
        }
        else
        {
            ratios.Add(($"{row.Name} (after/before)", medians["after"].RecordsPerSecond / medians["before"].RecordsPerSecond, medians["after"].CpuSecondsPerGB / medians["before"].CpuSecondsPerGB));
        }
    }
}
else if (suite == "compaction")
{
    // Issue 15: the log cleaner. A compacted topic of 1 KiB records over 10,000 keys (each overwritten ~100 times) is
    // written with the cleaner off, then cleaned alone after a restart (uncompressed, then zstd batches: decompress,
    // filter, recompress). Then produce latency (acks=all, 1 KiB at 5,000 rec/s) on another topic, on a broker over a
    // copy of the dirty log with the cleaner off and on (its default rate limit), --rounds times alternating.
    long records = (long)(1_000_000 * scale);
    var codecs = new[] { CompressionType.None, CompressionType.Zstd }.Where(c => only is null || c.ToString().Contains(only, StringComparison.OrdinalIgnoreCase));
    foreach (var codec in codecs)
    {
        string dirty = Compaction.WriteDirtyLog(broker, dataRoot, records, 1024, 10_000, codec);
        try
        {
            string name = $"clean 1 KiB records over 10,000 keys, {codec.ToString().ToLowerInvariant()}";
            Report("compaction", Compaction.Clean(name, broker, dirty, records), "disk buffered", diskBuffered);
        }
        finally
        {
            Directory.Delete(dirty, recursive: true);
        }
    }
    if (only is null || only.Contains("latency", StringComparison.OrdinalIgnoreCase))
    {
        // Twice the records: the cleaner, at its default rate, must still be at work when the 20 s of produce end.
        string dirty = Compaction.WriteDirtyLog(broker, dataRoot, records * 2, 1024, 10_000, CompressionType.None);
        try
        {
            var duration = TimeSpan.FromSeconds(quick ? 5 : 20);
            for (int round = 0; round < rounds; round++)
            {
                foreach (bool on in round % 2 == 0 ? new[] { false, true } : new[] { true, false })
                {
                    string copy = dirty + "-run";
                    Compaction.CopyDirectory(dirty, copy);
                    try
                    {
                        Report("compaction-latency", Compaction.ProduceLatency($"round {round + 1}: produce latency, 1 KiB acks=all at 5,000 rec/s, cleaner {(on ? "cleaning" : "off")}",
                            broker, copy, on, 5_000, duration), "-", 0);
                    }
                    finally
                    {
                        Directory.Delete(copy, recursive: true);
                    }
                }
            }
        }
        finally
        {
            Directory.Delete(dirty, recursive: true);
        }
    }
}
else if (suite == "all")
{
    using (var b = BrokerUnderTest.Start(broker, dataRoot, Env("uring")))
    {
        string t100 = NewTopic(b, 1);
        Report("throughput", Produce("1. produce 100 B, acks=1", b, t100, 1, 100, (long)(3_000_000 * scale), Acks.Leader, 1048576), "loopback", loopback);
        string t1k = NewTopic(b, 1);
        long n1k = (long)(1_000_000 * scale);
        var produce1k = Produce("2. produce 1 KiB, acks=1", b, t1k, 1, 1024, n1k, Acks.Leader, 1048576);
        Report("throughput", produce1k, "loopback", loopback);
        Report("throughput", Consume("4. consume run 2 from the beginning", b, t1k, 1, n1k), "loopback", loopback);
        string tl = NewTopic(b, 1);
        Report("latency", Latency("5. end-to-end latency at 10,000 rec/s", b, tl, 10_000, TimeSpan.FromSeconds(quick ? 3 : 10)), "-", 0);
        string tp = NewTopic(b, 1000);
        Report("spread", Produce("6a. produce 1 KiB over 1,000 partitions", b, tp, 1000, 1024, (long)(500_000 * scale), Acks.Leader, 1048576), "loopback", loopback);
        string tc = NewTopic(b, 8);
        Report("spread", Produce("6b. produce 1 KiB from 200 connections", b, tc, 8, 1024, (long)(400_000 * scale), Acks.Leader, 131072, clients: 200), "loopback", loopback);
        env["broker_idle_rss_MiB_after"] = b.RssMiB();
    }
    using (var b = BrokerUnderTest.Start(broker, dataRoot, Env("uring", "always")))
    {
        string t = NewTopic(b, 1);
        Report("durable", Produce("3. produce 1 KiB, acks=all, KIOU_FLUSH=always", b, t, 1, 1024, (long)(1_000_000 * scale), Acks.All, 1048576), "disk fdatasync", diskSynced);
    }
    using (var idle = BrokerUnderTest.Start(broker, dataRoot, Env("uring")))
    {
        Thread.Sleep(2000);
        env["broker_idle_rss_MiB"] = idle.RssMiB();
    }
}
else if (suite == "targets")
{
    // Issue 18: every target with its ratio in one run. One producer instance per run unless --clients N.
    env["producers"] = clientsGiven ? ioClients : 1;
    // The machine is shared: its load average before and after tells how far to trust the figures.
    env["loadavg_start"] = File.ReadAllText("/proc/loadavg").Trim();
    targetRows = new Targets(broker, dataRoot, quick, rounds, clientsGiven ? ioClients : 1, loopback, env, Report, NewTopic, only).Run();
    env["loadavg_end"] = File.ReadAllText("/proc/loadavg").Trim();
}
else
{
    Console.Error.WriteLine($"unknown suite {suite}: use io, all, latency, reqpath, tls, validate, compare, compaction or targets");
    return 2;
}

var md = new StringBuilder();
md.AppendLine(CultureInfo.InvariantCulture, $"Run {env["date"]}, {env["cores"]} cores, kernel {env["kernel"]}, librdkafka {env["librdkafka"]}, load from {env["driver"]}, suite {suite}{(suite == "io" ? $", {ioClients} producer{(ioClients == 1 ? "" : "s")} per run" : "")}{(quick ? " (quick)" : "")}.");
string diskRead = env.TryGetValue("disk_read_cold_direct_1MiB_qd8_MBps", out var readDirect)
    ? string.Create(CultureInfo.InvariantCulture, $"; disk cold sequential read {readDirect:F0} MB/s O_DIRECT 1 MiB queue depth 8, {env["disk_read_cold_buffered_64KiB_MBps"]:F0} MB/s buffered 64 KiB")
    : "";
md.AppendLine(CultureInfo.InvariantCulture, $"Reference: loopback TCP {loopback:F0} MB/s; disk 1 MiB sequential writes {diskBuffered:F0} MB/s buffered, {diskSynced:F0} MB/s with an fdatasync after each{diskRead}.");
md.AppendLine();
if (targetRows.Count > 0)
{
    md.AppendLine("| target | figure | reference | ratio | goal | met |").AppendLine("|---|---|---|---:|---|---|");
    foreach (var t in targetRows)
        md.AppendLine(CultureInfo.InvariantCulture, $"| {t.Target} | {t.Figure} | {t.Reference} | {(t.Ratio is double q ? q.ToString("P0", CultureInfo.InvariantCulture) : "")} | {t.Goal} | {(t.Met is null ? "" : t.Met.Value ? "yes" : "**no**")} |");
    md.AppendLine().AppendLine(CultureInfo.InvariantCulture, $"Load average (/proc/loadavg) at the start: {env["loadavg_start"]}; at the end: {env["loadavg_end"]}.");
    md.AppendLine();
}
md.AppendLine("| run | records/s | MB/s | broker CPU-s/GB | broker peak RSS MiB | machine idle % | vs reference | latency p50 / p99 / p99.9 ms |");
md.AppendLine("|---|---:|---:|---:|---:|---:|---|---|");
foreach (var (_, r, reference, ratio) in results)
{
    string lat = r.P50Ms is null ? "" : $"{r.P50Ms:F2} / {r.P99Ms:F2} / {r.P999Ms:F2}";
    string vs = double.IsNaN(ratio) ? "" : $"{ratio:P0} of {reference}";
    string idle = r.MachineIdlePercent is null ? "" : $"{r.MachineIdlePercent:F0}";
    md.AppendLine(CultureInfo.InvariantCulture, $"| {r.Name} | {r.RecordsPerSecond:N0} | {r.MBps:F1} | {r.CpuSecondsPerGB:F2} | {r.BrokerPeakRssMiB:F0} | {idle} | {vs} | {lat} |");
}
if (ratios.Count > 0)
{
    md.AppendLine().AppendLine("| row | records/s ratio (latency rows: p50 ratio) | CPU-s/GB ratio |").AppendLine("|---|---:|---:|");
    foreach (var (row, rec, cpu) in ratios)
        md.AppendLine(CultureInfo.InvariantCulture, $"| {row} | {rec:F2} | {(double.IsNaN(cpu) ? "-" : cpu.ToString("F2", CultureInfo.InvariantCulture))} |");
}
if (env.TryGetValue("broker_idle_rss_MiB", out var idleRss))
    md.AppendLine().AppendLine(CultureInfo.InvariantCulture, $"Idle broker RSS: {idleRss:F0} MiB.");
Directory.CreateDirectory(outDir);
string stamp = DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture);
File.WriteAllText(Path.Combine(outDir, $"{suite}-{stamp}.md"), md.ToString());
File.WriteAllText(Path.Combine(outDir, $"{suite}-{stamp}.json"), JsonSerializer.Serialize(new
{
    environment = env,
    targets = targetRows.Select(t => new { target = t.Target, figure = t.Figure, reference = t.Reference, ratio = t.Ratio, goal = t.Goal, met = t.Met }),
    runs = results.Select(x => new
    {
        x.Result.Name,
        x.Result.Records,
        x.Result.Bytes,
        x.Result.Seconds,
        records_per_second = x.Result.RecordsPerSecond,
        MBps = x.Result.MBps,
        broker_cpu_seconds = x.Result.BrokerCpuSeconds,
        broker_cpu_seconds_per_GB = x.Result.CpuSecondsPerGB,
        broker_peak_rss_MiB = x.Result.BrokerPeakRssMiB,
        machine_idle_percent = x.Result.MachineIdlePercent,
        client_cpu_seconds = x.Result.ClientCpuSeconds,
        reference = x.Reference,
        ratio_to_reference = double.IsNaN(x.Ratio) ? (double?)null : x.Ratio,
        p50_ms = x.Result.P50Ms,
        p99_ms = x.Result.P99Ms,
        p999_ms = x.Result.P999Ms,
    }),
}, new JsonSerializerOptions { WriteIndented = true }));
Console.WriteLine(md.ToString());
Console.Error.WriteLine($"written: {outDir}/{suite}-{stamp}.md and .json");
return 0;
