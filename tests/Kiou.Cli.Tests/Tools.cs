using System.Diagnostics;

namespace Kiou.Cli.Tests;

/// <summary>The result of one tool run: exit code and everything it wrote.</summary>
public sealed record Run(int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed)
{
    public override string ToString() => $"exit {ExitCode} after {Elapsed.TotalSeconds:0.0} s\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";
}

/// <summary>
/// Runs bin/*.sh as a user does: a child process in the repository root, standard input and output, exit code.
/// The scripts build src/Kiou.Cli into artifacts/cli on first use, so the first run may take a while.
/// </summary>
public static class Tools
{
    public static string Root { get; } = FindRoot();

    static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "Kiou.sln")) && Directory.Exists(Path.Combine(d.FullName, "bin")))
                return d.FullName;
        }
        throw new InvalidOperationException("the repository root (Kiou.sln) was not found above " + AppContext.BaseDirectory);
    }

    // The first tool run on a fresh checkout builds the tools and says so on stderr: done once up front, so every
    // test sees only its tool's own output.
    static readonly Lazy<Run> Built = new(() =>
    {
        var psi = Start("bash");
        psi.ArgumentList.Add(Path.Combine("bin", "kiou-cli"));
        psi.ArgumentList.Add("topics");
        psi.ArgumentList.Add("--version");
        var run = Wait(psi, null, 600_000);
        if (run.ExitCode != 0)
            throw new InvalidOperationException("building the tools (bin/kiou-cli) failed: " + run);
        return run;
    });

    /// <summary>Builds the tools if bin/kiou-cli finds them missing or stale (once per test run).</summary>
    public static void EnsureBuilt() => _ = Built.Value;

    /// <summary>bin/TOOL.sh ARGS, optionally fed <paramref name="stdin"/> (then closed).</summary>
    public static Run Script(string tool, IEnumerable<string> args, string? stdin = null, int timeoutMs = 180_000)
    {
        EnsureBuilt();
        var psi = Start("bash");
        psi.ArgumentList.Add(Path.Combine("bin", tool + ".sh"));
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        return Wait(psi, stdin, timeoutMs);
    }

    /// <summary>A command line exactly as a user would paste it into a shell, run by bash in the repository root.</summary>
    public static Run Shell(string commandLine, int timeoutMs = 180_000)
    {
        EnsureBuilt();
        var psi = Start("bash");
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(commandLine);
        return Wait(psi, null, timeoutMs);
    }

    static ProcessStartInfo Start(string file) => new(file)
    {
        WorkingDirectory = Root,
        RedirectStandardInput = true,
        RedirectStandardOutput = true,
        RedirectStandardError = true,
        UseShellExecute = false,
        Environment = { ["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1", ["DOTNET_NOLOGO"] = "1" },
    };

    static Run Wait(ProcessStartInfo psi, string? stdin, int timeoutMs)
    {
        var clock = Stopwatch.StartNew();
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("bash did not start");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (stdin is not null)
            p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        if (!p.WaitForExit(timeoutMs))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
            throw new TimeoutException($"{string.Join(' ', psi.ArgumentList)} did not finish in {timeoutMs} ms\n{stdout.Result}\n{stderr.Result}");
        }
        p.WaitForExit();
        return new Run(p.ExitCode, stdout.Result, stderr.Result, clock.Elapsed);
    }

    /// <summary>A running tool, for --follow: lines arrive while it runs; <see cref="Stop"/> sends SIGTERM.</summary>
    public sealed class Running : IDisposable
    {
        readonly Process _p;
        readonly System.Text.StringBuilder _out = new(), _err = new();

        public Running(string tool, IEnumerable<string> args)
        {
            var psi = Start("bash");
            // exec: the tool itself gets the signal, not a shell waiting for it.
            psi.ArgumentList.Add("-c");
            psi.ArgumentList.Add("exec bin/" + tool + ".sh \"$@\"");
            psi.ArgumentList.Add(tool);
            foreach (var a in args)
                psi.ArgumentList.Add(a);
            _p = Process.Start(psi)!;
            _p.OutputDataReceived += (_, e) =>
            {
                if (e.Data is not null)
                {
                    lock (_out)
                        _out.Append(e.Data).Append('\n');
                }
            };
            _p.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is not null)
                {
                    lock (_err)
                        _err.Append(e.Data).Append('\n');
                }
            };
            _p.BeginOutputReadLine();
            _p.BeginErrorReadLine();
        }

        public string Stdout
        {
            get
            {
                lock (_out)
                    return _out.ToString();
            }
        }

        public string Stderr
        {
            get
            {
                lock (_err)
                    return _err.ToString();
            }
        }

        public bool HasExited => _p.HasExited;

        public void WaitFor(Func<string, bool> condition, string what, int timeoutMs = 60_000)
        {
            var deadline = DateTime.UtcNow.AddMilliseconds(timeoutMs);
            while (!condition(Stdout))
            {
                if (DateTime.UtcNow > deadline || _p.HasExited)
                    throw new TimeoutException($"{what}: not seen{(_p.HasExited ? " (the tool exited)" : "")}\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}");
                Thread.Sleep(50);
            }
        }

        public int Stop(int timeoutMs = 60_000)
        {
            Process.Start("kill", ["-TERM", _p.Id.ToString()])!.WaitForExit();
            if (!_p.WaitForExit(timeoutMs))
                throw new TimeoutException("the tool did not stop within 60 s of SIGTERM");
            _p.WaitForExit();
            return _p.ExitCode;
        }

        public void Dispose()
        {
            if (!_p.HasExited)
                _p.Kill(entireProcessTree: true);
            _p.Dispose();
        }
    }
}
