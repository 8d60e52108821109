using System.Text.RegularExpressions;
using Confluent.Kafka;
using Confluent.Kafka.Admin;

namespace Kiou.Cli;

/// <summary>bin/topics.sh, after Kafka's kafka-topics.sh: create, list, describe, alter (partitions, configs), delete.</summary>
public static class TopicsTool
{
    static readonly Flag[] Flags =
    [
        Kafka.BootstrapFlag,
        new("create", "create --topic"),
        new("list", "list the topics, one per line"),
        new("describe", "partitions, leader, replicas, isr and non-default configs of --topic (default: every topic)"),
        new("alter", "raise the partition count (--partitions) or set configs (--config) of --topic"),
        new("delete", "delete --topic (a comma-separated list deletes several)"),
        new("topic", "the topic; with --list, --describe, --alter, --delete a regular expression matching whole names (a,b: a or b)", "TOPIC"),
        new("partitions", "partition count (--create: default the broker's; --alter: the new, larger count)", "N"),
        new("replication-factor", "replicas per partition (a single node has 1; default the broker's)", "N"),
        new("config", "a topic config such as retention.ms=60000 (--create, --alter)", "KEY=VALUE", Repeatable: true),
        new("if-not-exists", "--create: succeed when the topic already exists"),
        new("if-exists", "--alter, --delete, --describe: succeed when the topic does not exist"),
        new("exclude-internal", "--list, --describe: leave out internal topics (__consumer_offsets...)"),
        new("command-config", "file of client properties (key=value lines)", "FILE"),
    ];

    public static int Run(string[] args)
    {
        var o = Options.Parse(args, "bin/topics.sh [--bootstrap-server HOST:PORT] --create|--list|--describe|--alter|--delete [--topic T] [FLAGS]",
            "Creates, lists, describes, alters and deletes topics (Kafka's kafka-topics.sh).", Flags);
        if (o is null)
            return Program.ExitOk;
        var action = o.OneOf("create", "list", "describe", "alter", "delete");
        var kafka = new Kafka("topics", o);
        var configs = o.Pairs("config");
        string? topic = o.Get("topic");
        if (action is "create" or "alter" or "delete" && topic is null)
            throw o.Fail($"--{action} needs --topic");
        if (o.Has("config") && action is not ("create" or "alter"))
            throw o.Fail("--config goes with --create or --alter");
        int partitions = o.Int("partitions", -1, 1);
        short replication = (short)o.Int("replication-factor", -1, 1, short.MaxValue);
        if (action == "alter" && partitions < 0 && configs.Count == 0)
            throw o.Fail("--alter needs --partitions or --config");

        var filter = action == "create" || topic is null ? null : Pattern(o, topic);

        var admin = kafka.Admin(o, null, "command-config");
        var metadata = kafka.Reach(admin);
        try
        {
            switch (action)
            {
                case "create":
                    return Create(admin, o, topic!, partitions, replication, configs);
                case "list":
                    foreach (var t in metadata.Topics.Where(t => t.Error.Code == ErrorCode.NoError).Select(t => t.Topic).Order(StringComparer.Ordinal))
                    {
                        if (!(o.Has("exclude-internal") && t.StartsWith("__", StringComparison.Ordinal)) && (filter is null || filter.IsMatch(t)))
                            Console.Out.WriteLine(t);
                    }
                    return Program.ExitOk;
                case "describe":
                    return Describe(admin, o, metadata, topic);
                case "alter":
                    return Alter(admin, o, metadata, topic!, partitions, configs);
                default:
                    return Delete(admin, o, metadata, topic!);
            }
        }
        catch (KafkaException e)
        {
            throw new FailedException($"error while executing topic command: {e.Error.Reason}");
        }
    }

    static int Create(IAdminClient admin, Options o, string topic, int partitions, short replication, Dictionary<string, string> configs)
    {
        try
        {
            Kafka.Wait(admin.CreateTopicsAsync(
                [new TopicSpecification { Name = topic, NumPartitions = partitions, ReplicationFactor = replication, Configs = configs }],
                new CreateTopicsOptions { RequestTimeout = TimeSpan.FromSeconds(30) }), "create topic");
        }
        catch (CreateTopicsException e)
        {
            var r = e.Results[0];
            if (r.Error.Code == ErrorCode.TopicAlreadyExists && o.Has("if-not-exists"))
                return Program.ExitOk;
            throw new FailedException(r.Error.Code == ErrorCode.TopicAlreadyExists
                ? $"topic '{topic}' already exists"
                : $"cannot create topic '{topic}': {r.Error.Reason} ({r.Error.Code})");
        }
        Console.Out.WriteLine($"Created topic {topic}.");
        return Program.ExitOk;
    }

