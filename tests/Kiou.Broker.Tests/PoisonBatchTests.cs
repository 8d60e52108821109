using System.Buffers.Binary;
using System.Net.Sockets;
using Confluent.Kafka;
using Kiou.Protocol;
using Kiou.Protocol.Messages;
using Kiou.Testing;

namespace Kiou.Broker.Tests;

/// <summary>
/// Issue 11 item 2: a batch with a correct CRC around a payload that does not decompress, or whose records disagree
/// with its header, is refused on produce (README §5.6) and nothing of it is stored, so librdkafka and kafka-python
/// consumers still read the partition to its end. Poison goes in as raw Produce requests; good records come from the
/// real clients, compressed with every codec.
/// </summary>
public sealed class PoisonBatchTests
{
    static readonly string[] Codecs = ["gzip", "snappy", "lz4", "zstd"];

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

    /// <summary>The poison cases for one codec: name, records field, expected code (null: 2 or 87), record index.</summary>
    static IEnumerable<(string Name, byte[] Records, short? Code, int Index)> Poison(string codec)
    {
        var rng = new Random(codec.Length);
        byte[] garbage = new byte[200];
        rng.NextBytes(garbage);
        // Raw snappy has no magic number, so noise may pass as a block and fail in the record walk instead.
        yield return ("garbage payload", CompressedBatches.Compressed(codec, TestBatches.Uncompressed(3), _ => garbage),
            codec == "snappy" ? null : ErrorCodes.CorruptMessage, 0);
        yield return ("truncated payload", CompressedBatches.Compressed(codec, TestBatches.Uncompressed(3), c => c[..^3]), null, -1);

        byte[] oneRecordCountedAsThree = TestBatches.Uncompressed(1);
        BinaryPrimitives.WriteInt32BigEndian(oneRecordCountedAsThree.AsSpan(23), 2); // lastOffsetDelta
        BinaryPrimitives.WriteInt32BigEndian(oneRecordCountedAsThree.AsSpan(57), 3); // recordsCount
        yield return ("header says 3 records, payload holds 1", CompressedBatches.Compressed(codec, oneRecordCountedAsThree), ErrorCodes.InvalidRecord, 1);

        byte[] offsetDeltas = TestBatches.Uncompressed(3);
        offsetDeltas[61 + 3] = 10; // record 0: length, attributes, timestamp delta, then offset delta 5 (zigzag 10)
        yield return ("offset delta 5 at record 0", CompressedBatches.Compressed(codec, offsetDeltas), ErrorCodes.InvalidRecord, 0);

        if (codec is "gzip" or "zstd" or "lz4")
        {
            // 40 MiB of zeros: past the bound of 32 × max.message.bytes, yet a few KiB on the wire.
            byte[] bomb = CompressedBatches.Compress(codec, new byte[40 << 20]);
            yield return ("zip bomb", CompressedBatches.Compressed(codec, TestBatches.Uncompressed(1), _ => bomb), ErrorCodes.InvalidRecord, 0);
        }

        // Kafka takes one batch per partition from Produce v3: a good batch followed by a poisoned one is refused whole.
        byte[] good = CompressedBatches.Compressed(codec, TestBatches.Uncompressed(2));
        yield return ("good batch then a poisoned one", [.. good, .. CompressedBatches.Compressed(codec, TestBatches.Uncompressed(3), _ => garbage)],
            ErrorCodes.InvalidRecord, -1);
    }

