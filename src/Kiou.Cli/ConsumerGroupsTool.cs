using System.Globalization;
using Confluent.Kafka;
using Confluent.Kafka.Admin;

namespace Kiou.Cli;

/// <summary>
/// bin/consumer-groups.sh, after Kafka's kafka-consumer-groups.sh: list groups, describe one (committed offset,
/// log-end offset, lag and member per partition), reset its offsets (a dry run unless --execute), delete it.
/// </summary>
public static class ConsumerGroupsTool
{
    static readonly Flag[] Flags =
    [
        Kafka.BootstrapFlag,
        new("list", "list the consumer groups, one per line"),
        new("describe", "committed offset, log-end offset, lag and member of each partition of --group"),
        new("reset-offsets", "move the committed offsets of --group on --topic (a dry run unless --execute)"),
        new("delete", "delete --group (it must have no members)"),
        new("group", "the consumer group", "GROUP"),
        new("topic", "--reset-offsets: TOPIC, or TOPIC:P1,P2 for some partitions", "TOPIC"),
        new("all-topics", "--reset-offsets: every topic the group has offsets for"),
        new("to-earliest", "--reset-offsets: to the earliest offset"),
        new("to-latest", "--reset-offsets: to the log-end offset"),
        new("to-offset", "--reset-offsets: to offset N (kept within earliest..log-end)", "N"),
        new("execute", "--reset-offsets: do it"),
        new("dry-run", "--reset-offsets: only show the new offsets (the default)"),
        new("command-config", "file of client properties (key=value lines)", "FILE"),
    ];

    public static int Run(string[] args)
    {
        var o = Options.Parse(args, "bin/consumer-groups.sh [--bootstrap-server HOST:PORT] --list|--describe|--reset-offsets|--delete [--group G] [FLAGS]",
            "Lists, describes, resets and deletes consumer groups (Kafka's kafka-consumer-groups.sh).", Flags);
        if (o is null)
            return Program.ExitOk;
        var action = o.OneOf("list", "describe", "reset-offsets", "delete");
        string? group = o.Get("group");
        if (action != "list" && group is null)
            throw o.Fail($"--{action} needs --group");
        if (action == "reset-offsets")
        {
            o.OneOf("to-earliest", "to-latest", "to-offset");
            if (o.Has("topic") == o.Has("all-topics"))
                throw o.Fail("--reset-offsets needs --topic or --all-topics");
            if (o.Has("execute") && o.Has("dry-run"))
                throw o.Fail("--execute and --dry-run cannot be combined");
        }
        var kafka = new Kafka("consumer-groups", o);
        var admin = kafka.Admin(o, null, "command-config");
        var metadata = kafka.Reach(admin);
        try
        {
            return action switch
            {
                "list" => List(admin),
                "describe" => Describe(admin, group!),
                "reset-offsets" => Reset(admin, o, metadata, group!),
                _ => Delete(admin, group!),
            };
        }
        catch (KafkaException e)
        {
            throw new FailedException($"{action} failed: {e.Error.Reason} ({e.Error.Code})");
        }
    }

    static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(30);

    static int List(IAdminClient admin)
    {
        ListConsumerGroupsResult r;
        try
        {
            r = Kafka.Wait(admin.ListConsumerGroupsAsync(new ListConsumerGroupsOptions { RequestTimeout = RequestTimeout }), "list groups");
        }
        catch (ListConsumerGroupsException e)
        {
            throw new FailedException($"cannot list the consumer groups: {string.Join("; ", e.Results.Errors.Select(x => x.Reason))}");
        }
        foreach (var g in r.Valid.Select(g => g.GroupId).Order(StringComparer.Ordinal))
            Console.Out.WriteLine(g);
        return Program.ExitOk;
    }

    static ConsumerGroupDescription DescribeGroup(IAdminClient admin, string group)
    {
        ConsumerGroupDescription d;
        try
        {
            d = Kafka.Wait(admin.DescribeConsumerGroupsAsync([group], new DescribeConsumerGroupsOptions { RequestTimeout = RequestTimeout }),
                "describe group").ConsumerGroupDescriptions[0];
        }
        catch (DescribeConsumerGroupsException e)
        {
            var r = e.Results.ConsumerGroupDescriptions[0];
            if (r.Error.Code == ErrorCode.GroupIdNotFound)
                throw new FailedException($"consumer group '{group}' does not exist");
            throw new FailedException($"cannot describe consumer group '{group}': {r.Error.Reason}");
        }
        return d;
    }

