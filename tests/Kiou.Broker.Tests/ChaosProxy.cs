using System.Net;
using System.Net.Sockets;

namespace Kiou.Broker.Tests;

/// <summary>
/// A TCP proxy between a client and the broker that forwards bytes unchanged and cuts connections at random
/// moments, so that clients retry requests: some cut before the broker read them whole, some after the broker
/// appended them but before the answer arrived (the case idempotence exists for).
/// </summary>
/// <remarks>
/// <para>Each accepted connection draws, from one seeded <see cref="Random"/> in accept order, whether it is cut
/// (probability <see cref="ChaosOptions.CutProbability"/>), in which direction, and after how many bytes in that
/// direction (uniform in [<see cref="ChaosOptions.MinBytesBeforeCut"/>, <see cref="ChaosOptions.MaxBytesBeforeCut"/>]).
/// A cut forwards exactly that many bytes, then resets both sockets (SO_LINGER 0). <see cref="CutAll"/> cuts every
/// open connection at once; <see cref="ChaosEnabled"/> = false stops new cuts (to let a test's final reads through).</para>
/// <para>Nothing is rewritten: Metadata answers carry the broker's advertised host and port. For a client to stay on
/// the proxy, run the proxy on the broker's port at another loopback address and advertise that address:
/// broker on 127.0.0.1:P with KIOU_ADVERTISED_HOST=127.0.0.2, proxy listening on 127.0.0.2:P (KIOU has no
/// advertised-port setting). <see cref="ForBroker"/> does this.</para>
/// </remarks>
public sealed class ChaosProxy : IAsyncDisposable
{
    readonly TcpListener _listener;
    readonly IPEndPoint _target;
    readonly ChaosOptions _options;
    readonly Random _random;
    readonly Lock _lock = new();
    readonly List<Pair> _open = new();
    readonly CancellationTokenSource _stop = new();
    readonly Task _acceptLoop;
    long _toBroker;
    long _toClient;
    int _accepted;
    int _cut;
    string? _lastError;

    public ChaosProxy(IPEndPoint target, ChaosOptions options, IPEndPoint? listen = null)
    {
        _target = target;
        _options = options;
        _random = new Random(options.Seed);
        _listener = new TcpListener(listen ?? new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Start();
        EndPoint = (IPEndPoint)_listener.LocalEndpoint;
        _acceptLoop = Task.Run(AcceptLoop);
    }

    /// <summary>
    /// A proxy on <paramref name="advertisedHost"/> at the broker's own port, for a broker started with
    /// KIOU_ADVERTISED_HOST = <paramref name="advertisedHost"/> and listening on 127.0.0.1:<paramref name="brokerPort"/>.
    /// </summary>
    public static ChaosProxy ForBroker(int brokerPort, ChaosOptions options, string advertisedHost = "127.0.0.2") =>
        new(new IPEndPoint(IPAddress.Loopback, brokerPort), options, new IPEndPoint(IPAddress.Parse(advertisedHost), brokerPort));

    public IPEndPoint EndPoint { get; }

    public string Bootstrap => $"{EndPoint.Address}:{EndPoint.Port}";

    /// <summary>False: connections are forwarded but no longer cut (already drawn budgets are ignored).</summary>
    public bool ChaosEnabled { get; set; } = true;

    public int ConnectionsAccepted => Volatile.Read(ref _accepted);

    public int ConnectionsCut => Volatile.Read(ref _cut);

    void CountCut() => Interlocked.Increment(ref _cut);

    public long BytesToBroker => Interlocked.Read(ref _toBroker);

    public long BytesToClient => Interlocked.Read(ref _toClient);

    /// <summary>For failure messages: the seed and what happened.</summary>
    public override string ToString() =>
        $"chaos proxy {Bootstrap} -> {_target} seed {_options.Seed}: {ConnectionsAccepted} connections, {ConnectionsCut} cut, {BytesToBroker} bytes to the broker, {BytesToClient} to clients{(Volatile.Read(ref _lastError) is { } e ? "; last error: " + e : "")}";

    /// <summary>Resets every open connection now.</summary>
    public int CutAll()
    {
        Pair[] open;
        lock (_lock)
        {
            open = _open.ToArray();
        }

        int n = 0;
        foreach (Pair p in open)
        {
            if (p.Abort(CountCut))
            {
                n++;
            }
        }

        return n;
    }

    async Task AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptSocketAsync(_stop.Token);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException ex)
            {
                Volatile.Write(ref _lastError, $"accept failed: {ex.Message}");
                continue;
            }

