using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Confluent.Kafka;
using Kiou.Protocol;
using Kiou.Protocol.Messages;
using Wire = Kiou.Broker.Tests.SegmentFilesTests.Wire;

namespace Kiou.Broker.Tests;

/// <summary>
/// Connection lifetime as Kafka has it: KIOU_MAX_CONNECTIONS closes the least recently active idle connection to admit
/// a new one, KIOU_MAX_CONNECTIONS_PER_IP closes a new connection beyond it, KIOU_CONNECTIONS_MAX_IDLE_MS closes idle
/// connections (never one with a request in flight), and KIOU_REQUEST_ARRIVAL_TIMEOUT_MS closes a connection whose
/// request stalls half-sent, giving its buffer back. Stopping answers the requests already read.
/// </summary>
public sealed class ConnectionLimitTests
{
    internal static async Task<Socket> ConnectAsync(IPEndPoint endPoint)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await s.ConnectAsync(endPoint);
        return s;
    }

    /// <summary>True when the broker closed the connection (end of stream or reset) within the time.</summary>
    internal static async Task<bool> ClosedByBrokerAsync(Socket s, TimeSpan within)
    {
        using var cts = new CancellationTokenSource(within);
        var buffer = new byte[1024];
        try
        {
            while (true)
            {
                int n = await s.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
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

    static async Task<bool> StillOpenAsync(Socket s) => !await ClosedByBrokerAsync(s, TimeSpan.FromMilliseconds(50));

    static Task<ApiVersionsResponse> ApiVersionsAsync(Wire wire) => wire.SendAsync<ApiVersionsResponse>(ApiVersionsRequest.ApiKey, 0, new ApiVersionsRequest());

    static FetchRequest Fetch(string topic, int maxWaitMs, int minBytes, long offset = 0) => new()
    {
        MaxWaitMs = maxWaitMs,
        MinBytes = minBytes,
        MaxBytes = 1 << 20,
        Topics = [new() { Topic = topic, Partitions = [new() { Partition = 0, FetchOffset = offset, PartitionMaxBytes = 1 << 20 }] }],
    };

    /// <summary>One request frame: size, header, body.</summary>
    static void Frame(KafkaWriter w, short apiKey, short version, int correlationId, IKafkaMessage request)
    {
        int at = w.ReserveInt32();
        new RequestHeader { RequestApiKey = apiKey, RequestApiVersion = version, CorrelationId = correlationId, ClientId = "limits-test" }
            .Write(w, ApiMessageTypes.RequestHeaderVersion(apiKey, version));
        request.Write(w, version);
        w.PatchInt32(at, w.Length - at - 4);
    }

    [Fact]
    public async Task At_max_connections_a_new_client_closes_the_least_recently_active_idle_connection()
    {
        await using var broker = TestBroker.Start(c => c with { MaxConnections = 12 });
        var ep = broker.Broker.BrokerEndPoint;
        var idle = new List<Socket>();
        try
        {
            for (int i = 0; i < 12; i++)
            {
                idle.Add(await ConnectAsync(ep));
                await Task.Delay(15); // an order of last activity
            }
            await WaitUntil(() => broker.Broker.ConnectionCount == 12, "12 connections accepted");
            // The oldest becomes the most recent: it sends a request (ApiVersions v0) and reads the answer.
            var first = new Wire(idle[0]);
            Assert.Equal(0, (await ApiVersionsAsync(first)).ErrorCode);

            // A new client is admitted; the least recently active idle connection (the second) is closed for it.
            using var wire = await Wire.ConnectAsync(ep);
            Assert.Equal(0, (await ApiVersionsAsync(wire)).ErrorCode);
            Assert.True(await ClosedByBrokerAsync(idle[1], TimeSpan.FromSeconds(5)), "the least recently active idle connection was not closed");
            Assert.Equal(0, (await ApiVersionsAsync(first)).ErrorCode);
            for (int i = 2; i < idle.Count; i++)
                Assert.True(await StillOpenAsync(idle[i]), $"connection {i} was closed too");
            Assert.Contains("KIOU_MAX_CONNECTIONS", broker.LogText.ToString());
        }
        finally
        {
            foreach (var s in idle)
                s.Dispose();
        }
    }

    [Fact]
    public async Task At_max_connections_with_every_connection_busy_a_new_one_waits_and_is_then_admitted()
    {
        const string topic = "busy";
        await using var broker = TestBroker.Start(c => c with { MaxConnections = 4 });
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);
        var ep = broker.Broker.BrokerEndPoint;
        var busy = new List<Wire>();
        var fetches = new List<Task<FetchResponse>>();
        try
        {
            // Timed from before the first fetch is sent: none can be answered before its 1500 ms wait, so nothing
            // can be admitted earlier, however slowly a loaded machine runs the steps in between.
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < 4; i++)
            {
                var w = await Wire.ConnectAsync(ep);
                busy.Add(w);
                fetches.Add(w.SendAsync<FetchResponse>(1, 11, Fetch(topic, 1500, 1)));
            }
            await WaitUntil(() => broker.Broker.ConnectionCount == 4, "4 connections accepted");
            await Task.Delay(200); // the fetches are parked: every connection has a request in flight
            using var wire = await Wire.ConnectAsync(ep);
            Assert.Equal(0, (await ApiVersionsAsync(wire)).ErrorCode);
            Assert.True(clock.ElapsedMilliseconds >= 1400, $"admitted {clock.ElapsedMilliseconds} ms after the first fetch was sent, while every connection had a request in flight");
            foreach (var f in fetches)
                Assert.Equal(ErrorCodes.None, (await f).Responses.Single().Partitions.Single().ErrorCode); // none was cut
        }
        finally
        {
            foreach (var w in busy)
                w.Dispose();
        }
    }

    [Fact]
    public async Task A_connection_beyond_max_connections_per_ip_is_closed_at_once()
    {
        await using var broker = TestBroker.Start(c => c with { MaxConnectionsPerIp = 3 });
        var ep = broker.Broker.BrokerEndPoint;
        var wires = new List<Wire>();
        try
        {
            for (int i = 0; i < 3; i++)
            {
                var w = await Wire.ConnectAsync(ep);
                wires.Add(w);
                Assert.Equal(0, (await ApiVersionsAsync(w)).ErrorCode);
            }
            using (var fourth = await ConnectAsync(ep))
                Assert.True(await ClosedByBrokerAsync(fourth, TimeSpan.FromSeconds(5)), "a fourth connection from the address was kept");
            Assert.Contains("KIOU_MAX_CONNECTIONS_PER_IP", broker.LogText.ToString());
            foreach (var w in wires)
                Assert.Equal(0, (await ApiVersionsAsync(w)).ErrorCode);

            wires[0].Dispose();
            wires.RemoveAt(0);
            await WaitUntil(() => broker.Broker.ConnectionCount == 2, "the closed connection counted off");
            using var again = await Wire.ConnectAsync(ep);
            Assert.Equal(0, (await ApiVersionsAsync(again)).ErrorCode);
        }
        finally
        {
            foreach (var w in wires)
                w.Dispose();
        }
    }

    [Fact]
    public async Task Idle_connections_are_closed_after_the_idle_time_but_not_those_with_a_request_in_flight()
    {
        const string topic = "idle";
        // The idle time leaves the active connection (a request every 100 ms) a wide margin for a loaded CI machine.
        await using var broker = TestBroker.Start(c => c with { ConnectionsMaxIdleMs = 2000 });
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);
        var ep = broker.Broker.BrokerEndPoint;
        var idle = new List<Socket>();
        try
        {
            for (int i = 0; i < 10; i++)
                idle.Add(await ConnectAsync(ep));
            using var active = await Wire.ConnectAsync(ep);
            using var parked = await Wire.ConnectAsync(ep);
            var clock = Stopwatch.StartNew();
            var fetch = parked.SendAsync<FetchResponse>(1, 11, Fetch(topic, 4000, 1)); // in flight longer than the idle time
            while (!fetch.IsCompleted)
            {
                Assert.Equal(0, (await ApiVersionsAsync(active)).ErrorCode);
                await Task.Delay(100);
            }
            var answer = await fetch;
            Assert.True(clock.ElapsedMilliseconds >= 3900, $"the fetch answered after {clock.ElapsedMilliseconds} ms");
            Assert.Equal(ErrorCodes.None, answer.Responses.Single().Partitions.Single().ErrorCode);
            Assert.Equal(0, (await ApiVersionsAsync(parked)).ErrorCode);
            for (int i = 0; i < idle.Count; i++)
                Assert.True(await ClosedByBrokerAsync(idle[i], TimeSpan.FromMilliseconds(100)), $"idle connection {i} was not closed");
            Assert.Equal(0, (await ApiVersionsAsync(active)).ErrorCode);
            Assert.Contains("KIOU_CONNECTIONS_MAX_IDLE_MS", broker.LogText.ToString());
        }
        finally
        {
            foreach (var s in idle)
                s.Dispose();
        }
    }

    [Fact]
    public async Task A_request_that_stops_arriving_closes_its_connection_after_the_deadline_and_gives_its_buffer_back()
    {
        await using var broker = TestBroker.Start(c => c with { RequestArrivalTimeoutMs = 1000 });
        var ep = broker.Broker.BrokerEndPoint;
        using var large = await ConnectAsync(ep); // declares 10 MB, sends 3 MB, stalls
        using var prefix = await ConnectAsync(ep); // half a size prefix
        using var small = await ConnectAsync(ep); // a small request cut short
        using var quiet = await ConnectAsync(ep); // sends nothing: idle, not slow
        using var slowButWhole = await Wire.ConnectAsync(ep);

        byte[] start = new byte[4 + 3_000_000];
        BinaryPrimitives.WriteInt32BigEndian(start, 10_000_000);
        BinaryPrimitives.WriteInt16BigEndian(start.AsSpan(4), 0);
        BinaryPrimitives.WriteInt16BigEndian(start.AsSpan(6), 7);
        await large.SendAsync(start, SocketFlags.None);
        await prefix.SendAsync(new byte[] { 0, 0 }, SocketFlags.None);
        byte[] cut = new byte[14];
        BinaryPrimitives.WriteInt32BigEndian(cut, 100);
        await small.SendAsync(cut, SocketFlags.None);
        await WaitUntil(() => broker.Broker.PartialRequestBytes >= 3_000_000, "the large request's buffer holds what arrived");

        var clock = Stopwatch.StartNew();
        Assert.True(await ClosedByBrokerAsync(large, TimeSpan.FromSeconds(5)), "the stalled large request kept its connection");
        Assert.True(await ClosedByBrokerAsync(prefix, TimeSpan.FromSeconds(5)), "the half size prefix kept its connection");
        Assert.True(await ClosedByBrokerAsync(small, TimeSpan.FromSeconds(5)), "the cut small request kept its connection");
        Assert.True(clock.ElapsedMilliseconds < 5000, $"closed after {clock.ElapsedMilliseconds} ms");
        await WaitUntil(() => broker.Broker.PartialRequestBytes == 0, "the stalled request's buffer given back");
        Assert.True(await StillOpenAsync(quiet), "a connection that sent nothing was closed as slow");
        Assert.Contains("KIOU_REQUEST_ARRIVAL_TIMEOUT_MS", broker.LogText.ToString());

        // A request sent in two parts within the deadline is answered.
        var w = new KafkaWriter();
        Frame(w, ApiVersionsRequest.ApiKey, 0, 1, new ApiVersionsRequest());
        byte[] frame = w.WrittenSpan.ToArray();
        var raw = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await raw.ConnectAsync(ep);
        using var two = new Wire(raw);
        await raw.SendAsync(frame.AsMemory(0, 6), SocketFlags.None);
        await Task.Delay(300);
        await raw.SendAsync(frame.AsMemory(6), SocketFlags.None);
        byte[] size = new byte[4];
        Assert.Equal(4, await raw.ReceiveAsync(size, SocketFlags.None));
        Assert.True(BinaryPrimitives.ReadInt32BigEndian(size) > 8);
    }

    /// <summary>
    /// Stopping answers what was read: a parked fetch answers with what there is (not after MaxWaitMs), and the produce
    /// and ApiVersions queued behind it are answered before the connection closes.
    /// </summary>
    [Fact]
    public async Task Stopping_answers_the_requests_already_read_before_closing()
    {
        const string topic = "stopping";
        var broker = TestBroker.Start();
        try
        {
            await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);
            var log = broker.Broker.Logs.Get(topic, 0)!;
            using var s = await ConnectAsync(broker.Broker.BrokerEndPoint);
            var w = new KafkaWriter();
            Frame(w, 1, 11, 1, Fetch(topic, 20_000, 1_000_000));
            Frame(w, 0, 7, 2, new ProduceRequest
            {
                Acks = 1,
                TimeoutMs = 5000,
                TopicData = [new() { Name = topic, PartitionData = [new() { Index = 0, Records = TestBatches.Uncompressed(1) }] }],
            });
            Frame(w, ApiVersionsRequest.ApiKey, 0, 3, new ApiVersionsRequest());
            await s.SendAsync(w.WrittenMemory, SocketFlags.None);
            await WaitUntil(() => log.HighWatermark == 1, "the produce took effect");
            await Task.Delay(100);

            var clock = Stopwatch.StartNew();
            Task stop = broker.StopAsync();
            var correlations = new List<int>();
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            byte[] size = new byte[4];
            while (await ReadExactlyAsync(s, size, cts.Token))
            {
                byte[] body = new byte[BinaryPrimitives.ReadInt32BigEndian(size)];
                Assert.True(await ReadExactlyAsync(s, body, cts.Token), "a response was cut");
                correlations.Add(BinaryPrimitives.ReadInt32BigEndian(body));
            }
            await stop;
            Assert.Equal([1, 2, 3], correlations);
            Assert.True(clock.ElapsedMilliseconds < 10_000, $"stopping took {clock.ElapsedMilliseconds} ms: the parked fetch (20 s) held it");
        }
        finally
        {
            await broker.DisposeAsync();
        }
    }

    /// <summary>Fills the buffer; false at a clean end of stream before the first byte.</summary>
    static async Task<bool> ReadExactlyAsync(Socket s, byte[] buffer, CancellationToken ct)
    {
        int read = 0;
        while (read < buffer.Length)
        {
            int n;
            try
            {
                n = await s.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, ct);
            }
            catch (SocketException) when (read == 0)
            {
                return false;
            }
            if (n == 0)
            {
                Assert.True(read == 0, "the connection ended inside a response");
                return false;
            }
            read += n;
        }
        return true;
    }

    /// <summary>
    /// A parked fetch woken by appends adds up the bytes available and builds its response only once MinBytes is
    /// reachable, not once per append; the answer still holds everything.
    /// </summary>
    [Fact]
    public async Task A_woken_fetch_builds_its_response_only_once_min_bytes_is_reachable()
    {
        const string topic = "minbytes";
        int rebuilds = 0;
        await using var broker = TestBroker.Start(c => c with { OnFetchRebuilt = () => Interlocked.Increment(ref rebuilds) });
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);
        var log = broker.Broker.Logs.Get(topic, 0)!;
        using var wire = await Wire.ConnectAsync(broker.Broker.BrokerEndPoint);
        var clock = Stopwatch.StartNew();
        var fetch = wire.SendAsync<FetchResponse>(1, 11, Fetch(topic, 15_000, 20_000));
        await Task.Delay(200);
        long small = 0;
        for (int i = 0; i < 200; i++)
        {
            byte[] batch = TestBatches.Uncompressed(1);
            small += batch.Length;
            await log.AppendAsync(batch, waitDurable: false);
            await Task.Delay(1); // each append its own wake-up
        }
        Assert.True(small < 20_000);
        Assert.False(fetch.IsCompleted, "the fetch answered below MinBytes");
        await log.AppendAsync(TestBatches.Uncompressed(1000), waitDurable: false);
        var response = await fetch.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(clock.ElapsedMilliseconds < 10_000, $"answered after {clock.ElapsedMilliseconds} ms");
        var data = response.Responses.Single().Partitions.Single();
        Assert.Equal(ErrorCodes.None, data.ErrorCode);
        Assert.Equal(1200, data.HighWatermark);
        Assert.True(data.Records is { Length: >= 20_000 }, $"records: {data.Records?.Length}");
        Assert.True(Volatile.Read(ref rebuilds) <= 3, $"the response was built {rebuilds} times for 201 appends");
    }

    [Fact]
    public void The_settings_are_read_from_the_environment_with_Kafkas_defaults()
    {
        var d = Kiou.Broker.Hosting.BrokerConfig.FromEnvironment(_ => null);
        Assert.Equal(10_000, d.MaxConnections);
        Assert.Equal(int.MaxValue, d.MaxConnectionsPerIp);
        Assert.Equal(600_000, d.ConnectionsMaxIdleMs);
        Assert.Equal(30_000, d.RequestArrivalTimeoutMs);
        var env = new Dictionary<string, string>
        {
            ["KIOU_MAX_CONNECTIONS"] = "50",
            ["KIOU_MAX_CONNECTIONS_PER_IP"] = "7",
            ["KIOU_CONNECTIONS_MAX_IDLE_MS"] = "-1",
            ["KIOU_REQUEST_ARRIVAL_TIMEOUT_MS"] = "1234",
        };
        var c = Kiou.Broker.Hosting.BrokerConfig.FromEnvironment(k => env.GetValueOrDefault(k));
        Assert.Equal((50, 7, -1L, 1234L), (c.MaxConnections, c.MaxConnectionsPerIp, c.ConnectionsMaxIdleMs, c.RequestArrivalTimeoutMs));
        var zero = Assert.Throws<Kiou.Broker.Hosting.ConfigException>(() =>
            Kiou.Broker.Hosting.BrokerConfig.FromEnvironment(k => k == "KIOU_CONNECTIONS_MAX_IDLE_MS" ? "0" : null));
        Assert.Contains("KIOU_CONNECTIONS_MAX_IDLE_MS", zero.Message);
        Assert.Throws<Kiou.Broker.Hosting.ConfigException>(() =>
            Kiou.Broker.Hosting.BrokerConfig.FromEnvironment(k => k == "KIOU_MAX_CONNECTIONS" ? "0" : null));
    }

    internal static async Task WaitUntil(Func<bool> condition, string what, int timeoutMs = 10_000)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.ElapsedMilliseconds < timeoutMs, $"timed out waiting for: {what}");
            await Task.Delay(20);
        }
    }
}

