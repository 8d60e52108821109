using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Confluent.Kafka;
using Confluent.Kafka.Admin;

namespace Kiou.Cli;

/// <summary>
/// bin/consumer-groups.sh, after Kafka's kafka-consumer-groups.sh (ConsumerGroupCommand): list groups; describe
/// them (offsets, members or state); reset their offsets (a dry run unless --execute, CSV with --export, a plan
/// from --from-file); delete them or some of their committed offsets. Column headers and messages are Kafka's.
/// </summary>
public static class ConsumerGroupsTool
{
    static readonly Flag[] Flags =
    [
        Kafka.BootstrapFlag,
        new("list", "list the consumer groups, one per line (with --state: GROUP and STATE columns)"),
        new("describe", "describe --group or --all-groups: by default each partition's committed offset, log-end offset, lag and member"),
        new("reset-offsets", "move the committed offsets of --group or --all-groups (a dry run unless --execute)"),
        new("delete", "delete --group or --all-groups (a group must have no members)"),
        new("delete-offsets", "delete the committed offsets of --group on --topic (the group must have no members)"),
        new("group", "a consumer group; may be repeated", "GROUP", Repeatable: true),
        new("all-groups", "--describe, --reset-offsets, --delete: every consumer group"),
        new("offsets", "--describe: the offsets of each partition (the default)"),
        new("members", "--describe: the members, with --verbose their assignment"),
        new("state", "--describe: coordinator, assignment strategy, state and member count; --list: a STATE column"),
        new("verbose", "--describe --members: add the ASSIGNMENT column"),
        new("topic", "--reset-offsets, --delete-offsets: TOPIC, or TOPIC:P1,P2 for some partitions; may be repeated", "TOPIC", Repeatable: true),
        new("all-topics", "--reset-offsets: every topic the group has offsets for"),
        new("to-earliest", "--reset-offsets: to the earliest offset"),
        new("to-latest", "--reset-offsets: to the log-end offset"),
        new("to-current", "--reset-offsets: to the committed offset (the log-end offset where there is none)"),
        new("to-offset", "--reset-offsets: to offset N (kept within earliest..log-end)", "N"),
        new("shift-by", "--reset-offsets: by N from the committed offset, N may be negative (kept within earliest..log-end)", "N"),
        new("to-datetime", "--reset-offsets: to the first offset at or after YYYY-MM-DDTHH:mm:SS.sss, UTC unless it ends in Z or ±hh:mm", "DATETIME"),
        new("by-duration", "--reset-offsets: to the first offset at or after now minus a duration PnDTnHnMnS (e.g. PT1H30M)", "DURATION"),
        new("from-file", "--reset-offsets: to the offsets in a CSV file as --export writes it (topic,partition,offset or group,topic,partition,offset)", "FILE"),
        new("execute", "--reset-offsets: do it"),
        new("dry-run", "--reset-offsets: only show the new offsets (the default)"),
        new("export", "--reset-offsets: print the plan as CSV (topic,partition,offset; group first with several groups)"),
        new("command-config", "file of client properties (key=value lines)", "FILE"),
    ];

    static readonly string[] Scenarios = ["to-earliest", "to-latest", "to-current", "to-offset", "shift-by", "to-datetime", "by-duration", "from-file"];

    public static int Run(string[] args)
    {
        var o = Options.Parse(args,
            "bin/consumer-groups.sh [--bootstrap-server HOST:PORT] --list|--describe|--reset-offsets|--delete|--delete-offsets [--group G|--all-groups] [FLAGS]",
            "Lists, describes, resets and deletes consumer groups and their offsets (Kafka's kafka-consumer-groups.sh).", Flags);
        if (o is null)
            return Program.ExitOk;
        var action = o.OneOf("list", "describe", "reset-offsets", "delete", "delete-offsets");
        Check(o, action);
        var kafka = new Kafka("consumer-groups", o);
        var admin = kafka.Admin(o, null, "command-config");
        var metadata = kafka.Reach(admin);
        try
        {
            if (action == "list")
                return List(admin, o.Has("state"));
            var groups = o.Has("all-groups") ? ListGroups(admin).Select(g => g.GroupId).Order(StringComparer.Ordinal).ToList() : o.All("group").Distinct().ToList();
            return action switch
            {
                "describe" => Describe(admin, o, groups),
                "reset-offsets" => Reset(admin, o, metadata, groups),
                "delete-offsets" => DeleteOffsets(admin, o, metadata, groups[0]),
                _ => Delete(admin, groups),
            };
        }
        catch (KafkaException e)
        {
            throw new FailedException($"{action} failed: {e.Error.Reason} ({e.Error.Code})");
        }
    }