    /// <summary>
    /// Kafka's IncludeList: commas mean "or", spaces and surrounding quotes are dropped, and the expression must
    /// match the whole topic name (Java's Matcher.matches), so a plain name matches only itself.
    /// </summary>
    internal static Regex Pattern(Options o, string topic)
    {
        string expr = topic.Trim().Replace(',', '|').Replace(" ", "", StringComparison.Ordinal).Trim('"', '\'');
        try
        {
            return new Regex(@"\A(?:" + expr + @")\z", RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
        }
        catch (ArgumentException e)
        {
            throw o.Fail($"--topic '{topic}' is not a valid regular expression: {e.Message}");
        }
    }

    // No character that means something in a regular expression: a topic name as typed, which must exist.
    static bool IsPlainName(string s) => s.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-');

    static List<string> Named(Options o, Metadata metadata, string? topic, bool exists)
    {
        var known = metadata.Topics.Where(t => t.Error.Code == ErrorCode.NoError).Select(t => t.Topic).ToHashSet(StringComparer.Ordinal);
        bool excludeInternal = o.Has("exclude-internal");
        if (topic is null)
            return known.Where(t => !(excludeInternal && t.StartsWith("__", StringComparison.Ordinal))).Order(StringComparer.Ordinal).ToList();
        var filter = Pattern(o, topic);
        var names = known.Where(t => filter.IsMatch(t) && !(excludeInternal && t.StartsWith("__", StringComparison.Ordinal))).Order(StringComparer.Ordinal).ToList();
        if (exists && !o.Has("if-exists"))
        {
            // Plain names given but not there are named one by one; an expression that matches nothing is named whole.
            var parts = topic.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var missing = parts.Where(n => IsPlainName(n) && !known.Contains(n)).ToList();
            if (missing.Count > 0)
                throw new FailedException(missing.Count == 1
                    ? $"topic '{missing[0]}' does not exist"
                    : $"topics {string.Join(", ", missing.Select(m => $"'{m}'"))} do not exist");
            if (names.Count == 0)
                throw new FailedException($"no topic matches --topic '{topic}'");
        }
        return names;
    }

    static int Describe(IAdminClient admin, Options o, Metadata metadata, string? topic)
    {
        var names = Named(o, metadata, topic, exists: true);
        if (names.Count == 0)
            return Program.ExitOk;
        var described = Kafka.Wait(admin.DescribeTopicsAsync(TopicCollection.OfTopicNames(names),
            new DescribeTopicsOptions { RequestTimeout = TimeSpan.FromSeconds(30) }), "describe topics");
        var configs = Kafka.Wait(admin.DescribeConfigsAsync(names.Select(n => new ConfigResource { Type = ResourceType.Topic, Name = n }),
            new DescribeConfigsOptions { RequestTimeout = TimeSpan.FromSeconds(30) }), "describe topic configs");
        var byName = configs.ToDictionary(c => c.ConfigResource.Name, StringComparer.Ordinal);
        var w = Console.Out;
        foreach (var t in described.TopicDescriptions.OrderBy(t => t.Name, StringComparer.Ordinal))
        {
            int rf = t.Partitions.Count > 0 ? t.Partitions[0].Replicas.Count : 0;
            var overrides = byName.TryGetValue(t.Name, out var c)
                ? string.Join(",", c.Entries.Values.Where(e => !e.IsDefault).OrderBy(e => e.Name, StringComparer.Ordinal).Select(e => $"{e.Name}={e.Value}"))
                : "";
            w.WriteLine($"Topic: {t.Name}\tTopicId: {t.TopicId}\tPartitionCount: {t.Partitions.Count}\tReplicationFactor: {rf}\tConfigs: {overrides}");
            foreach (var p in t.Partitions.OrderBy(p => p.Partition))
            {
                string leader = p.Leader is null ? "none" : p.Leader.Id.ToString(System.Globalization.CultureInfo.InvariantCulture);
                w.WriteLine($"\tTopic: {t.Name}\tPartition: {p.Partition}\tLeader: {leader}\tReplicas: {string.Join(",", p.Replicas.Select(r => r.Id))}\tIsr: {string.Join(",", p.ISR.Select(r => r.Id))}");
            }
        }
        return Program.ExitOk;
    }

    static int Alter(IAdminClient admin, Options o, Metadata metadata, string topic, int partitions, Dictionary<string, string> configs)
    {
        var names = Named(o, metadata, topic, exists: true);
        if (names.Count == 0)
            return Program.ExitOk;
        if (partitions > 0)
        {
            try
            {
                Kafka.Wait(admin.CreatePartitionsAsync(names.Select(n => new PartitionsSpecification { Topic = n, IncreaseTo = partitions }),
                    new CreatePartitionsOptions { RequestTimeout = TimeSpan.FromSeconds(30) }), "create partitions");
            }
            catch (CreatePartitionsException e)
            {
                var bad = e.Results.First(r => r.Error.Code != ErrorCode.NoError);
                throw new FailedException($"cannot change the partitions of topic '{bad.Topic}': {bad.Error.Reason}");
            }
        }
        if (configs.Count > 0)
        {
            var alter = names.ToDictionary(n => new ConfigResource { Type = ResourceType.Topic, Name = n },
                _ => configs.Select(kv => new ConfigEntry { Name = kv.Key, Value = kv.Value, IncrementalOperation = AlterConfigOpType.Set }).ToList());
            try
            {
                Kafka.Wait(admin.IncrementalAlterConfigsAsync(alter, new IncrementalAlterConfigsOptions { RequestTimeout = TimeSpan.FromSeconds(30) }),
                    "alter topic configs");
            }
            catch (IncrementalAlterConfigsException e)
            {
                var bad = e.Results.First(r => r.Error.Code != ErrorCode.NoError);
                throw new FailedException($"cannot change the configs of topic '{bad.ConfigResource.Name}': {bad.Error.Reason}");
            }
        }
        return Program.ExitOk;
    }

    static int Delete(IAdminClient admin, Options o, Metadata metadata, string topic)
    {
        var names = Named(o, metadata, topic, exists: true);
        if (names.Count == 0)
            return Program.ExitOk;
        try
        {
            Kafka.Wait(admin.DeleteTopicsAsync(names, new DeleteTopicsOptions { RequestTimeout = TimeSpan.FromSeconds(30) }), "delete topics");
        }
        catch (DeleteTopicsException e)
        {
            var bad = e.Results.First(r => r.Error.Code != ErrorCode.NoError);
            throw new FailedException($"cannot delete topic '{bad.Topic}': {bad.Error.Reason}");
        }
        return Program.ExitOk;
    }
}
