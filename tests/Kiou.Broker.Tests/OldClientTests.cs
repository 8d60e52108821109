using System.Net.Sockets;
using Confluent.Kafka;
using Kiou.Protocol.Messages;
using static Kiou.Broker.Tests.RawWire;

namespace Kiou.Broker.Tests;

/// <summary>
/// Every protocol generation Kafka 3.9 served: real clients pinned to old versions (kafka-python's api_version), and
/// the old encodings clients no longer reach written on the wire with our codecs (ListOffsets v0, Metadata v0,
/// OffsetCommit/OffsetFetch v0, Fetch by topic id).
/// </summary>
public sealed class OldClientTests
{
    static async Task ProduceTenPerPartitionAsync(string bootstrap, string topic)
    {
        await Clients.CreateTopicAsync(bootstrap, topic, 2);
        using var producer = Clients.Producer(bootstrap, Acks.All);
        for (int i = 0; i < 20; i++)
            await producer.ProduceAsync(new TopicPartition(topic, i % 2), new Message<byte[]?, byte[]?> { Value = [(byte)i] });
    }

    // Every generation consumes: 0.9-0.11 with Fetch v0-3 and the legacy message formats, converted down.
    [Theory]
    [InlineData("0.9", true)]
    [InlineData("0.10.0", true)]
    [InlineData("0.10.1", true)]
    [InlineData("0.11", true)]
    [InlineData("1.0", true)]
    public async Task Kafka_python_pinned_to_an_old_generation_runs_a_consumer_group_commits_and_admin(string apiVersion, bool consume)
    {
        await using var broker = TestBroker.Start();
        string topic = "old-" + apiVersion.Replace('.', '-');
        await ProduceTenPerPartitionAsync(broker.Bootstrap, topic);
        string[] args = consume
            ? [Path.Combine(CompatTests.CompatDir, "kafka_python_old_versions.py"), broker.Bootstrap, topic, apiVersion, "consume"]
            : [Path.Combine(CompatTests.CompatDir, "kafka_python_old_versions.py"), broker.Bootstrap, topic, apiVersion];
        var run = ChildProcess.Run("/usr/bin/python3", args, timeoutMs: 90_000);
        Assert.True(run.ExitCode == 0, $"exit code {run.ExitCode}\nstdout:\n{run.Stdout}\nstderr:\n{run.Stderr}\nbroker:\n{broker.LogText}");
        Assert.Contains(consume ? "ok: joined the group and consumed every record" : "ok: joined the group, assigned both partitions", run.Stdout);
        foreach (string step in new[] { "heartbeats kept generation", "committed in the group and fetched the commits back",
                     "seek_to_end and seek_to_beginning answered 10 and 0", "left the group", "commits read back by a new consumer" })
            Assert.Contains("ok: " + step, run.Stdout);
        if (apiVersion != "0.9")
            Assert.Contains("ok: list_consumer_groups and describe_consumer_groups", run.Stdout);
        if (apiVersion is not "0.9" and not "0.10.0")
            Assert.Contains("ok: create_topics and delete_topics", run.Stdout);
        if (apiVersion is "0.11" or "1.0")
            Assert.Contains("ok: describe_configs", run.Stdout);
        Assert.DoesNotContain("is not served", broker.LogText.ToString());
    }