    /// <summary>Kafka's argument rules (ConsumerGroupCommandOptions.checkArgs); each broken one is exit 2 with the usage.</summary>
    static void Check(Options o, string action)
    {
        bool group = o.Has("group"), all = o.Has("all-groups");
        if (group && all)
            throw o.Fail("--group and --all-groups cannot be combined");
        if (action == "list" && (group || all))
            throw o.Fail("--list takes neither --group nor --all-groups");
        if (action is "describe" or "reset-offsets" or "delete" && !group && !all)
            throw o.Fail($"--{action} needs --group or --all-groups");
        if (action == "delete-offsets" && (!group || o.All("group").Distinct().Count() != 1 || !o.Has("topic")))
            throw o.Fail("--delete-offsets needs one --group and --topic (--all-groups is not accepted)");
        if (o.Has("state") && action is not ("describe" or "list"))
            throw o.Fail("--state goes with --describe or --list");
        foreach (var f in new[] { "members", "offsets", "verbose" })
        {
            if (o.Has(f) && action != "describe")
                throw o.Fail($"--{f} goes with --describe");
        }
        if (action == "describe")
            o.AtMostOne("members", "offsets", "state");
        if (o.Has("verbose") && !o.Has("members"))
            throw o.Fail("--verbose goes with --describe --members");
        if (o.Has("topic") && action is not ("reset-offsets" or "delete-offsets"))
            throw o.Fail(action == "delete" ? "--delete removes whole groups; use --delete-offsets --topic for a topic's offsets" : $"--topic does not go with --{action}");
        if (o.Has("all-topics") && action != "reset-offsets")
            throw o.Fail("--all-topics goes with --reset-offsets");
        foreach (var f in Scenarios.Concat(["execute", "dry-run", "export"]))
        {
            if (o.Has(f) && action != "reset-offsets")
                throw o.Fail($"--{f} goes with --reset-offsets");
        }
        if (action != "reset-offsets")
            return;
        var scenario = o.OneOf(Scenarios);
        if (o.Has("execute") && o.Has("dry-run"))
            throw o.Fail("--execute and --dry-run cannot be combined");
        if (scenario == "from-file")
        {
            if (o.Has("all-topics"))
                throw o.Fail("--from-file names its partitions: --all-topics does not go with it");
        }
        else if (o.Has("topic") == o.Has("all-topics"))
            throw o.Fail("--reset-offsets needs --topic or --all-topics");
        // Values are parsed here so a bad one is a usage error before anything is asked of the broker.
        o.Long("to-offset", 0, 0);
        o.Long("shift-by", 0);
        if (o.Get("to-datetime") is { } dt)
            ParseDateTime(o, dt);
        if (o.Get("by-duration") is { } d)
            ParseDuration(o, d);
    }

    static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(30);

    static List<ConsumerGroupListing> ListGroups(IAdminClient admin)
    {
        try
        {
            return Kafka.Wait(admin.ListConsumerGroupsAsync(new ListConsumerGroupsOptions { RequestTimeout = RequestTimeout }), "list groups").Valid;
        }
        catch (ListConsumerGroupsException e)
        {
            throw new FailedException($"cannot list the consumer groups: {string.Join("; ", e.Results.Errors.Select(x => x.Reason))}");
        }
    }