            Interlocked.Increment(ref _accepted);
            long budget = -1;
            bool toClient = false;
            lock (_lock)
            {
                if (_random.NextDouble() < _options.CutProbability)
                {
                    budget = _random.NextInt64(_options.MinBytesBeforeCut, _options.MaxBytesBeforeCut + 1);
                    toClient = _random.NextDouble() < _options.ToClientShare;
                }
            }

            _ = Task.Run(() => Serve(client, budget, toClient));
        }
    }

    async Task Serve(Socket client, long budget, bool cutToClient)
    {
        var broker = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        client.NoDelay = true;
        try
        {
            await broker.ConnectAsync(_target, _stop.Token);
        }
        catch (Exception ex)
        {
            Volatile.Write(ref _lastError, $"connecting to {_target} failed: {ex.Message}");
            Reset(client);
            broker.Dispose();
            return;
        }

        var pair = new Pair(client, broker);
        lock (_lock)
        {
            _open.Add(pair);
        }

        Task up = Pump(client, broker, pair, cutToClient ? -1 : budget, toBroker: true);
        Task down = Pump(broker, client, pair, cutToClient ? budget : -1, toBroker: false);
        await Task.WhenAll(up, down);
        pair.Close();
        lock (_lock)
        {
            _open.Remove(pair);
        }
    }

    /// <summary>Copies <paramref name="from"/> to <paramref name="to"/>; after <paramref name="budget"/> bytes (if not -1) cuts the pair.</summary>
    async Task Pump(Socket from, Socket to, Pair pair, long budget, bool toBroker)
    {
        byte[] buffer = new byte[64 * 1024];
        long forwarded = 0;
        try
        {
            while (true)
            {
                int n = await from.ReceiveAsync(buffer, SocketFlags.None, _stop.Token);
                if (n == 0)
                {
                    to.Shutdown(SocketShutdown.Send); // pass the half-close on
                    return;
                }

                int send = n;
                bool cut = budget >= 0 && ChaosEnabled && forwarded + n >= budget;
                if (cut)
                {
                    send = (int)(budget - forwarded);
                }

                int sent = 0;
                while (sent < send)
                {
                    sent += await to.SendAsync(buffer.AsMemory(sent, send - sent), SocketFlags.None, _stop.Token);
                }

                forwarded += send;
                if (toBroker)
                    Interlocked.Add(ref _toBroker, send);
                else
                    Interlocked.Add(ref _toClient, send);
                if (cut)
                {
                    pair.Abort(CountCut);
                    return;
                }
            }
        }
        catch (Exception) when (pair.Aborted || _stop.IsCancellationRequested)
        {
        }
        catch (Exception)
        {
            pair.Abort(); // one side reset: pass the reset on
        }
    }

    static void Reset(Socket s)
    {
        try
        {
            s.LingerState = new LingerOption(true, 0); // close sends RST: the peer sees a reset, not a clean end
        }
        catch (Exception)
        {
        }

        s.Dispose();
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        try
        {
            await _acceptLoop;
        }
        catch (Exception)
        {
        }

        ChaosEnabled = false;
        Pair[] open;
        lock (_lock)
        {
            open = _open.ToArray();
        }

        foreach (Pair p in open)
            p.Abort();
        _stop.Dispose();
    }

    sealed class Pair(Socket client, Socket broker)
    {
        int _aborted;

        public bool Aborted => Volatile.Read(ref _aborted) != 0;

        /// <summary>Resets both sockets; true for the call that did it, after <paramref name="counted"/> ran (before
        /// the reset, so a client that sees the reset also sees the count).</summary>
        public bool Abort(Action? counted = null)
        {
            if (Interlocked.Exchange(ref _aborted, 1) != 0)
                return false;
            counted?.Invoke();
            Reset(client);
            Reset(broker);
            return true;
        }

        /// <summary>Both directions ended cleanly: close without a reset, so nothing queued is dropped.</summary>
        public void Close()
        {
            if (Interlocked.Exchange(ref _aborted, 1) != 0)
                return;
            client.Dispose();
            broker.Dispose();
        }
    }
}

/// <summary>How a <see cref="ChaosProxy"/> cuts connections.</summary>
public sealed record ChaosOptions
{
    /// <summary>Seeds every random choice; print it when a test fails.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>Share of accepted connections that get cut (0: a plain proxy).</summary>
    public double CutProbability { get; init; } = 0.5;

    /// <summary>Of the cut connections, the share cut in the broker-to-client direction (answers lost after the broker acted).</summary>
    public double ToClientShare { get; init; } = 0.5;

    public long MinBytesBeforeCut { get; init; } = 1;

    public long MaxBytesBeforeCut { get; init; } = 1 << 20;
}