    [Fact]
    public async Task ListOffsets_v0_answers_old_style_offset_lists()
    {
        await using var broker = TestBroker.Start();
        await ProduceTenPerPartitionAsync(broker.Bootstrap, "lo-v0");
        using var s = await ConnectAsync(broker.Broker.BrokerEndPoint);
        ListOffsetsRequest Ask(long timestamp, int max) => new()
        {
            ReplicaId = -1,
            Topics =
            [
                new ListOffsetsRequest.ListOffsetsTopic
                {
                    Name = "lo-v0",
                    Partitions = [new ListOffsetsRequest.ListOffsetsPartition { PartitionIndex = 0, Timestamp = timestamp, MaxNumOffsets = max }],
                },
                new ListOffsetsRequest.ListOffsetsTopic
                {
                    Name = "missing",
                    Partitions = [new ListOffsetsRequest.ListOffsetsPartition { PartitionIndex = 0, Timestamp = -1, MaxNumOffsets = 1 }],
                },
            ],
        };
        var latest = await SendAsync<ListOffsetsResponse>(s, Ask(-1, 10), ListOffsetsRequest.ApiKey, 0, 1);
        Assert.Equal([10L, 0L], latest.Topics[0].Partitions[0].OldStyleOffsets);
        Assert.Equal(ErrorCodes.UnknownTopicOrPartition, latest.Topics[1].Partitions[0].ErrorCode);
        Assert.Empty(latest.Topics[1].Partitions[0].OldStyleOffsets);
        var latestOne = await SendAsync<ListOffsetsResponse>(s, Ask(-1, 1), ListOffsetsRequest.ApiKey, 0, 2);
        Assert.Equal([10L], latestOne.Topics[0].Partitions[0].OldStyleOffsets);
        var earliest = await SendAsync<ListOffsetsResponse>(s, Ask(-2, 1), ListOffsetsRequest.ApiKey, 0, 3);
        Assert.Equal([0L], earliest.Topics[0].Partitions[0].OldStyleOffsets);
        var before = await SendAsync<ListOffsetsResponse>(s, Ask(1000, 1), ListOffsetsRequest.ApiKey, 0, 4);
        Assert.Empty(before.Topics[0].Partitions[0].OldStyleOffsets);
        Assert.Equal(ErrorCodes.None, before.Topics[0].Partitions[0].ErrorCode);

        // v8/v9 timestamps without tiered storage: the log start, and no tiered offset.
        var local = await SendAsync<ListOffsetsResponse>(s, Ask(-4, 1), ListOffsetsRequest.ApiKey, 9, 5);
        Assert.Equal(0L, local.Topics[0].Partitions[0].Offset);
        var tiered = await SendAsync<ListOffsetsResponse>(s, Ask(-5, 1), ListOffsetsRequest.ApiKey, 10, 6);
        Assert.Equal(ErrorCodes.None, tiered.Topics[0].Partitions[0].ErrorCode);
        Assert.Equal(-1L, tiered.Topics[0].Partitions[0].Offset);
    }

