using System.Text;
using Confluent.Kafka;

namespace Kiou.Cli;

/// <summary>
/// bin/consumer.sh, after Kafka's kafka-console-consumer.sh. Prints one record per line on standard output.
/// Without --follow it stops once it has reached the end of every partition assigned to it; with --group it joins
/// that consumer group and commits its offsets (at the end, and every 5 s while it runs). Without --group it uses a
/// generated group id and commits nothing, as Kafka's tool does; with --partition it reads that partition directly
/// (no group coordinator involved unless --group is given too).
/// </summary>
public static class ConsoleConsumer
{
    static readonly Flag[] Flags =
    [
        Kafka.BootstrapFlag,
        new("topic", "topic to consume", "TOPIC"),
        new("group", "consumer group id (default console-consumer-NNNNN, offsets not committed)", "GROUP"),
        new("from-beginning", "start at the earliest offset when the group has no committed offset"),
        new("follow", "keep waiting for new records at the end (default: exit once caught up)"),
        new("max-messages", "exit after N records", "N"),
        new("timeout-ms", "exit when no record arrived for this long", "MS"),
        new("partition", "read only this partition, assigned directly", "P"),
        new("offset", "with --partition: earliest, latest or an offset (default latest, or earliest with --from-beginning)", "OFFSET"),
        new("session-timeout-ms", "group session timeout (default 45000)", "MS"),
        new("isolation-level", "read_uncommitted or read_committed (default read_uncommitted)", "LEVEL"),
        new("property", "print.key, print.offset, print.partition, print.timestamp, print.headers, print.value=true|false; key.separator, line.separator", "KEY=VALUE", Repeatable: true),
        new("consumer-property", "a librdkafka consumer property such as fetch.max.bytes=1048576", "KEY=VALUE", Repeatable: true),
        new("consumer.config", "file of consumer properties (key=value lines)", "FILE", Aliases: ["command-config"]),
    ];

    static readonly string[] PrintProps =
        ["print.key", "print.offset", "print.partition", "print.timestamp", "print.headers", "print.value", "key.separator", "line.separator", "headers.separator"];

