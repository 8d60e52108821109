namespace Kiou.Cli.Tests;

/// <summary>consumer.sh in a group and consumer-groups.sh; they need the broker's consumer groups.</summary>
public sealed class GroupsTests
{
    static string[] Rows(Run r) => r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    static string[] Cells(string row) => row.Split(' ', StringSplitOptions.RemoveEmptyEntries);

    [Fact]
    public async Task List_describe_reset_and_delete_a_group()
    {
        await using var broker = TestBroker.Start();
        string b = broker.Bootstrap;
        Assert.Equal(0, Tools.Script("topics", ["--bootstrap-server", b, "--create", "--topic", "g", "--partitions", "2"]).ExitCode);
        Check.Produce(b, "g", Enumerable.Range(0, 5).Select(i => ((string?)null, $"a{i}")), partition: 0);
        Check.Produce(b, "g", Enumerable.Range(0, 3).Select(i => ((string?)null, $"b{i}")), partition: 1);

        var consume = Tools.Script("consumer", ["--bootstrap-server", b, "--topic", "g", "--group", "cg", "--from-beginning", "--session-timeout-ms", "6000"]);
        Assert.True(consume.ExitCode == 0, consume.ToString());
        Assert.Equal(8, Rows(consume).Length);
        Assert.Equal(new Dictionary<int, long> { [0] = 5, [1] = 3 }, Check.Committed(b, "cg", "g"));

        var list = Tools.Script("consumer-groups", ["--bootstrap-server", b, "--list"]);
        Assert.True(list.ExitCode == 0, list.ToString());
        Assert.Contains("cg", Rows(list));

        Check.Produce(b, "g", [(null, "late")], partition: 1);
        var describe = Tools.Script("consumer-groups", ["--bootstrap-server", b, "--describe", "--group", "cg"]);
        Assert.True(describe.ExitCode == 0, describe.ToString());
        var rows = Rows(describe);
        Assert.Equal(["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID"], Cells(rows[0]));
        Assert.Equal(["cg", "g", "0", "5", "5", "0", "-", "-", "-"], Cells(rows[1]));
        Assert.Equal(["cg", "g", "1", "3", "4", "1", "-", "-", "-"], Cells(rows[2]));
        Assert.Contains("Consumer group 'cg' has no active members.", describe.Stderr);

        var dry = Tools.Script("consumer-groups", ["--bootstrap-server", b, "--reset-offsets", "--group", "cg", "--topic", "g", "--to-earliest"]);
        Assert.True(dry.ExitCode == 0, dry.ToString());
        Assert.Equal(["cg", "g", "0", "0"], Cells(Rows(dry)[1]));
        Assert.Contains("No action will be performed", dry.Stderr);
        Assert.Equal(new Dictionary<int, long> { [0] = 5, [1] = 3 }, Check.Committed(b, "cg", "g"));

        var earliest = Tools.Script("consumer-groups", ["--bootstrap-server", b, "--reset-offsets", "--group", "cg", "--topic", "g", "--to-earliest", "--execute"]);
        Assert.True(earliest.ExitCode == 0, earliest.ToString());
        Assert.Equal(new Dictionary<int, long> { [0] = 0, [1] = 0 }, Check.Committed(b, "cg", "g"));

        var to = Tools.Script("consumer-groups", ["--bootstrap-server", b, "--reset-offsets", "--group", "cg", "--topic", "g:1", "--to-offset", "2", "--execute"]);
        Assert.True(to.ExitCode == 0, to.ToString());
        Assert.Equal(new Dictionary<int, long> { [0] = 0, [1] = 2 }, Check.Committed(b, "cg", "g"));
        var again = Tools.Script("consumer", ["--bootstrap-server", b, "--topic", "g", "--group", "cg", "--partition", "1"]);
        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.Equal("b2\nlate\n", again.Stdout);

        var latest = Tools.Script("consumer-groups", ["--bootstrap-server", b, "--reset-offsets", "--group", "cg", "--all-topics", "--to-latest", "--execute"]);
        Assert.True(latest.ExitCode == 0, latest.ToString());
        Assert.Equal(new Dictionary<int, long> { [0] = 5, [1] = 4 }, Check.Committed(b, "cg", "g"));

        var delete = Tools.Script("consumer-groups", ["--bootstrap-server", b, "--delete", "--group", "cg"]);
        Assert.True(delete.ExitCode == 0, delete.ToString());
        Assert.DoesNotContain("cg", Rows(Tools.Script("consumer-groups", ["--bootstrap-server", b, "--list"])));
        var gone = Tools.Script("consumer-groups", ["--bootstrap-server", b, "--describe", "--group", "cg"]);
        Assert.True(gone.ExitCode == 1, gone.ToString());
        Assert.Contains("consumer group 'cg' does not exist", gone.Stderr);
    }

    [Fact]
    public async Task An_active_group_shows_its_member_and_refuses_a_reset()
    {
        await using var broker = TestBroker.Start();
        string b = broker.Bootstrap;
        Check.Produce(b, "live", [(null, "x")]);
        using var follow = new Tools.Running("consumer", ["--bootstrap-server", b, "--topic", "live", "--group", "busy", "--from-beginning", "--follow"]);
        follow.WaitFor(s => s == "x\n", "the first record");
        var describe = Tools.Script("consumer-groups", ["--bootstrap-server", b, "--describe", "--group", "busy"]);
        Assert.True(describe.ExitCode == 0, describe.ToString());
        var row = Cells(Rows(describe)[1]);
        Assert.Equal(["busy", "live", "0"], row[..3]);
        Assert.NotEqual("-", row[6]);
        var reset = Tools.Script("consumer-groups", ["--bootstrap-server", b, "--reset-offsets", "--group", "busy", "--topic", "live", "--to-earliest", "--execute"]);
        Assert.True(reset.ExitCode == 1, reset.ToString());
        Assert.Contains("can only be reset if the group 'busy' is inactive", reset.Stderr);
        var delete = Tools.Script("consumer-groups", ["--bootstrap-server", b, "--delete", "--group", "busy"]);
        Assert.True(delete.ExitCode == 1, delete.ToString());
        Assert.Equal(0, follow.Stop());
    }

    [Fact]
    public async Task Consumer_without_a_group_uses_a_generated_one_and_commits_nothing()
    {
        await using var broker = TestBroker.Start();
        Check.Produce(broker.Bootstrap, "anon", [(null, "a"), (null, "b")]);
        var r = Tools.Script("consumer", ["--bootstrap-server", broker.Bootstrap, "--topic", "anon", "--from-beginning"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal("a\nb\n", r.Stdout);
    }
}
