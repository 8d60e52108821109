using Confluent.Kafka;

namespace Kiou.Cli.Tests;

/// <summary>
/// consumer-groups.sh's flags beyond list/describe/reset/delete, against a broker: --all-groups, --members
/// [--verbose], --state, the reset scenarios (--shift-by, --to-datetime, --by-duration, --to-current, --from-file),
/// --export, --delete-offsets; bad usage (exit 2 with the usage) and failures (exit 1, one line).
/// </summary>
public sealed class GroupsFlagsTests
{
    static string[] Rows(Run r) => r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    static string[] Cells(string row) => row.Split(' ', StringSplitOptions.RemoveEmptyEntries);

    static Run Groups(string bootstrap, params string[] args) => Tools.Script("consumer-groups", ["--bootstrap-server", bootstrap, .. args]);

    static void Commit(string bootstrap, string group, string topic, long offset)
    {
        using var a = Check.Admin(bootstrap);
        a.AlterConsumerGroupOffsetsAsync([new ConsumerGroupTopicPartitionOffsets(group, [new TopicPartitionOffset(topic, 0, offset)])])
            .GetAwaiter().GetResult();
    }

    [Fact]
    public async Task Members_state_and_all_groups_with_an_active_and_an_empty_group()
    {
        await using var broker = TestBroker.Start();
        string b = broker.Bootstrap;
        Assert.Equal(0, Tools.Script("topics", ["--bootstrap-server", b, "--create", "--topic", "m", "--partitions", "2"]).ExitCode);
        Check.Produce(b, "m", [(null, "x")], partition: 0);
        Check.Produce(b, "m", [(null, "y")], partition: 1);
        var idle = Tools.Script("consumer", ["--bootstrap-server", b, "--topic", "m", "--group", "idle", "--from-beginning"]);
        Assert.True(idle.ExitCode == 0, idle.ToString());
        using var follow = new Tools.Running("consumer", ["--bootstrap-server", b, "--topic", "m", "--group", "active", "--from-beginning", "--follow"]);
        follow.WaitFor(s => s.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length == 2, "both records");

        var members = Groups(b, "--describe", "--group", "active", "--members");
        Assert.True(members.ExitCode == 0, members.ToString());
        Assert.Equal(["GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "#PARTITIONS"], Cells(Rows(members)[0]));
        var member = Cells(Rows(members)[1]);
        Assert.Equal("active", member[0]);
        Assert.Matches("^[^-].*-[0-9a-f-]{36}$", member[1]); // librdkafka's member id: client id, '-', a UUID
        Assert.Equal("2", member[^1]);

        var verbose = Groups(b, "--describe", "--group", "active", "--members", "--verbose");
        Assert.True(verbose.ExitCode == 0, verbose.ToString());
        Assert.Equal("ASSIGNMENT", Cells(Rows(verbose)[0])[^1]);
        Assert.Equal(["2", "m(0,1)"], Cells(Rows(verbose)[1])[^2..]);

        var state = Groups(b, "--describe", "--group", "active", "--state");
        Assert.True(state.ExitCode == 0, state.ToString());
        Assert.Matches(@"^GROUP +COORDINATOR \(ID\) +ASSIGNMENT-STRATEGY +STATE +#MEMBERS$", Rows(state)[0]);
        Assert.Matches(@"^active +127\.0\.0\.1:\d+ +\(1\) +\S+ +Stable +1$", Rows(state)[1]);

        var list = Groups(b, "--list", "--state");
        Assert.True(list.ExitCode == 0, list.ToString());
        Assert.Contains(["active", "Stable"], Rows(list).Select(Cells));
        Assert.Contains(["idle", "Empty"], Rows(list).Select(Cells));

        var all = Groups(b, "--describe", "--all-groups");
        Assert.True(all.ExitCode == 0, all.ToString());
        var rows = Rows(all).Select(Cells).Where(c => c[0] != "GROUP").ToList();
        Assert.Contains(rows, c => c[0] == "active" && c[1] == "m" && c[6] != "-");
        Assert.Contains(["idle", "m", "0", "1", "1", "0", "-", "-", "-"], rows);
        Assert.Contains("Consumer group 'idle' has no active members.", all.Stderr);

        // Kafka resets the inactive groups and refuses the active one; one refusal is enough for exit 1.
        var reset = Groups(b, "--reset-offsets", "--all-groups", "--all-topics", "--to-earliest", "--execute");
        Assert.True(reset.ExitCode == 1, reset.ToString());
        Assert.Contains("Assignments can only be reset if the group 'active' is inactive, but the current state is Stable", reset.Stderr);
        Assert.Contains(["idle", "m", "0", "0"], Rows(reset).Select(Cells));
        Assert.Equal(new Dictionary<int, long> { [0] = 0 }, Check.Committed(b, "idle", "m").Where(kv => kv.Key == 0).ToDictionary());

        var deleteActive = Groups(b, "--delete-offsets", "--group", "active", "--topic", "m");
        Assert.True(deleteActive.ExitCode == 1, deleteActive.ToString());

        Assert.Equal(0, follow.Stop());
    }

    [Fact]
    public async Task Reset_scenarios_export_from_file_and_delete_offsets()
    {
        await using var broker = TestBroker.Start();
        string b = broker.Bootstrap;
        var start = new DateTimeOffset(2024, 1, 1, 0, 0, 0, TimeSpan.Zero);
        var now = DateTimeOffset.UtcNow;
        // Offsets 0-4 one minute apart on 2024-01-01; 5-9 at 3 h, 2 h, 30, 20 and 10 minutes ago.
        var times = Enumerable.Range(0, 5).Select(i => start.AddMinutes(i))
            .Concat(new[] { 180, 120, 30, 20, 10 }.Select(m => now.AddMinutes(-m))).ToList();
        using (var p = new ProducerBuilder<Null, string>(new ProducerConfig { BootstrapServers = b }).Build())
        {
            for (int i = 0; i < times.Count; i++)
                await p.ProduceAsync("r", new Message<Null, string> { Value = $"r{i}", Timestamp = new Timestamp(times[i]) });
        }
        Commit(b, "rg", "r", 5);
        long Reset(params string[] args)
        {
            var r = Groups(b, ["--reset-offsets", "--group", "rg", "--topic", "r", .. args, "--execute"]);
            Assert.True(r.ExitCode == 0, r.ToString());
            return Check.Committed(b, "rg", "r")[0];
        }

        Assert.Equal(3, Reset("--shift-by", "-2"));
        Assert.Equal(10, Reset("--shift-by", "100"));
        Assert.Equal(0, Reset("--shift-by", "-100"));
        Assert.Equal(2, Reset("--to-datetime", "2024-01-01T00:02:00.000"));
        Assert.Equal(3, Reset("--to-datetime", "2024-01-01T01:02:30.000+01:00"));
        Assert.Equal(5, Reset("--to-datetime", "2024-01-01T00:04:30.000Z"));
        Assert.Equal(7, Reset("--by-duration", "PT1H"));
        Assert.Equal(5, Reset("--by-duration", "P1D"));
        Assert.Equal(10, Reset("--to-datetime", "2099-01-01T00:00:00.000")); // nothing that recent: the log end, as Kafka
        Assert.Equal(10, Reset("--to-current"));

        var clamp = Groups(b, "--reset-offsets", "--group", "rg", "--topic", "r", "--shift-by", "5", "--dry-run");
        Assert.True(clamp.ExitCode == 0, clamp.ToString());
        Assert.Contains("New offset (15) is higher than latest offset for topic partition r-0. Value will be set to 10", clamp.Stderr);
        Assert.Equal(["rg", "r", "0", "10"], Cells(Rows(clamp)[1]));

        var export = Groups(b, "--reset-offsets", "--group", "rg", "--topic", "r:0", "--to-offset", "4", "--dry-run", "--export");
        Assert.True(export.ExitCode == 0, export.ToString());
        Assert.Equal("r,0,4\n", export.Stdout);
        Assert.Equal(10, Check.Committed(b, "rg", "r")[0]);
        string plan = Path.Combine(broker.DataDir, "plan.csv");
        File.WriteAllText(plan, export.Stdout);
        var fromFile = Groups(b, "--reset-offsets", "--group", "rg", "--from-file", plan, "--execute");
        Assert.True(fromFile.ExitCode == 0, fromFile.ToString());
        Assert.Equal(4, Check.Committed(b, "rg", "r")[0]);

        var exportAll = Groups(b, "--reset-offsets", "--all-groups", "--topic", "r", "--to-latest", "--dry-run", "--export");
        Assert.True(exportAll.ExitCode == 0, exportAll.ToString());
        Assert.Equal("rg,r,0,10\n", exportAll.Stdout);

        var shiftNone = Groups(b, "--reset-offsets", "--group", "fresh", "--topic", "r", "--shift-by", "1");
        Assert.True(shiftNone.ExitCode == 1, shiftNone.ToString());
        Assert.Equal("consumer-groups: cannot shift the offset of r-0 for group 'fresh': it has no committed offset there\n", shiftNone.Stderr.Split("\n", 2)[1]);

        var deleted = Groups(b, "--delete-offsets", "--group", "rg", "--topic", "r");
        Assert.True(deleted.ExitCode == 0, deleted.ToString());
        Assert.Equal("Request succeed for deleting offsets with topic r group rg", Rows(deleted)[0]);
        Assert.Equal(["TOPIC", "PARTITION", "STATUS"], Cells(Rows(deleted)[1]));
        Assert.Equal(["r", "0", "Successful"], Cells(Rows(deleted)[2]));
        Assert.Empty(Check.Committed(b, "rg", "r"));

        var ghost = Groups(b, "--describe", "--group", "ghost");
        Assert.True(ghost.ExitCode == 1, ghost.ToString());
        Assert.Equal("consumer-groups: consumer group 'ghost' does not exist\n", ghost.Stderr);
        var ghostOffsets = Groups(b, "--delete-offsets", "--group", "ghost", "--topic", "r");
        Assert.True(ghostOffsets.ExitCode == 1, ghostOffsets.ToString());
        Assert.Equal("consumer-groups: consumer group 'ghost' does not exist\n", ghostOffsets.Stderr);
    }

    public static TheoryData<string[]> BadUsage => new()
    {
        new[] { "--reset-offsets", "--group", "g", "--topic", "t", "--shift-by" },
        new[] { "--reset-offsets", "--group", "g", "--topic", "t", "--shift-by", "two" },
        new[] { "--reset-offsets", "--group", "g", "--topic", "t", "--to-datetime", "2024-01-01" },
        new[] { "--reset-offsets", "--group", "g", "--topic", "t", "--to-datetime", "2024-01-01T00:00:00" },
        new[] { "--reset-offsets", "--group", "g", "--topic", "t", "--by-duration", "1h" },
        new[] { "--reset-offsets", "--group", "g", "--topic", "t", "--to-earliest", "--shift-by", "1" },
        new[] { "--reset-offsets", "--group", "g", "--topic", "t", "--to-earliest", "--execute", "--dry-run" },
        new[] { "--reset-offsets", "--to-earliest", "--topic", "t" },
        new[] { "--reset-offsets", "--group", "g", "--all-groups", "--topic", "t", "--to-earliest" },
        new[] { "--describe", "--group", "g", "--members", "--state" },
        new[] { "--describe", "--group", "g", "--verbose" },
        new[] { "--describe", "--group", "g", "--export" },
        new[] { "--delete-offsets", "--all-groups", "--topic", "t" },
        new[] { "--delete-offsets", "--group", "g" },
        new[] { "--delete", "--group", "g", "--topic", "t" },
        new[] { "--list", "--group", "g" },
        new[] { "--list", "--describe" },
    };

    [Theory]
    [MemberData(nameof(BadUsage))]
    public void Bad_usage_exits_2_with_the_usage(string[] args)
    {
        var r = Tools.Script("consumer-groups", args);
        Assert.True(r.ExitCode == 2, r.ToString());
        Assert.StartsWith("consumer-groups: ", r.Stderr);
        Assert.Contains("usage: bin/consumer-groups.sh", r.Stderr);
        Assert.Equal("", r.Stdout);
    }
}
