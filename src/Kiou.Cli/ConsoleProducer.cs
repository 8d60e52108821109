using System.Text;
using Confluent.Kafka;

namespace Kiou.Cli;

/// <summary>
/// bin/producer.sh, after Kafka's kafka-console-producer.sh: one record per line of standard input. Exits 0 once
/// every record is acknowledged, 1 with a clear message when any could not be delivered.
/// </summary>
public static class ConsoleProducer
{
    static readonly Flag[] Flags =
    [
        Kafka.BootstrapFlag,
        new("topic", "topic to produce to", "TOPIC"),
        new("acks", "0, 1 or all (-1) (default all)", "ACKS", Aliases: ["request-required-acks"]),
        new("compression-type", "none, gzip, snappy, lz4 or zstd (default none)", "CODEC", Aliases: ["compression-codec"]),
        new("property", "parse.key=true, key.separator=SEP (default tab), null.marker=TEXT", "KEY=VALUE", Repeatable: true),
        new("producer-property", "a librdkafka producer property such as linger.ms=10", "KEY=VALUE", Repeatable: true),
        new("producer.config", "file of producer properties (key=value lines)", "FILE", Aliases: ["command-config"]),
        new("sync", "wait for each record's acknowledgement before sending the next"),
    ];

    static readonly string[] Codecs = ["none", "gzip", "snappy", "lz4", "zstd"];

    public static int Run(string[] args)
    {
        var o = Options.Parse(args, "bin/producer.sh --topic TOPIC [--bootstrap-server HOST:PORT] [--acks 0|1|all] [FLAGS] < lines",
            "Sends one record per line of standard input (Kafka's kafka-console-producer.sh).", Flags);
        if (o is null)
            return Program.ExitOk;
        string topic = o.Required("topic");
        var kafka = new Kafka("producer", o);
        var acks = o.Get("acks", "all") switch
        {
            "0" => Acks.None,
            "1" => Acks.Leader,
            "all" or "-1" => Acks.All,
            var a => throw o.Fail($"--acks must be 0, 1 or all, not '{a}'"),
        };
        string codec = o.Get("compression-type", "none");
        if (!Codecs.Contains(codec))
            throw o.Fail($"--compression-type must be one of {string.Join(", ", Codecs)}, not '{codec}'");
        var props = o.Pairs("property");
        foreach (var k in props.Keys)
        {
            if (k is not ("parse.key" or "key.separator" or "null.marker" or "ignore.error"))
                throw o.Fail($"unknown --property {k} (known: parse.key, key.separator, null.marker)");
        }
        bool parseKey = props.GetValueOrDefault("parse.key", "false").Equals("true", StringComparison.OrdinalIgnoreCase);
        string separator = props.GetValueOrDefault("key.separator", "\t");
        if (separator.Length == 0)
            throw o.Fail("key.separator is empty");
        string? nullMarker = props.GetValueOrDefault("null.marker");

        var config = new ProducerConfig
        {
            BootstrapServers = kafka.Bootstrap,
            Acks = acks,
            CompressionType = Enum.Parse<CompressionType>(codec, ignoreCase: true),
            LingerMs = 5,
            // 30 s for a record to be acknowledged, 10 s for an unknown topic to count as missing: failures surface
            // as a message and exit code 1, not as minutes of silent retries.
            MessageTimeoutMs = 30000,
            TopicMetadataPropagationMaxMs = 10000,
        };
        Kafka.Apply(config, o, "producer-property", "producer.config");
        // As Kafka's producer since 3.0: idempotent unless set otherwise or acks is not all (then silently off).
        config.EnableIdempotence ??= config.Acks == Acks.All;
        using var producer = kafka.Build(() => new ProducerBuilder<byte[]?, byte[]?>(config)
            .SetErrorHandler((_, e) => kafka.OnError(e)).SetLogHandler((_, m) => kafka.OnLog(m)).Build(), o);
        using (var admin = new DependentAdminClientBuilder(producer.Handle).Build())
            kafka.Reach(admin);

        long sent = 0, delivered = 0, failed = 0;
        Error? firstError = null;
        void OnDelivery(DeliveryReport<byte[]?, byte[]?> r)
        {
            if (r.Error.Code == ErrorCode.NoError)
            {
                Interlocked.Increment(ref delivered);
                return;
            }
            if (Interlocked.Increment(ref failed) == 1)
                firstError = r.Error;
        }

        bool prompt = !Console.IsInputRedirected;
        using var input = new StreamReader(Console.OpenStandardInput(), new UTF8Encoding(false), detectEncodingFromByteOrderMarks: false, 1 << 16);
        long lineNumber = 0;
        while (true)
        {
            if (prompt)
                Console.Error.Write('>');
            var line = input.ReadLine();
            if (line is null)
                break;
            lineNumber++;
            byte[]? key = null;
            string value = line;
            if (parseKey)
            {
                int at = line.IndexOf(separator, StringComparison.Ordinal);
                if (at < 0)
                {
                    producer.Flush(TimeSpan.FromSeconds(30));
                    throw new FailedException($"no key separator '{Escape(separator)}' on line {lineNumber}: '{line}' (parse.key=true needs KEY{Escape(separator)}VALUE)");
                }
                var keyText = line[..at];
                key = keyText == nullMarker ? null : Encoding.UTF8.GetBytes(keyText);
                value = line[(at + separator.Length)..];
            }
            var message = new Message<byte[]?, byte[]?> { Key = key, Value = value == nullMarker ? null : Encoding.UTF8.GetBytes(value) };
            while (true)
            {
                try
                {
                    producer.Produce(topic, message, OnDelivery);
                    break;
                }
                catch (ProduceException<byte[]?, byte[]?> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
                {
                    producer.Poll(TimeSpan.FromMilliseconds(100));
                }
                catch (ProduceException<byte[]?, byte[]?> e)
                {
                    throw new FailedException($"cannot send line {lineNumber} to topic '{topic}': {e.Error.Reason}");
                }
            }
            sent++;
            if (o.Has("sync"))
                producer.Flush(TimeSpan.FromSeconds(60));
        }
        if (prompt)
            Console.Error.WriteLine();

        var deadline = DateTime.UtcNow.AddMilliseconds(config.MessageTimeoutMs!.Value + 10000);
        while (producer.Flush(TimeSpan.FromSeconds(1)) > 0)
        {
            if (DateTime.UtcNow > deadline)
                throw new FailedException($"{producer.Flush(TimeSpan.Zero)} of {sent} records to topic '{topic}' are still unacknowledged");
        }
        if (failed > 0)
        {
            var why = firstError!.Code == ErrorCode.Local_UnknownTopic || firstError.Code == ErrorCode.UnknownTopicOrPart
                ? $"topic '{topic}' does not exist and the broker does not create topics on first use: create it with bin/topics.sh --create --topic {topic}"
                : firstError.Code == ErrorCode.Local_MsgTimedOut
                    ? $"no acknowledgement from the broker at {kafka.Bootstrap} in time ({kafka.LastError ?? firstError.Reason})"
                    : $"{firstError.Reason} ({firstError.Code})";
            throw new FailedException($"{failed} of {sent} records were not delivered to topic '{topic}': {why}");
        }
        return Program.ExitOk;
    }

    static string Escape(string s) => s.Replace("\t", "\\t");
}
