using System.Text.Json;
using Kiou.Broker.Hosting;
using Xunit;

namespace Kiou.Broker.Tests;

/// <summary>The broker explains itself: --help lists the settings README lists (one table in Settings.cs makes
/// both), --version, and a typo in a KIOU_* variable or value stops it with one line instead of a silent default.</summary>
public sealed class SettingsTests
{
    static string Kiou => Path.Combine(AppContext.BaseDirectory, "kiou");

    static string RepoRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Kiou.sln")))
                    return dir.FullName;
            }
            throw new DirectoryNotFoundException("Kiou.sln not found above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>Runs kiou with settings that, were it to start anyway, keep it off the ports and data of others;
    /// the time limit then fails the test.</summary>
    static ChildProcess.Result RunKiou(string[] args, Dictionary<string, string>? env = null)
    {
        string dir = Directory.CreateTempSubdirectory("kiou-settings-").FullName;
        try
        {
            var e = new Dictionary<string, string> { ["KIOU_PORT"] = "0", ["KIOU_CONTROLLER_PORT"] = "0", ["KIOU_HTTP_PORT"] = "0", ["KIOU_DATA_DIR"] = dir };
            foreach (var (k, v) in env ?? [])
                e[k] = v;
            return ChildProcess.Run(Kiou, args, timeoutMs: 15000, env: e);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    static string[] Lines(string s) => s.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    [Fact]
    public void ReadmeSettingsTableIsTheOneInCode()
    {
        string readme = File.ReadAllText(Path.Combine(RepoRoot, "README.md"));
        int begin = readme.IndexOf("<!-- settings:begin", StringComparison.Ordinal);
        int end = readme.IndexOf("<!-- settings:end -->", StringComparison.Ordinal);
        Assert.True(begin >= 0 && end > begin, "README.md lacks the <!-- settings:begin --> / <!-- settings:end --> markers");
        begin = readme.IndexOf('\n', begin) + 1;
        string table = readme[begin..end].Trim();
        string expected = Settings.MarkdownTable().Trim();
        Assert.True(expected == table,
            "README.md's settings table differs from src/Kiou.Broker/Hosting/Settings.cs; put this between its markers:\n" + expected);
    }

    [Fact]
    public void FromEnvironmentReadsExactlyTheSettingsInTheTable()
    {
        var read = new HashSet<string>();
        BrokerConfig.FromEnvironment(n =>
        {
            read.Add(n);
            return null;
        });
        read.RemoveWhere(n => n.StartsWith(Settings.TestPrefix, StringComparison.Ordinal));
        // Read by Program before the rest.
        read.Add("KIOU_LOG_LEVEL");
        read.Add("KIOU_LOG_FORMAT");
        Assert.Equal(Settings.All.Select(s => s.Name).Order(), read.Order());
        Assert.Equal(Settings.All.Count, Settings.All.Select(s => s.Name).Distinct().Count());
    }

    [Fact]
    public void EachDefaultInTheTableIsTheDefaultTheBrokerUses()
    {
        var plain = BrokerConfig.FromEnvironment(_ => null);
        // Defaults that are a rule, not a value: the listener host, and a limit fitted to the descriptor limit; and
        // files that are not there unless named.
        string[] derived = ["KIOU_ADVERTISED_HOST", "KIOU_MAX_PARTITIONS", "KIOU_LOG_LEVEL", "KIOU_LOG_FORMAT", "KIOU_SASL_PLAIN_USERS_FILE", "KIOU_SASL_SCRAM_USERS_FILE"];
        foreach (var s in Settings.All.Where(s => !derived.Contains(s.Name)))
        {
            var withDefault = BrokerConfig.FromEnvironment(n => n == s.Name ? s.Default : null);
            Assert.True(plain == withDefault, $"{s.Name}={s.Default} (its default in Settings.cs) is not what the broker uses when it is unset");
        }
    }

    /// <summary>Every KIOU_* name the code, tests and scripts use is one the broker accepts, so a broker started by a
    /// script or test that sets it does not stop on it.</summary>
    [Fact]
    public void EveryKiouVariableInTheRepositoryIsKnown()
    {
        string root = RepoRoot;
        string[] skip = ["node_modules", "bin", "obj", "artifacts", ".git"];
        var unknown = new SortedSet<string>();
        foreach (string file in Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories))
        {
            string rel = Path.GetRelativePath(root, file);
            if (rel.Split(Path.DirectorySeparatorChar).Any(skip.Contains) || file.EndsWith("SettingsTests.cs", StringComparison.Ordinal)
                || Path.GetExtension(file) is not (".cs" or ".sh" or ".py" or ".js" or ""))
                continue;
            foreach (System.Text.RegularExpressions.Match m in System.Text.RegularExpressions.Regex.Matches(File.ReadAllText(file), "KIOU_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_*])"))
            {
                if (!Settings.IsKnown(m.Value))
                    unknown.Add($"{m.Value} ({rel})");
            }
        }
        Assert.True(unknown.Count == 0, "not in Settings.cs (a setting, or a harness variable): " + string.Join(", ", unknown));
    }

    [Fact]
    public void HelpListsEverySettingWithItsDefault()
    {
        var r = RunKiou(["--help"]);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("Usage: kiou", r.Stdout);
        foreach (var s in Settings.All)
            Assert.Contains($"  {s.Name} [{s.Default}]\n", r.Stdout);
        Assert.Contains("broker listener port (0: any free port)", r.Stdout);
        Assert.Equal(0, RunKiou(["-h"]).ExitCode);
    }

    [Fact]
    public void VersionNamesKiouAndTheRuntime()
    {
        var r = RunKiou(["--version"]);
        Assert.Equal(0, r.ExitCode);
        Assert.Matches(@"^kiou \d+\.\d+\.\d+\S* on \.NET \d+", r.Stdout.Trim());
    }

    [Fact]
    public void AnyOtherArgumentIsExitTwoWithAUsageHint()
    {
        var r = RunKiou(["--port", "9092"]);
        Assert.Equal(2, r.ExitCode);
        var line = Assert.Single(Lines(r.Stderr));
        Assert.Contains("--port", line);
        Assert.Contains("kiou --help", line);
    }

    [Fact]
    public void AnUnknownVariableIsOneLineNamingItAndTheClosest()
    {
        var r = RunKiou([], new() { ["KIOU_PROT"] = "9999" });
        Assert.Equal(1, r.ExitCode);
        var line = Assert.Single(Lines(r.Stderr));
        Assert.Contains("KIOU_PROT", line);
        Assert.Contains("did you mean KIOU_PORT?", line);
    }

    [Theory]
    [InlineData("KIOU_LOG_LEVEL", "verbose")]
    [InlineData("KIOU_LOG_FORMAT", "xml")]
    [InlineData("KIOU_PORT", "ninety")]
    [InlineData("KIOU_FLUSH", "sometimes")]
    public void ABadValueIsOneLineNamingIt(string name, string value)
    {
        var r = RunKiou([], new() { [name] = value });
        Assert.Equal(1, r.ExitCode);
        var line = Assert.Single(Lines(r.Stderr));
        Assert.Contains($"{name}={value} is not valid", line);
    }

    [Fact]
    public void AJsonLogLineStaysOneParsableLineWhateverTheMessageHolds()
    {
        var text = new StringWriter();
        var log = new Log(text, Log.Level.Info, json: true);
        log.Warn("topic \"a\"\nb\tc \ud800 é");
        var line = Assert.Single(Lines(text.ToString()));
        using var doc = JsonDocument.Parse(line);
        Assert.Equal("WARN", doc.RootElement.GetProperty("level").GetString());
        Assert.Equal("topic \"a\"\nb\tc \ufffd é", doc.RootElement.GetProperty("message").GetString());
    }

    [Fact]
    public void JsonLogLinesParseAndTestHarnessVariablesAreAccepted()
    {
        string dir = Directory.CreateTempSubdirectory("kiou-json-").FullName;
        try
        {
            using var broker = BrokerProcess.Start(dir, new Dictionary<string, string>
            {
                ["KIOU_LOG_FORMAT"] = "json",
                // Read by the tests, not the broker: a broker they start inherits them.
                ["KIOU_CRASH_CYCLES"] = "1",
                ["KIOU_TEST_SOMETHING"] = "1",
            });
            Assert.Equal(0, broker.Terminate());
            string[] lines = Lines(broker.Output);
            Assert.True(lines.Length >= 2, broker.Output);
            foreach (string line in lines)
            {
                using var doc = JsonDocument.Parse(line);
                var root = doc.RootElement;
                Assert.Contains(root.GetProperty("level").GetString(), new[] { "DEBUG", "INFO", "WARN", "ERROR" });
                Assert.False(string.IsNullOrEmpty(root.GetProperty("message").GetString()));
                Assert.True(DateTimeOffset.TryParse(root.GetProperty("timestamp").GetString(), out _), line);
            }
            Assert.Contains(lines, l => l.Contains("\"message\":\"KIOU started", StringComparison.Ordinal));
            Assert.Contains(lines, l => l.Contains("\"level\":\"INFO\"", StringComparison.Ordinal));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
