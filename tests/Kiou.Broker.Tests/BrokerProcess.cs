using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Kiou.Broker.Tests;

/// <summary>
/// The broker as a child process (the `kiou` executable next to the tests), for tests that kill it with SIGKILL.
/// Output goes to <see cref="Output"/>; <see cref="Start"/> returns once the start-up line is printed.
/// </summary>
public sealed class BrokerProcess : IDisposable
{
    readonly Process _process;
    readonly StringWriterLines _output;

    public int Port { get; }
    public string Bootstrap => $"127.0.0.1:{Port}";
    public string Output => _output.ToString();

    BrokerProcess(Process process, StringWriterLines output, int port)
    {
        _process = process;
        _output = output;
        Port = port;
    }

    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    /// <param name="executable">Runs this instead of the `kiou` executable (a wrapper script that sets limits, then execs kiou).</param>
    /// <param name="attempt">Starts after a port taken meanwhile (internal: counts the retries).</param>
    public static BrokerProcess Start(string dataDir, IDictionary<string, string>? env = null, int? port = null, string? executable = null, int attempt = 0)
    {
        int p = port ?? FreePort();
        var psi = new ProcessStartInfo(executable ?? Path.Combine(AppContext.BaseDirectory, "kiou"))
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        psi.Environment["KIOU_PORT"] = p.ToString();
        psi.Environment["KIOU_CONTROLLER_PORT"] = FreePort().ToString();
        psi.Environment["KIOU_HTTP_PORT"] = FreePort().ToString();
        psi.Environment["KIOU_DATA_DIR"] = dataDir;
        psi.Environment["KIOU_IO"] = TestBroker.IoModeFromEnvironment;
        foreach (var (k, v) in env ?? new Dictionary<string, string>())
            psi.Environment[k] = v;
        var output = new StringWriterLines();
        var process = new Process { StartInfo = psi };
        process.ErrorDataReceived += (_, e) => output.Add(e.Data);
        process.OutputDataReceived += (_, e) => output.Add(e.Data);
        process.Start();
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        var broker = new BrokerProcess(process, output, p);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!broker.Output.Contains("KIOU started"))
        {
            if (process.HasExited)
            {
                process.WaitForExit(); // the output read so far, to the end
                // A free port from FreePort can be taken by a parallel test before the broker binds it: new ports
                // (the controller's always; the broker's unless the test chose it).
                if (attempt < 3 && broker.Output.Contains("already in use"))
                {
                    process.Dispose();
                    return Start(dataDir, env, port, executable, attempt + 1);
                }

                throw new InvalidOperationException($"the broker did not start (exit code {process.ExitCode}): {broker.Output}");
            }

            if (DateTime.UtcNow > deadline)
                throw new InvalidOperationException($"the broker did not start in 30 s: {broker.Output}");
            Thread.Sleep(20);
        }
        return broker;
    }

    public int ProcessId => _process.Id;

    public void Kill()
    {
        _process.Kill(); // SIGKILL
        _process.WaitForExit();
    }

    public bool HasExited => _process.HasExited;

    public int Terminate() => Terminate(TimeSpan.FromSeconds(30));

    public int Terminate(TimeSpan within)
    {
        SendSigterm();
        return WaitForExit(within);
    }

    public void SendSigterm() => Process.Start("kill", ["-TERM", _process.Id.ToString()])!.WaitForExit();

    /// <summary>The exit code once the process has ended; throws when it does not end in time.</summary>
    public int WaitForExit(TimeSpan within)
    {
        if (!_process.WaitForExit(within))
            throw new TimeoutException($"the broker did not stop within {within.TotalSeconds} s of SIGTERM: {Output}");
        _process.WaitForExit(); // after a timed wait, this one also waits for the redirected output to be read to its end
        return _process.ExitCode;
    }

    public void Dispose()
    {
        if (!_process.HasExited)
            Kill();
        _process.Dispose();
    }

    sealed class StringWriterLines
    {
        readonly System.Text.StringBuilder _sb = new();

        public void Add(string? line)
        {
            if (line is null)
                return;
            lock (_sb)
                _sb.AppendLine(line);
        }

        public override string ToString()
        {
            lock (_sb)
                return _sb.ToString();
        }
    }
}
