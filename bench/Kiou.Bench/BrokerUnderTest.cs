using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Kiou.Bench;

/// <summary>
/// A KIOU broker as a child process with a fresh data dir on free ports, so that its CPU time and peak RSS can be
/// read from /proc apart from the load generator's.
/// </summary>
sealed class BrokerUnderTest : IDisposable
{
    readonly Process _process;
    readonly string _dataDir;
    bool _ownsDataDir;
    static readonly double TicksPerSecond = 100; // USER_HZ on Linux

    public int Port { get; }
    public string Bootstrap => $"127.0.0.1:{Port}";
    public string IoMode { get; }

    BrokerUnderTest(Process process, string dataDir, int port, string ioMode)
    {
        _process = process;
        _dataDir = dataDir;
        Port = port;
        IoMode = ioMode;
    }

    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public static BrokerUnderTest Start(string brokerBinary, string dataRoot, IDictionary<string, string> env)
    {
        var b = StartOn(brokerBinary, Path.Combine(dataRoot, "kiou-bench-" + Guid.NewGuid().ToString("N")[..8]), env);
        b._ownsDataDir = true;
        return b;
    }

    /// <summary>As <see cref="Start"/>, on a given data dir (a restart over data written before), which stays after
    /// <see cref="Dispose"/>.</summary>
    public static BrokerUnderTest StartOn(string brokerBinary, string dataDir, IDictionary<string, string> env)
    {
        int port = FreePort();
        var psi = new ProcessStartInfo(brokerBinary) { RedirectStandardError = true, RedirectStandardOutput = true };
        psi.Environment["KIOU_PORT"] = port.ToString(CultureInfo.InvariantCulture);
        psi.Environment["KIOU_CONTROLLER_PORT"] = FreePort().ToString(CultureInfo.InvariantCulture);
        psi.Environment["KIOU_HTTP_PORT"] = "0";
        psi.Environment["KIOU_DATA_DIR"] = dataDir;
        psi.Environment["KIOU_LOG_LEVEL"] = "warn";
        // "{port}" in a value (KIOU_LISTENERS) is the port Bootstrap names.
        foreach (var (k, v) in env)
            psi.Environment[k] = v.Replace("{port}", port.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal);
        var p = Process.Start(psi)!;
        var started = new TaskCompletionSource<string>();
        var lines = new List<string>();
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null)
                return;
            lock (lines)
                lines.Add(e.Data);
            if (e.Data.Contains("KIOU started"))
                started.TrySetResult(e.Data);
        };
        p.OutputDataReceived += (_, _) => { };
        p.BeginErrorReadLine();
        p.BeginOutputReadLine();
        // The start-up line is logged at info; with KIOU_LOG_LEVEL=warn, wait for the port instead.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            if (p.HasExited)
                throw new InvalidOperationException("the broker exited: " + string.Join("\n", lines));
            try
            {
                using var c = new TcpClient();
                c.Connect(IPAddress.Loopback, port);
                break;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(50);
            }
        }
        string mode = env.TryGetValue("KIOU_IO", out var m) ? m : "auto";
        return new BrokerUnderTest(p, dataDir, port, mode);
    }

    /// <summary>User + system CPU seconds of the broker process so far.</summary>
    public double CpuSeconds()
    {
        string stat = File.ReadAllText($"/proc/{_process.Id}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        // fields[0] is field 3 (state); utime is field 14, stime field 15.
        long utime = long.Parse(fields[11], CultureInfo.InvariantCulture);
        long stime = long.Parse(fields[12], CultureInfo.InvariantCulture);
        return (utime + stime) / TicksPerSecond;
    }

    /// <summary>CPU seconds per thread name (digits stripped, so ".NET TP Worker" threads add up), for diagnostics.</summary>
    public Dictionary<string, double> ThreadCpuSeconds()
    {
        var result = new Dictionary<string, double>();
        foreach (string dir in Directory.EnumerateDirectories($"/proc/{_process.Id}/task"))
        {
            try
            {
                string name = new string(File.ReadAllText(Path.Combine(dir, "comm")).Trim().Where(c => !char.IsDigit(c)).ToArray()).Trim();
                string stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                double seconds = (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / TicksPerSecond;
                result[name] = result.GetValueOrDefault(name) + seconds;
            }
            catch (IOException)
            {
                // the thread ended meanwhile
            }
        }
        return result;
    }

    /// <summary>Peak resident set size (VmHWM) in MiB.</summary>
    public double PeakRssMiB() => StatusKb("VmHWM:") / 1024.0;

    public double RssMiB() => StatusKb("VmRSS:") / 1024.0;

    public string DataDir => _dataDir;

    /// <summary>Bytes the broker process (all its threads) has caused to be read from the storage device
    /// (/proc/PID/io read_bytes): page-cache hits do not count.</summary>
    public long DeviceReadBytes()
    {
        foreach (var line in File.ReadLines($"/proc/{_process.Id}/io"))
        {
            if (line.StartsWith("read_bytes:", StringComparison.Ordinal))
                return long.Parse(line["read_bytes:".Length..].Trim(), CultureInfo.InvariantCulture);
        }
        return 0;
    }

    long StatusKb(string key)
    {
        foreach (var line in File.ReadLines($"/proc/{_process.Id}/status"))
        {
            if (line.StartsWith(key, StringComparison.Ordinal))
                return long.Parse(line[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        }
        return 0;
    }

    /// <summary>The data dir is kept after <see cref="Dispose"/> (the caller's to delete); returns its path.</summary>
    public string KeepDataDir()
    {
        _ownsDataDir = false;
        return _dataDir;
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            Process.Start("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)])!.WaitForExit();
            if (!_process.WaitForExit(30000))
                _process.Kill();
        }
        _process.Dispose();
        if (!_ownsDataDir)
            return;
        try
        {
            Directory.Delete(_dataDir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
