using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Kiou.Broker.Hosting;

namespace Kiou.Broker.Network;

/// <summary>Accepts TCP connections on one address and runs a <see cref="Connection"/> for each.</summary>
public sealed class Listener : IAsyncDisposable
{
    readonly Socket _socket;
    readonly RequestRouter _router;
    readonly BrokerConfig _config;
    readonly Log _log;
    readonly ListenerKind _kind;
    readonly CancellationTokenSource _stop = new();
    InFlightBudget? _budget;
    readonly ConcurrentDictionary<Connection, Task> _connections = new();
    Task? _accept;

    Listener(Socket socket, RequestRouter router, BrokerConfig config, Log log, ListenerKind kind)
    {
        _socket = socket;
        _router = router;
        _config = config;
        _log = log;
        _kind = kind;
    }

    public IPEndPoint LocalEndPoint => (IPEndPoint)_socket.LocalEndPoint!;
    public ListenerKind Kind => _kind;

    /// <summary>Request bytes held by this listener's connections (read, not yet answered); for tests.</summary>
    internal long QueuedRequestBytes => Volatile.Read(ref _budget)?.Bytes ?? 0;

    /// <summary>Binds and listens; throws <see cref="ConfigException"/> with a sentence for the operator when it can't.</summary>
    public static Listener Bind(string host, int port, RequestRouter router, BrokerConfig config, Log log, ListenerKind kind)
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
            string variable = kind == ListenerKind.Broker ? "KIOU_PORT" : "KIOU_CONTROLLER_PORT";
            string why = e.SocketErrorCode switch
            {
                SocketError.AddressAlreadyInUse => "the address is already in use (is another broker running?); stop the other process or choose another port with " + variable,
                SocketError.AccessDenied => "permission denied; choose a port above 1023 with " + variable,
                SocketError.AddressNotAvailable => "that address is not on this machine; check " + (kind == ListenerKind.Broker ? "KIOU_HOST" : "KIOU_CONTROLLER_HOST"),
                _ => e.Message,
            };
            throw new ConfigException($"cannot listen on {host}:{port} ({kind.ToString().ToLowerInvariant()} listener): {why}");
        }
        return new Listener(socket, router, config, log, kind);
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

    public void Start() => _accept = AcceptLoopAsync();

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
            if (_connections.Count >= _config.MaxConnections)
            {
                _log.Warn($"{_kind.ToString().ToLowerInvariant()} listener: refusing {client.RemoteEndPoint}: {_config.MaxConnections} connections are open already");
                client.Dispose();
                continue;
            }
            _budget ??= new InFlightBudget(_config.QueuedMaxRequestBytes);
            var connection = new Connection(client, _router, _config, _log, _kind, _stop.Token, _budget);
            _connections[connection] = RunConnectionAsync(connection);
        }
    }

    async Task RunConnectionAsync(Connection connection)
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
            _connections.TryRemove(connection, out _);
        }
    }

    /// <summary>Stops accepting. Open connections are closed once their in-flight requests have been answered.</summary>
    public async Task StopAcceptingAsync()
    {
        _stop.Cancel();
        _socket.Dispose();
        if (_accept is not null)
            await _accept.ConfigureAwait(false);
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
            return;
        int stuck = _connections.Count;
        foreach (var c in _connections.Keys)
            c.Abort();
        if (await EndedWithinAsync(AbortGrace).ConfigureAwait(false))
        {
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