    static int List(IAdminClient admin, bool state)
    {
        var groups = ListGroups(admin).OrderBy(g => g.GroupId, StringComparer.Ordinal).ToList();
        if (!state)
        {
            foreach (var g in groups)
                Console.Out.WriteLine(g.GroupId);
            return Program.ExitOk;
        }
        var rows = new List<string[]> { new[] { "GROUP", "STATE" } };
        rows.AddRange(groups.Select(g => new[] { g.GroupId, g.State.ToString() }));
        PrintTable(rows);
        return Program.ExitOk;
    }

    /// <summary>The group's description; null (after Kafka's one-line error on stderr) when it does not exist.</summary>
    static ConsumerGroupDescription? DescribeGroup(IAdminClient admin, string group)
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
                return null;
            throw new FailedException($"cannot describe consumer group '{group}': {r.Error.Reason}");
        }
        return d.State == ConsumerGroupState.Dead ? null : d;
    }

    static List<TopicPartitionOffset> Committed(IAdminClient admin, string group)
    {
        var r = Kafka.Wait(admin.ListConsumerGroupOffsetsAsync([new ConsumerGroupTopicPartitions(group, null)],
            new ListConsumerGroupOffsetsOptions { RequestTimeout = RequestTimeout }), "fetch committed offsets");
        return r[0].Partitions.Where(p => p.Error.Code == ErrorCode.NoError && p.Offset.Value >= 0).Select(p => p.TopicPartitionOffset).ToList();
    }

    /// <summary>ListOffsets for each partition; a partition whose answer is an error is left out.</summary>
    static Dictionary<TopicPartition, long> Offsets(IAdminClient admin, IEnumerable<TopicPartition> partitions, Func<OffsetSpec> spec)
    {
        var list = partitions.Distinct().ToList();
        if (list.Count == 0)
            return [];
        try
        {
            var r = Kafka.Wait(admin.ListOffsetsAsync(list.Select(tp => new TopicPartitionOffsetSpec { TopicPartition = tp, OffsetSpec = spec() }),
                new ListOffsetsOptions { RequestTimeout = RequestTimeout }), "list offsets");
            return r.ResultInfos.ToDictionary(i => i.TopicPartitionOffsetError.TopicPartition, i => i.TopicPartitionOffsetError.Offset.Value);
        }
        catch (ListOffsetsException e)
        {
            return e.Result.ResultInfos.Where(i => i.TopicPartitionOffsetError.Error.Code == ErrorCode.NoError)
                .ToDictionary(i => i.TopicPartitionOffsetError.TopicPartition, i => i.TopicPartitionOffsetError.Offset.Value);
        }
    }

    static string Dash(long v) => v < 0 ? "-" : v.ToString(CultureInfo.InvariantCulture);

    static string Dash(string? s) => string.IsNullOrEmpty(s) ? "-" : s;

    static string Num(long v) => v.ToString(CultureInfo.InvariantCulture);

    static IOrderedEnumerable<TopicPartition> Sorted(IEnumerable<TopicPartition> tps) =>
        tps.OrderBy(tp => tp.Topic, StringComparer.Ordinal).ThenBy(tp => tp.Partition.Value);

    static int Describe(IAdminClient admin, Options o, List<string> groups)
    {
        bool failed = false, first = true;
        foreach (var group in groups)
        {
            var d = DescribeGroup(admin, group);
            if (d is null)
            {
                Console.Error.WriteLine($"consumer-groups: consumer group '{group}' does not exist");
                failed = true;
                continue;
            }
            if (!first)
                Console.Out.WriteLine();
            first = false;
            if (d.State == ConsumerGroupState.Empty)
                Console.Error.WriteLine($"Consumer group '{group}' has no active members.");
            else if (d.State is ConsumerGroupState.PreparingRebalance or ConsumerGroupState.CompletingRebalance)
                Console.Error.WriteLine($"Warning: Consumer group '{group}' is rebalancing.");
            if (o.Has("state"))
                DescribeState(d);
            else if (o.Has("members"))
                DescribeMembers(d, o.Has("verbose"));
            else
                DescribeOffsets(admin, d);
        }
        return failed ? Program.ExitFailed : Program.ExitOk;
    }

    static void DescribeState(ConsumerGroupDescription d)
    {
        string coordinator = d.Coordinator is { } c ? $"{c.Host}:{c.Port}  ({c.Id})" : "-";
        PrintTable([
            ["GROUP", "COORDINATOR (ID)", "ASSIGNMENT-STRATEGY", "STATE", "#MEMBERS"],
            [d.GroupId, coordinator, Dash(d.PartitionAssignor), d.State.ToString(), Num(d.Members.Count)],
        ]);
    }

    static void DescribeMembers(ConsumerGroupDescription d, bool verbose)
    {
        bool instanceIds = d.Members.Any(m => !string.IsNullOrEmpty(m.GroupInstanceId));
        var header = new List<string> { "GROUP", "CONSUMER-ID" };
        if (instanceIds)
            header.Add("GROUP-INSTANCE-ID");
        header.AddRange(["HOST", "CLIENT-ID", "#PARTITIONS"]);
        if (verbose)
            header.Add("ASSIGNMENT");
        var rows = new List<string[]> { header.ToArray() };
        foreach (var m in d.Members.OrderBy(m => m.ConsumerId, StringComparer.Ordinal))
        {
            var assigned = m.Assignment?.TopicPartitions ?? [];
            var row = new List<string> { d.GroupId, m.ConsumerId };
            if (instanceIds)
                row.Add(Dash(m.GroupInstanceId));
            row.AddRange([m.Host, m.ClientId, Num(assigned.Count)]);
            if (verbose)
            {
                // Kafka's form: topic(p,p), topics sorted, comma-separated; "-" for none.
                row.Add(assigned.Count == 0 ? "-" : string.Join(",", assigned.GroupBy(tp => tp.Topic).OrderBy(g => g.Key, StringComparer.Ordinal)
                    .Select(g => g.Key + "(" + string.Join(",", g.Select(tp => tp.Partition.Value).Order()) + ")")));
            }
            rows.Add(row.ToArray());
        }
        PrintTable(rows);
    }

    static void DescribeOffsets(IAdminClient admin, ConsumerGroupDescription d)
    {
        var committed = Committed(admin, d.GroupId).ToDictionary(p => p.TopicPartition, p => p.Offset.Value);
        var owner = new Dictionary<TopicPartition, MemberDescription>();
        foreach (var m in d.Members)
        {
            foreach (var tp in m.Assignment?.TopicPartitions ?? [])
                owner[tp] = m;
        }
        var partitions = Sorted(committed.Keys.Union(owner.Keys)).ToList();
        var ends = Offsets(admin, partitions, OffsetSpec.Latest);
        var rows = new List<string[]> { new[] { "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID" } };
        foreach (var tp in partitions)
        {
            long current = committed.GetValueOrDefault(tp, -1);
            long end = ends.GetValueOrDefault(tp, -1);
            owner.TryGetValue(tp, out var m);
            rows.Add([d.GroupId, tp.Topic, Num(tp.Partition.Value), Dash(current), Dash(end),
                current >= 0 && end >= 0 ? Dash(Math.Max(0, end - current)) : "-", m?.ConsumerId ?? "-", m?.Host ?? "-", m?.ClientId ?? "-"]);
        }
        PrintTable(rows);
    }

    /// <summary>The partitions named by --topic TOPIC[:P,...] (each must exist).</summary>
    static List<TopicPartition> TopicPartitions(Options o, Metadata metadata)
    {
        var result = new List<TopicPartition>();
        foreach (var spec in o.All("topic"))
        {
            string topic = spec;
            List<int>? only = null;
            int colon = spec.IndexOf(':');
            if (colon >= 0)
            {
                topic = spec[..colon];
                only = [];
                foreach (var p in spec[(colon + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries))
                    only.Add(int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out int n) ? n : throw o.Fail($"--topic {spec}: '{p}' is not a partition number"));
                if (only.Count == 0)
                    throw o.Fail($"--topic {spec}: no partition after ':'");
            }
            var t = Kafka.RequireTopic(metadata, topic);
            var all = t.Partitions.Select(p => p.PartitionId).ToHashSet();
            foreach (var p in only ?? [])
            {
                if (!all.Contains(p))
                    throw new FailedException($"topic '{topic}' has no partition {p}");
            }
            result.AddRange((only ?? all.Order().ToList()).Select(p => new TopicPartition(topic, p)));
        }
        return result.Distinct().ToList();
    }

    static int Reset(IAdminClient admin, Options o, Metadata metadata, List<string> groups)
    {
        var fromFile = o.Get("from-file") is { } file ? ReadPlan(o, file, groups) : null;
        var named = o.Has("topic") ? TopicPartitions(o, metadata) : null;
        bool execute = o.Has("execute");
        if (!execute && !o.Has("dry-run"))
            Console.Error.WriteLine("WARN: No action will be performed as the --execute option is missing. Add --execute to reset the offsets, " +
                "or --dry-run to say that only the plan is wanted.");
        var plans = new List<(string Group, List<TopicPartitionOffset> Plan)>();
        bool failed = false;
        foreach (var group in groups)
        {
            var d = DescribeGroup(admin, group);
            if (d is not null && d.State is not ConsumerGroupState.Empty)
            {
                string message = $"Assignments can only be reset if the group '{group}' is inactive, but the current state is {d.State} (stop its consumers first).";
                if (groups.Count == 1)
                    throw new FailedException(message);
                Console.Error.WriteLine($"consumer-groups: {message}");
                failed = true;
                continue;
            }
            var committed = Committed(admin, group).ToDictionary(p => p.TopicPartition, p => p.Offset.Value);
            Dictionary<TopicPartition, long>? requested = null;
            List<TopicPartition> targets;
            if (fromFile is not null)
            {
                requested = fromFile.GetValueOrDefault(group) ?? [];
                if (requested.Count == 0)
                    Console.Error.WriteLine($"consumer-groups: no reset plan for group '{group}' in {o.Get("from-file")}");
                targets = requested.Keys.ToList();
            }
            else
                targets = named ?? committed.Keys.ToList();
            targets = Sorted(targets).ToList();
            var plan = Plan(admin, o, group, targets, committed, requested);
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
            plans.Add((group, plan));
        }
        if (o.Has("export"))
        {
            // Kafka's CSV: no header; the group column only when the command names more than one group.
            bool withGroup = o.Has("all-groups") || groups.Count > 1;
            foreach (var (group, plan) in plans)
            {
                foreach (var p in plan)
                    Console.Out.WriteLine((withGroup ? CsvField(group) + "," : "") + $"{CsvField(p.Topic)},{Num(p.Partition.Value)},{Num(p.Offset.Value)}");
            }
        }
        else
        {
            var rows = new List<string[]> { new[] { "GROUP", "TOPIC", "PARTITION", "NEW-OFFSET" } };
            foreach (var (group, plan) in plans)
            {
                foreach (var p in plan)
                    rows.Add([group, p.Topic, Num(p.Partition.Value), Num(p.Offset.Value)]);
            }
            PrintTable(rows);
        }
        return failed ? Program.ExitFailed : Program.ExitOk;
    }

    /// <summary>The new offset of each target, by the reset scenario, as Kafka's prepareOffsetsToReset computes it.</summary>
    static List<TopicPartitionOffset> Plan(IAdminClient admin, Options o, string group, List<TopicPartition> targets,
        Dictionary<TopicPartition, long> committed, Dictionary<TopicPartition, long>? fromFile)
    {
        if (targets.Count == 0)
            return [];
        var earliest = Offsets(admin, targets, OffsetSpec.Earliest);
        var latest = Offsets(admin, targets, OffsetSpec.Latest);
        foreach (var tp in targets)
        {
            if (!earliest.ContainsKey(tp) || !latest.ContainsKey(tp))
                throw new FailedException($"cannot get the offsets of {tp.Topic}-{tp.Partition.Value}: does the topic exist?");
        }
        Dictionary<TopicPartition, long>? byTime = null;
        long? timestamp = o.Get("to-datetime") is { } dt ? ParseDateTime(o, dt)
            : o.Get("by-duration") is { } d ? DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - (long)ParseDuration(o, d).TotalMilliseconds : null;
        if (timestamp is { } ts)
            byTime = Offsets(admin, targets, () => OffsetSpec.ForTimestamp(ts));
        var plan = new List<TopicPartitionOffset>();
        foreach (var tp in targets)
        {
            long lo = earliest[tp], hi = latest[tp];
            long target;
            if (o.Has("to-earliest"))
                target = lo;
            else if (o.Has("to-latest"))
                target = hi;
            else if (o.Has("to-current"))
                target = committed.TryGetValue(tp, out long c) ? c : hi;
            else if (byTime is not null)
            {
                // No record that recent: Kafka falls back to the log-end offset.
                target = byTime.TryGetValue(tp, out long t) && t >= 0 ? t : hi;
            }
            else
            {
                long requested;
                if (fromFile is not null)
                    requested = fromFile[tp];
                else if (o.Has("shift-by"))
                {
                    if (!committed.TryGetValue(tp, out long current))
                        throw new FailedException($"cannot shift the offset of {tp.Topic}-{tp.Partition.Value} for group '{group}': it has no committed offset there");
                    requested = current + o.Long("shift-by", 0);
                }
                else
                    requested = o.Long("to-offset", 0, 0);
                target = Math.Clamp(requested, lo, hi);
                if (requested > hi)
                    Console.Error.WriteLine($"WARN: New offset ({requested}) is higher than latest offset for topic partition {tp.Topic}-{tp.Partition.Value}. Value will be set to {hi}");
                else if (requested < lo)
                    Console.Error.WriteLine($"WARN: New offset ({requested}) is lower than earliest offset for topic partition {tp.Topic}-{tp.Partition.Value}. Value will be set to {lo}");
            }
            plan.Add(new TopicPartitionOffset(tp, new Offset(target)));
        }
        return plan;
    }

    static string CsvField(string s) => s.Contains(',') || s.Contains('"') ? "\"" + s.Replace("\"", "\"\"") + "\"" : s;

    /// <summary>
    /// --from-file: Kafka's export format, topic,partition,offset (for the one --group) or group,topic,partition,offset.
    /// A line that is neither is a usage error naming the line.
    /// </summary>
    static Dictionary<string, Dictionary<TopicPartition, long>> ReadPlan(Options o, string path, List<string> groups)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw o.Fail($"cannot read {path}: {e.Message}");
        }
        var plan = new Dictionary<string, Dictionary<TopicPartition, long>>(StringComparer.Ordinal);
        for (int i = 0; i < lines.Length; i++)
        {
            if (lines[i].Trim().Length == 0)
                continue;
            var f = lines[i].Split(',');
            bool noGroup = f.Length == 3 && groups.Count == 1 && !o.Has("all-groups");
            if ((f.Length != 3 && f.Length != 4) || (f.Length == 3 && !noGroup)
                || !int.TryParse(f[^2], NumberStyles.None, CultureInfo.InvariantCulture, out int partition)
                || !long.TryParse(f[^1], NumberStyles.None, CultureInfo.InvariantCulture, out long offset))
                throw o.Fail($"{path}:{i + 1}: expected topic,partition,offset (one --group) or group,topic,partition,offset, not '{lines[i]}'");
            string group = noGroup ? groups[0] : f[0];
            if (!plan.TryGetValue(group, out var p))
                plan[group] = p = [];
            p[new TopicPartition(f[^3], partition)] = offset;
        }
        return plan;
    }

    static int DeleteOffsets(IAdminClient admin, Options o, Metadata metadata, string group)
    {
        var partitions = TopicPartitions(o, metadata);
        var topics = string.Join(", ", o.All("topic"));
        List<TopicPartitionError> results;
        try
        {
            results = Kafka.Wait(admin.DeleteConsumerGroupOffsetsAsync(group, partitions,
                new DeleteConsumerGroupOffsetsOptions { RequestTimeout = RequestTimeout }), "delete offsets").Partitions
                .Select(tp => new TopicPartitionError(tp, new Error(ErrorCode.NoError))).ToList();
        }
        catch (KafkaException e) when (e is not DeleteConsumerGroupOffsetsException && e.Error.Code == ErrorCode.GroupIdNotFound)
        {
            throw new FailedException($"consumer group '{group}' does not exist");
        }
        catch (DeleteConsumerGroupOffsetsException e)
        {
            var error = e.Result.Error;
            if (error.Code == ErrorCode.GroupIdNotFound)
                throw new FailedException($"consumer group '{group}' does not exist");
            if (error.Code == ErrorCode.NonEmptyGroup)
                throw new FailedException($"Deleting offsets of a consumer group '{group}' is forbidden if the group is not empty (stop its consumers first).");
            var bad = e.Result.Partitions.FirstOrDefault(p => p.Error.IsError);
            if (bad is null)
                throw new FailedException($"deleting the offsets of group '{group}' failed: {error.Reason} ({error.Code})");
            results = e.Result.Partitions.Select(p => new TopicPartitionError(p.TopicPartition, p.Error)).ToList();
        }
        bool failed = results.Any(r => r.Error.IsError);
        Console.Out.WriteLine(failed ? "Encounter some partition level error, see the follow-up details:" : $"Request succeed for deleting offsets with topic {topics} group {group}");
        var rows = new List<string[]> { new[] { "TOPIC", "PARTITION", "STATUS" } };
        foreach (var r in results.OrderBy(r => r.Topic, StringComparer.Ordinal).ThenBy(r => r.Partition.Value))
            rows.Add([r.Topic, Num(r.Partition.Value), r.Error.IsError ? $"Error: {r.Error.Reason}" : "Successful"]);
        PrintTable(rows);
        return failed ? Program.ExitFailed : Program.ExitOk;
    }

    static int Delete(IAdminClient admin, List<string> groups)
    {
        if (groups.Count == 0)
        {
            Console.Out.WriteLine("There are no consumer groups to delete.");
            return Program.ExitOk;
        }
        var failures = new List<string>();
        var deleted = new List<string>();
        try
        {
            Kafka.Wait(admin.DeleteGroupsAsync(groups, new DeleteGroupsOptions { RequestTimeout = RequestTimeout }), "delete group");
            deleted.AddRange(groups);
        }
        catch (DeleteGroupsException e)
        {
            foreach (var r in e.Results)
            {
                if (!r.Error.IsError)
                {
                    deleted.Add(r.Group);
                    continue;
                }
                failures.Add(r.Error.Code switch
                {
                    ErrorCode.GroupIdNotFound => $"consumer group '{r.Group}' does not exist",
                    ErrorCode.NonEmptyGroup => $"consumer group '{r.Group}' could not be deleted: it still has members (stop its consumers first)",
                    _ => $"consumer group '{r.Group}' could not be deleted: {r.Error.Reason} ({r.Error.Code})",
                });
            }
        }
        if (failures.Count == 1 && groups.Count == 1)
            throw new FailedException(failures[0]);
        if (deleted.Count > 0)
            Console.Out.WriteLine($"Deletion of requested consumer groups ('{string.Join("', '", deleted)}') was successful.");
        foreach (var f in failures)
            Console.Error.WriteLine($"consumer-groups: {f}");
        return failures.Count == 0 ? Program.ExitOk : Program.ExitFailed;
    }

    /// <summary>
    /// Kafka's Utils.getDateTime: yyyy-MM-ddTHH:mm:ss.SSS, then an optional zone (Z, ±hh, ±hhmm or ±hh:mm); without one,
    /// UTC (as Kafka: it appends Z). Milliseconds since the epoch.
    /// </summary>
    internal static long ParseDateTime(Options o, string text)
    {
        var m = Regex.Match(text, @"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3})(Z|[+-]\d{2}(?::?\d{2})?)?$", RegexOptions.CultureInvariant);
        if (m.Success && DateTime.TryParseExact(m.Groups[1].Value, "yyyy-MM-dd'T'HH:mm:ss.fff", CultureInfo.InvariantCulture, DateTimeStyles.None, out var local))
        {
            var zone = m.Groups[2].Value;
            var offset = TimeSpan.Zero;
            if (zone.Length > 1)
            {
                int hours = int.Parse(zone.AsSpan(1, 2), CultureInfo.InvariantCulture);
                int minutes = zone.Length > 3 ? int.Parse(zone.AsSpan(zone.Length - 2), CultureInfo.InvariantCulture) : 0;
                if (hours <= 18 && minutes < 60)
                    offset = (zone[0] == '-' ? -1 : 1) * new TimeSpan(hours, minutes, 0);
                else
                    throw o.Fail($"--to-datetime '{text}': the zone offset is out of range");
            }
            return new DateTimeOffset(local, offset).ToUnixTimeMilliseconds();
        }
        throw o.Fail($"--to-datetime '{text}' is not YYYY-MM-DDTHH:mm:SS.sss with an optional zone (e.g. 2024-01-31T12:00:00.000, ...Z or ...+02:00)");
    }

    /// <summary>java.time.Duration.parse: [±]PnDTnHnMnS with optional parts, each may be signed, seconds with a fraction.</summary>
    internal static TimeSpan ParseDuration(Options o, string text)
    {
        var m = Regex.Match(text, @"^([-+]?)P(?:([-+]?\d+)D)?(?:T(?:([-+]?\d+)H)?(?:([-+]?\d+)M)?(?:([-+]?\d+)(?:[.,](\d{0,9}))?S)?)?$",
            RegexOptions.IgnoreCase | RegexOptions.CultureInvariant);
        bool hasT = text.Contains('T', StringComparison.OrdinalIgnoreCase);
        if (m.Success && (m.Groups[2].Success || m.Groups[3].Success || m.Groups[4].Success || m.Groups[5].Success)
            && !(hasT && !m.Groups[3].Success && !m.Groups[4].Success && !m.Groups[5].Success))
        {
            try
            {
                static long N(Group g) => g.Success ? long.Parse(g.Value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture) : 0;
                var t = checked(TimeSpan.FromDays(N(m.Groups[2])) + TimeSpan.FromHours(N(m.Groups[3])) + TimeSpan.FromMinutes(N(m.Groups[4]))
                    + TimeSpan.FromSeconds(N(m.Groups[5])));
                if (m.Groups[6].Success && m.Groups[6].Value.Length > 0)
                {
                    var fraction = TimeSpan.FromTicks(long.Parse(m.Groups[6].Value.PadRight(7, '0')[..7], CultureInfo.InvariantCulture));
                    t += m.Groups[5].Value.StartsWith('-') ? -fraction : fraction;
                }
                return m.Groups[1].Value == "-" ? -t : t;
            }
            catch (Exception e) when (e is OverflowException or ArgumentException or FormatException)
            {
            }
        }
        throw o.Fail($"--by-duration '{text}' is not a duration PnDTnHnMnS (e.g. PT30M, P1DT12H)");
    }

    static void PrintTable(List<string[]> rows)
    {
        var widths = new int[rows[0].Length];
        foreach (var r in rows)
        {
            for (int i = 0; i < r.Length; i++)
                widths[i] = Math.Max(widths[i], r[i].Length);
        }
        var sb = new StringBuilder();
        foreach (var r in rows)
            sb.Append(string.Join(" ", r.Select((c, i) => i == r.Length - 1 ? c : c.PadRight(widths[i]))).TrimEnd()).Append('\n');
        Console.Out.Write(sb.ToString());
    }
}
