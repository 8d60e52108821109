using System.Net;
using System.Net.Sockets;
using Confluent.Kafka;
using Xunit.Abstractions;

namespace Kiou.Broker.Tests;

/// <summary>The <see cref="ChaosProxy"/> itself: it forwards bytes unchanged, cuts where it drew, repeats itself for a seed.</summary>
public sealed class ChaosProxyTests(ITestOutputHelper output)
{
    /// <summary>A TCP server on loopback that runs <paramref name="serve"/> for each connection.</summary>
    sealed class TestServer : IAsyncDisposable
    {
        readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        readonly Task _loop;

        public TestServer(Func<Socket, Task> serve)
        {
            _listener.Start();
            _loop = Task.Run(async () =>
            {
                while (true)
                {
                    Socket s;
                    try
                    {
                        s = await _listener.AcceptSocketAsync();
                    }
                    catch (Exception)
                    {
                        return;
                    }
                    _ = Task.Run(async () =>
                    {
                        try
                        {
                            await serve(s);
                        }
                        catch (Exception)
                        {
                        }
                        finally
                        {
                            s.Dispose();
                        }
                    });
                }
            });
        }

        public IPEndPoint EndPoint => (IPEndPoint)_listener.LocalEndpoint;

        public async ValueTask DisposeAsync()
        {
            _listener.Stop();
            await _loop;
        }
    }