    public static int Run(string[] args)
    {
        var o = Options.Parse(args, "bin/consumer.sh --topic TOPIC [--bootstrap-server HOST:PORT] [--group GROUP] [--from-beginning] [--follow] [FLAGS]",
            "Prints the records of a topic, one per line (Kafka's kafka-console-consumer.sh).", Flags);
        if (o is null)
            return Program.ExitOk;
        string topic = o.Required("topic");
        var kafka = new Kafka("consumer", o);
        long maxMessages = o.Long("max-messages", long.MaxValue, 1);
        long timeoutMs = o.Long("timeout-ms", -1, 0);
        int partition = o.Int("partition", -1, 0);
        if (o.Has("offset") && partition < 0)
            throw o.Fail("--offset needs --partition");
        var props = o.Pairs("property");
        foreach (var k in props.Keys)
        {
            if (!PrintProps.Contains(k))
                throw o.Fail($"unknown --property {k} (known: {string.Join(", ", PrintProps)})");
        }
        var format = new Format(props);
        string? group = o.Get("group");
        string isolation = o.Get("isolation-level", "read_uncommitted");
        if (isolation is not ("read_uncommitted" or "read_committed"))
            throw o.Fail($"--isolation-level must be read_uncommitted or read_committed, not '{isolation}'");
        bool assignMode = partition >= 0;
        var config = new ConsumerConfig
        {
            BootstrapServers = kafka.Bootstrap,
            AutoOffsetReset = o.Has("from-beginning") ? AutoOffsetReset.Earliest : AutoOffsetReset.Latest,
            EnablePartitionEof = true,
            IsolationLevel = isolation == "read_committed" ? IsolationLevel.ReadCommitted : IsolationLevel.ReadUncommitted,
            SessionTimeoutMs = o.Int("session-timeout-ms", 45000, 1),
            AutoCommitIntervalMs = 5000,
        };
        if (group is not null)
        {
            config.GroupId = group;
            config.EnableAutoCommit = true;
        }
        else
        {
            // Kafka's console consumer: a throw-away group whose offsets are not worth committing (with --partition
            // it is never joined, but Confluent.Kafka wants a group id).
            config.GroupId = "console-consumer-" + Random.Shared.Next(100000).ToString(System.Globalization.CultureInfo.InvariantCulture);
            config.EnableAutoCommit = false;
        }
        Kafka.Apply(config, o, "consumer-property", "consumer.config");
        bool commits = config.EnableAutoCommit == true;

        var assigned = new HashSet<TopicPartition>();
        var atEnd = new HashSet<TopicPartition>();
        using var consumer = kafka.Build(() => new ConsumerBuilder<byte[]?, byte[]?>(config)
            .SetErrorHandler((_, e) => kafka.OnError(e)).SetLogHandler((_, m) => kafka.OnLog(m))
            .SetPartitionsAssignedHandler((_, ps) =>
            {
                foreach (var p in ps)
                    assigned.Add(p);
            })
            .SetPartitionsRevokedHandler((_, ps) =>
            {
                foreach (var p in ps)
                {
                    assigned.Remove(p.TopicPartition);
                    atEnd.Remove(p.TopicPartition);
                }
            })
            .SetPartitionsLostHandler((_, ps) =>
            {
                foreach (var p in ps)
                {
                    assigned.Remove(p.TopicPartition);
                    atEnd.Remove(p.TopicPartition);
                }
            })
            .Build(), o);
        using (var admin = new DependentAdminClientBuilder(consumer.Handle).Build())
        {
            var metadata = kafka.Reach(admin);
            var t = Kafka.RequireTopic(metadata, topic);
            if (assignMode && !t.Partitions.Any(p => p.PartitionId == partition))
                throw new FailedException($"topic '{topic}' has no partition {partition} (it has {t.Partitions.Count})");
        }

        if (assignMode)
        {
            Offset start = o.Get("offset") switch
            {
                null => o.Has("from-beginning") ? Offset.Beginning : Offset.End,
                "earliest" => Offset.Beginning,
                "latest" => Offset.End,
                var s when long.TryParse(s, out long n) && n >= 0 => new Offset(n),
                var s => throw o.Fail($"--offset must be earliest, latest or a non-negative offset, not '{s}'"),
            };
            var tp = new TopicPartition(topic, partition);
            assigned.Add(tp);
            consumer.Assign(new TopicPartitionOffset(tp, group is not null && o.Get("offset") is null ? Offset.Stored : start));
        }
        else
            consumer.Subscribe(topic);

        using var stop = Kafka.StopOnSignals();
        var output = new BufferedStream(Console.OpenStandardOutput(), 1 << 16);
        long count = 0;
        long lastRecordMs = Environment.TickCount64;
        bool follow = o.Has("follow");
        int exit = Program.ExitOk;
        try
        {
            while (!stop.IsCancellationRequested && count < maxMessages)
            {
                ConsumeResult<byte[]?, byte[]?>? r;
                try
                {
                    r = consumer.Consume(100);
                }
                catch (ConsumeException e) when (e.Error.Code is ErrorCode.UnknownTopicOrPart or ErrorCode.Local_UnknownTopic)
                {
                    throw new FailedException($"topic '{topic}' does not exist (it may have been deleted)");
                }
                catch (ConsumeException e) when (e.Error.Code == ErrorCode.InvalidSessionTimeout)
                {
                    throw new FailedException($"the broker refuses --session-timeout-ms {config.SessionTimeoutMs} for group '{config.GroupId}' " +
                        "(outside its group.min/max.session.timeout.ms; KIOU: KIOU_GROUP_MIN_SESSION_TIMEOUT_MS, KIOU_GROUP_MAX_SESSION_TIMEOUT_MS)");
                }
                catch (ConsumeException e) when (e.Error.IsFatal || e.Error.Code is ErrorCode.InvalidGroupId or ErrorCode.GroupMaxSizeReached
                    or ErrorCode.InconsistentGroupProtocol or ErrorCode.GroupAuthorizationFailed or ErrorCode.TopicAuthorizationFailed
                    or ErrorCode.UnsupportedVersion)
                {
                    throw new FailedException($"cannot consume topic '{topic}' in group '{config.GroupId}': {e.Error.Reason}");
                }
                catch (ConsumeException e)
                {
                    Console.Error.WriteLine($"consumer: {e.Error.Reason}");
                    continue;
                }
                if (r is null)
                {
                    output.Flush();
                    if (timeoutMs >= 0 && Environment.TickCount64 - lastRecordMs > timeoutMs)
                        break;
                    continue;
                }
                if (r.IsPartitionEOF)
                {
                    output.Flush();
                    atEnd.Add(r.TopicPartition);
                    if (!follow && assigned.Count > 0 && assigned.IsSubsetOf(atEnd))
                        break;
                    continue;
                }
                atEnd.Remove(r.TopicPartition);
                lastRecordMs = Environment.TickCount64;
                format.Write(output, r);
                count++;
            }
            output.Flush();
        }
        catch (IOException)
        {
            // Standard output closed (`| head`): stop as Kafka's tool does, still committing what was read.
        }
        finally
        {
            if (commits)
            {
                try
                {
                    consumer.Commit();
                }
                catch (KafkaException e) when (e.Error.Code == ErrorCode.Local_NoOffset)
                {
                }
                catch (KafkaException e)
                {
                    Console.Error.WriteLine($"consumer: could not commit the offsets of group '{group}': {e.Error.Reason}");
                    exit = Program.ExitFailed;
                }
            }
            consumer.Close();
        }
        Console.Error.WriteLine($"Processed a total of {count} messages");
        return exit;
    }