    [Fact]
    public async Task Metadata_v0_offsets_v0_epochs_v0_DeleteGroups_v0_and_fetch_by_topic_id()
    {
        await using var broker = TestBroker.Start();
        await ProduceTenPerPartitionAsync(broker.Bootstrap, "wire-old");
        using var s = await ConnectAsync(broker.Broker.BrokerEndPoint);

        // Metadata v0: an empty list means every topic.
        var all = await SendAsync<MetadataResponse>(s, new MetadataRequest { Topics = [] }, MetadataRequest.ApiKey, 0, 1);
        var listed = Assert.Single(all.Topics, t => t.Name == "wire-old");
        Assert.Equal(2, listed.Partitions.Count);

        // OffsetCommit v0 (no generation, no timestamp) and OffsetFetch v0 read it back; v1 sees it too.
        var commit = await SendAsync<OffsetCommitResponse>(s, new OffsetCommitRequest
        {
            GroupId = "zk-era",
            Topics =
            [
                new OffsetCommitRequest.OffsetCommitRequestTopic
                {
                    Name = "wire-old",
                    Partitions = [new OffsetCommitRequest.OffsetCommitRequestPartition { PartitionIndex = 1, CommittedOffset = 4, CommittedMetadata = "m" }],
                },
            ],
        }, OffsetCommitRequest.ApiKey, 0, 2);
        Assert.Equal(ErrorCodes.None, commit.Topics[0].Partitions[0].ErrorCode);
        foreach (short v in new short[] { 0, 1 })
        {
            var fetched = await SendAsync<OffsetFetchResponse>(s, new OffsetFetchRequest
            {
                GroupId = "zk-era",
                Topics = [new OffsetFetchRequest.OffsetFetchRequestTopic { Name = "wire-old", PartitionIndexes = [0, 1] }],
            }, OffsetFetchRequest.ApiKey, v, 3 + v);
            var parts = fetched.Topics[0].Partitions;
            Assert.Equal(-1L, parts.Single(p => p.PartitionIndex == 0).CommittedOffset);
            Assert.Equal(4L, parts.Single(p => p.PartitionIndex == 1).CommittedOffset);
            Assert.Equal("m", parts.Single(p => p.PartitionIndex == 1).Metadata);
        }

        // OffsetForLeaderEpoch v0 (no epoch in the answer): epoch 0 ends at the high watermark.
        var epochs = await SendAsync<OffsetForLeaderEpochResponse>(s, new OffsetForLeaderEpochRequest
        {
            Topics =
            [
                new OffsetForLeaderEpochRequest.OffsetForLeaderTopic
                {
                    Topic = "wire-old",
                    Partitions = [new OffsetForLeaderEpochRequest.OffsetForLeaderPartition { Partition = 1, LeaderEpoch = 0 }],
                },
            ],
        }, OffsetForLeaderEpochRequest.ApiKey, 0, 6);
        Assert.Equal(10L, epochs.Topics[0].Partitions[0].EndOffset);

        // DeleteGroups v0: the group that holds only the v0 commit goes, offsets and all.
        var deleted = await SendAsync<DeleteGroupsResponse>(s, new DeleteGroupsRequest { GroupsNames = ["zk-era"] }, DeleteGroupsRequest.ApiKey, 0, 7);
        Assert.Equal(ErrorCodes.None, Assert.Single(deleted.Results).ErrorCode);
        var gone = await SendAsync<OffsetFetchResponse>(s, new OffsetFetchRequest
        {
            GroupId = "zk-era",
            Topics = [new OffsetFetchRequest.OffsetFetchRequestTopic { Name = "wire-old", PartitionIndexes = [1] }],
        }, OffsetFetchRequest.ApiKey, 0, 8);
        Assert.Equal(-1L, gone.Topics[0].Partitions[0].CommittedOffset);

        // Fetch v13+ names topics by the id Metadata reports; an unknown id answers UNKNOWN_TOPIC_ID.
        var meta = await SendAsync<MetadataResponse>(s, new MetadataRequest { Topics = [new MetadataRequest.MetadataRequestTopic { Name = "wire-old" }] },
            MetadataRequest.ApiKey, 12, 10);
        Guid id = meta.Topics[0].TopicId;
        Assert.NotEqual(Guid.Empty, id);
        foreach (short v in new short[] { 13, 17 })
        {
            var fetch = await SendAsync<FetchResponse>(s, new FetchRequest
            {
                ReplicaId = -1,
                MaxWaitMs = 0,
                MaxBytes = 1 << 20,
                Topics =
                [
                    new FetchRequest.FetchTopic
                    {
                        TopicId = id,
                        Partitions = [new FetchRequest.FetchPartition { Partition = 1, FetchOffset = 3, PartitionMaxBytes = 1 << 20, CurrentLeaderEpoch = -1, LogStartOffset = -1 }],
                    },
                    new FetchRequest.FetchTopic
                    {
                        TopicId = Guid.NewGuid(),
                        Partitions = [new FetchRequest.FetchPartition { Partition = 0, FetchOffset = 0, PartitionMaxBytes = 1 << 20, CurrentLeaderEpoch = -1, LogStartOffset = -1 }],
                    },
                ],
            }, FetchRequest.ApiKey, v, 20 + v);
            Assert.Equal(id, fetch.Responses[0].TopicId);
            var p = fetch.Responses[0].Partitions[0];
            Assert.Equal(ErrorCodes.None, p.ErrorCode);
            Assert.Equal(10L, p.HighWatermark);
            Assert.True(p.Records is { Length: > 0 });
            Assert.Equal(ErrorCodes.UnknownTopicId, fetch.Responses[1].Partitions[0].ErrorCode);
            fetch.Dispose();
        }
    }

    [Fact]
    public async Task Refused_versions_close_the_connection_and_warn_once_per_client()
    {
        await using var broker = TestBroker.Start();
        for (int i = 0; i < 20; i++)
        {
            using var s = await ConnectAsync(broker.Broker.BrokerEndPoint);
            // Heartbeat v50: a header Kafka's SocketServer parses, a version no broker serves.
            var frame = new byte[] { 0, 0, 0, 10, 0, 12, 0, 50, 0, 0, 0, (byte)i, 0xFF, 0xFF };
            await s.SendAsync(frame, SocketFlags.None);
            var buffer = new byte[16];
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            Assert.Equal(0, await s.ReceiveAsync(buffer, SocketFlags.None, cts.Token));
        }
        string log = broker.LogText.ToString();
        int lines = log.Split('\n').Count(l => l.Contains("Heartbeat version 50 is not served"));
        Assert.Equal(1, lines);
    }

