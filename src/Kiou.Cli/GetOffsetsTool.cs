using System.Globalization;
using Confluent.Kafka;
using Confluent.Kafka.Admin;

namespace Kiou.Cli;

/// <summary>bin/get-offsets.sh, after Kafka's kafka-get-offsets.sh (GetOffsetShell): one line per partition,
/// <c>topic:partition:offset</c>, for the latest, earliest or max-timestamp offset, or the first offset at or after a
/// timestamp (empty when no record is that recent, as Kafka prints it).</summary>
public static class GetOffsetsTool
{
    static readonly Flag[] Flags =
    [
        Kafka.BootstrapFlag,
        new("topic", "a regular expression matching whole topic names (default: every topic)", "TOPIC"),
        new("partitions", "comma-separated partition ids or ranges, e.g. 0,3-5 (default: every partition)", "LIST"),
        new("time", "-1 or latest (default), -2 or earliest, -3 or max-timestamp, or a timestamp in ms", "TIME"),
        new("exclude-internal-topics", "leave out internal topics (__consumer_offsets...)"),
        new("command-config", "file of client properties (key=value lines)", "FILE"),
    ];

    public static int Run(string[] args)
    {
        var o = Options.Parse(args, "bin/get-offsets.sh [--bootstrap-server HOST:PORT] [--topic REGEX] [--partitions LIST] [--time TIME]",
            "Prints the offsets of partitions, topic:partition:offset per line (Kafka's kafka-get-offsets.sh).", Flags);
        if (o is null)
            return Program.ExitOk;
        OffsetSpec spec = Spec(o, o.Get("time", "-1"));
        var partitions = o.Get("partitions") is { } list ? Partitions(o, list) : null;
        var filter = o.Get("topic") is { } topic ? TopicsTool.Pattern(o, topic) : null;
        var kafka = new Kafka("get-offsets", o);
        var admin = kafka.Admin(o, null, "command-config");
        var metadata = kafka.Reach(admin);
        var wanted = new List<TopicPartitionOffsetSpec>();
        foreach (var t in metadata.Topics.Where(t => t.Error.Code == ErrorCode.NoError))
        {
            if (filter is not null && !filter.IsMatch(t.Topic))
                continue;
            if (o.Has("exclude-internal-topics") && t.Topic.StartsWith("__", StringComparison.Ordinal))
                continue;
            foreach (var p in t.Partitions)
            {
                if (partitions is null || partitions.Contains(p.PartitionId))
                    wanted.Add(new TopicPartitionOffsetSpec { TopicPartition = new TopicPartition(t.Topic, p.PartitionId), OffsetSpec = spec });
            }
        }
        if (wanted.Count == 0)
            throw new FailedException(filter is null ? "no partition matches --partitions" : $"no partition matches --topic '{o.Get("topic")}'{(partitions is null ? "" : " and --partitions")}");
        ListOffsetsResult result;
        try
        {
            result = Kafka.Wait(admin.ListOffsetsAsync(wanted, new ListOffsetsOptions { RequestTimeout = Kafka.ReachTimeout }), "listing offsets");
        }
        catch (ListOffsetsException e)
        {
            var bad = e.Result.ResultInfos.First(r => r.TopicPartitionOffsetError.Error.IsError).TopicPartitionOffsetError;
            throw new FailedException($"listing offsets of {bad.Topic}-{bad.Partition.Value} failed: {bad.Error.Reason}");
        }
        foreach (var r in result.ResultInfos.Select(r => r.TopicPartitionOffsetError)
            .OrderBy(r => r.Topic, StringComparer.Ordinal).ThenBy(r => r.Partition.Value))
        {
            long offset = r.Offset.Value;
            Console.Out.WriteLine($"{r.Topic}:{r.Partition.Value}:{(offset < 0 ? "" : offset.ToString(CultureInfo.InvariantCulture))}");
        }
        return Program.ExitOk;
    }

    static OffsetSpec Spec(Options o, string time) => time switch
    {
        "-1" or "latest" => OffsetSpec.Latest(),
        "-2" or "earliest" => OffsetSpec.Earliest(),
        "-3" or "max-timestamp" => OffsetSpec.MaxTimestamp(),
        _ when long.TryParse(time, NumberStyles.None, CultureInfo.InvariantCulture, out long ms) => OffsetSpec.ForTimestamp(ms),
        _ => throw o.Fail($"--time '{time}' is not -1 (latest), -2 (earliest), -3 (max-timestamp) or a timestamp in ms"),
    };

    static HashSet<int> Partitions(Options o, string list)
    {
        var set = new HashSet<int>();
        foreach (string part in list.Split(',', StringSplitOptions.TrimEntries))
        {
            string[] range = part.Split('-');
            if (range.Length is 1 or 2 && int.TryParse(range[0], NumberStyles.None, CultureInfo.InvariantCulture, out int from)
                && int.TryParse(range[^1], NumberStyles.None, CultureInfo.InvariantCulture, out int to) && from <= to && to - from < 1_000_000)
            {
                for (int p = from; p <= to; p++)
                    set.Add(p);
                continue;
            }
            throw o.Fail($"--partitions '{list}': '{part}' is not a partition id or a range such as 3-5");
        }
        return set;
    }
}
