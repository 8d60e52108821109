namespace Kiou.Cli.Tests;

/// <summary>bin/kiou-cli builds the tools once, even when several scripts start at the same time on a fresh checkout.</summary>
public sealed class BuildTests
{
    [Fact]
    public async Task Tools_started_together_on_a_fresh_build_take_turns_and_all_work()
    {
        Tools.Script("topics", ["--help"]);
        var output = Path.Combine(Tools.Root, "artifacts", "cli");
        Directory.Delete(output, recursive: true);
        var tools = new[] { "topics", "producer", "consumer", "consumer-groups" };
        var runs = tools.Select(t => Task.Run(() => Tools.Script(t, ["--help"], timeoutMs: 300_000))).ToArray();
        var results = await Task.WhenAll(runs);
        for (int i = 0; i < tools.Length; i++)
        {
            var r = results[i];
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.StartsWith($"usage: bin/{tools[i]}.sh", r.Stdout);
        }
        Assert.Equal(1, results.Count(r => r.Stderr.Contains("building the command-line tools")));

        // Fresh now: the next start does not build.
        var next = Tools.Script("producer", ["--help"]);
        Assert.DoesNotContain("building", next.Stderr);
    }
}
