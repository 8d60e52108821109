namespace Kiou.Broker.Tests;

/// <summary>
/// Clients that are not librdkafka, run as child processes: kafka-python (Debian's python3-kafka) and KafkaJS
/// (npm, tests/compat/package.json). Each script checks its own results byte for byte and prints one "ok:" line
/// per step; scripts/test.sh installs KafkaJS, .ci/run installs python3-kafka.
/// </summary>
public sealed class CompatTests
{
    internal static string CompatDir
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Kiou.sln")))
                    return Path.Combine(dir.FullName, "tests", "compat");
            }
            throw new DirectoryNotFoundException("tests/compat not found above " + AppContext.BaseDirectory);
        }
    }

    static void AssertSteps(ChildProcess.Result run, params string[] steps)
    {
        Assert.True(run.ExitCode == 0, $"exit code {run.ExitCode}\nstdout:\n{run.Stdout}\nstderr:\n{run.Stderr}");
        foreach (string step in steps)
            Assert.Contains("ok: " + step, run.Stdout);
    }

    [Fact]
    public async Task Kafka_python_creates_produces_consumes_looks_up_offsets_and_deletes()
    {
        await using var broker = TestBroker.Start();
        var run = ChildProcess.Run("/usr/bin/python3", [Path.Combine(CompatDir, "kafka_python_smoke.py"), broker.Bootstrap, "kafka-python"],
            timeoutMs: 90_000);
        AssertSteps(run, "create_topics", "produced 2000 records", "consumed every record back byte for byte",
            "end_offsets, beginning_offsets and offsets_for_times", "delete_topics");
    }

    [Fact]
    public async Task KafkaJS_creates_produces_looks_up_offsets_consumes_in_a_group_and_deletes()
    {
        await using var broker = TestBroker.Start();
        var run = ChildProcess.Run("node", [Path.Combine(CompatDir, "kafkajs_smoke.js"), broker.Bootstrap, "kafkajs"], timeoutMs: 90_000);
        AssertSteps(run, "createTopics and fetchTopicMetadata", "produced 1000 records", "fetchTopicOffsets and fetchTopicOffsetsByTimestamp",
            "consumed every record in a group and committed the offsets", "deleteTopics");
    }
}
