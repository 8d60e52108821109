using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace Kiou.Bench;

/// <summary>
/// bench/perf/kiou-perf.c, the load driver in C (librdkafka's batch API, no managed call per record), run as a child
/// process; its one JSON line on stdout is the run's result. The driver checks the partitions' end offsets itself and
/// exits non-zero if a record was lost or failed, which fails the run here.
/// </summary>
static class KiouPerf
{
    public static string Binary { get; set; } = "artifacts/kiou-perf";

    public static bool Available => File.Exists(Binary);

    /// <summary>Runs the driver and returns its JSON result; throws with its stderr if it fails.</summary>
    public static JsonElement Run(params string[] args)
    {
        var psi = new ProcessStartInfo(Binary) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        string err = stderr.GetAwaiter().GetResult();
        string? line = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault();
        if (p.ExitCode != 0 || line is null)
            throw new InvalidOperationException($"kiou-perf {string.Join(' ', args)} exited with {p.ExitCode}: {line} {err.Trim()}");
        if (err.Length > 0)
            Console.Error.Write(err);
        return JsonDocument.Parse(line).RootElement.Clone();
    }

    /// <summary>Starts the driver without waiting (for runs that must overlap); <see cref="Finish"/> collects it.</summary>
    public static Process Start(params string[] args)
    {
        var psi = new ProcessStartInfo(Binary) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    public static JsonElement Finish(Process p)
    {
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        string err = stderr.GetAwaiter().GetResult();
        string? line = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault();
        int code = p.ExitCode;
        p.Dispose();
        if (code != 0 || line is null)
            throw new InvalidOperationException($"kiou-perf exited with {code}: {line} {err.Trim()}");
        return JsonDocument.Parse(line).RootElement.Clone();
    }

    /// <summary>The librdkafka the driver runs on (Debian's, not the one bundled with Confluent.Kafka).</summary>
    public static string LibrdkafkaVersion()
    {
        try
        {
            return Run("version").GetProperty("librdkafka").GetString() ?? "?";
        }
        catch (InvalidOperationException)
        {
            return "?";
        }
    }

    static string I(long v) => v.ToString(CultureInfo.InvariantCulture);

    /// <summary>Produce with the C driver: to <paramref name="broker"/>, or to librdkafka's mock cluster when null.</summary>
    public static RunResult Produce(string name, BrokerUnderTest? broker, string topic, int partitions, int recordBytes, long count,
        string acks, int producers = 1, int batchBytes = 1 << 20, int lingerMs = 5, bool idempotent = false, string? bootstrap = null, string[]? properties = null)
    {
        var args = new List<string> { "produce" };
        args.AddRange(broker is null ? ["--mock"] : ["-b", bootstrap ?? broker.Bootstrap]);
        foreach (string p in properties ?? [])
            args.AddRange(["-X", p]);
        args.AddRange(["-t", topic, "-p", I(partitions), "-s", I(recordBytes), "-c", I(count), "-a", acks, "-l", I(lingerMs),
            "--batch", I(batchBytes), "-P", I(producers)]);
        if (idempotent)
            args.Add("--idempotence");
        double cpu0 = broker?.CpuSeconds() ?? 0;
        var idle0 = MachineCpu.Read();
        var r = Run([.. args]);
        double cpu = broker is null ? 0 : broker.CpuSeconds() - cpu0;
        return ToResult(name, r, cpu, broker?.PeakRssMiB() ?? 0, MachineCpu.IdlePercentSince(idle0));
    }

    /// <summary>Consumes every record of the topic from the beginning (up to the end offsets seen at the start).</summary>
    /// <remarks>With <paramref name="count"/>, that many records instead.</remarks>
    public static RunResult Consume(string name, BrokerUnderTest broker, string topic, int partitions, long? count = null, string? bootstrap = null, string[]? properties = null)
    {
        double cpu0 = broker.CpuSeconds();
        var idle0 = MachineCpu.Read();
        string[] args = ["consume", "-b", bootstrap ?? broker.Bootstrap, "-t", topic, "-p", I(partitions), .. (properties ?? []).SelectMany(p => new[] { "-X", p })];
        var r = Run(count is long c ? [.. args, "-c", I(c)] : args);
        return ToResult(name, r, broker.CpuSeconds() - cpu0, broker.PeakRssMiB(), MachineCpu.IdlePercentSince(idle0));
    }

    /// <summary>End-to-end latency at a fixed rate, producer and consumer in the driver's one process.</summary>
    public static RunResult Latency(string name, BrokerUnderTest broker, string topic, int ratePerSecond, TimeSpan duration, int recordBytes = 100)
    {
        double cpu0 = broker.CpuSeconds();
        var r = Run("latency", "-b", broker.Bootstrap, "-t", topic, "-s", I(recordBytes), "--rate", I(ratePerSecond),
            "--seconds", duration.TotalSeconds.ToString(CultureInfo.InvariantCulture));
        var result = ToResult(name, r, broker.CpuSeconds() - cpu0, broker.PeakRssMiB(), null);
        return result with { P50Ms = r.GetProperty("p50_ms").GetDouble(), P99Ms = r.GetProperty("p99_ms").GetDouble(), P999Ms = r.GetProperty("p999_ms").GetDouble() };
    }

    public static RunResult ToResult(string name, JsonElement r, double brokerCpu, double peakRss, double? idle) =>
        new(name, r.GetProperty("records").GetInt64(), r.GetProperty("bytes").GetInt64(), r.GetProperty("seconds").GetDouble(), brokerCpu, peakRss,
            MachineIdlePercent: idle, ClientCpuSeconds: r.GetProperty("cpu_seconds").GetDouble());
}
