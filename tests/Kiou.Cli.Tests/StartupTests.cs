namespace Kiou.Cli.Tests;

/// <summary>
/// The tools start like native programs: bin/kiou-cli publishes src/Kiou.Cli as one NativeAOT executable (clang and
/// zlib1g-dev build it; CI installs them), and an admin tool exits without waiting for librdkafka to shut down.
/// </summary>
public sealed class StartupTests
{
    [Fact]
    public async Task Topics_list_runs_the_native_build()
    {
        await using var broker = TestBroker.Start();
        string[] args = ["--bootstrap-server", broker.Bootstrap, "--list"];
        var first = Tools.Script("topics", args);
        Assert.True(first.ExitCode == 0, first.ToString());

        var dir = Path.Combine(Tools.Root, "artifacts", "cli");
        Assert.True(File.Exists(Path.Combine(dir, "kiou-cli")), "no artifacts/cli/kiou-cli");
        Assert.False(File.Exists(Path.Combine(dir, "kiou-cli.dll")),
            "artifacts/cli holds a .NET assembly, not a native executable: is clang installed (apt-get install -y clang zlib1g-dev)?");
        // How fast it starts is measured by bench/startup.sh (BENCHMARKS.md), not timed here: these machines are noisy.
    }
}