    [Fact]
    public async Task A_client_configured_for_SASL_is_told_SASL_is_not_enabled_instead_of_timing_out()
    {
        await using var broker = TestBroker.Start();

        // kafka-python sends the handshake without asking ApiVersions first: the refusal must reach it.
        var run = ChildProcess.Run("/usr/bin/python3", [Path.Combine(CompatTests.CompatDir, "kafka_python_sasl.py"), broker.Bootstrap], timeoutMs: 30_000);
        Assert.True(run.ExitCode == 0, $"exit code {run.ExitCode}\nstdout:\n{run.Stdout}\nstderr:\n{run.Stderr}");
        Assert.Contains("ok: ", run.Stdout);
        Assert.Contains("SASL handshake for mechanism 'PLAIN' refused", broker.LogText.ToString());

        // librdkafka reads ApiVersions, finds no SaslHandshake advertised and says so at once.
        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var config = new ProducerConfig
        {
            BootstrapServers = broker.Bootstrap,
            SecurityProtocol = SecurityProtocol.SaslPlaintext,
            SaslMechanism = SaslMechanism.Plain,
            SaslUsername = "u",
            SaslPassword = "p",
        };
        using var producer = new ProducerBuilder<byte[]?, byte[]?>(config)
            .SetErrorHandler((_, e) => errors.Enqueue(e.Reason))
            .SetLogHandler((_, m) => errors.Enqueue(m.Message))
            .Build();
        const string expected = "SASL Handshake not supported by broker";
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (DateTime.UtcNow < deadline && !errors.Any(e => e.Contains(expected, StringComparison.Ordinal)))
            await Task.Delay(50);
        Assert.True(errors.Any(e => e.Contains(expected, StringComparison.Ordinal)), string.Join("\n", errors));
    }

    // librdkafka without ApiVersions: the feature set of the broker release named by broker.version.fallback; 0.9.0
    // and 0.10.0 fetch with Fetch v0-v2 (legacy message formats, converted down).
    [Theory]
    [InlineData("0.9.0", true)]
    [InlineData("0.10.0", true)]
    [InlineData("0.11.0", true)]
    public async Task Librdkafka_with_a_fallback_broker_version_joins_commits_and_reads_offsets(string fallback, bool consume)
    {
        await using var broker = TestBroker.Start(c => c with { Groups = c.Groups with { InitialRebalanceDelayMs = 0 } });
        string topic = "fallback-" + fallback.Replace('.', '-');
        await ProduceTenPerPartitionAsync(broker.Bootstrap, topic);
        var config = new ConsumerConfig
        {
            BootstrapServers = broker.Bootstrap,
            GroupId = "g-" + topic,
            ApiVersionRequest = false,
            BrokerVersionFallback = fallback,
            EnableAutoCommit = false,
            AutoOffsetReset = AutoOffsetReset.Earliest,
            SessionTimeoutMs = 6000,
            EnablePartitionEof = true,
        };
        var assigned = new List<TopicPartition>();
        using (var consumer = new ConsumerBuilder<byte[]?, byte[]?>(config)
                   .SetPartitionsAssignedHandler((_, parts) =>
                   {
                       lock (assigned)
                           assigned.AddRange(parts);
                       // Without consuming, the group's partitions are taken but not assigned locally: no Fetch.
                       return consume ? parts.Select(p => new TopicPartitionOffset(p, Offset.Unset)) : [];
                   })
                   .Build())
        {
            consumer.Subscribe(topic);
            var deadline = DateTime.UtcNow.AddSeconds(30);
            int records = 0;
            var eof = new HashSet<int>();
            while (DateTime.UtcNow < deadline)
            {
                var r = consumer.Consume(TimeSpan.FromMilliseconds(200));
                if (r is { IsPartitionEOF: true })
                    eof.Add(r.Partition.Value);
                else if (r is not null)
                    records++;
                bool done;
                lock (assigned)
                    done = assigned.Count == 2 && (!consume || eof.Count == 2);
                if (done)
                    break;
            }
            lock (assigned)
                Assert.Equal(2, assigned.Count);
            if (consume)
                Assert.Equal(20, records);

            // Commits in the group (OffsetCommit v2 with the generation) and read back (OffsetFetch v1).
            consumer.Commit([new TopicPartitionOffset(topic, 0, 7), new TopicPartitionOffset(topic, 1, 3)]);
            var committed = consumer.Committed([new TopicPartition(topic, 0), new TopicPartition(topic, 1)], TimeSpan.FromSeconds(10));
            Assert.Equal([7L, 3L], committed.OrderBy(c => c.Partition.Value).Select(c => c.Offset.Value));

            // ListOffsets v0 below 0.10.1.
            var marks = consumer.QueryWatermarkOffsets(new TopicPartition(topic, 1), TimeSpan.FromSeconds(10));
            Assert.Equal((0L, 10L), (marks.Low.Value, marks.High.Value));
            consumer.Close(); // LeaveGroup
        }
        using var admin = Clients.Admin(broker.Bootstrap);
        var described = await admin.DescribeConsumerGroupsAsync(["g-" + topic]);
        Assert.Equal(ConsumerGroupState.Empty, described.ConsumerGroupDescriptions[0].State);
        Assert.DoesNotContain("is not served", broker.LogText.ToString());
    }