    [Fact]
    public async Task Poison_batches_of_every_codec_are_refused_and_librdkafka_reads_the_good_records_behind_them()
    {
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, "poison", 1);
        using (var s = await ConnectAsync(broker))
        {
            int correlation = 0;
            foreach (string codec in Codecs)
            {
                foreach (var (name, records, code, index) in Poison(codec))
                {
                    var pr = await ProduceAsync(s, "poison", records, 8, ++correlation);
                    string what = $"{codec}, {name}: error {pr.ErrorCode}, {pr.ErrorMessage}";
                    if (code is { } expected)
                        Assert.True(pr.ErrorCode == expected, what);
                    else
                        Assert.True(pr.ErrorCode is ErrorCodes.CorruptMessage or ErrorCodes.InvalidRecord, what);
                    Assert.False(string.IsNullOrEmpty(pr.ErrorMessage), what);
                    if (index >= 0)
                    {
                        var recordError = Assert.Single(pr.RecordErrors);
                        Assert.Equal(index, recordError.BatchIndex);
                        Assert.Equal(pr.ErrorMessage, recordError.BatchIndexErrorMessage);
                    }
                    Assert.Equal(-1, pr.BaseOffset);
                }
            }

            // Produce v7 has no record_errors or error_message: the code alone.
            byte[] countedAsThree = TestBatches.Uncompressed(1);
            BinaryPrimitives.WriteInt32BigEndian(countedAsThree.AsSpan(23), 2);
            BinaryPrimitives.WriteInt32BigEndian(countedAsThree.AsSpan(57), 3);
            var v7 = await ProduceAsync(s, "poison", CompressedBatches.Compressed("gzip", countedAsThree), 7, ++correlation);
            Assert.Equal(ErrorCodes.InvalidRecord, v7.ErrorCode);
            Assert.Empty(v7.RecordErrors);
            Assert.Null(v7.ErrorMessage);

            Assert.Equal(0, broker.Broker.Logs.Get("poison", 0)!.HighWatermark);

            // snappy as Java clients write it (xerial framing) is accepted.
            var xerial = await ProduceAsync(s, "poison", CompressedBatches.Compressed("snappy-xerial", GoodBatch(0, 3)), 8, ++correlation);
            Assert.Equal(ErrorCodes.None, xerial.ErrorCode);
            Assert.Equal(0, xerial.BaseOffset);
        }
        Assert.Matches("rejected a batch of [0-9]+ bytes for poison-0, nothing of it appended: Inner record offset delta 5 of record 0 should be 0", broker.LogText.ToString());

        // Good records behind the poison, from librdkafka with every codec.
        int next = 3;
        foreach (string codec in Codecs)
        {
            var compression = Enum.Parse<Confluent.Kafka.CompressionType>(codec, ignoreCase: true);
            using var producer = Clients.Producer(broker.Bootstrap, Acks.All, compression);
            var sends = new List<Task<DeliveryResult<byte[]?, byte[]?>>>();
            for (int i = 0; i < 50; i++)
                sends.Add(producer.ProduceAsync("poison", new Message<byte[]?, byte[]?> { Key = [(byte)i], Value = System.Text.Encoding.ASCII.GetBytes($"good-{next++} " + new string('x', 200)) }));
            foreach (var r in await Task.WhenAll(sends))
                Assert.Equal(PersistenceStatus.Persisted, r.Status);
        }

