using System.Diagnostics;
using System.Text.Json.Nodes;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Kiou.Broker.Hosting;

namespace Kiou.Broker.Tests;

/// <summary>
/// Topic metadata and partition directories (docs/design/metadata.md): nothing is deleted because metadata is
/// missing; a deletion is recorded by renaming to <c>-delete</c> before the metadata changes and finished at start-up
/// whatever step it was interrupted at; broken metadata stops start-up with one line; topic admin survives a full
/// disk and answers error codes instead of dropping the connection.
/// </summary>
public sealed class MetadataSafetyTests
{
    static string MetadataPath(string dataDir) => Path.Combine(dataDir, "__cluster", "metadata.json");

    static async Task<List<byte[]>> ProduceAsync(string bootstrap, string topic, int partitions, int perPartition, byte tag = 0)
    {
        var sent = new List<byte[]>();
        using var producer = Clients.Producer(bootstrap, Acks.All);
        for (int p = 0; p < partitions; p++)
        {
            for (int i = 0; i < perPartition; i++)
            {
                byte[] value = [tag, (byte)p, (byte)i];
                await producer.ProduceAsync(new TopicPartition(topic, p), new Message<byte[]?, byte[]?> { Value = value });
                sent.Add(value);
            }
        }
        return sent;
    }

    static string[] DirsOf(string dataDir, string prefix) =>
        Directory.GetDirectories(dataDir).Select(Path.GetFileName).Where(n => n!.StartsWith(prefix, StringComparison.Ordinal)).ToArray()!;

    static async Task WaitUntilAsync(Func<bool> done, string what)
    {
        var sw = Stopwatch.StartNew();
        while (!done())
        {
            if (sw.Elapsed > TimeSpan.FromSeconds(10))
                throw new TimeoutException(what);
            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task A_missing_metadata_file_adopts_every_partition_directory_with_its_topic_id_records_and_cluster_id()
    {
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, "kept", 2);
        var sent = await ProduceAsync(broker.Bootstrap, "kept", 2, 10);
        Guid id = broker.Broker.Controller.Find("kept")!.Id;
        string cluster = broker.Broker.Controller.ClusterId;
        await broker.StopAsync();

        File.Delete(MetadataPath(broker.DataDir));
        broker.StartAgain();

        var topic = broker.Broker.Controller.Find("kept");
        Assert.NotNull(topic);
        Assert.Equal(2, topic!.Partitions);
        Assert.Equal(id, topic.Id);
        Assert.Equal(cluster, broker.Broker.Controller.ClusterId);
        var read = Clients.ReadAll(broker.Bootstrap, "kept", 2);
        Assert.Equal(sent.Count, read.Count);
        Assert.Contains(broker.LogText.ToString().Split('\n'), l => l.Contains("WARN") && l.Contains("kept") && l.Contains("adopted"));
        Assert.True(File.Exists(MetadataPath(broker.DataDir)));

        await broker.RestartAsync();
        Assert.Equal(id, broker.Broker.Controller.Find("kept")!.Id);
        Assert.Equal(sent.Count, Clients.ReadAll(broker.Bootstrap, "kept", 2).Count);
    }

    [Fact]
    public async Task A_missing_metadata_file_adopts_the_internal_topics_so_committed_offsets_and_transaction_state_survive()
    {
        await using var broker = GroupSupport.StartBroker();
        await broker.Broker.Groups.Loading;
        await Clients.CreateTopicAsync(broker.Bootstrap, "t", 1);
        using (var admin = Clients.Admin(broker.Bootstrap))
        {
            await admin.AlterConsumerGroupOffsetsAsync([new Confluent.Kafka.ConsumerGroupTopicPartitionOffsets("kept-group", [new Confluent.Kafka.TopicPartitionOffset("t", 0, 77)])]);
        }
        using (var producer = new Confluent.Kafka.ProducerBuilder<byte[], byte[]>(new Confluent.Kafka.ProducerConfig { BootstrapServers = broker.Bootstrap, TransactionalId = "kept-txn" }).Build())
        {
            producer.InitTransactions(TimeSpan.FromSeconds(30));
        }
        int offsetsPartitions = broker.Broker.Controller.Find("__consumer_offsets")!.Partitions;
        await broker.StopAsync();

        File.Delete(MetadataPath(broker.DataDir));
        broker.StartAgain();
        await broker.Broker.Groups.Loading;

        var offsets = broker.Broker.Controller.Find("__consumer_offsets");
        Assert.NotNull(offsets);
        Assert.Equal(offsetsPartitions, offsets!.Partitions);
        Assert.Equal("compact", offsets.Configs["cleanup.policy"]);
        Assert.Equal("compact", broker.Broker.Controller.Find("__transaction_state")!.Configs["cleanup.policy"]);
        using (var admin = Clients.Admin(broker.Bootstrap))
        {
            var listed = await admin.ListConsumerGroupOffsetsAsync([new Confluent.Kafka.ConsumerGroupTopicPartitions("kept-group", [new Confluent.Kafka.TopicPartition("t", 0)])]);
            Assert.Equal(77, Assert.Single(Assert.Single(listed).Partitions).Offset.Value);
        }
    }

    [Fact]
    public async Task A_partition_directory_that_the_metadata_does_not_list_is_adopted_not_deleted()
    {
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, "listed", 1);
        await Clients.CreateTopicAsync(broker.Bootstrap, "unlisted", 3);
        var sent = await ProduceAsync(broker.Bootstrap, "unlisted", 3, 4);
        Guid id = broker.Broker.Controller.Find("unlisted")!.Id;
        await broker.StopAsync();

        var json = JsonNode.Parse(File.ReadAllText(MetadataPath(broker.DataDir)))!;
        var topics = json["Topics"]!.AsArray();
        topics.Remove(topics.First(t => (string?)t!["Name"] == "unlisted"));
        File.WriteAllText(MetadataPath(broker.DataDir), json.ToJsonString());
        broker.StartAgain();

        var topic = broker.Broker.Controller.Find("unlisted");
        Assert.NotNull(topic);
        Assert.Equal(3, topic!.Partitions);
        Assert.Equal(id, topic.Id);
        Assert.Equal(sent.Count, Clients.ReadAll(broker.Bootstrap, "unlisted", 3).Count);
        Assert.NotNull(broker.Broker.Controller.Find("listed"));
        Assert.Contains(broker.LogText.ToString().Split('\n'), l => l.Contains("WARN") && l.Contains("unlisted-0"));
    }