    /// <summary>tests/compat/sarama built once per test run, offline, against Debian's Sarama in /usr/share/gocode.</summary>
    static readonly Lazy<string> SaramaBinary = new(() =>
    {
        string dir = Path.Combine(Path.GetTempPath(), "kiou-sarama-" + Environment.ProcessId);
        Directory.CreateDirectory(dir);
        string binary = Path.Combine(dir, "sarama");
        var build = ChildProcess.Run("go", ["build", "-o", binary, "."], timeoutMs: 300_000,
            env: new Dictionary<string, string>
            {
                ["GOPATH"] = "/usr/share/gocode",
                ["GO111MODULE"] = "off",
                ["GOFLAGS"] = "",
                ["GOCACHE"] = Path.Combine(Path.GetTempPath(), "kiou-sarama-gocache"),
            }, workingDirectory: Path.Combine(CompatTests.CompatDir, "sarama"));
        Assert.True(build.ExitCode == 0, $"go build of tests/compat/sarama failed ({build.ExitCode}):\n{build.Stderr}");
        return binary;
    });

    // Sarama 1.22 (Debian): JoinGroup v1, OffsetCommit v1, OffsetFetch v1, DescribeConfigs v0, CreateTopics v1 at
    // 0.11.0; at 0.10.2 its consumer group fetches with Fetch v3 (message format v1, converted down).
    [Theory]
    [InlineData("0.10.2.0")]
    [InlineData("0.11.0.0")]
    [InlineData("1.0.0")]
    public async Task Sarama_pinned_to_an_old_generation_administers_produces_and_consumes_in_a_group(string version)
    {
        await using var broker = TestBroker.Start(c => c with { Groups = c.Groups with { InitialRebalanceDelayMs = 0 } });
        var run = ChildProcess.Run(SaramaBinary.Value, [broker.Bootstrap, "sarama-" + version.Replace('.', '-'), version], timeoutMs: 90_000);
        Assert.True(run.ExitCode == 0, $"exit code {run.ExitCode}\nstdout:\n{run.Stdout}\nstderr:\n{run.Stderr}\nbroker:\n{broker.LogText}");
        foreach (string step in new[] { version == "0.10.2.0" ? "CreateTopic" : "CreateTopic, ListTopics and DescribeConfig", "produced 20 messages", "consumer group consumed every message in order",
                     "left the group", "commits read back and GetOffset", "ListConsumerGroups, DescribeConsumerGroups and DeleteTopic" })
            Assert.Contains("ok: " + step, run.Stdout);
        Assert.DoesNotContain("is not served", broker.LogText.ToString());
    }
}
