using System.Text.RegularExpressions;

namespace Kiou.Cli.Tests;

/// <summary>
/// The tools and these tests run on the librdkafka that ships with Confluent.Kafka, even where the machine has
/// another one installed (Debian's librdkafka-dev puts an older librdkafka.so in /usr/lib; CI installs it).
/// </summary>
public sealed class LibrdkafkaTests
{
    // Confluent.Kafka and librdkafka.redist are released together with the same version number.
    static readonly string Bundled = typeof(Confluent.Kafka.Library).Assembly.GetName().Version!.ToString(3);

    [Fact]
    public void The_tests_run_on_the_bundled_librdkafka() => Assert.Equal(Bundled, Confluent.Kafka.Library.VersionString);

    [Fact]
    public void Every_tool_prints_its_version_and_the_librdkafka_it_runs_on()
    {
        foreach (var tool in new[] { "topics", "producer", "consumer", "consumer-groups", "producer-perf", "consumer-perf" })
        {
            var r = Tools.Script(tool, ["--version"]);
            Assert.True(r.ExitCode == 0, tool + ": " + r);
            Assert.Matches(new Regex($@"^kiou-cli {Regex.Escape(tool)} \S+ \(librdkafka {Regex.Escape(Bundled)}\)\n$"), r.Stdout);
        }
    }

    [Fact]
    public async Task Describe_works_whatever_librdkafka_the_machine_has()
    {
        await using var broker = TestBroker.Start();
        Assert.Equal(0, Tools.Script("topics", ["--bootstrap-server", broker.Bootstrap, "--create", "--topic", "demo"]).ExitCode);
        // DescribeTopics needs rd_kafka_TopicCollection_of_topic_names, which an older librdkafka does not have.
        var r = Tools.Script("topics", ["--bootstrap-server", broker.Bootstrap, "--describe", "--topic", "demo"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.StartsWith("Topic: demo\t", r.Stdout);
    }
}
