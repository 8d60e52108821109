using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Kiou.Broker.Hosting;
using Kiou.Broker.Security;
using Kiou.IoUring;

namespace Kiou.Broker.Network;

/// <summary>
/// Accepts TCP connections on one address and runs a <see cref="Connection"/> for each. Connection limits are Kafka's,
/// counted per listener (docs/design/request-path.md): at KIOU_MAX_CONNECTIONS a new connection closes the least
/// recently active idle one (no request in flight) or, while none is idle, waits to be accepted; beyond
/// KIOU_MAX_CONNECTIONS_PER_IP a new connection from that address is closed at once. One sweep closes connections idle
/// for KIOU_CONNECTIONS_MAX_IDLE_MS and those whose request has not arrived whole within KIOU_REQUEST_ARRIVAL_TIMEOUT_MS.
/// </summary>
public sealed class Listener : IAsyncDisposable
{
    readonly Socket _socket;
    readonly RequestRouter _router;
    readonly BrokerConfig _config;
    readonly Log _log;
    readonly ListenerKind _kind;
    readonly CancellationTokenSource _stop = new();
    InFlightBudget? _budget;
    // Large request frames (RequestFrame); created with the budget, which bounds what is rented from it.
    NativeFramePool? _frames;
    readonly ConcurrentDictionary<Connection, Task> _connections = new();
    Task? _accept;
    Task? _sweep;

    // Admission: guarded by _admission. _closingCount: connections this listener has asked to close (idle, slow,
    // evicted) that have not ended yet; they no longer count against KIOU_MAX_CONNECTIONS.
    readonly object _admission = new();
    readonly Dictionary<IPAddress, int> _perIp = new();
    int _closingCount;

    // max.connections / max.connections.per.ip: KIOU_* at start, then dynamic broker configs (SetLimits).
    int _maxConnections, _maxConnectionsPerIp;
    System.Collections.Frozen.FrozenDictionary<IPAddress, int> _perIpOverrides = System.Collections.Frozen.FrozenDictionary<IPAddress, int>.Empty;

    // Rate-limited log lines, one per reason: what was closed since the last line.
    readonly LogGate _idleLog = new(), _slowLog = new(), _evictLog = new(), _perIpLog = new(), _fullLog = new(), _descriptorsLog = new();

    Listener(Socket socket, RequestRouter router, BrokerConfig config, Log log, ListenerKind kind, SecurityProtocol protocol)
    {
        Protocol = protocol;
        _socket = socket;
        _router = router;
        _config = config;
        _log = log;
        _kind = kind;
        _maxConnections = config.MaxConnections;
        _maxConnectionsPerIp = config.MaxConnectionsPerIp;
    }

    /// <summary>
    /// New limits from the dynamic broker configs (Kafka's DynamicConnectionQuota): they apply to connections that
    /// arrive from now on; open connections stay, as in Kafka.
    /// </summary>
    public void SetLimits(int maxConnections, int maxConnectionsPerIp, System.Collections.Frozen.FrozenDictionary<IPAddress, int> perIpOverrides)
    {
        Volatile.Write(ref _maxConnections, maxConnections);
        Volatile.Write(ref _maxConnectionsPerIp, maxConnectionsPerIp);
        Volatile.Write(ref _perIpOverrides, perIpOverrides);
    }

    public IPEndPoint LocalEndPoint => (IPEndPoint)_socket.LocalEndPoint!;
    public ListenerKind Kind => _kind;

    /// <summary>Kafka's security.protocol of this listener: whether its connections use TLS and must authenticate.</summary>
    public SecurityProtocol Protocol { get; }

    /// <summary>The broker listener's settings (name, advertised endpoint; the bound port); null for the controller
    /// listener. Set before <see cref="Start"/>.</summary>
    public BrokerListener? Endpoint { get; set; }

    /// <summary>TLS for an SSL or SASL_SSL listener; set before <see cref="Start"/>.</summary>
    public TlsServer? Tls { get; set; }

    /// <summary>Request bytes held by this listener's connections (read, not yet answered); for tests.</summary>
    internal long QueuedRequestBytes => Volatile.Read(ref _budget)?.Bytes ?? 0;

