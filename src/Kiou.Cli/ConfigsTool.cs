using System.Globalization;
using System.Text.RegularExpressions;
using Confluent.Kafka;
using Confluent.Kafka.Admin;

namespace Kiou.Cli;

/// <summary>bin/configs.sh, after Kafka's kafka-configs.sh (ConfigCommand) for topics and brokers: --describe prints
/// the dynamic configs (every config with --all) with their synonyms in Kafka's format; --alter sets and deletes
/// configs through IncrementalAlterConfigs and prints "Completed updating config for topic t.".</summary>
public static partial class ConfigsTool
{
    static readonly Flag[] Flags =
    [
        Kafka.BootstrapFlag,
        new("describe", "list the configs of the entity (of every entity of the type without --entity-name)"),
        new("alter", "change the configs of the entity"),
        new("entity-type", "topics or brokers", "TYPE"),
        new("entity-name", "the topic name or broker id", "NAME"),
        new("topic", "shorthand for --entity-type topics --entity-name TOPIC", "TOPIC"),
        new("broker", "shorthand for --entity-type brokers --entity-name ID", "ID"),
        new("all", "with --describe: every config, not only those set dynamically"),
        new("add-config", "configs to set, k1=v1,k2=[v2,v3] (brackets around a value that holds commas)", "CONFIGS"),
        new("add-config-file", "file of configs to set (key=value lines)", "FILE"),
        new("delete-config", "configs to remove (back to their default), k1,k2", "KEYS"),
        new("command-config", "file of client properties (key=value lines)", "FILE"),
    ];

    public static int Run(string[] args)
    {
        var o = Options.Parse(args,
            "bin/configs.sh [--bootstrap-server HOST:PORT] --describe|--alter --entity-type topics|brokers [--entity-name NAME] [--all] [--add-config k1=v1,k2=[v2,v3]] [--delete-config k1,k2]",
            "Describes or changes the configs of topics and brokers (Kafka's kafka-configs.sh).", Flags);
        if (o is null)
            return Program.ExitOk;
        string action = o.OneOf("describe", "alter");
        var (type, name) = Entity(o);
        if (action == "describe")
        {
            foreach (var f in new[] { "add-config", "add-config-file", "delete-config" })
            {
                if (o.Has(f))
                    throw o.Fail($"--{f} is only valid with --alter");
            }
        }
        else
        {
            if (o.Has("all"))
                throw o.Fail("--all is only valid with --describe");
            if (name is null)
                throw o.Fail("--alter needs --entity-name");
            if (!o.Has("add-config") && !o.Has("add-config-file") && !o.Has("delete-config"))
                throw o.Fail("at least one of --add-config, --add-config-file or --delete-config must be given with --alter");
        }
        var add = action == "alter" ? ToAdd(o) : [];
        var delete = action == "alter" ? ToDelete(o) : [];
        if (add.Keys.Intersect(delete).FirstOrDefault() is { } both)
            throw o.Fail($"config {both} is both added and deleted");

        var kafka = new Kafka("configs", o);
        using var admin = kafka.Admin(o, null, "command-config");
        var metadata = kafka.Reach(admin);
        // librdkafka waits for an unknown broker id until its timeout: say so at once.
        if (type == ResourceType.Broker && name is not null && !metadata.Brokers.Any(x => x.BrokerId.ToString(CultureInfo.InvariantCulture) == name))
            throw new FailedException($"broker {name} is not in the cluster (its brokers: {string.Join(",", metadata.Brokers.Select(x => x.BrokerId))})");
        if (action == "describe")
        {
            IEnumerable<string> names = name is not null ? [name]
                : type == ResourceType.Topic ? metadata.Topics.Where(t => t.Error.Code == ErrorCode.NoError).Select(t => t.Topic).Order(StringComparer.Ordinal)
                : metadata.Brokers.Select(b => b.BrokerId.ToString(CultureInfo.InvariantCulture));
            foreach (var n in names)
                Describe(admin, type, n, o.Has("all"));
        }
        else
        {
            Alter(admin, type, name!, add, delete);
        }
        return Program.ExitOk;
    }

