using System.Buffers.Binary;
using System.Text;
using Confluent.Kafka;
using Kiou.Protocol;
using Kiou.Protocol.Messages;
using static Kiou.Broker.Tests.RawWire;

namespace Kiou.Broker.Tests;

/// <summary>
/// Produce v0-2 and Fetch v0-3 with the legacy message formats (magic 0 and 1, docs/design/message-formats.md), driven
/// by real clients pinned to old protocol generations: librdkafka (api.version.request=false,
/// broker.version.fallback=0.9.0: Produce v1 and Fetch v1, message format v0) and kafka-python 2.0.2 with api_version
/// (0, 9), (0, 10, 0) and (0, 10, 1) (Produce v2 and Fetch v2/v3, message format v1). Old and new generations share a
/// topic and must see the same offsets, keys, values and timestamps. No group and no ListOffsets are used (those old
/// versions are tested elsewhere): consumers are assigned and seek to absolute offsets.
/// </summary>
public sealed class LegacyFormatTests
{
    static readonly string Filler = new('x', 300); // compressible, so librdkafka does not send the batch uncompressed

    static string CompatDir
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Kiou.sln")))
                    return Path.Combine(dir.FullName, "tests", "compat");
            }
            throw new DirectoryNotFoundException("tests/compat not found above " + AppContext.BaseDirectory);
        }
    }

    static void Pin(ClientConfig config, string fallback)
    {
        config.ApiVersionRequest = false;
        config.BrokerVersionFallback = fallback;
    }

    static IConsumer<byte[]?, byte[]?> AssignedConsumer(string bootstrap, string topic, long from, string? fallback)
    {
        var config = new ConsumerConfig
        {
            BootstrapServers = bootstrap,
            GroupId = "legacy-unused", // never joined: assign only, no commits
            EnableAutoCommit = false,
            EnablePartitionEof = true,
            CheckCrcs = true,
        };
        if (fallback is not null)
            Pin(config, fallback);
        var consumer = new ConsumerBuilder<byte[]?, byte[]?>(config).Build();
        consumer.Assign(new TopicPartitionOffset(topic, 0, from));
        return consumer;
    }

    static List<ConsumeResult<byte[]?, byte[]?>> ReadToEnd(IConsumer<byte[]?, byte[]?> consumer, int expected)
    {
        var results = new List<ConsumeResult<byte[]?, byte[]?>>();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (results.Count < expected)
        {
            Assert.True(DateTime.UtcNow < deadline, $"consumed {results.Count} of {expected} records");
            var r = consumer.Consume(TimeSpan.FromMilliseconds(200));
            if (r is null || r.IsPartitionEOF)
                continue;
            results.Add(r);
        }
        return results;
    }

    /// <summary>The codec of each stored batch of partition 0, read from its first segment file.</summary>
    /// <summary>The codecs in the order stored, each run of batches with one codec as one: how many batches a client
    /// sends its records in is its own (on a loaded machine a linger can expire between records).</summary>
    static List<int> CodecRuns(List<int> codecs) => codecs.Where((c, i) => i == 0 || codecs[i - 1] != c).ToList();

    static List<int> StoredCodecs(TestBroker broker, string topic)
    {
        string file = Directory.GetFiles(Path.Combine(broker.DataDir, topic + "-0"), "*.log").Order().First();
        byte[] log;
        using (var f = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
        {
            log = new byte[f.Length];
            f.ReadExactly(log);
        }
        var codecs = new List<int>();
        for (int p = 0; p + 61 <= log.Length;)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(log.AsSpan(p + 8));
            if (length == 0)
                break;
            Assert.Equal(2, log[p + 16]);
            codecs.Add(log[p + 22] & 7);
            p += 12 + length;
        }
        return codecs;
    }

    [Fact]
    public async Task Librdkafka_pinned_to_0_9_produces_every_codec_and_old_and_new_consumers_read_the_same_records()
    {
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, "legacy-rd", 1);
        string[] codecs = ["none", "gzip", "snappy", "lz4"];
        var sent = new List<(long Offset, string Key, string Value)>();
        foreach (string codec in codecs)
        {
            using var producer = Clients.Producer(broker.Bootstrap, Acks.Leader, Enum.Parse<CompressionType>(codec, ignoreCase: true),
                c => { Pin(c, "0.9.0"); c.LingerMs = 50; });
            var tasks = Enumerable.Range(0, 3).Select(i => producer.ProduceAsync("legacy-rd", new Message<byte[]?, byte[]?>
            {
                Key = Encoding.ASCII.GetBytes($"{codec}-k{i}"),
                Value = Encoding.ASCII.GetBytes($"{codec}-v{i}-{Filler}"),
            })).ToList();
            foreach (var t in tasks)
            {
                var r = await t;
                sent.Add((r.Offset.Value, Encoding.ASCII.GetString(r.Message.Key!), Encoding.ASCII.GetString(r.Message.Value!)));
            }
        }
        // Converted on append into one batch v2 per request, compressed as the producer compressed.
        Assert.Equal([0, 1, 2, 3], CodecRuns(StoredCodecs(broker, "legacy-rd")));
        Assert.Equal(Enumerable.Range(0, 12).Select(i => (long)i), sent.Select(s => s.Offset));

        // A current producer adds records with headers and timestamps; the old consumer gets them down-converted to
        // magic 0 (snappy and lz4 wrappers recompressed), the new one as they are.
        using (var producer = Clients.Producer(broker.Bootstrap, Acks.Leader, CompressionType.Lz4, c => c.LingerMs = 50))
        {
            for (int i = 0; i < 3; i++)
            {
                var r = await producer.ProduceAsync("legacy-rd", new Message<byte[]?, byte[]?>
                {
                    Key = Encoding.ASCII.GetBytes($"new-k{i}"),
                    Value = Encoding.ASCII.GetBytes($"new-v{i}-{Filler}"),
                    Timestamp = new Timestamp(1_700_000_000_000 + i, TimestampType.CreateTime),
                    Headers = [new Header("h", [1])],
                });
                sent.Add((r.Offset.Value, $"new-k{i}", $"new-v{i}-{Filler}"));
            }
        }

        using (var old = AssignedConsumer(broker.Bootstrap, "legacy-rd", 0, "0.9.0"))
        {
            var got = ReadToEnd(old, sent.Count);
            Assert.Equal(sent, got.Select(r => (r.Offset.Value, Encoding.ASCII.GetString(r.Message.Key!), Encoding.ASCII.GetString(r.Message.Value!))));
            Assert.All(got, r => Assert.Equal(TimestampType.NotAvailable, r.Message.Timestamp.Type)); // magic 0 has none
        }
        using (var old = AssignedConsumer(broker.Bootstrap, "legacy-rd", 13, "0.9.0"))
        {
            // From the middle of a down-converted compressed batch: the wrapper is whole, the client skips below 13.
            var got = ReadToEnd(old, 2);
            Assert.Equal([13L, 14L], got.Select(r => r.Offset.Value));
        }
        using (var current = AssignedConsumer(broker.Bootstrap, "legacy-rd", 0, null))
        {
            var got = ReadToEnd(current, sent.Count);
            Assert.Equal(sent, got.Select(r => (r.Offset.Value, Encoding.ASCII.GetString(r.Message.Key!), Encoding.ASCII.GetString(r.Message.Value!))));
            Assert.All(got.Take(12), r => Assert.Equal(-1, r.Message.Timestamp.UnixTimestampMs)); // written without one
            Assert.Equal([1_700_000_000_000L, 1_700_000_000_001L, 1_700_000_000_002L], got.Skip(12).Select(r => r.Message.Timestamp.UnixTimestampMs));
            Assert.All(got.Skip(12), r => Assert.Single(r.Message.Headers));
        }
    }

    /// <summary>librdkafka pinned to the later fallbacks produces with every codec; a current consumer reads it all.</summary>
    [Theory]
    [InlineData("0.10.0")]
    [InlineData("0.11.0")]
    public async Task Librdkafka_pinned_to_a_later_fallback_produces_every_codec(string fallback)
    {
        await using var broker = TestBroker.Start();
        string topic = "legacy-rd-" + fallback.Replace('.', '-');
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);
        var sent = new List<(long Offset, string Key, string Value)>();
        foreach (string codec in new[] { "none", "gzip", "snappy", "lz4" })
        {
            using var producer = Clients.Producer(broker.Bootstrap, Acks.Leader, Enum.Parse<CompressionType>(codec, ignoreCase: true),
                c => { Pin(c, fallback); c.LingerMs = 50; });
            var tasks = Enumerable.Range(0, 3).Select(i => producer.ProduceAsync(topic, new Message<byte[]?, byte[]?>
            {
                Key = Encoding.ASCII.GetBytes($"{codec}-k{i}"),
                Value = Encoding.ASCII.GetBytes($"{codec}-v{i}-{Filler}"),
            })).ToList();
            foreach (var t in tasks)
            {
                var r = await t;
                sent.Add((r.Offset.Value, Encoding.ASCII.GetString(r.Message.Key!), Encoding.ASCII.GetString(r.Message.Value!)));
            }
        }
        Assert.Equal([0, 1, 2, 3], CodecRuns(StoredCodecs(broker, topic)));
        Assert.Equal(Enumerable.Range(0, 12).Select(i => (long)i), sent.Select(x => x.Offset));
        foreach (string? reader in new[] { fallback, null })
        {
            using var consumer = AssignedConsumer(broker.Bootstrap, topic, 0, reader);
            var got = ReadToEnd(consumer, sent.Count);
            Assert.Equal(sent, got.Select(r => (r.Offset.Value, Encoding.ASCII.GetString(r.Message.Key!), Encoding.ASCII.GetString(r.Message.Value!))));
        }
    }

    static ChildProcess.Result KafkaPython(params string[] args)
    {
        var run = ChildProcess.Run("/usr/bin/python3", [Path.Combine(CompatDir, "kafka_python_legacy.py"), .. args], timeoutMs: 90_000);
        Assert.True(run.ExitCode == 0, $"kafka-python {string.Join(' ', args)}: exit code {run.ExitCode}\nstdout:\n{run.Stdout}\nstderr:\n{run.Stderr}");
        return run;
    }

    static IEnumerable<string> Lines(ChildProcess.Result run, string prefix) =>
        run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Where(l => l.StartsWith(prefix, StringComparison.Ordinal));

    [Fact]
    public async Task Kafka_python_old_generations_and_current_librdkafka_read_each_others_records_on_one_topic()
    {
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, "legacy-mixed", 1);

        // Old producers: (0, 9) writes magic 0 (no timestamp), (0, 10, x) magic 1 with CreateTime.
        var expected = new List<(long Offset, long Timestamp, string? Key, string Value)>();
        foreach (string api in new[] { "0.9", "0.10.0", "0.10.1", "0.11", "1.0" })
        {
            foreach (string codec in new[] { "none", "gzip" })
            {
                string prefix = $"kp{api}{codec}";
                var run = KafkaPython(broker.Bootstrap, "legacy-mixed", api, "produce", codec, prefix, "3");
                int i = 0;
                foreach (string line in Lines(run, "offset "))
                {
                    string[] f = line.Split(' ');
                    expected.Add((long.Parse(f[1]), long.Parse(f[2]), $"k-{i}", $"{prefix}-{i}"));
                    i++;
                }
                Assert.Equal(3, i);
            }
        }
        Assert.Equal(Enumerable.Range(0, 30).Select(i => (long)i), expected.Select(e => e.Offset));
        Assert.All(expected.Take(6), e => Assert.Equal(-1, e.Timestamp));
        Assert.All(expected.Skip(6), e => Assert.True(e.Timestamp > 1_600_000_000_000, $"timestamp {e.Timestamp}"));
        Assert.Equal([0, 1, 0, 1, 0, 1, 0, 1, 0, 1], CodecRuns(StoredCodecs(broker, "legacy-mixed")));

        // A current producer, gzip and none, with headers (dropped for old consumers) and timestamps.
        foreach (var codec in new[] { CompressionType.Gzip, CompressionType.None })
        {
            using var producer = Clients.Producer(broker.Bootstrap, Acks.Leader, codec, c => c.LingerMs = 50);
            var tasks = Enumerable.Range(0, 3).Select(i => producer.ProduceAsync("legacy-mixed", new Message<byte[]?, byte[]?>
            {
                Key = i == 1 ? null : Encoding.ASCII.GetBytes($"k-{i}"),
                Value = Encoding.ASCII.GetBytes($"new{codec}-{i}-{Filler}"),
                Timestamp = new Timestamp(1_700_000_000_000 + i, TimestampType.CreateTime),
                Headers = [new Header("h", [1])],
            })).ToList();
            int i = 0;
            foreach (var t in tasks)
            {
                var r = await t;
                expected.Add((r.Offset.Value, 1_700_000_000_000 + i, i == 1 ? null : $"k-{i}", $"new{codec}-{i}-{Filler}"));
                i++;
            }
        }

        // The current librdkafka consumer reads what the old producers wrote, with their timestamps (-1 for magic 0).
        using (var current = AssignedConsumer(broker.Bootstrap, "legacy-mixed", 0, null))
        {
            var got = ReadToEnd(current, expected.Count);
            Assert.Equal(expected, got.Select(r => (r.Offset.Value, r.Message.Timestamp.UnixTimestampMs,
                r.Message.Key is null ? null : Encoding.ASCII.GetString(r.Message.Key), Encoding.ASCII.GetString(r.Message.Value!))));
        }

        // Each old consumer reads everything, the current producer's records included (down-converted before 0.11).
        foreach (string api in new[] { "0.9", "0.10.0", "0.10.1", "0.11", "1.0" })
        {
            var run = KafkaPython(broker.Bootstrap, "legacy-mixed", api, "consume", "0", expected.Count.ToString());
            var got = Lines(run, "record ").Select(l => l.Split(' ', 6)).Select(f => (Offset: long.Parse(f[1]), Timestamp: f[2], Type: f[3], Key: f[4] == "None" ? null : f[4], Value: f[5])).ToList();
            Assert.Equal(expected.Select(e => (e.Offset, e.Key, e.Value)), got.Select(g => (g.Offset, g.Key, g.Value)));
            if (api == "0.9")
                Assert.All(got, g => Assert.Equal("None", g.Timestamp)); // magic 0: no timestamp
            else
                Assert.Equal(expected.Select(e => e.Timestamp.ToString()), got.Select(g => g.Timestamp));
        }
    }

    [Fact]
    public async Task A_log_append_time_topic_answers_produce_v2_with_the_append_time_and_fetch_v3_carries_it()
    {
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, "legacy-lat", 1, new() { ["message.timestamp.type"] = "LogAppendTime" });
        long before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var produced = new List<long>();
        foreach (string codec in new[] { "gzip", "none" })
        {
            // kafka-python reports Produce v2's log_append_time as the record's timestamp when it is not -1.
            var run = KafkaPython(broker.Bootstrap, "legacy-lat", "0.10.0", "produce", codec, "lat" + codec, "2");
            produced.AddRange(Lines(run, "offset ").Select(l => long.Parse(l.Split(' ')[2])));
        }
        Assert.All(produced, t => Assert.InRange(t, before, before + 60_000));

        var read = KafkaPython(broker.Bootstrap, "legacy-lat", "0.10.1", "consume", "0", "4");
        var got = Lines(read, "record ").Select(l => l.Split(' ')).ToList();
        Assert.Equal(produced.Select(t => t.ToString()), got.Select(f => f[2]));
        Assert.All(got, f => Assert.Equal("1", f[3])); // LogAppendTime, from the wrapper for the compressed batch
    }

    [Fact]
    public async Task Old_requests_get_kafkas_answers_bad_crc_zstd_and_the_versions_advertised()
    {
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, "legacy-wire", 1);
        using var s = await ConnectAsync(broker.Broker.BrokerEndPoint);

        var versions = await SendAsync<ApiVersionsResponse>(s, new ApiVersionsRequest(), ApiVersionsRequest.ApiKey, 0, 1);
        Assert.Equal(0, versions.ApiKeys.Single(k => k.ApiKey == ProduceRequest.ApiKey).MinVersion);
        Assert.Equal(0, versions.ApiKeys.Single(k => k.ApiKey == FetchRequest.ApiKey).MinVersion);

        byte[] good = Message(1, "a", "b", 1_700_000_000_000);
        byte[] bad = (byte[])good.Clone();
        bad[^1] ^= 1;
        for (short v = 0; v <= 2; v++)
        {
            var refused = await ProduceAsync(s, bad, v, 10 + v);
            Assert.Equal(ErrorCodes.CorruptMessage, refused.ErrorCode);
            var ok = await ProduceAsync(s, good, v, 20 + v);
            Assert.Equal(ErrorCodes.None, ok.ErrorCode);
            Assert.Equal(v, ok.BaseOffset);
        }

        // Stored zstd cannot be carried by Fetch v0-3: UNSUPPORTED_COMPRESSION_TYPE, as Kafka answers.
        using (var producer = Clients.Producer(broker.Bootstrap, Acks.Leader, CompressionType.Zstd, c => c.LingerMs = 20))
            await producer.ProduceAsync("legacy-wire", new Message<byte[]?, byte[]?> { Value = Encoding.ASCII.GetBytes(Filler) });
        for (short v = 0; v <= 3; v++)
        {
            var head = await FetchAsync(s, 0, v, 30 + v);
            Assert.Equal(ErrorCodes.None, head.ErrorCode);
            Assert.Equal(v < 2 ? 0 : 1, head.Records!.Value.Span[16]); // the magic this version carries
            var zstd = await FetchAsync(s, 3, v, 40 + v);
            Assert.Equal(ErrorCodes.UnsupportedCompressionType, zstd.ErrorCode);
            Assert.Equal(4, zstd.HighWatermark);

            // Three messages, then the zstd batch ends the answer; a limit below one message still returns it whole.
            var all = await FetchAsync(s, 0, v, 50 + v);
            Assert.Equal([0L, 1L, 2L], Offsets(all.Records!.Value.ToArray()));
            var small = await FetchAsync(s, 0, v, 60 + v, maxBytes: 10);
            Assert.Equal([0L], Offsets(small.Records!.Value.ToArray()));
        }
    }

    static async Task<ProduceResponse.PartitionProduceResponse> ProduceAsync(System.Net.Sockets.Socket s, byte[] records, short version, int correlation)
    {
        var request = new ProduceRequest
        {
            Acks = 1,
            TimeoutMs = 5000,
            TopicData = [new ProduceRequest.TopicProduceData { Name = "legacy-wire", PartitionData = [new ProduceRequest.PartitionProduceData { Index = 0, Records = records }] }],
        };
        var response = await SendAsync<ProduceResponse>(s, request, ProduceRequest.ApiKey, version, correlation);
        return response.Responses[0].PartitionResponses[0];
    }

    static List<long> Offsets(byte[] messages)
    {
        var offsets = new List<long>();
        for (int p = 0; p < messages.Length; p += 12 + BinaryPrimitives.ReadInt32BigEndian(messages.AsSpan(p + 8)))
            offsets.Add(BinaryPrimitives.ReadInt64BigEndian(messages.AsSpan(p)));
        return offsets;
    }

    static async Task<FetchResponse.PartitionData> FetchAsync(System.Net.Sockets.Socket s, long offset, short version, int correlation, int maxBytes = 1 << 20)
    {
        var request = new FetchRequest
        {
            ReplicaId = -1,
            MaxWaitMs = 0,
            MinBytes = 1,
            MaxBytes = 1 << 20,
            Topics = [new FetchRequest.FetchTopic { Topic = "legacy-wire", Partitions = [new FetchRequest.FetchPartition { Partition = 0, FetchOffset = offset, PartitionMaxBytes = maxBytes }] }],
        };
        var response = await SendAsync<FetchResponse>(s, request, FetchRequest.ApiKey, version, correlation);
        return response.Responses[0].Partitions[0];
    }

    /// <summary>One uncompressed legacy message at offset 0 with a correct CRC-32.</summary>
    static byte[] Message(byte magic, string key, string value, long timestamp)
    {
        byte[] k = Encoding.ASCII.GetBytes(key), v = Encoding.ASCII.GetBytes(value);
        int size = (magic == 0 ? 14 : 22) + k.Length + v.Length;
        byte[] m = new byte[12 + size];
        BinaryPrimitives.WriteInt32BigEndian(m.AsSpan(8), size);
        m[16] = magic;
        int p = 18;
        if (magic == 1)
        {
            BinaryPrimitives.WriteInt64BigEndian(m.AsSpan(p), timestamp);
            p += 8;
        }
        BinaryPrimitives.WriteInt32BigEndian(m.AsSpan(p), k.Length);
        k.CopyTo(m, p + 4);
        p += 4 + k.Length;
        BinaryPrimitives.WriteInt32BigEndian(m.AsSpan(p), v.Length);
        v.CopyTo(m, p + 4);
        BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(12), Kiou.Protocol.Records.Crc32.Compute(m.AsSpan(16)));
        return m;
    }
}
