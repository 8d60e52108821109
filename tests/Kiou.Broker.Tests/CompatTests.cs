namespace Kiou.Broker.Tests;

/// <summary>
/// Clients run as child processes: kafka-python (Debian's python3-kafka), KafkaJS (npm, tests/compat/package.json)
/// and confluent-kafka-python (Debian's python3-confluent-kafka, for librdkafka calls .NET does not expose). Each script checks its own results byte for byte and prints one "ok:" line
/// per step; scripts/test.sh installs KafkaJS, .ci/run installs the Debian packages.
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
    public async Task Librdkafka_asynchronous_commits_sent_back_to_back_leave_the_last_one_committed()
    {
        // A broker process of its own: the thread pool of a test host, warmed by other tests, hid the reordering.
        string dir = Path.Combine(Path.GetTempPath(), "kiou-async-commits-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var broker = BrokerProcess.Start(dir);
            await Clients.CreateTopicAsync(broker.Bootstrap, "async-commits", 1);
            var run = ChildProcess.Run("/usr/bin/python3", [Path.Combine(CompatDir, "async_commits.py"), broker.Bootstrap, "async-commits"],
                timeoutMs: 90_000);
            AssertSteps(run, "produced", "the last of 50 asynchronous commits is committed");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task KafkaJS_creates_produces_looks_up_offsets_consumes_in_a_group_and_deletes()
    {
        await using var broker = TestBroker.Start();
        var run = ChildProcess.Run("node", [Path.Combine(CompatDir, "kafkajs_smoke.js"), broker.Bootstrap, "kafkajs"], timeoutMs: 90_000);
        AssertSteps(run, "createTopics and fetchTopicMetadata", "produced 1000 records with acks=-1 and gzip, idempotent", "fetchTopicOffsets and fetchTopicOffsetsByTimestamp",
            "consumed every record in a group and committed the offsets", "produced without idempotence", "deleteTopics");
    }

    [Fact]
    public async Task KafkaJS_transactions_commit_and_abort_with_sendOffsets()
    {
        await using var broker = TestBroker.Start();
        var run = ChildProcess.Run("node", [Path.Combine(CompatDir, "kafkajs_transactions.js"), broker.Bootstrap, "kafkajs-txn"], timeoutMs: 90_000);
        AssertSteps(run, "committed a transaction with records and offsets", "aborted a transaction with records and offsets",
            "the group offset is the committed transaction's", "a read_uncommitted consumer read the 16 records",
            "a read_committed consumer read exactly the 8 committed records");
    }
}
