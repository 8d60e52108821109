using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Confluent.Kafka;
using Kiou.Protocol;
using Kiou.Protocol.Messages;

namespace Kiou.Broker.Tests;

/// <summary>
/// Sealed segments behind the bounded descriptor cache (KIOU_MAX_OPEN_SEGMENT_FILES) on a running broker: a segment
/// file that cannot be opened fails the fetch of that partition with KAFKA_STORAGE_ERROR on an open connection, and
/// the same connection reads on once the file is back; a consumer reads every segment through a cache of one.
/// </summary>
public sealed class SegmentFilesTests
{
    [Fact]
    public async Task A_sealed_segment_that_cannot_be_opened_fails_that_fetch_with_KAFKA_STORAGE_ERROR_and_the_connection_stays()
    {
        // No read cache: the sealed segments' bytes would be served from memory, not their files.
        await using var broker = TestBroker.Start(c => c with { MaxOpenSegmentFiles = 1, ReadCacheBytes = 0 });
        const string topic = "cold";
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1, new Dictionary<string, string> { ["segment.bytes"] = "16384" });
        using (var producer = Clients.Producer(broker.Bootstrap, Acks.All))
        {
            for (int i = 0; i < 100; i++)
            {
                await producer.ProduceAsync(topic, new Message<byte[]?, byte[]?> { Value = new byte[1000] });
            }
        }

        string dir = Path.Combine(broker.DataDir, topic + "-0");
        long[] bases = Directory.GetFiles(dir, "*.log").Select(f => long.Parse(Path.GetFileNameWithoutExtension(f))).Order().ToArray();
        Assert.True(bases.Length >= 4, $"{bases.Length} segments");

        // A consumer reads all of it through a cache of one descriptor.
        Assert.Equal(100, Clients.ReadAll(broker.Bootstrap, topic, 1).Count);

        using var wire = await Wire.ConnectAsync(broker.Broker.BrokerEndPoint);
        Assert.Equal(ErrorCodes.None, (await FetchAsync(wire, topic, bases[0])).ErrorCode); // the cache now holds segment 0 only

        // The second segment's file is set aside while the broker runs (no descriptor of it is open): opening fails.
        string path = Path.Combine(dir, $"{bases[1]:D20}.log");
        File.Move(path, path + ".aside");
        FetchResponse.PartitionData failed = await FetchAsync(wire, topic, bases[1]);
        Assert.Equal(ErrorCodes.KafkaStorageError, failed.ErrorCode);
        Assert.Equal(100, failed.HighWatermark);
        Assert.Contains("cannot open", broker.LogText.ToString());

        // The connection is still up, the other segments still served, and the file is read again once it is back.
        Assert.Equal(ErrorCodes.None, (await FetchAsync(wire, topic, bases[2])).ErrorCode);
        File.Move(path + ".aside", path);
        FetchResponse.PartitionData back = await FetchAsync(wire, topic, bases[1]);
        Assert.Equal(ErrorCodes.None, back.ErrorCode);
        Assert.True(back.Records is { Length: > 0 });
    }

    static async Task<FetchResponse.PartitionData> FetchAsync(Wire wire, string topic, long offset)
    {
        var response = await wire.SendAsync<FetchResponse>(1, 11, new FetchRequest
        {
            MaxWaitMs = 0,
            MinBytes = 1,
            MaxBytes = 1 << 20,
            Topics = [new() { Topic = topic, Partitions = [new() { Partition = 0, FetchOffset = offset, PartitionMaxBytes = 1 << 20 }] }],
        });
        return response.Responses.Single().Partitions.Single();
    }

    internal sealed class Wire(Socket socket) : IDisposable
    {
        int _correlation;

        public static async Task<Wire> ConnectAsync(IPEndPoint endPoint)
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await s.ConnectAsync(endPoint);
            return new Wire(s);
        }

        public async Task<TResponse> SendAsync<TResponse>(short apiKey, short version, IKafkaMessage request) where TResponse : IKafkaMessage, new()
        {
            var w = new KafkaWriter();
            int at = w.ReserveInt32();
            int correlation = ++_correlation;
            new RequestHeader { RequestApiKey = apiKey, RequestApiVersion = version, CorrelationId = correlation, ClientId = "segment-files-test" }
                .Write(w, ApiMessageTypes.RequestHeaderVersion(apiKey, version));
            request.Write(w, version);
            w.PatchInt32(at, w.Length - 4);
            await socket.SendAsync(w.WrittenMemory, SocketFlags.None);
            var size = new byte[4];
            await ReadExactlyAsync(size);
            var body = new byte[BinaryPrimitives.ReadInt32BigEndian(size)];
            await ReadExactlyAsync(body);
            var reader = new KafkaReader(body);
            var header = new ResponseHeader();
            header.Read(ref reader, ApiMessageTypes.ResponseHeaderVersion(apiKey, version));
            Assert.Equal(correlation, header.CorrelationId);
            var response = new TResponse();
            response.Read(ref reader, version);
            Assert.False(reader.Failed, "the response parses");
            return response;
        }

        async Task ReadExactlyAsync(byte[] buffer)
        {
            int read = 0;
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            while (read < buffer.Length)
            {
                int n = await socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, cts.Token);
                if (n == 0)
                    throw new EndOfStreamException("the broker closed the connection");
                read += n;
            }
        }

        public void Dispose() => socket.Dispose();
    }
}