    [Theory]
    [InlineData("")]
    [InlineData("{\"Version\": 1, \"ClusterId\": ")]
    [InlineData("null")]
    [InlineData("[1, 2]")]
    public async Task A_broken_metadata_file_stops_start_up_with_one_line_and_touches_no_data(string content)
    {
        string dataDir = Path.Combine(Path.GetTempPath(), "kiou-test-" + Guid.NewGuid().ToString("N"));
        try
        {
            var broker = TestBroker.Start(dataDir: dataDir);
            await Clients.CreateTopicAsync(broker.Bootstrap, "precious", 1);
            await ProduceAsync(broker.Bootstrap, "precious", 1, 5);
            await broker.StopAsync();
            File.WriteAllText(MetadataPath(dataDir), content);
            string partitionDir = Path.Combine(dataDir, "precious-0");
            var before = Directory.GetFiles(partitionDir).Select(f => (f, new FileInfo(f).Length)).OrderBy(x => x.f).ToArray();

            var run = ChildProcess.Run(Path.Combine(AppContext.BaseDirectory, "kiou"), [], env: new Dictionary<string, string>
            {
                ["KIOU_DATA_DIR"] = dataDir,
                ["KIOU_PORT"] = "0",
                ["KIOU_CONTROLLER_PORT"] = "0",
                ["KIOU_HTTP_PORT"] = "0",
                ["KIOU_IO"] = TestBroker.IoModeFromEnvironment,
            });

            Assert.True(run.ExitCode == 1, $"exit code {run.ExitCode}: {run.Stderr}");
            string[] lines = run.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.True(lines.Length == 1, run.Stderr);
            Assert.Contains(MetadataPath(dataDir), lines[0]);
            Assert.Contains("ERROR", lines[0]);
            Assert.DoesNotMatch(@"Unhandled exception|\bat Kiou\.", run.Stderr);
            Assert.Equal(content, File.ReadAllText(MetadataPath(dataDir)));
            var after = Directory.GetFiles(partitionDir).Select(f => (f, new FileInfo(f).Length)).OrderBy(x => x.f).ToArray();
            Assert.Equal(before, after);
        }
        finally
        {
            Directory.Delete(dataDir, recursive: true);
        }
    }