/// <summary>Holds ten thousand sockets in this process and in the broker's, so it runs alone.</summary>
[CollectionDefinition(nameof(ManyConnectionsTests), DisableParallelization = true)]
[Collection(nameof(ManyConnectionsTests))]
public sealed class ManyConnectionsTests
{
    /// <summary>The case: 10,000 idle connections, the default KIOU_MAX_CONNECTIONS, then a real client.</summary>
    [Fact]
    public async Task With_ten_thousand_idle_connections_open_a_new_client_still_produces_and_consumes()
    {
        const int idle = 10_000;
        const string topic = "many";
        string dataDir = Path.Combine(Path.GetTempPath(), "kiou-many-" + Guid.NewGuid().ToString("N"));
        var sockets = new Socket?[idle];
        try
        {
            using var broker = BrokerProcess.Start(dataDir, new Dictionary<string, string> { ["KIOU_MAX_CONNECTIONS"] = idle.ToString() });
            await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);
            await Task.Delay(300); // the admin client's connection has ended
            int baseline = OpenDescriptors(broker.ProcessId);
            var ep = new IPEndPoint(IPAddress.Loopback, broker.Port);
            var clock = Stopwatch.StartNew();
            await Parallel.ForAsync(0, idle, new ParallelOptions { MaxDegreeOfParallelism = 64 }, async (i, ct) =>
            {
                var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await s.ConnectAsync(ep, ct);
                sockets[i] = s;
            });
            await ConnectionLimitTests.WaitUntil(() => OpenDescriptors(broker.ProcessId) >= baseline + idle - 10,
                $"the broker accepted {idle} connections", 60_000);
            long opened = clock.ElapsedMilliseconds;
            long rssMiB = RssKiB(broker.ProcessId) >> 10;

            clock.Restart();
            using (var producer = Clients.Producer(broker.Bootstrap, Acks.Leader))
            {
                var sends = new List<Task<DeliveryResult<byte[]?, byte[]?>>>();
                for (int i = 0; i < 100; i++)
                    sends.Add(producer.ProduceAsync(new TopicPartition(topic, 0), new Message<byte[]?, byte[]?> { Value = BitConverter.GetBytes(i) }));
                await Task.WhenAll(sends).WaitAsync(TimeSpan.FromSeconds(20));
            }
            var read = Clients.ReadAll(broker.Bootstrap, topic, 1, TimeSpan.FromSeconds(20));
            Assert.Equal(100, read.Count);
            for (int i = 0; i < 100; i++)
                Assert.Equal(i, BitConverter.ToInt32(read[i].Message.Value));
            long worked = clock.ElapsedMilliseconds;

            int closed = 0;
            foreach (var s in sockets)
            {
                if (s!.Poll(0, SelectMode.SelectRead) && s.Available == 0)
                    closed++;
            }
            Assert.True(closed >= 1 && closed <= 50, $"{closed} idle connections were closed to admit the clients' few");
            Assert.True(rssMiB < 768, $"the broker holds {rssMiB} MiB RSS with {idle} idle connections");
            Assert.Contains("KIOU_MAX_CONNECTIONS", broker.Output);
            Assert.Equal(0, broker.Terminate(TimeSpan.FromSeconds(20)));
            Console.Error.WriteLine($"[many connections] opened {idle} in {opened} ms, broker RSS {rssMiB} MiB, client done in {worked} ms, {closed} closed");
        }
        finally
        {
            foreach (var s in sockets)
                s?.Dispose();
            try
            {
                Directory.Delete(dataDir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    static int OpenDescriptors(int pid) => Directory.GetFileSystemEntries($"/proc/{pid}/fd").Length;

    internal static long RssKiB(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0]);
        }
        return 0;
    }
}

