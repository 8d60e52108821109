using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Kiou.Protocol;
using Kiou.Protocol.Messages;

namespace Kiou.Broker.Tests;

/// <summary>One request and its response over a plain socket, with KIOU's codecs, for the raw-protocol tests of
/// idempotence and transactions (<c>using static Kiou.Broker.Tests.RawWire</c>).</summary>
internal static class RawWire
{
    public static async Task<TResponse> SendAsync<TResponse>(Socket s, IKafkaMessage request, short apiKey, short version, int correlation)
        where TResponse : IKafkaMessage, new()
    {
        var w = new KafkaWriter();
        int at = w.ReserveInt32();
        var header = new RequestHeader { RequestApiKey = apiKey, RequestApiVersion = version, CorrelationId = correlation, ClientId = "raw-wire-test" };
        header.Write(w, ApiMessageTypes.RequestHeaderVersion(apiKey, version));
        request.Write(w, version);
        w.PatchInt32(at, w.Length - 4);
        await s.SendAsync(w.WrittenSpan.ToArray(), SocketFlags.None);

        var size = new byte[4];
        await ReadExactlyAsync(s, size);
        var body = new byte[BinaryPrimitives.ReadInt32BigEndian(size)];
        await ReadExactlyAsync(s, body);
        var reader = new KafkaReader(body);
        var responseHeader = new ResponseHeader();
        responseHeader.Read(ref reader, ApiMessageTypes.ResponseHeaderVersion(apiKey, version));
        Assert.Equal(correlation, responseHeader.CorrelationId);
        var response = new TResponse();
        response.Read(ref reader, version);
        Assert.False(reader.Failed);
        return response;
    }

    public static async Task<Socket> ConnectAsync(IPEndPoint endPoint)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await s.ConnectAsync(endPoint);
        return s;
    }

    public static async Task ReadExactlyAsync(Socket s, byte[] buffer)
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