    // Kafka's --entity-default (the cluster-wide broker default, an empty resource name) is left out: Confluent.Kafka
    // refuses a config resource without a name.
    static (ResourceType Type, string? Name) Entity(Options o)
    {
        int given = (o.Has("entity-type") ? 1 : 0) + (o.Has("topic") ? 1 : 0) + (o.Has("broker") ? 1 : 0);
        if (given == 0)
            throw o.Fail("--entity-type (or --topic, --broker) is required");
        if (given > 1)
            throw o.Fail("give only one of --entity-type, --topic and --broker");
        if (o.Get("topic") is { } topic)
            return (ResourceType.Topic, NonEmpty(o, "topic", topic));
        if (o.Get("broker") is { } broker)
            return (ResourceType.Broker, BrokerId(o, broker));
        var type = o.Get("entity-type") switch
        {
            "topics" => ResourceType.Topic,
            "brokers" => ResourceType.Broker,
            var t => throw o.Fail($"--entity-type '{t}' is not supported: KIOU's configs tool knows topics and brokers"),
        };
        if (o.Get("entity-name") is not { } name)
            return (type, null);
        return (type, type == ResourceType.Broker ? BrokerId(o, name) : NonEmpty(o, "entity-name", name));
    }

    static string NonEmpty(Options o, string flag, string value) => value.Length > 0 ? value : throw o.Fail($"--{flag} is empty");