/// <summary>The broker's resident memory, measured from outside (/proc/&lt;pid&gt;/status of a child broker).</summary>
public sealed class DeclaredSizeRssTests
{
    /// <summary>
    /// Twenty connections each declare a 100 MB request, send 70 kB and stall: the broker stays under 300 MiB RSS,
    /// and once they are gone it is back near where it was idle.
    /// </summary>
    [Fact]
    public async Task Declared_sizes_that_never_arrive_keep_the_broker_small()
    {
        string dataDir = Path.Combine(Path.GetTempPath(), "kiou-rss-" + Guid.NewGuid().ToString("N"));
        var sockets = new List<Socket>();
        try
        {
            using var broker = BrokerProcess.Start(dataDir);
            await Clients.CreateTopicAsync(broker.Bootstrap, "rss", 1);
            using (var producer = Clients.Producer(broker.Bootstrap, Acks.Leader))
                await producer.ProduceAsync(new TopicPartition("rss", 0), new Message<byte[]?, byte[]?> { Value = [1] });
            await Task.Delay(500);
            long idleMiB = ManyConnectionsTests.RssKiB(broker.ProcessId) >> 10;

            byte[] start = new byte[4 + 70_000];
            BinaryPrimitives.WriteInt32BigEndian(start, 100_000_000);
            BinaryPrimitives.WriteInt16BigEndian(start.AsSpan(4), 0); // Produce
            BinaryPrimitives.WriteInt16BigEndian(start.AsSpan(6), 7);
            var ep = new IPEndPoint(IPAddress.Loopback, broker.Port);
            for (int i = 0; i < 20; i++)
            {
                var s = await ConnectionLimitTests.ConnectAsync(ep);
                sockets.Add(s);
                await s.SendAsync(start, SocketFlags.None); // then stall
            }
            await Task.Delay(1000);
            long stalledMiB = ManyConnectionsTests.RssKiB(broker.ProcessId) >> 10;
            foreach (var s in sockets)
                s.Dispose();
            sockets.Clear();
            await Task.Delay(1000);
            long afterMiB = ManyConnectionsTests.RssKiB(broker.ProcessId) >> 10;
            Console.Error.WriteLine($"[declared sizes] broker RSS idle {idleMiB} MiB, with 20 stalled 100 MB requests {stalledMiB} MiB, after {afterMiB} MiB");
            Assert.True(stalledMiB < 300, $"the broker holds {stalledMiB} MiB RSS (idle: {idleMiB} MiB) while 20 connections have declared 100 MB each and sent 70 kB");
            Assert.True(afterMiB < idleMiB + 100, $"the broker holds {afterMiB} MiB RSS after the stalled connections closed (idle: {idleMiB} MiB)");
            Assert.Equal(0, broker.Terminate(TimeSpan.FromSeconds(20)));
        }
        finally
        {
            foreach (var s in sockets)
                s.Dispose();
            try
            {
                Directory.Delete(dataDir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }
}
