using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Confluent.Kafka;
using Kiou.Protocol;
using Kiou.Protocol.Messages;

namespace Kiou.Broker.Tests;

/// <summary>
/// SIGTERM stops the broker cleanly (exit 0, clean-shutdown marker written) within a bound whatever the clients do:
/// clients that reset their connections with responses unsent, and a client that never reads its responses.
/// </summary>
public sealed class ShutdownTests
{
    const string Topic = "shutdown";

    /// <summary>A topic with about 2 MiB of records, so fetches have large responses to send.</summary>
    static async Task FillAsync(BrokerProcess broker)
    {
        await Clients.CreateTopicAsync(broker.Bootstrap, Topic, 1);
        using var producer = Clients.Producer(broker.Bootstrap, Acks.Leader);
        var sends = new List<Task>();
        for (int i = 0; i < 40; i++)
        {
            var value = new byte[50_000];
            Random.Shared.NextBytes(value);
            sends.Add(producer.ProduceAsync(new TopicPartition(Topic, 0), new Message<byte[]?, byte[]?> { Value = value }));
        }
        await Task.WhenAll(sends);
    }

    /// <summary>Many Fetch v11 requests for the whole partition, in one buffer, to be pipelined.</summary>
    static byte[] Fetches(int count, int firstCorrelation)
    {
        var w = new KafkaWriter();
        for (int i = 0; i < count; i++)
        {
            int at = w.ReserveInt32();
            new RequestHeader { RequestApiKey = 1, RequestApiVersion = 11, CorrelationId = firstCorrelation + i, ClientId = "shutdown-test" }
                .Write(w, ApiMessageTypes.RequestHeaderVersion(1, 11));
            new FetchRequest
            {
                MaxWaitMs = 0,
                MinBytes = 1,
                MaxBytes = 4 << 20,
                Topics = [new() { Topic = Topic, Partitions = [new() { Partition = 0, FetchOffset = 0, PartitionMaxBytes = 4 << 20 }] }],
            }.Write(w, 11);
            w.PatchInt32(at, w.Length - at - 4);
        }
        return w.WrittenSpan.ToArray();
    }

    /// <summary>Many ApiVersions v0 requests: small responses that the broker gathers in its write buffer.</summary>
    static byte[] ApiVersions(int count)
    {
        var w = new KafkaWriter();
        for (int i = 0; i < count; i++)
        {
            int at = w.ReserveInt32();
            new RequestHeader { RequestApiKey = ApiVersionsRequest.ApiKey, RequestApiVersion = 0, CorrelationId = i, ClientId = "shutdown-test" }
                .Write(w, ApiMessageTypes.RequestHeaderVersion(ApiVersionsRequest.ApiKey, 0));
            w.PatchInt32(at, w.Length - at - 4);
        }
        return w.WrittenSpan.ToArray();
    }

    /// <summary>Requests whose responses fill the broker's socket buffer when the client does not read them.</summary>
    static byte[] Flood(string kind) => kind == "fetch" ? Fetches(50, 1) : ApiVersions(40_000);

    /// <summary>Sends without waiting for the send to finish: the broker stops reading once its queue is full.</summary>
    static void SendInBackground(Socket s, byte[] bytes) => _ = Task.Run(async () =>
    {
        try
        {
            await s.SendAsync(bytes, SocketFlags.None);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
    });

    static async Task<Socket> ConnectAsync(BrokerProcess broker)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 4096 };
        await s.ConnectAsync(new IPEndPoint(IPAddress.Loopback, broker.Port));
        return s;
    }

    static void AssertClean(BrokerProcess broker, string dataDir, int exitCode)
    {
        Assert.True(exitCode == 0, $"exit code {exitCode}; broker output:\n{broker.Output}");
        Assert.DoesNotContain("Unhandled exception", broker.Output);
        Assert.True(File.Exists(Path.Combine(dataDir, $"{Topic}-0", Kiou.Storage.Recovery.CleanShutdownMarker)),
            $"no clean-shutdown marker; broker output:\n{broker.Output}");
    }

    [Fact]
    public async Task Clients_that_reset_with_responses_unsent_neither_crash_the_broker_nor_spoil_SIGTERM()
    {
        string dataDir = Path.Combine(Path.GetTempPath(), "kiou-shutdown-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var broker = BrokerProcess.Start(dataDir);
            await FillAsync(broker);
            for (int round = 0; round < 2; round++)
            {
                var sockets = new List<Socket>();
                for (int c = 0; c < 6; c++)
                {
                    var s = await ConnectAsync(broker);
                    SendInBackground(s, Flood(c % 2 == 0 ? "fetch" : "small"));
                    sockets.Add(s);
                }
                await Task.Delay(500); // the broker is in the middle of sending responses the clients do not read
                foreach (var s in sockets)
                {
                    s.LingerState = new LingerOption(true, 0); // close with RST: the broker's unsent data is dropped
                    s.Close();
                }
            }
            await Task.Delay(500);
            Assert.False(broker.HasExited, $"the broker died after clients reset their connections:\n{broker.Output}");
            Assert.DoesNotContain("Unhandled exception", broker.Output);

            // Connections whose responses are stuck when SIGTERM arrives, reset while the broker is stopping.
            var last = new List<Socket>();
            for (int c = 0; c < 6; c++)
            {
                var s = await ConnectAsync(broker);
                SendInBackground(s, Flood(c % 2 == 0 ? "fetch" : "small"));
                last.Add(s);
            }
            await Task.Delay(1000);
            broker.SendSigterm();
            await Task.Delay(500);
            foreach (var s in last)
            {
                s.LingerState = new LingerOption(true, 0);
                s.Close();
            }
            AssertClean(broker, dataDir, broker.WaitForExit(TimeSpan.FromSeconds(10)));
        }
        finally
        {
            Directory.Delete(dataDir, recursive: true);
        }
    }

    [Theory]
    [InlineData("small", "true")]
    [InlineData("fetch", "true")]
    [InlineData("fetch", "false")]
    public async Task SIGTERM_stops_the_broker_within_10_s_while_a_client_never_reads(string responses, string zeroCopy)
    {
        string dataDir = Path.Combine(Path.GetTempPath(), "kiou-shutdown-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var broker = BrokerProcess.Start(dataDir, new Dictionary<string, string> { ["KIOU_FETCH_ZERO_COPY"] = zeroCopy });
            await FillAsync(broker);
            using var stalled = await ConnectAsync(broker);
            SendInBackground(stalled, Flood(responses));
            await Task.Delay(1000); // the broker's socket buffer fills and its writer waits for a reader that never comes

            var watch = Stopwatch.StartNew();
            int exitCode = broker.Terminate(TimeSpan.FromSeconds(10));
            watch.Stop();
            AssertClean(broker, dataDir, exitCode);
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"stopped after {watch.Elapsed}");
        }
        finally
        {
            Directory.Delete(dataDir, recursive: true);
        }
    }
}