    // The scans below enumerate the dictionary itself: lock-free and without the snapshot that Keys copies.

    /// <summary>Native frame memory rented by this listener's connections and kept for reuse; for tests.</summary>
    internal (long Rented, long Retained, long RetainedMax) FrameBytes =>
        Volatile.Read(ref _frames) is { } f ? (f.RentedBytes, f.RetainedBytes, f.RetainedBytesMax) : (0, 0, 0);

    /// <summary>Frame memory kept for reuse between requests: enough for the frames in flight of a few producers of
    /// large batches, so a steady load maps nothing; beyond it a returned frame goes back to the system.</summary>
    internal const long FramesRetainedBytesMax = 16L << 20;

    /// <summary>Open connections; for tests.</summary>
    internal int ConnectionCount => _connections.Count;

    /// <summary>Buffer bytes held by large requests still arriving; for tests.</summary>
    internal long PartialRequestBytes
    {
        get
        {
            long sum = 0;
            foreach (var (c, _) in _connections)
                sum += c.PartialRequestBytes;
            return sum;
        }
    }

    /// <summary>Binds and listens; throws <see cref="ConfigException"/> with a sentence for the operator when it can't.</summary>
    public static Listener Bind(string host, int port, RequestRouter router, BrokerConfig config, Log log, ListenerKind kind, SecurityProtocol protocol = SecurityProtocol.Plaintext, string? variable = null)
    {
        IPAddress address = ResolveHost(host, kind);
        var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            // No ReuseAddress: on Linux .NET maps it to SO_REUSEPORT too, which would let a second broker bind the
            // same port. .NET already sets SO_REUSEADDR on Unix, so a restart can rebind despite TIME_WAIT.
            socket.Bind(new IPEndPoint(address, port));
            socket.Listen(512);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            variable ??= kind == ListenerKind.Broker ? "KIOU_PORT" : "KIOU_CONTROLLER_PORT";
            string why = e.SocketErrorCode switch
            {
                SocketError.AddressAlreadyInUse => "the address is already in use (is another broker running?); stop the other process or choose another port with " + variable,
                SocketError.AccessDenied => "permission denied; choose a port above 1023 with " + variable,
                SocketError.AddressNotAvailable => "that address is not on this machine; check " + (variable == "KIOU_LISTENERS" ? variable : kind == ListenerKind.Broker ? "KIOU_HOST" : "KIOU_CONTROLLER_HOST"),
                _ => e.Message,
            };
            throw new ConfigException($"cannot listen on {host}:{port} ({kind.ToString().ToLowerInvariant()} listener): {why}");
        }
        return new Listener(socket, router, config, log, kind, protocol);
    }

    static IPAddress ResolveHost(string host, ListenerKind kind)
    {
        if (IPAddress.TryParse(host, out var ip))
            return ip;
        if (host == "localhost")
            return IPAddress.Loopback;
        try
        {
            var addresses = Dns.GetHostAddresses(host);
            return addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ?? addresses[0];
        }
        catch (Exception e) when (e is SocketException or IndexOutOfRangeException)
        {
            throw new ConfigException($"cannot resolve {kind.ToString().ToLowerInvariant()} listener host '{host}'");
        }
    }

    public void Start()
    {
        _accept = AcceptLoopAsync();
        _sweep = SweepLoopAsync();
    }

    string Name => _kind == ListenerKind.Broker ? (Endpoint is { } e ? $"broker listener {e.Name}" : "broker listener") : "controller listener";

    string MetricName => _kind == ListenerKind.Broker ? "broker" : "controller";

    async Task AcceptLoopAsync()
    {
        // Back-off after a failed accept (EMFILE: the connection stays queued and accept fails again at once):
        // doubling up to a second, one log line per run of failures instead of one per attempt.
        int backoffMs = 0;
        int failures = 0;
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _socket.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                if (failures++ == 0)
                    _log.Warn($"{_kind.ToString().ToLowerInvariant()} listener: accept failed: {e.Message}; retrying with a back-off (too many open files? raise `ulimit -n` or lower KIOU_MAX_PARTITIONS)");
                backoffMs = Math.Clamp(backoffMs * 2, 10, 1000);
                try
                {
                    await Task.Delay(backoffMs, _stop.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                continue;
            }
            if (failures > 0)
            {
                _log.Info($"{_kind.ToString().ToLowerInvariant()} listener: accepting again after {failures} failed accept(s)");
                failures = 0;
                backoffMs = 0;
            }
            IPAddress? ip = (client.RemoteEndPoint as IPEndPoint)?.Address;
            if (Kiou.IoUring.Interop.DescriptorLimit.InHeadroom(client.SafeHandle))
            {
                _router.Metrics?.Refused(MetricName);
                if (_descriptorsLog.Pass(out int held))
                    _log.Warn($"{Name}: closed a new connection from {ip}: the broker is within {Kiou.IoUring.Interop.DescriptorLimit.Headroom} of its {Kiou.IoUring.Interop.DescriptorLimit.Soft} file descriptors, which it keeps for its threads and files{(held > 0 ? $" ({held} more closed since the last line)" : "")}; raise `ulimit -n`, or lower KIOU_MAX_CONNECTIONS or KIOU_MAX_PARTITIONS");
                client.Dispose();
                continue;
            }
            bool admitted;
            try
            {
                admitted = await AdmitAsync(client, ip).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                client.Dispose();
                return;
            }
            if (!admitted)
            {
                _router.Metrics?.Refused(MetricName);
                client.Dispose();
                continue;
            }
            _router.Metrics?.Accepted(MetricName);
            _budget ??= new InFlightBudget(_config.QueuedMaxRequestBytes);
            _frames ??= new NativeFramePool(Math.Min(_config.QueuedMaxRequestBytes, FramesRetainedBytesMax));
            var connection = new Connection(client, _router, _config, _log, _kind, _stop.Token, _budget, _frames, Protocol, Endpoint, Tls);
            lock (_admission)
                _connections[connection] = RunConnectionAsync(connection, ip);
        }
    }

    /// <summary>
    /// Kafka's ConnectionQuotas for one listener. Over the per-address limit: false (close it, as Kafka does). At
    /// KIOU_MAX_CONNECTIONS: the least recently active idle connection is closed to make room (Kafka does this on its
    /// inter-broker listener; here every client gets it, so idle connections can never lock out a working client);
    /// while every connection has a request in flight, the new one waits, as Kafka's acceptor blocks.
    /// </summary>
    async Task<bool> AdmitAsync(Socket client, IPAddress? ip)
    {
        bool waited = false;
        while (true)
        {
            Connection? victim = null;
            int maxConnections = Volatile.Read(ref _maxConnections), maxPerIp = Volatile.Read(ref _maxConnectionsPerIp);
            var overrides = Volatile.Read(ref _perIpOverrides);
            if (ip is not null && overrides.Count > 0 && overrides.TryGetValue(ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : ip, out int own))
                maxPerIp = own;
            lock (_admission)
            {
                if (ip is not null && _perIp.GetValueOrDefault(ip) >= maxPerIp)
                {
                    if (_perIpLog.Pass(out int more))
                        _log.Info($"{Name}: closed a new connection from {client.RemoteEndPoint}: that address has {maxPerIp} connections open already (max.connections.per.ip, its overrides, KIOU_MAX_CONNECTIONS_PER_IP){More(more)}");
                    return false;
                }
                if (_connections.Count - _closingCount < maxConnections)
                {
                    if (ip is not null)
                        _perIp[ip] = _perIp.GetValueOrDefault(ip) + 1;
                    return true;
                }
                victim = LeastRecentlyActiveIdle();
                if (victim is not null)
                {
                    _closingCount++;
                    if (ip is not null)
                        _perIp[ip] = _perIp.GetValueOrDefault(ip) + 1;
                }
            }
            if (victim is not null)
            {
                victim.Close();
                if (_evictLog.Pass(out int more))
                    _log.Info($"{Name}: {maxConnections} connections are open (max.connections, KIOU_MAX_CONNECTIONS); closed the least recently active idle one, from {victim.Remote} (idle {Environment.TickCount64 - victim.LastActiveMs} ms), to admit {client.RemoteEndPoint}{More(more)}");
                return true;
            }
            if (!waited && _fullLog.Pass(out int skipped))
                _log.Warn($"{Name}: {maxConnections} connections are open (max.connections, KIOU_MAX_CONNECTIONS) and every one has a request in flight; {client.RemoteEndPoint} waits until one ends or goes idle{More(skipped)}");
            waited = true;
            await Task.Delay(AdmitRetryMs, _stop.Token).ConfigureAwait(false);
        }
    }

    /// <summary>How often a connection waiting at KIOU_MAX_CONNECTIONS looks again for room.</summary>
    const int AdmitRetryMs = 50;

    /// <summary>The idle connection (no request in flight or arriving) whose last activity is oldest; marks it closing.
    /// A scan of all connections: it runs only for a connection beyond the limit.</summary>
    Connection? LeastRecentlyActiveIdle()
    {
        Connection? oldest = null;
        long oldestMs = long.MaxValue;
        foreach (var (c, _) in _connections)
        {
            if (c.IsMarkedClosing || !c.IsIdle)
                continue;
            long at = c.LastActiveMs;
            if (at < oldestMs)
            {
                oldest = c;
                oldestMs = at;
            }
        }
        if (oldest is not null && !oldest.TryMarkClosing())
            return null; // cannot happen under the lock; the next round looks again
        return oldest;
    }

    async Task RunConnectionAsync(Connection connection, IPAddress? ip)
    {
        await Task.Yield();
        try
        {
            await connection.RunAsync().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _log.Error($"connection from {connection.Remote}: unexpected error while closing it: {e}");
        }
        finally
        {
            _router.Metrics?.Closed(MetricName);
            lock (_admission)
            {
                _connections.TryRemove(connection, out _);
                if (connection.IsMarkedClosing)
                    _closingCount--;
                if (ip is not null && _perIp.TryGetValue(ip, out int n))
                {
                    if (n <= 1)
                        _perIp.Remove(ip);
                    else
                        _perIp[ip] = n - 1;
                }
            }
        }
    }

    /// <summary>
    /// One sweep for all connections: closes those idle longer than KIOU_CONNECTIONS_MAX_IDLE_MS (as Kafka's
    /// Selector does) and those whose started request has not arrived whole within KIOU_REQUEST_ARRIVAL_TIMEOUT_MS (so
    /// a client that trickles or stalls cannot hold a buffer). Both close gracefully: what was read is answered.
    /// </summary>
    async Task SweepLoopAsync()
    {
        long idleMs = _config.ConnectionsMaxIdleMs;
        long arrivalMs = _config.RequestArrivalTimeoutMs;
        // A quarter of the shorter bound, within 10 ms..1 s: a connection is closed at most that late.
        long tickMs = Math.Clamp(Math.Min(idleMs > 0 ? idleMs : long.MaxValue, arrivalMs) / 4, 10, 1000);
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(tickMs));
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token).ConfigureAwait(false))
                Sweep(Environment.TickCount64, idleMs, arrivalMs);
        }
        catch (OperationCanceledException)
        {
        }
    }

    void Sweep(long now, long idleMs, long arrivalMs)
    {
        int idle = 0, slow = 0;
        Connection? firstIdle = null;
        foreach (var (c, _) in _connections)
        {
            if (c.IsMarkedClosing)
            {
                // Closed gracefully and still sending to a client that does not read: its socket is closed under it,
                // as at shutdown.
                if (now - c.ClosingSinceMs > (long)CloseGrace.TotalMilliseconds)
                    c.Abort();
                continue;
            }
            long started = c.FrameStartedMs;
            if (started != 0 && now - started > arrivalMs)
            {
                if (!MarkClosing(c))
                    continue;
                c.Close();
                slow++;
                if (_slowLog.Pass(out int more))
                    _log.Warn($"{Name}: closed the connection from {c.Remote}: a request started arriving {now - started} ms ago and has not arrived whole (KIOU_REQUEST_ARRIVAL_TIMEOUT_MS={arrivalMs}); a client sending too slowly, or stalled{More(more)}");
            }
            else if (idleMs > 0 && c.IsIdle && now - c.LastActiveMs > idleMs)
            {
                if (!MarkClosing(c))
                    continue;
                c.Close();
                firstIdle ??= c;
                idle++;
            }
        }
        if (idle > 0)
        {
            _idleLog.Add(idle - 1);
            if (_idleLog.Pass(out int more))
                _log.Info($"{Name}: closed {1 + more} connection(s) idle for more than {idleMs} ms (KIOU_CONNECTIONS_MAX_IDLE_MS) since the last such line, among them the one from {firstIdle!.Remote}");
        }
    }

    bool MarkClosing(Connection c)
    {
        lock (_admission)
        {
            if (!_connections.ContainsKey(c) || !c.TryMarkClosing())
                return false;
            _closingCount++;
            return true;
        }
    }

    static string More(int more) => more > 0 ? $" ({more} more since the last such line)" : "";

    /// <summary>Lets one log line through per interval; counts what it held back, for the next line to say.</summary>
    sealed class LogGate
    {
        const long IntervalMs = 10_000;
        long _lastMs = long.MinValue;
        int _held;

        public void Add(int count) => Interlocked.Add(ref _held, count);

        public bool Pass(out int held)
        {
            long now = Environment.TickCount64;
            long last = Volatile.Read(ref _lastMs);
            if ((last != long.MinValue && now - last < IntervalMs) || Interlocked.CompareExchange(ref _lastMs, now, last) != last)
            {
                Interlocked.Increment(ref _held);
                held = 0;
                return false;
            }
            held = Interlocked.Exchange(ref _held, 0);
            return true;
        }
    }

    /// <summary>Stops accepting. Open connections are closed once their in-flight requests have been answered.</summary>
    public async Task StopAcceptingAsync()
    {
        _stop.Cancel();
        _socket.Dispose();
        if (_accept is not null)
            await _accept.ConfigureAwait(false);
        if (_sweep is not null)
            await _sweep.ConfigureAwait(false);
    }

    /// <summary>How long connections get to end after being asked to close, and then after their sockets are closed.</summary>
    internal static readonly TimeSpan CloseGrace = TimeSpan.FromSeconds(3), AbortGrace = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Stops accepting and closes every connection. Shutdown never waits unbounded for clients: a connection still
    /// open after its grace (a send blocked on a client that does not read) has its socket closed under it.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        await StopAcceptingAsync().ConfigureAwait(false);
        foreach (var c in _connections.Keys)
            c.Close();
        if (await EndedWithinAsync(CloseGrace).ConfigureAwait(false))
        {
            _frames?.Dispose(); // frames of connections still open are unmapped as they come back
            return;
        }
        int stuck = _connections.Count;
        foreach (var c in _connections.Keys)
            c.Abort();
        if (await EndedWithinAsync(AbortGrace).ConfigureAwait(false))
        {
            _frames?.Dispose();
            _log.Info($"{_kind.ToString().ToLowerInvariant()} listener: closed the sockets of {stuck} connection(s) that did not end within {CloseGrace.TotalSeconds} s of the stop (clients not reading their answers)");
            return;
        }
        _log.Warn($"{_kind.ToString().ToLowerInvariant()} listener: {_connections.Count} connection(s) still had not ended {(CloseGrace + AbortGrace).TotalSeconds} s after the stop; stopping without them");
    }

    async Task<bool> EndedWithinAsync(TimeSpan grace)
    {
        // A connection's task ends without throwing (RunAsync catches what a client can cause), but shutdown must
        // go on to close the logs whatever a connection did.
        Task all = Task.WhenAll(_connections.Values);
        try
        {
            await all.WaitAsync(grace).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            return false;
        }
        catch (Exception e)
        {
            _log.Error($"{_kind.ToString().ToLowerInvariant()} listener: a connection failed while closing: {e}");
        }
        return true;
    }
}
