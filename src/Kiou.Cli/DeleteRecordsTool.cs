using System.Globalization;
using System.Text.Json;
using Confluent.Kafka;
using Confluent.Kafka.Admin;

namespace Kiou.Cli;

/// <summary>bin/delete-records.sh, after Kafka's kafka-delete-records.sh (DeleteRecordsCommand): deletes the records
/// below the offsets of an offset JSON file (<c>{"partitions":[{"topic":"t","partition":0,"offset":3}],"version":1}</c>,
/// offset -1 meaning the high watermark) and prints each partition's new low watermark, or its error, as Kafka does.
/// A partition that failed makes the exit code 1.</summary>
public static class DeleteRecordsTool
{
    static readonly Flag[] Flags =
    [
        Kafka.BootstrapFlag,
        new("offset-json-file", "JSON file of the partitions and the offsets to delete below: {\"partitions\":[{\"topic\":\"t\",\"partition\":0,\"offset\":3}],\"version\":1}; offset -1 deletes up to the high watermark", "FILE"),
        new("command-config", "file of client properties (key=value lines)", "FILE"),
    ];

    public static int Run(string[] args)
    {
        var o = Options.Parse(args, "bin/delete-records.sh [--bootstrap-server HOST:PORT] --offset-json-file FILE",
            "Deletes the records of partitions below the given offsets (Kafka's kafka-delete-records.sh).", Flags);
        if (o is null)
            return Program.ExitOk;
        string file = o.Required("offset-json-file");
        var wanted = Parse(o, file);
        var kafka = new Kafka("delete-records", o);
        using var admin = kafka.Admin(o, null, "command-config");
        var metadata = kafka.Reach(admin);
        Console.Out.WriteLine("Executing records delete operation");
        // librdkafka waits for a leader of a partition the broker does not have until its timeout: those are answered
        // here with the broker's error, as Kafka's admin client reports them.
        var known = wanted.Where(w => metadata.Topics.Any(t => t.Topic == w.Topic && t.Error.Code == ErrorCode.NoError && t.Partitions.Any(p => p.PartitionId == w.Partition.Value))).ToList();
        var reports = wanted.Except(known).Select(w => new DeleteRecordsReport { Topic = w.Topic, Partition = w.Partition, Offset = Offset.Unset, Error = new Error(ErrorCode.UnknownTopicOrPart) }).ToList();
        if (known.Count > 0)
        {
            try
            {
                var results = Kafka.Wait(admin.DeleteRecordsAsync(known, new DeleteRecordsOptions { RequestTimeout = TimeSpan.FromSeconds(30) }), "deleting records");
                reports.AddRange(results.Select(r => new DeleteRecordsReport { Topic = r.Topic, Partition = r.Partition, Offset = r.Offset, Error = new Error(ErrorCode.NoError) }));
            }
            catch (DeleteRecordsException e)
            {
                reports.AddRange(e.Results);
            }
            catch (KafkaException e)
            {
                throw new FailedException($"deleting records failed: {e.Error.Reason}");
            }
        }
        Console.Out.WriteLine("Records delete operation completed:");
        int failed = 0;
        foreach (var want in wanted)
        {
            var r = reports.FirstOrDefault(r => r.Topic == want.Topic && r.Partition == want.Partition);
            string name = $"{want.Topic}-{want.Partition.Value}";
            if (r is null)
            {
                failed++;
                Console.Out.WriteLine($"partition: {name}\terror: no answer from the broker");
            }
            else if (r.Error.IsError)
            {
                failed++;
                Console.Out.WriteLine($"partition: {name}\terror: {r.Error.Reason}");
            }
            else
            {
                Console.Out.WriteLine($"partition: {name}\tlow_watermark: {r.Offset.Value.ToString(CultureInfo.InvariantCulture)}");
            }
        }
        if (failed > 0)
            throw new FailedException($"records of {failed} of {wanted.Count} partition(s) were not deleted (see the errors above)");
        return Program.ExitOk;
    }

    /// <summary>Kafka's parseOffsetJsonStringWithoutDedup: version 1 (the default), a partitions array, no duplicates.</summary>
    static List<TopicPartitionOffset> Parse(Options o, string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw o.Fail($"cannot read {path}: {e.Message}");
        }
        var list = new List<TopicPartitionOffset>();
        try
        {
            using var doc = JsonDocument.Parse(text);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw o.Fail($"{path}: the input is not a JSON object");
            if (root.TryGetProperty("version", out var version) && (version.ValueKind != JsonValueKind.Number || !version.TryGetInt32(out int v) || v != 1))
                throw o.Fail($"{path}: not supported version field value {version.GetRawText()} (1 is)");
            if (!root.TryGetProperty("partitions", out var partitions) || partitions.ValueKind != JsonValueKind.Array)
                throw o.Fail($"{path}: missing partitions field");
            foreach (var p in partitions.EnumerateArray())
            {
                if (p.ValueKind != JsonValueKind.Object
                    || !p.TryGetProperty("topic", out var topic) || topic.ValueKind != JsonValueKind.String || topic.GetString() is not { Length: > 0 } name
                    || !p.TryGetProperty("partition", out var partition) || partition.ValueKind != JsonValueKind.Number || !partition.TryGetInt32(out int id) || id < 0
                    || !p.TryGetProperty("offset", out var offset) || offset.ValueKind != JsonValueKind.Number || !offset.TryGetInt64(out long at) || at < -1)
                    throw o.Fail($"{path}: {p.GetRawText()} is not {{\"topic\":NAME,\"partition\":ID,\"offset\":OFFSET}} with an offset of -1 or more");
                list.Add(new TopicPartitionOffset(name, id, at));
            }
        }
        catch (JsonException e)
        {
            throw o.Fail($"{path}: the input is not valid JSON ({e.Message})");
        }
        if (list.Count == 0)
            throw o.Fail($"{path}: the partitions field lists no partition");
        var duplicates = list.GroupBy(p => (p.Topic, p.Partition.Value)).Where(g => g.Count() > 1).Select(g => $"{g.Key.Topic}-{g.Key.Value}").ToList();
        if (duplicates.Count > 0)
            throw o.Fail($"{path}: offset json file contains duplicate topic partitions: {string.Join(",", duplicates)}");
        return list;
    }
}