    static List<TopicPartitionOffset> Committed(IAdminClient admin, string group)
    {
        var r = Kafka.Wait(admin.ListConsumerGroupOffsetsAsync([new ConsumerGroupTopicPartitions(group, null)],
            new ListConsumerGroupOffsetsOptions { RequestTimeout = RequestTimeout }), "fetch committed offsets");
        return r[0].Partitions.Where(p => p.Error.Code == ErrorCode.NoError).Select(p => p.TopicPartitionOffset).ToList();
    }

    static Dictionary<TopicPartition, long> Offsets(IAdminClient admin, IEnumerable<TopicPartition> partitions, OffsetSpec spec)
    {
        var list = partitions.Distinct().ToList();
        if (list.Count == 0)
            return [];
        var r = Kafka.Wait(admin.ListOffsetsAsync(list.Select(tp => new TopicPartitionOffsetSpec { TopicPartition = tp, OffsetSpec = spec }),
            new ListOffsetsOptions { RequestTimeout = RequestTimeout }), "list offsets");
        return r.ResultInfos.ToDictionary(i => i.TopicPartitionOffsetError.TopicPartition, i => i.TopicPartitionOffsetError.Offset.Value);
    }

    static string Dash(long v) => v < 0 ? "-" : v.ToString(CultureInfo.InvariantCulture);

    static int Describe(IAdminClient admin, string group)
    {
        var d = DescribeGroup(admin, group);
        if (d.State == ConsumerGroupState.Dead)
            throw new FailedException($"consumer group '{group}' does not exist");
        var committed = Committed(admin, group).ToDictionary(p => p.TopicPartition, p => p.Offset.Value);
        var owner = new Dictionary<TopicPartition, MemberDescription>();
        foreach (var m in d.Members)
        {
            foreach (var tp in m.Assignment?.TopicPartitions ?? [])
                owner[tp] = m;
        }
        var partitions = committed.Keys.Union(owner.Keys).OrderBy(tp => tp.Topic, StringComparer.Ordinal).ThenBy(tp => tp.Partition.Value).ToList();
        Dictionary<TopicPartition, long> ends;
        try
        {
            ends = Offsets(admin, partitions, OffsetSpec.Latest());
        }
        catch (ListOffsetsException e)
        {
            ends = e.Result.ResultInfos.Where(i => i.TopicPartitionOffsetError.Error.Code == ErrorCode.NoError)
                .ToDictionary(i => i.TopicPartitionOffsetError.TopicPartition, i => i.TopicPartitionOffsetError.Offset.Value);
        }
        if (d.Members.Count == 0)
            Console.Error.WriteLine($"Consumer group '{group}' has no active members.");
        var rows = new List<string[]> { new[] { "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID" } };
        foreach (var tp in partitions)
        {
            long current = committed.GetValueOrDefault(tp, -1);
            long end = ends.GetValueOrDefault(tp, -1);
            owner.TryGetValue(tp, out var m);
            rows.Add([group, tp.Topic, tp.Partition.Value.ToString(CultureInfo.InvariantCulture), Dash(current), Dash(end),
                current >= 0 && end >= 0 ? Dash(Math.Max(0, end - current)) : "-", m?.ConsumerId ?? "-", m?.Host ?? "-", m?.ClientId ?? "-"]);
        }
        PrintTable(rows);
        return Program.ExitOk;
    }