    /// <summary>Kafka's DefaultMessageFormatter: [timestamp] [partition] [offset] [headers] [key] value, separated by key.separator.</summary>
    sealed class Format
    {
        readonly bool _key, _offset, _partition, _timestamp, _headers, _value;
        readonly byte[] _separator, _lineSeparator, _headersSeparator;
        static readonly byte[] Null = "null"u8.ToArray();

        public Format(Dictionary<string, string> p)
        {
            bool On(string k, bool d) => p.TryGetValue(k, out var v) ? v.Equals("true", StringComparison.OrdinalIgnoreCase) : d;
            _key = On("print.key", false);
            _offset = On("print.offset", false);
            _partition = On("print.partition", false);
            _timestamp = On("print.timestamp", false);
            _headers = On("print.headers", false);
            _value = On("print.value", true);
            _separator = Encoding.UTF8.GetBytes(Unescape(p.GetValueOrDefault("key.separator", "\t")));
            _lineSeparator = Encoding.UTF8.GetBytes(Unescape(p.GetValueOrDefault("line.separator", "\n")));
            _headersSeparator = Encoding.UTF8.GetBytes(Unescape(p.GetValueOrDefault("headers.separator", ",")));
        }

        static string Unescape(string s) => s.Replace("\\t", "\t").Replace("\\n", "\n");

        public void Write(Stream w, ConsumeResult<byte[]?, byte[]?> r)
        {
            bool first = true;
            void Sep()
            {
                if (!first)
                    w.Write(_separator);
                first = false;
            }
            if (_timestamp)
            {
                Sep();
                var ts = r.Message.Timestamp;
                Ascii(w, ts.Type switch
                {
                    TimestampType.CreateTime => "CreateTime:" + ts.UnixTimestampMs,
                    TimestampType.LogAppendTime => "LogAppendTime:" + ts.UnixTimestampMs,
                    _ => "NO_TIMESTAMP",
                });
            }
            if (_partition)
            {
                Sep();
                Ascii(w, "Partition:" + r.Partition.Value);
            }
            if (_offset)
            {
                Sep();
                Ascii(w, "Offset:" + r.Offset.Value);
            }
            if (_headers)
            {
                Sep();
                var hs = r.Message.Headers;
                if (hs is null || hs.Count == 0)
                    Ascii(w, "NO_HEADERS");
                else
                {
                    for (int i = 0; i < hs.Count; i++)
                    {
                        if (i > 0)
                            w.Write(_headersSeparator);
                        Ascii(w, hs[i].Key);
                        w.WriteByte((byte)':');
                        w.Write(hs[i].GetValueBytes() ?? Null);
                    }
                }
            }
            if (_key)
            {
                Sep();
                w.Write(r.Message.Key ?? Null);
            }
            if (_value)
            {
                Sep();
                w.Write(r.Message.Value ?? Null);
            }
            w.Write(_lineSeparator);
        }

        static void Ascii(Stream w, string s) => w.Write(Encoding.UTF8.GetBytes(s));
    }
}
