using System.Diagnostics;
using System.Globalization;
using Confluent.Kafka;

namespace Kiou.Cli;

/// <summary>
/// bin/consumer-perf.sh, after Kafka's kafka-consumer-perf-test.sh (ConsumerPerformance.java): subscribes to the
/// topic in a consumer group, reads N records from the earliest offset (unless --from-latest), prints a progress
/// line every reporting interval (standard error) and Kafka's header and summary line at the end (standard
/// output). Values are measured, not copied: the value deserializer only returns their length.
/// </summary>
public static class ConsumerPerf
{
    static readonly Flag[] Flags =
    [
        Kafka.BootstrapFlag,
        new("topic", "topic to consume", "TOPIC"),
        new("messages", "how many records to read", "N"),
        new("group", "consumer group id (default perf-consumer-NNNNN)", "GROUP"),
        new("from-latest", "start at the log end when the group has no committed offset (default: earliest)"),
        new("timeout", "give up when no record arrived for this many ms (default 10000)", "MS"),
        new("reporting-interval", "ms between progress lines (default 5000)", "MS"),
        new("hide-header", "leave out the header line of the summary"),
        new("consumer-props", "consumer properties such as fetch.max.bytes=1048576", "K=V", Repeatable: true, Aliases: ["consumer-property"]),
        new("consumer.config", "file of consumer properties (key=value lines)", "FILE", Aliases: ["command-config"]),
    ];

    /// <summary>Returns the value's length: nothing to allocate, nothing to copy.</summary>
    sealed class LengthOnly : IDeserializer<int>
    {
        public int Deserialize(ReadOnlySpan<byte> data, bool isNull, SerializationContext context) => isNull ? 0 : data.Length;
    }

    public static int Run(string[] args)
    {
        var o = Options.Parse(args, "bin/consumer-perf.sh --topic T --messages N [--group G] [--bootstrap-server HOST:PORT] [FLAGS]",
            "Measures consume throughput (Kafka's kafka-consumer-perf-test.sh).", Flags);
        if (o is null)
            return Program.ExitOk;
        string topic = o.Required("topic");
        long messages = o.Long("messages", -1, 1);
        if (messages < 0)
            throw o.Fail("--messages is required");
        long timeoutMs = o.Long("timeout", 10000, 1);
        long reportingMs = o.Long("reporting-interval", 5000, 1);
        var kafka = new Kafka("consumer-perf", o);
        var config = new ConsumerConfig
        {
            BootstrapServers = kafka.Bootstrap,
            GroupId = o.Get("group") ?? "perf-consumer-" + Random.Shared.Next(100000).ToString(CultureInfo.InvariantCulture),
            AutoOffsetReset = o.Has("from-latest") ? AutoOffsetReset.Latest : AutoOffsetReset.Earliest,
            EnableAutoCommit = true,
            EnablePartitionEof = false,
            CheckCrcs = false,
        };
        Kafka.Apply(config, o, "consumer-props", "consumer.config");
        long joinStartMs = 0, joinedMs = -1;
        using var consumer = kafka.Build(() => new ConsumerBuilder<Ignore, int>(config)
            .SetValueDeserializer(new LengthOnly())
            .SetErrorHandler((_, e) => kafka.OnError(e)).SetLogHandler((_, m) => kafka.OnLog(m))
            .SetPartitionsAssignedHandler((_, _) =>
            {
                if (joinedMs < 0)
                    joinedMs = Environment.TickCount64;
            })
            .Build(), o);
        using (var admin = new DependentAdminClientBuilder(consumer.Handle).Build())
            Kafka.RequireTopic(kafka.Reach(admin), topic);

        using var stop = Kafka.StopOnSignals();
        var startTime = DateTime.Now;
        joinStartMs = Environment.TickCount64;
        consumer.Subscribe(topic);
        long count = 0, bytes = 0;
        long lastRecordMs = Environment.TickCount64;
        long windowStartMs = lastRecordMs, windowCount = 0, windowBytes = 0;
        long firstRecordMs = -1;
        bool timedOut = false;
        while (count < messages && !stop.IsCancellationRequested)
        {
            ConsumeResult<Ignore, int>? r;
            try
            {
                r = consumer.Consume(100);
            }
            catch (ConsumeException e) when (e.Error.IsFatal || e.Error.Code is ErrorCode.InvalidSessionTimeout or ErrorCode.InvalidGroupId
                or ErrorCode.GroupMaxSizeReached or ErrorCode.InconsistentGroupProtocol or ErrorCode.GroupAuthorizationFailed
                or ErrorCode.TopicAuthorizationFailed or ErrorCode.UnsupportedVersion or ErrorCode.UnknownTopicOrPart)
            {
                throw new FailedException($"cannot consume topic '{topic}' in group '{config.GroupId}': {e.Error.Reason}");
            }
            catch (ConsumeException e)
            {
                Console.Error.WriteLine($"consumer-perf: {e.Error.Reason}");
                continue;
            }
            long now = Environment.TickCount64;
            if (r is null)
            {
                if (now - lastRecordMs > timeoutMs)
                {
                    timedOut = true;
                    break;
                }
                continue;
            }
            if (firstRecordMs < 0)
                firstRecordMs = now;
            lastRecordMs = now;
            count++;
            bytes += r.Message.Value;
            windowCount++;
            windowBytes += r.Message.Value;
            if (now - windowStartMs >= reportingMs)
            {
                double s = (now - windowStartMs) / 1000.0;
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{count} records consumed, {windowCount / s:0.0} records/sec ({windowBytes / s / (1024 * 1024):0.00} MB/sec)"));
                windowStartMs = now;
                windowCount = windowBytes = 0;
            }
        }
        long endMs = Environment.TickCount64;
        var endTime = DateTime.Now;
        consumer.Close();
        if (timedOut)
            Console.Error.WriteLine($"WARNING: Exiting before consuming the expected number of messages: timeout ({timeoutMs} ms) exceeded. " +
                "You can use the --timeout option to increase the timeout.");

        // Kafka's columns: elapsed over the whole run; rebalance time is the wait for the first assignment, fetch
        // time the rest.
        double elapsedSec = (endMs - joinStartMs) / 1000.0;
        double rebalanceMs = joinedMs < 0 ? 0 : joinedMs - joinStartMs;
        double fetchSec = Math.Max(0.001, elapsedSec - rebalanceMs / 1000.0);
        double mb = bytes / (1024.0 * 1024.0);
        if (!o.Has("hide-header"))
            Console.Out.WriteLine("start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec");
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{startTime:yyyy-MM-dd HH:mm:ss:fff}, {endTime:yyyy-MM-dd HH:mm:ss:fff}, {mb:0.0000}, {mb / elapsedSec:0.0000}, {count}, {count / elapsedSec:0.0000}, {rebalanceMs:0}, {fetchSec * 1000:0}, {mb / fetchSec:0.0000}, {count / fetchSec:0.0000}"));
        return count < messages && !stop.IsCancellationRequested ? Program.ExitFailed : Program.ExitOk;
    }
}
