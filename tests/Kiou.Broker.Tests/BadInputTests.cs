using System.Buffers.Binary;
using System.Net.Sockets;
using Confluent.Kafka;
using Kiou.Protocol;
using Kiou.Protocol.Messages;

namespace Kiou.Broker.Tests;

/// <summary>
/// Hostile bytes on the wire: each case must close only the offending connection (or answer with the protocol's
/// error), log a line, and leave the broker serving good clients.
/// </summary>
public sealed class BadInputTests
{
    static byte[] Frame(short apiKey, short version, int correlationId, Action<KafkaWriter> body, string? clientId = "bad-input-test")
    {
        var w = new KafkaWriter();
        int at = w.ReserveInt32();
        var header = new RequestHeader { RequestApiKey = apiKey, RequestApiVersion = version, CorrelationId = correlationId, ClientId = clientId };
        header.Write(w, ApiMessageTypes.RequestHeaderVersion(apiKey, version));
        body(w);
        w.PatchInt32(at, w.Length - 4);
        return w.WrittenSpan.ToArray();
    }

    static async Task<Socket> ConnectAsync(TestBroker broker)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await s.ConnectAsync(broker.Broker.BrokerEndPoint);
        s.ReceiveTimeout = 10000;
        return s;
    }

    /// <summary>True when the broker closed the connection (read returns 0) within the timeout.</summary>
    static async Task<bool> ClosedByBrokerAsync(Socket s)
    {
        var buf = new byte[65536];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try
        {
            while (true)
            {
                int n = await s.ReceiveAsync(buf, SocketFlags.None, cts.Token);
                if (n == 0)
                    return true;
            }
        }
        catch (SocketException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    static async Task<byte[]> ReadResponseAsync(Socket s)
    {
        var size = new byte[4];
        await ReadExactlyAsync(s, size);
        var body = new byte[BinaryPrimitives.ReadInt32BigEndian(size)];
        await ReadExactlyAsync(s, body);
        return body;
    }

    static async Task ReadExactlyAsync(Socket s, byte[] buffer)
    {
        int read = 0;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (read < buffer.Length)
        {
            int n = await s.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, cts.Token);
            if (n == 0)
                throw new EndOfStreamException("the broker closed the connection");
            read += n;
        }
    }

    static async Task AssertStillServesAsync(TestBroker broker)
    {
        using var producer = Clients.Producer(broker.Bootstrap, Acks.Leader);
        var r = await producer.ProduceAsync("still-alive", new Message<byte[]?, byte[]?> { Value = [42] });
        Assert.Equal(PersistenceStatus.Persisted, r.Status);
    }

    public static TheoryData<string, byte[]> Hostile() => new()
    {
        { "negative size", [0xFF, 0xFF, 0xFF, 0xF0, 0, 0, 0, 0] },
        { "zero size", [0, 0, 0, 0, 1, 2, 3, 4] },
        { "size above socket.request.max.bytes", [0x7F, 0xFF, 0xFF, 0xFF, 0, 3, 0, 0] },
        { "too short for a header", [0, 0, 0, 3, 0, 18, 0] },
        { "unknown api key", Frame(9999, 0, 1, _ => { }) },
        { "api key of an API we do not serve", Frame(24, 0, 1, _ => { }) },
        { "produce v2 with a topic count past the frame", Frame(0, 2, 1, w => { w.WriteInt16(1); w.WriteInt32(1000); w.WriteInt32(int.MaxValue); }) },
        { "fetch v99", Frame(1, 99, 1, _ => { }) },
        { "metadata with an array count past the frame", Frame(3, 1, 1, w => w.WriteInt32(int.MaxValue)) },
        { "metadata with a negative string length", Frame(3, 1, 1, w => { w.WriteInt32(1); w.WriteInt16(-7); }) },
        { "truncated produce body", Frame(0, 7, 1, w => { w.WriteInt16(-1); w.WriteInt16(1); }) },
        { "flexible request with a 6-byte varint", Frame(3, 9, 1, w => w.WriteRaw([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])) },
        { "client id length past the frame", [0, 0, 0, 10, 0, 3, 0, 1, 0, 0, 0, 1, 0x7F, 0xFF] },
    };

    [Theory]
    [MemberData(nameof(Hostile))]
    public async Task Hostile_frames_close_only_their_connection(string why, byte[] bytes)
    {
        await using var broker = TestBroker.Start();
        using var bystander = await ConnectAsync(broker);
        using (var s = await ConnectAsync(broker))
        {
            await s.SendAsync(bytes, SocketFlags.None);
            Assert.True(await ClosedByBrokerAsync(s), $"{why}: the connection stayed open");
        }
        // A connection opened before the bad one still works, and so does a new client.
        await bystander.SendAsync(Frame(18, 0, 77, _ => { }), SocketFlags.None);
        var response = await ReadResponseAsync(bystander);
        Assert.Equal(77, BinaryPrimitives.ReadInt32BigEndian(response));
        await AssertStillServesAsync(broker);
        Assert.Contains("closing the connection", broker.LogText.ToString());
    }

    [Fact]
    public async Task A_too_new_ApiVersions_gets_the_v0_fallback_answer()
    {
        await using var broker = TestBroker.Start();
        using var s = await ConnectAsync(broker);
        await s.SendAsync(Frame(18, 42, 1, w => w.WriteRaw([1, 1, 0])), SocketFlags.None);
        var r = await ReadResponseAsync(s);
        // correlation id 1, error 35, one entry: ApiVersions 0..4 (README §4.2)
        Assert.Equal(new byte[] { 0, 0, 0, 1, 0, 35, 0, 0, 0, 1, 0, 18, 0, 0, 0, 4 }, r);
    }

    [Fact]
    public async Task Corrupt_batches_get_per_partition_errors_and_nothing_is_stored()
    {
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, "guarded", 1);
        using var s = await ConnectAsync(broker);
        byte[] batch = TestBatches.Uncompressed(3);
        var cases = new (string Name, byte[] Records, short Expected)[]
        {
            ("crc", Mutate(batch, b => b[^1] ^= 0xFF), ErrorCodes.CorruptMessage),
            ("truncated", batch[..^5], ErrorCodes.CorruptMessage),
            ("wrong count", Mutate(batch, b => BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(57), 9)), ErrorCodes.CorruptMessage),
            ("magic 1", Mutate(batch, b => b[16] = 1), ErrorCodes.InvalidRecord),
        };
        int correlation = 100;
        foreach (var (name, records, expected) in cases)
        {
            var request = new ProduceRequest
            {
                Acks = 1,
                TimeoutMs = 1000,
                TopicData = [new ProduceRequest.TopicProduceData { Name = "guarded", PartitionData = [new ProduceRequest.PartitionProduceData { Index = 0, Records = records }] }],
            };
            await s.SendAsync(Frame(0, 7, ++correlation, w => request.Write(w, 7)), SocketFlags.None);
            var bytes = await ReadResponseAsync(s);
            var reader = new KafkaReader(bytes.AsMemory(4));
            var response = new ProduceResponse();
            response.Read(ref reader, 7);
            Assert.False(reader.Failed);
            short code = response.Responses[0].PartitionResponses[0].ErrorCode;
            Assert.True(code == expected || (name == "wrong count" && code == ErrorCodes.InvalidRecord), $"{name}: got error {code}");
        }
        Assert.Equal(0, broker.Broker.Logs.Get("guarded", 0)!.HighWatermark);
        await AssertStillServesAsync(broker);
    }

    static byte[] Mutate(byte[] source, Action<byte[]> change)
    {
        var copy = (byte[])source.Clone();
        change(copy);
        return copy;
    }
}