        var read = Clients.ReadAll(broker.Bootstrap, "poison", 1, TimeSpan.FromSeconds(30));
        Assert.Equal(next, read.Count);
        for (int i = 0; i < next; i++)
        {
            Assert.Equal(i, read[i].Offset.Value);
            Assert.StartsWith($"good-{i}", System.Text.Encoding.ASCII.GetString(read[i].Message.Value!));
        }
    }

    [Fact]
    public async Task After_refused_poison_kafka_python_reads_the_partition_to_its_end()
    {
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, "poison-kp", 1);
        using (var s = await ConnectAsync(broker))
        {
            int correlation = 0;
            foreach (string codec in Codecs)
            {
                foreach (var (name, records, _, _) in Poison(codec))
                {
                    if (name == "zip bomb")
                        continue;
                    var pr = await ProduceAsync(s, "poison-kp", records, 8, ++correlation);
                    Assert.True(pr.ErrorCode is ErrorCodes.CorruptMessage or ErrorCodes.InvalidRecord, $"{codec}, {name}: error {pr.ErrorCode}");
                }
            }
            // Good gzip batches (kafka-python decodes gzip without extra modules) between and after the poison.
            Assert.Equal(ErrorCodes.None, (await ProduceAsync(s, "poison-kp", CompressedBatches.Compressed("gzip", GoodBatch(0, 5)), 8, ++correlation)).ErrorCode);
            foreach (var (name, records, _, _) in Poison("gzip"))
            {
                if (name != "zip bomb")
                    Assert.NotEqual(ErrorCodes.None, (await ProduceAsync(s, "poison-kp", records, 8, ++correlation)).ErrorCode);
            }
        }
        using (var producer = Clients.Producer(broker.Bootstrap, Acks.All, Confluent.Kafka.CompressionType.Gzip))
        {
            for (int i = 5; i < 20; i++)
                await producer.ProduceAsync("poison-kp", new Message<byte[]?, byte[]?> { Value = System.Text.Encoding.ASCII.GetBytes($"good-{i}") });
        }

        var run = ChildProcess.Run("/usr/bin/python3", [Path.Combine(CompatDir, "kafka_python_consume_all.py"), broker.Bootstrap, "poison-kp", "20"],
            timeoutMs: 60_000);
        Assert.True(run.ExitCode == 0, $"exit code {run.ExitCode}\nstdout:\n{run.Stdout}\nstderr:\n{run.Stderr}");
        Assert.Contains("ok: consumed 20 records", run.Stdout);
    }

    /// <summary>An uncompressed batch of <paramref name="count"/> records with values good-N from <paramref name="first"/> on.</summary>
    static byte[] GoodBatch(int first, int count)
    {
        // TestBatches.Uncompressed's layout with other values: each record is
        // [length][attributes 0][timestampDelta][offsetDelta][key -1][value length][value][0 headers].
        var records = new List<byte>();
        for (int i = 0; i < count; i++)
        {
            byte[] value = System.Text.Encoding.ASCII.GetBytes($"good-{first + i}");
            byte[] body = [0, (byte)(i * 2), (byte)(i * 2), 1, (byte)(value.Length * 2), .. value, 0];
            records.Add((byte)(body.Length * 2));
            records.AddRange(body);
        }
        byte[] batch = TestBatches.Uncompressed(1);
        batch = [.. batch.AsSpan(0, 61), .. records];
        BinaryPrimitives.WriteInt32BigEndian(batch.AsSpan(8), batch.Length - 12);
        BinaryPrimitives.WriteInt32BigEndian(batch.AsSpan(23), count - 1);
        BinaryPrimitives.WriteInt32BigEndian(batch.AsSpan(57), count);
        Kiou.Protocol.Records.RecordBatch.UpdateCrc(batch);
        return batch;
    }

    static async Task<ProduceResponse.PartitionProduceResponse> ProduceAsync(Socket s, string topic, byte[] records, short version, int correlation)
    {
        var request = new ProduceRequest
        {
            Acks = -1,
            TimeoutMs = 5000,
            TopicData = [new ProduceRequest.TopicProduceData { Name = topic, PartitionData = [new ProduceRequest.PartitionProduceData { Index = 0, Records = records }] }],
        };
        var w = new KafkaWriter();
        int at = w.ReserveInt32();
        var header = new RequestHeader { RequestApiKey = 0, RequestApiVersion = version, CorrelationId = correlation, ClientId = "poison-test" };
        header.Write(w, ApiMessageTypes.RequestHeaderVersion(0, version));
        request.Write(w, version);
        w.PatchInt32(at, w.Length - 4);
        await s.SendAsync(w.WrittenSpan.ToArray(), SocketFlags.None);

        var size = new byte[4];
        await ReadExactlyAsync(s, size);
        var body = new byte[BinaryPrimitives.ReadInt32BigEndian(size)];
        await ReadExactlyAsync(s, body);
        Assert.Equal(correlation, BinaryPrimitives.ReadInt32BigEndian(body));
        var reader = new KafkaReader(body.AsMemory(4));
        var response = new ProduceResponse();
        response.Read(ref reader, version);
        Assert.False(reader.Failed);
        return response.Responses[0].PartitionResponses[0];
    }

    static async Task<Socket> ConnectAsync(TestBroker broker)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await s.ConnectAsync(broker.Broker.BrokerEndPoint);
        return s;
    }

    static async Task ReadExactlyAsync(Socket s, byte[] buffer)
    {
        int read = 0;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        while (read < buffer.Length)
        {
            int n = await s.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, cts.Token);
            if (n == 0)
                throw new EndOfStreamException("the broker closed the connection");
            read += n;
        }
    }
}