    static string BrokerId(Options o, string value) =>
        int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int id)
            ? id.ToString(CultureInfo.InvariantCulture)
            : throw o.Fail($"the broker name must be a broker id, not '{value}'");

    /// <summary>Kafka's parseConfigsToBeAdded: commas split entries except inside [ ]; brackets are dropped from values.</summary>
    static Dictionary<string, string> ToAdd(Options o)
    {
        var add = new Dictionary<string, string>(StringComparer.Ordinal);
        if (o.Get("add-config") is { } list)
        {
            foreach (string entry in TopLevelComma().Split(list))
            {
                if (entry.Length == 0)
                    continue;
                int eq = entry.IndexOf('=');
                if (eq <= 0)
                    throw o.Fail($"--add-config: '{entry}' is not key=value (use k1=v1,k2=[v2,v3])");
                string value = entry[(eq + 1)..];
                if (value.StartsWith('[') && value.EndsWith(']'))
                    value = value[1..^1];
                add[entry[..eq].Trim()] = value;
            }
        }
        if (o.Get("add-config-file") is { } file)
        {
            string[] lines;
            try
            {
                lines = File.ReadAllLines(file);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw o.Fail($"cannot read {file}: {e.Message}");
            }
            foreach (var raw in lines)
            {
                string line = raw.Trim();
                if (line.Length == 0 || line[0] is '#' or '!')
                    continue;
                int eq = line.IndexOf('=');
                if (eq <= 0)
                    throw o.Fail($"{file}: expected key=value, not '{line}'");
                add[line[..eq].Trim()] = line[(eq + 1)..].Trim();
            }
        }
        return add;
    }

    static List<string> ToDelete(Options o)
    {
        if (o.Get("delete-config") is not { } list)
            return [];
        var keys = list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToList();
        if (keys.Count == 0)
            throw o.Fail("--delete-config lists no config");
        return keys;
    }

    [GeneratedRegex(@",(?=[^\]]*(?:\[|$))")]
    private static partial Regex TopLevelComma();

    static string Title(ResourceType type, string name, bool all) =>
        $"{(all ? "All" : "Dynamic")} configs for {(type == ResourceType.Topic ? "topic" : "broker")} {name}";

    static void Describe(IAdminClient admin, ResourceType type, string name, bool all)
    {
        var entries = Fetch(admin, type, name, "describing");
        ConfigSource? only = all ? null : type == ResourceType.Topic ? ConfigSource.DynamicTopicConfig : ConfigSource.DynamicBrokerConfig;
        Console.Out.WriteLine($"{Title(type, name, all)} are:");
        foreach (var e in entries.Values.Where(e => only is null || e.Source == only).OrderBy(e => e.Name, StringComparer.Ordinal))
        {
            string synonyms = string.Join(", ", (e.Synonyms ?? []).Select(s => $"{SourceName(s.Source)}:{s.Name}={s.Value ?? "null"}"));
            Console.Out.WriteLine($"  {e.Name}={(e.IsSensitive ? "null" : e.Value ?? "null")} sensitive={(e.IsSensitive ? "true" : "false")} synonyms={{{synonyms}}}");
        }
    }

    static Dictionary<string, ConfigEntryResult> Fetch(IAdminClient admin, ResourceType type, string name, string what)
    {
        var resource = new ConfigResource { Type = type, Name = name };
        try
        {
            var results = Kafka.Wait(admin.DescribeConfigsAsync([resource], new DescribeConfigsOptions { RequestTimeout = Kafka.ReachTimeout }), $"{what} configs");
            return results.Single().Entries;
        }
        catch (DescribeConfigsException e)
        {
            var error = e.Results.FirstOrDefault()?.Error ?? e.Error;
            throw new FailedException(error.Code == ErrorCode.UnknownTopicOrPart
                ? $"topic '{name}' does not exist: create it with bin/topics.sh --create --topic {name}"
                : $"{what} the configs of {Describe(type, name)} failed: {error.Reason}");
        }
        catch (KafkaException e)
        {
            throw new FailedException($"{what} the configs of {Describe(type, name)} failed: {e.Error.Reason}");
        }
        catch (ArgumentException e)
        {
            throw new FailedException($"{what} the configs of {Describe(type, name)} failed: {e.Message}");
        }
    }

    static string Describe(ResourceType type, string name) => type == ResourceType.Topic ? $"topic {name}" : $"broker {name}";

    /// <summary>As Kafka's alterConfig: deleting a config that is not set fails before anything changes.</summary>
    static void Alter(IAdminClient admin, ResourceType type, string name, Dictionary<string, string> add, List<string> delete)
    {
        if (delete.Count > 0)
        {
            var current = Fetch(admin, type, name, "reading");
            var dynamicSource = type == ResourceType.Topic ? ConfigSource.DynamicTopicConfig : ConfigSource.DynamicBrokerConfig;
            var invalid = delete.Where(k => !current.TryGetValue(k, out var e) || e.Source != dynamicSource).ToList();
            if (invalid.Count > 0)
                throw new FailedException($"invalid config(s): {string.Join(",", invalid)} (not set on {Describe(type, name)})");
        }
        var ops = add.Select(kv => new ConfigEntry { Name = kv.Key, Value = kv.Value, IncrementalOperation = AlterConfigOpType.Set })
            .Concat(delete.Select(k => new ConfigEntry { Name = k, Value = "", IncrementalOperation = AlterConfigOpType.Delete }))
            .ToList();
        var resource = new ConfigResource { Type = type, Name = name };
        try
        {
            Kafka.Wait(admin.IncrementalAlterConfigsAsync(new Dictionary<ConfigResource, List<ConfigEntry>> { [resource] = ops },
                new IncrementalAlterConfigsOptions { RequestTimeout = TimeSpan.FromSeconds(30) }), "updating configs");
        }
        catch (IncrementalAlterConfigsException e)
        {
            var error = e.Results.FirstOrDefault()?.Error ?? e.Error;
            throw new FailedException(error.Code == ErrorCode.UnknownTopicOrPart
                ? $"topic '{name}' does not exist: create it with bin/topics.sh --create --topic {name}"
                : $"updating the configs of {Describe(type, name)} failed: {error.Reason}");
        }
        catch (KafkaException e)
        {
            throw new FailedException($"updating the configs of {Describe(type, name)} failed: {e.Error.Reason}");
        }
        catch (ArgumentException e)
        {
            throw new FailedException($"updating the configs of {Describe(type, name)} failed: {e.Message}");
        }
        Console.Out.WriteLine($"Completed updating config for {(type == ResourceType.Topic ? "topic" : "broker")} {name}.");
    }

    /// <summary>Kafka's ConfigEntry.ConfigSource names, as kafka-configs.sh prints them in synonyms.</summary>
    static string SourceName(ConfigSource source) => source switch
    {
        ConfigSource.DynamicTopicConfig => "DYNAMIC_TOPIC_CONFIG",
        ConfigSource.DynamicBrokerConfig => "DYNAMIC_BROKER_CONFIG",
        ConfigSource.DynamicDefaultBrokerConfig => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        ConfigSource.StaticBrokerConfig => "STATIC_BROKER_CONFIG",
        ConfigSource.DefaultConfig => "DEFAULT_CONFIG",
        _ => "UNKNOWN",
    };
}