    /// <summary>
    /// Connects to the proxy. A loopback connect is occasionally reset by the kernel under a busy test run (a reused
    /// TIME_WAIT pair), before the proxy ever sees it; the servers here send nothing before the client's first byte,
    /// so a reset at connect cannot be one of the proxy's cuts, and the connect is simply tried again.
    /// </summary>
    static async Task<Socket> Connect(ChaosProxy proxy)
    {
        for (int attempt = 1; ; attempt++)
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await s.ConnectAsync(proxy.EndPoint);
                return s;
            }
            catch (SocketException) when (attempt < 5)
            {
                s.Dispose();
                await Task.Delay(20);
            }
            catch (SocketException ex)
            {
                s.Dispose();
                throw new InvalidOperationException($"connecting to the proxy failed ({ex.Message}): {proxy}", ex);
            }
        }
    }

    /// <summary>Reads until the peer ends or resets the connection; returns what arrived.</summary>
    static async Task<byte[]> ReadToEnd(Socket s, int max = 1 << 24)
    {
        var all = new MemoryStream();
        byte[] buffer = new byte[65536];
        try
        {
            while (all.Length < max)
            {
                int n = await s.ReceiveAsync(buffer, SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(20));
                if (n == 0)
                    break;
                all.Write(buffer, 0, n);
            }
        }
        catch (SocketException)
        {
        }
        return all.ToArray();
    }

    [Fact]
    public async Task Forwards_bytes_unchanged_both_ways()
    {
        await using var echo = new TestServer(async s =>
        {
            byte[] buffer = new byte[65536];
            int n;
            while ((n = await s.ReceiveAsync(buffer, SocketFlags.None)) > 0)
                await s.SendAsync(buffer.AsMemory(0, n), SocketFlags.None);
            s.Shutdown(SocketShutdown.Send);
        });
        await using var proxy = new ChaosProxy(echo.EndPoint, new ChaosOptions { CutProbability = 0 });

        byte[] payload = new byte[3 << 20];
        new Random(7).NextBytes(payload);
        using var client = await Connect(proxy);
        var reading = ReadToEnd(client);
        for (int sent = 0; sent < payload.Length;)
            sent += await client.SendAsync(payload.AsMemory(sent, Math.Min(100_000, payload.Length - sent)), SocketFlags.None);
        client.Shutdown(SocketShutdown.Send);
        byte[] back = await reading;

        Assert.Equal(payload, back);
        Assert.Equal(payload.Length, proxy.BytesToBroker);
        Assert.Equal(payload.Length, proxy.BytesToClient);
        Assert.Equal(0, proxy.ConnectionsCut);
    }

    [Fact]
    public async Task Cuts_towards_the_server_after_the_drawn_byte_count()
    {
        var received = new TaskCompletionSource<int>();
        await using var sink = new TestServer(async s =>
        {
            int total = 0;
            byte[] buffer = new byte[65536];
            try
            {
                int n;
                while ((n = await s.ReceiveAsync(buffer, SocketFlags.None)) > 0)
                    total += n;
            }
            catch (SocketException)
            {
            }
            received.TrySetResult(total);
        });
        await using var proxy = new ChaosProxy(sink.EndPoint, new ChaosOptions { CutProbability = 1, ToClientShare = 0, MinBytesBeforeCut = 1000, MaxBytesBeforeCut = 1000 });

        using var client = await Connect(proxy);
        var reading = ReadToEnd(client);
        byte[] payload = new byte[5000];
        try
        {
            await client.SendAsync(payload, SocketFlags.None);
        }
        catch (SocketException)
        {
        }

        Assert.Equal(1000, await received.Task.WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.Empty(await reading); // the client sees the connection end with nothing
        Assert.Equal(1, proxy.ConnectionsCut);
        Assert.Equal(1000, proxy.BytesToBroker);
    }

    [Fact]
    public async Task Cuts_towards_the_client_after_the_drawn_byte_count()
    {
        await using var talker = new TestServer(async s =>
        {
            await s.ReceiveAsync(new byte[1], SocketFlags.None); // nothing flows before the client's first byte
            byte[] data = new byte[200_000];
            await s.SendAsync(data, SocketFlags.None);
            await s.ReceiveAsync(new byte[1], SocketFlags.None); // until the proxy resets us
        });
        await using var proxy = new ChaosProxy(talker.EndPoint, new ChaosOptions { CutProbability = 1, ToClientShare = 1, MinBytesBeforeCut = 12_345, MaxBytesBeforeCut = 12_345 });

        using var client = await Connect(proxy);
        await client.SendAsync(new byte[1], SocketFlags.None);
        Assert.Equal(12_345, (await ReadToEnd(client)).Length);
        Assert.Equal(1, proxy.ConnectionsCut);
    }

    [Fact]
    public async Task The_same_seed_cuts_the_same_way_and_CutAll_resets_open_connections()
    {
        await using var talker = new TestServer(async s =>
        {
            await s.ReceiveAsync(new byte[1], SocketFlags.None); // nothing flows before the client's first byte
            await s.SendAsync(new byte[100_000], SocketFlags.None);
            s.Shutdown(SocketShutdown.Send);
            await s.ReceiveAsync(new byte[1], SocketFlags.None);
        });

        async Task<List<int>> Run(int seed)
        {
            await using var proxy = new ChaosProxy(talker.EndPoint, new ChaosOptions { Seed = seed, CutProbability = 0.5, ToClientShare = 1, MinBytesBeforeCut = 1, MaxBytesBeforeCut = 99_999 });
            var lengths = new List<int>();
            for (int i = 0; i < 12; i++)
            {
                using var client = await Connect(proxy);
                await client.SendAsync(new byte[1], SocketFlags.None);
                lengths.Add((await ReadToEnd(client)).Length);
            }
            return lengths;
        }

        List<int> first = await Run(42);
        Assert.Equal(first, await Run(42));
        Assert.Contains(100_000, first);
        Assert.Contains(first, l => l < 100_000);
        Assert.NotEqual(first, await Run(43));

        await using var idle = new TestServer(s => s.ReceiveAsync(new byte[1], SocketFlags.None));
        await using var quiet = new ChaosProxy(idle.EndPoint, new ChaosOptions { CutProbability = 0 });
        using var c1 = await Connect(quiet);
        using var c2 = await Connect(quiet);
        var r1 = ReadToEnd(c1);
        var r2 = ReadToEnd(c2);
        while (quiet.CutAll() < 2 && quiet.ConnectionsCut < 2)
            await Task.Delay(10);
        Assert.Empty(await r1);
        Assert.Empty(await r2);
    }

    /// <summary>
    /// librdkafka through the proxy: the broker advertises the proxy's address (same port, 127.0.0.2), so every
    /// connection, including those made after Metadata, goes through it and gets cut; every record still arrives.
    /// At least once is checked here; IdempotentClientTests checks exactly once and order.
    /// </summary>
    [Fact]
    public async Task A_real_client_keeps_going_through_the_proxy_while_it_cuts()
    {
        int port = BrokerProcess.FreePort();
        await using var broker = TestBroker.Start(c => c with { Port = port, AdvertisedHost = "127.0.0.2" });
        await using var proxy = ChaosProxy.ForBroker(port, new ChaosOptions { Seed = 5, CutProbability = 0.4, MinBytesBeforeCut = 2_000, MaxBytesBeforeCut = 400_000 });
        const string topic = "through-the-proxy";
        proxy.ChaosEnabled = false; // CreateTopics is not retried by the admin client
        await Clients.CreateTopicAsync(proxy.Bootstrap, topic, 2);
        proxy.ChaosEnabled = true;

        const int count = 3000;
        using (var producer = Clients.Producer(proxy.Bootstrap, Acks.All, configure: c =>
        {
            c.ReconnectBackoffMs = 10;
            c.ReconnectBackoffMaxMs = 100;
            c.MessageTimeoutMs = 60_000;
        }))
        {
            var pending = new List<Task<DeliveryResult<byte[]?, byte[]?>>>();
            for (int i = 0; i < count; i++)
            {
                pending.Add(producer.ProduceAsync(topic, new Message<byte[]?, byte[]?> { Key = BitConverter.GetBytes(i), Value = new byte[500] }));
                if (i % 500 == 499)
                {
                    proxy.CutAll();
                    await Task.Delay(20);
                }
            }
            foreach (var t in pending)
                Assert.Equal(PersistenceStatus.Persisted, (await t).Status);
        }

        proxy.ChaosEnabled = false;
        var seen = Clients.ReadAll(proxy.Bootstrap, topic, 2).Select(r => BitConverter.ToInt32(r.Message.Key!)).ToHashSet();
        Assert.Equal(count, seen.Count);
        Assert.True(proxy.ConnectionsCut > 0, proxy.ToString());
        Assert.True(proxy.BytesToBroker > count * 500L, proxy.ToString());
        output.WriteLine($"{proxy}; {seen.Count} distinct records");
    }
}