    [Fact]
    public async Task A_deletion_interrupted_after_renaming_some_partitions_is_finished_at_start_up()
    {
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, "gone", 2);
        await Clients.CreateTopicAsync(broker.Bootstrap, "stays", 1);
        await ProduceAsync(broker.Bootstrap, "gone", 2, 3);
        var kept = await ProduceAsync(broker.Bootstrap, "stays", 1, 7);
        Guid id = broker.Broker.Controller.Find("gone")!.Id;
        await broker.StopAsync();

        // A crash between the renames: partition 0 carries the marker, partition 1 not yet, metadata still lists it.
        Directory.Move(Path.Combine(broker.DataDir, "gone-0"), Path.Combine(broker.DataDir, $"gone-0.{id:N}-delete"));
        broker.StartAgain();

        Assert.Null(broker.Broker.Controller.Find("gone"));
        await WaitUntilAsync(() => DirsOf(broker.DataDir, "gone-").Length == 0, "the renamed partition directories were not removed");
        Assert.Equal(kept.Count, Clients.ReadAll(broker.Bootstrap, "stays", 1).Count);
        await broker.RestartAsync();
        Assert.Null(broker.Broker.Controller.Find("gone"));
        Assert.Empty(DirsOf(broker.DataDir, "gone-"));
    }

    [Fact]
    public async Task A_directory_of_another_topic_id_is_set_aside_and_only_delete_markers_are_removed()
    {
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, "named", 1);
        await ProduceAsync(broker.Bootstrap, "named", 1, 4);
        await broker.StopAsync();

        // partition.metadata naming another id: an earlier topic of that name, or metadata.json from an older copy.
        Guid other = Guid.NewGuid();
        File.WriteAllText(Path.Combine(broker.DataDir, "named-0", "partition.metadata"), $"version: 0\ntopic_id: {KafkaUuid(other)}\n");
        string leftover = Path.Combine(broker.DataDir, $"old-0.{Guid.NewGuid():N}-delete");
        Directory.CreateDirectory(leftover);
        File.WriteAllBytes(Path.Combine(leftover, "00000000000000000000.log"), new byte[100]);
        string notes = Path.Combine(broker.DataDir, "notes");
        Directory.CreateDirectory(notes);
        broker.StartAgain();

        string aside = Path.Combine(broker.DataDir, $"named-0.{other:N}-stale");
        Assert.True(Directory.Exists(aside));
        Assert.True(new FileInfo(Path.Combine(aside, "00000000000000000000.log")).Length > 0);
        Assert.Contains(broker.LogText.ToString().Split('\n'), l => l.Contains("WARN") && l.Contains(aside));
        Assert.Empty(Clients.ReadAll(broker.Bootstrap, "named", 1));
        await WaitUntilAsync(() => !Directory.Exists(leftover), "the leftover -delete directory was not removed");
        Assert.True(Directory.Exists(notes));
    }

    [Fact]
    public async Task CreatePartitions_beyond_the_partition_limit_is_refused_and_changes_nothing()
    {
        await using var broker = TestBroker.Start(c => c with { MaxPartitions = 5 });
        await Clients.CreateTopicAsync(broker.Bootstrap, "grows", 3);
        using var admin = Clients.Admin(broker.Bootstrap);
        var e = await Assert.ThrowsAsync<CreatePartitionsException>(() => admin.CreatePartitionsAsync([new PartitionsSpecification { Topic = "grows", IncreaseTo = 6 }]));
        Assert.Equal(ErrorCode.InvalidPartitions, Assert.Single(e.Results).Error.Code);
        Assert.Contains("KIOU_MAX_PARTITIONS", e.Results[0].Error.Reason);
        Assert.Equal(3, broker.Broker.Controller.Find("grows")!.Partitions);
        Assert.Empty(DirsOf(broker.DataDir, "grows-3"));
        await admin.CreatePartitionsAsync([new PartitionsSpecification { Topic = "grows", IncreaseTo = 5 }]);
        Assert.Equal(5, broker.Broker.Controller.Find("grows")!.Partitions);
    }

    static string KafkaUuid(Guid id)
    {
        var b = id.ToByteArray(bigEndian: true);
        return Convert.ToBase64String(b).TrimEnd('=').Replace('+', '-').Replace('/', '_');
    }

    [Fact]
    public async Task A_deleted_topic_created_again_at_once_holds_only_its_new_records_across_a_restart()
    {
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, "again", 1);
        await ProduceAsync(broker.Bootstrap, "again", 1, 10, tag: 1);
        using (var admin = Clients.Admin(broker.Bootstrap))
            await admin.DeleteTopicsAsync(["again"]);
        await Clients.CreateTopicAsync(broker.Bootstrap, "again", 1);
        var fresh = await ProduceAsync(broker.Bootstrap, "again", 1, 3, tag: 2);

        Assert.Equal(fresh, Clients.ReadAll(broker.Bootstrap, "again", 1).Select(r => r.Message.Value!).ToList());
        await broker.RestartAsync();
        Assert.Equal(fresh, Clients.ReadAll(broker.Bootstrap, "again", 1).Select(r => r.Message.Value!).ToList());
        await WaitUntilAsync(() => DirsOf(broker.DataDir, "again-").SequenceEqual(["again-0"]), "a -delete directory was left behind");
    }

    [Fact]
    public async Task A_hundred_thousand_partitions_are_refused_and_the_broker_stays_up_and_restartable()
    {
        string dataDir = Path.Combine(Path.GetTempPath(), "kiou-test-" + Guid.NewGuid().ToString("N"));
        try
        {
            int port = BrokerProcess.FreePort();
            using (var broker = BrokerProcess.Start(dataDir, port: port))
            {
                await Clients.CreateTopicAsync(broker.Bootstrap, "small", 1);
                using (var admin = Clients.Admin(broker.Bootstrap))
                {
                    var e = await Assert.ThrowsAsync<CreateTopicsException>(() => admin.CreateTopicsAsync(
                        [new TopicSpecification { Name = "huge", NumPartitions = 100_000, ReplicationFactor = 1 }],
                        new CreateTopicsOptions { RequestTimeout = TimeSpan.FromSeconds(60), OperationTimeout = TimeSpan.FromSeconds(60) }));
                    var error = Assert.Single(e.Results).Error;
                    Assert.Equal(ErrorCode.InvalidPartitions, error.Code);
                    Assert.Contains("KIOU_MAX_PARTITIONS", error.Reason);
                }
                var python = ChildProcess.Run("/usr/bin/python3", ["-c", """
                    import sys
                    from kafka.admin import KafkaAdminClient, NewTopic
                    from kafka.errors import InvalidPartitionsError
                    admin = KafkaAdminClient(bootstrap_servers=sys.argv[1])
                    try:
                        admin.create_topics([NewTopic("huge", 100000, 1)])
                        print("created")
                    except InvalidPartitionsError as e:
                        print("refused:", e)
                    """, broker.Bootstrap], timeoutMs: 60_000);
                Assert.True(python.Stdout.Contains("refused:") && python.Stdout.Contains("KIOU_MAX_PARTITIONS"), python.Stdout + python.Stderr);
                Assert.Empty(DirsOf(dataDir, "huge-"));
                await ProduceAsync(broker.Bootstrap, "small", 1, 2);
                Assert.Equal(2, Clients.ReadAll(broker.Bootstrap, "small", 1).Count);
                Assert.Equal(0, broker.Terminate());
            }
            using (var broker = BrokerProcess.Start(dataDir, port: port))
            {
                Assert.Equal(2, Clients.ReadAll(broker.Bootstrap, "small", 1).Count);
                using var admin = Clients.Admin(broker.Bootstrap);
                Assert.DoesNotContain(admin.GetMetadata(TimeSpan.FromSeconds(10)).Topics, t => t.Topic == "huge");
            }
        }
        finally
        {
            Directory.Delete(dataDir, recursive: true);
        }
    }

    [Fact]
    public async Task Running_out_of_descriptors_fails_only_that_create_and_leaves_nothing_behind()
    {
        string dataDir = Path.Combine(Path.GetTempPath(), "kiou-test-" + Guid.NewGuid().ToString("N"));
        string kiou = Path.Combine(AppContext.BaseDirectory, "kiou");
        string wrapper = Path.Combine(Path.GetTempPath(), "kiou-lowfd-" + Guid.NewGuid().ToString("N") + ".sh");
        File.WriteAllText(wrapper, $"#!/bin/sh\nulimit -n 600\nexec '{kiou}'\n");
        Assert.True(FaultTests.Run("chmod", $"+x {wrapper}"));
        var env = new Dictionary<string, string> { ["KIOU_MAX_PARTITIONS"] = "5000" };
        try
        {
            int port = BrokerProcess.FreePort();
            using (var broker = BrokerProcess.Start(dataDir, env, port, executable: wrapper))
            {
                await Clients.CreateTopicAsync(broker.Bootstrap, "small", 1);
                using (var admin = Clients.Admin(broker.Bootstrap))
                {
                    var e = await Assert.ThrowsAsync<CreateTopicsException>(() => admin.CreateTopicsAsync(
                        [new TopicSpecification { Name = "wide", NumPartitions = 2000, ReplicationFactor = 1 }]));
                    var error = Assert.Single(e.Results).Error;
                    Assert.True(error.Code == ErrorCode.KafkaStorageError, $"{error.Code}: {error.Reason}\nbroker output:\n{broker.Output}");
                    Assert.Contains("descriptor", error.Reason);
                }
                Assert.Empty(DirsOf(dataDir, "wide-"));

                // Descriptors used up by connections: the listener closes new ones once the broker is within its
                // headroom of the limit, with one line per run of refusals (not one per connection), and serves again
                // once they close. It never lets connections take the last descriptors: the runtime needs one to start
                // a thread, and aborts the process ("Out of memory.") when it cannot get it.
                var sockets = new List<System.Net.Sockets.Socket>();
                for (int i = 0; i < 600; i++)
                {
                    var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
                    socket.Connect(System.Net.IPAddress.Loopback, port);
                    sockets.Add(socket);
                }
                await WaitUntilAsync(() => broker.Output.Contains("file descriptors, which it keeps") || broker.Output.Contains("accept failed"), "no connection was refused: the descriptor limit was not reached");
                await Task.Delay(1000);
                int open = Directory.GetFiles($"/proc/{broker.ProcessId}/fd").Length;
                Assert.True(open <= 600 - (Kiou.IoUring.Interop.DescriptorLimit.Headroom / 2), $"the broker holds {open} of its 600 descriptors");
                Assert.Contains("file descriptors, which it keeps", broker.Output);
                foreach (var socket in sockets)
                    socket.Dispose();
                await Task.Delay(2000);

                try
                {
                    await ProduceAsync(broker.Bootstrap, "small", 1, 2);
                }
                catch (ProduceException<byte[]?, byte[]?> e)
                {
                    Assert.Fail($"no produce after the connections closed ({e.Error.Reason}); broker output:\n{broker.Output}");
                }
                Assert.Equal(2, Clients.ReadAll(broker.Bootstrap, "small", 1).Count);
                int refusals = broker.Output.Split('\n').Count(l => l.Contains("file descriptors, which it keeps") || l.Contains("accept failed"));
                Assert.True(refusals <= 3, $"{refusals} lines about refused connections");
                Assert.Equal(0, broker.Terminate());
            }
            using (var broker = BrokerProcess.Start(dataDir, env, port, executable: wrapper))
                Assert.Equal(2, Clients.ReadAll(broker.Bootstrap, "small", 1).Count);
        }
        finally
        {
            File.Delete(wrapper);
            Directory.Delete(dataDir, recursive: true);
        }
    }

    // On a tmpfs, so that the figure is the broker's own cost (it grew with the square of the topic count; on a busy
    // ext4 the kernel's inode allocator alone can dominate). A ratio to 1,000 topics created by the same broker in the
    // same run, not a time, so that a loaded machine does not fail it: linear is about 10x, quadratic about 100x.
    [TmpfsFact]
    public async Task Ten_thousand_topics_in_one_request_cost_about_ten_times_a_thousand()
    {
        const int count = 10_000;
        using var mount = new Tmpfs("256m");
        string dataDir = Path.Combine(mount.Path, "data");
        {
            using var broker = BrokerProcess.Start(dataDir, new Dictionary<string, string> { ["KIOU_MAX_PARTITIONS"] = "11050" });
            using var admin = Clients.Admin(broker.Bootstrap);
            var options = new CreateTopicsOptions { RequestTimeout = TimeSpan.FromSeconds(120), OperationTimeout = TimeSpan.FromSeconds(120) };
            // Warm first (connection, JIT), so that the 1,000 measure the same per-topic work as the 10,000.
            await admin.CreateTopicsAsync(Enumerable.Range(0, 50).Select(i => new TopicSpecification { Name = $"warm-{i:D2}", NumPartitions = 1, ReplicationFactor = 1 }).ToList(), options);
            var few = Enumerable.Range(0, count / 10).Select(i => new TopicSpecification { Name = $"few-{i:D5}", NumPartitions = 1, ReplicationFactor = 1 }).ToList();
            var sw = Stopwatch.StartNew();
            await admin.CreateTopicsAsync(few, options);
            TimeSpan thousand = sw.Elapsed;
            var specs = Enumerable.Range(0, count).Select(i => new TopicSpecification { Name = $"many-{i:D5}", NumPartitions = 1, ReplicationFactor = 1 }).ToList();
            sw.Restart();
            await admin.CreateTopicsAsync(specs, options);
            sw.Stop();
            var md = admin.GetMetadata(TimeSpan.FromSeconds(30));
            Assert.Equal(count, md.Topics.Count(t => t.Topic.StartsWith("many-", StringComparison.Ordinal) && t.Error.Code == ErrorCode.NoError));
            Assert.True(sw.Elapsed < thousand * 30, $"creating {count} topics took {sw.Elapsed.TotalSeconds:F2} s, {count / 10} took {thousand.TotalSeconds:F2} s");
        }
    }

    [TmpfsFact]
    public async Task On_a_full_disk_topics_can_be_deleted_and_a_failed_create_answers_an_error_code()
    {
        using var mount = new Tmpfs("8m");
        string dataDir = Path.Combine(mount.Path, "data");
        await using var broker = TestBroker.Start(dataDir: dataDir);
        await Clients.CreateTopicAsync(broker.Bootstrap, "big", 1);
        await Clients.CreateTopicAsync(broker.Bootstrap, "other", 1);
        using (var producer = Clients.Producer(broker.Bootstrap, Acks.All))
        {
            for (int i = 0; i < 64; i++)
                await producer.ProduceAsync(new TopicPartition("big", 0), new Message<byte[]?, byte[]?> { Value = new byte[16384] });
        }
        var kept = await ProduceAsync(broker.Bootstrap, "other", 1, 3);
        // Without the reserve file the metadata write can only succeed by first freeing the deleted topic's data.
        File.Delete(Path.Combine(dataDir, "__cluster", "reserve"));
        mount.Fill();

        using (var admin = Clients.Admin(broker.Bootstrap))
        {
            var e = await Assert.ThrowsAsync<CreateTopicsException>(() => admin.CreateTopicsAsync(
                [new TopicSpecification { Name = "fresh", NumPartitions = 4, ReplicationFactor = 1 }]));
            Assert.Equal(ErrorCode.KafkaStorageError, Assert.Single(e.Results).Error.Code);
            Assert.Empty(DirsOf(dataDir, "fresh-"));
            Assert.Null(broker.Broker.Controller.Find("fresh"));

            await admin.DeleteTopicsAsync(["big"]);
        }
        Assert.Null(broker.Broker.Controller.Find("big"));
        Assert.Contains("freed the data of 1 deleted partition(s)", broker.LogText.ToString());
        Assert.DoesNotContain("could not be rewritten", broker.LogText.ToString());
        await broker.RestartAsync();
        Assert.Null(broker.Broker.Controller.Find("big"));
        Assert.Empty(DirsOf(dataDir, "big-"));
        Assert.Equal(kept.Count, Clients.ReadAll(broker.Bootstrap, "other", 1).Count);
    }

    [TmpfsFact]
    public void Starting_on_a_full_disk_names_the_full_disk()
    {
        using var mount = new Tmpfs("1m");
        string dataDir = Path.Combine(mount.Path, "data");
        Directory.CreateDirectory(dataDir);
        mount.Fill();
        var e = Assert.Throws<ConfigException>(() => TestBroker.Start(dataDir: dataDir));
        Assert.Contains("disk full", e.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Contains(mount.Path, e.Message);
        Assert.DoesNotContain("permission", e.Message, StringComparison.OrdinalIgnoreCase);
    }

    [TmpfsFact]
    public async Task A_broker_stopped_on_a_full_disk_starts_again_with_its_reserve_and_can_delete_a_topic()
    {
        using var mount = new Tmpfs("24m");
        string dataDir = Path.Combine(mount.Path, "data");
        await using var broker = TestBroker.Start(dataDir: dataDir);
        Assert.True(File.Exists(Path.Combine(dataDir, "__cluster", "reserve")), "a disk with room gets the reserve file");
        await Clients.CreateTopicAsync(broker.Bootstrap, "filled", 1);
        await Clients.CreateTopicAsync(broker.Bootstrap, "kept", 1);
        var kept = await ProduceAsync(broker.Bootstrap, "kept", 1, 3);
        using (var producer = Clients.Producer(broker.Bootstrap, Acks.All))
        {
            for (int i = 0; i < 64; i++)
                await producer.ProduceAsync(new TopicPartition("filled", 0), new Message<byte[]?, byte[]?> { Value = new byte[16384] });
        }
        await broker.StopAsync();
        mount.Fill();

        broker.StartAgain();
        Assert.Contains("gave up the 1 MiB reserve file to start", broker.LogText.ToString());
        using (var admin = Clients.Admin(broker.Bootstrap))
            await admin.DeleteTopicsAsync(["filled"]);
        Assert.Null(broker.Broker.Controller.Find("filled"));
        Assert.Empty(DirsOf(dataDir, "filled-"));
        Assert.Equal(kept.Count, Clients.ReadAll(broker.Bootstrap, "kept", 1).Count);
    }

    /// <summary>A small tmpfs mounted for one test and unmounted at the end.</summary>
    sealed class Tmpfs : IDisposable
    {
        public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "kiou-tmpfs-" + Guid.NewGuid().ToString("N"));

        public Tmpfs(string size)
        {
            Directory.CreateDirectory(Path);
            Assert.True(FaultTests.Run("mount", $"-t tmpfs -o size={size} tmpfs {Path}"), "mount failed although the probe succeeded");
        }

        /// <summary>Writes a filler file until the file system refuses another byte.</summary>
        public void Fill()
        {
            using var filler = new FileStream(System.IO.Path.Combine(Path, "filler"), FileMode.Create, FileAccess.Write, FileShare.None, 1);
            var chunk = new byte[4096];
            try
            {
                while (true)
                    filler.Write(chunk);
            }
            catch (IOException)
            {
            }
        }

        public void Dispose()
        {
            FaultTests.Run("umount", $"-l {Path}");
            try
            {
                Directory.Delete(Path, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }
}