    static int Reset(IAdminClient admin, Options o, Metadata metadata, string group)
    {
        var d = DescribeGroup(admin, group);
        if (d.State is not (ConsumerGroupState.Empty or ConsumerGroupState.Dead))
            throw new FailedException($"assignments can only be reset if the group '{group}' is inactive, but the current state is {d.State} " +
                "(stop its consumers first)");
        List<TopicPartition> targets;
        if (o.Has("all-topics"))
            targets = Committed(admin, group).Select(p => p.TopicPartition).ToList();
        else
        {
            var spec = o.Required("topic");
            string topic = spec;
            List<int>? only = null;
            int colon = spec.IndexOf(':');
            if (colon >= 0)
            {
                topic = spec[..colon];
                only = [];
                foreach (var p in spec[(colon + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries))
                    only.Add(int.TryParse(p, out int n) && n >= 0 ? n : throw o.Fail($"--topic {spec}: '{p}' is not a partition number"));
            }
            var t = Kafka.RequireTopic(metadata, topic);
            var all = t.Partitions.Select(p => p.PartitionId).ToHashSet();
            foreach (var p in only ?? [])
            {
                if (!all.Contains(p))
                    throw new FailedException($"topic '{topic}' has no partition {p}");
            }
            targets = (only ?? all.Order().ToList()).Select(p => new TopicPartition(topic, p)).ToList();
        }
        var earliest = Offsets(admin, targets, OffsetSpec.Earliest());
        var latest = Offsets(admin, targets, OffsetSpec.Latest());
        long to = o.Long("to-offset", -1, 0);
        var plan = targets.OrderBy(tp => tp.Topic, StringComparer.Ordinal).ThenBy(tp => tp.Partition.Value).Select(tp =>
        {
            long lo = earliest[tp], hi = latest[tp];
            long target = o.Has("to-earliest") ? lo : o.Has("to-latest") ? hi : Math.Clamp(to, lo, hi);
            return new TopicPartitionOffset(tp, new Offset(target));
        }).ToList();
        bool execute = o.Has("execute");
        if (!execute && !o.Has("dry-run"))
            Console.Error.WriteLine("WARN: No action will be performed as the --execute option is missing. Add --execute to reset the offsets, " +
                "or --dry-run to say that only the plan is wanted.");
        if (execute && plan.Count > 0)
        {
            try
            {
                Kafka.Wait(admin.AlterConsumerGroupOffsetsAsync([new ConsumerGroupTopicPartitionOffsets(group, plan)],
                    new AlterConsumerGroupOffsetsOptions { RequestTimeout = RequestTimeout }), "commit offsets");
            }
            catch (AlterConsumerGroupOffsetsException e)
            {
                var bad = e.Results[0].Partitions.FirstOrDefault(p => p.Error.Code != ErrorCode.NoError);
                throw new FailedException($"cannot reset the offsets of group '{group}': {(bad is null ? e.Error.Reason : $"{bad.TopicPartition}: {bad.Error.Reason}")}");
            }
        }
        var rows = new List<string[]> { new[] { "GROUP", "TOPIC", "PARTITION", "NEW-OFFSET" } };
        foreach (var p in plan)
            rows.Add([group, p.Topic, p.Partition.Value.ToString(CultureInfo.InvariantCulture), p.Offset.Value.ToString(CultureInfo.InvariantCulture)]);
        PrintTable(rows);
        return Program.ExitOk;
    }

    static int Delete(IAdminClient admin, string group)
    {
        try
        {
            Kafka.Wait(admin.DeleteGroupsAsync([group], new DeleteGroupsOptions { RequestTimeout = RequestTimeout }), "delete group");
        }
        catch (DeleteGroupsException e)
        {
            var r = e.Results[0];
            throw new FailedException(r.Error.Code switch
            {
                ErrorCode.GroupIdNotFound => $"consumer group '{group}' does not exist",
                ErrorCode.NonEmptyGroup => $"consumer group '{group}' could not be deleted: it still has members (stop its consumers first)",
                _ => $"consumer group '{group}' could not be deleted: {r.Error.Reason} ({r.Error.Code})",
            });
        }
        Console.Out.WriteLine($"Deletion of requested consumer groups ('{group}') was successful.");
        return Program.ExitOk;
    }

    static void PrintTable(List<string[]> rows)
    {
        var widths = new int[rows[0].Length];
        foreach (var r in rows)
        {
            for (int i = 0; i < r.Length; i++)
                widths[i] = Math.Max(widths[i], r[i].Length);
        }
        foreach (var r in rows)
            Console.Out.WriteLine(string.Join(" ", r.Select((c, i) => i == r.Length - 1 ? c : c.PadRight(widths[i]))).TrimEnd());
    }
}
