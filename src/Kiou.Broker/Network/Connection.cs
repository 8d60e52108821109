using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using System.Runtime.InteropServices;
using Kiou.Broker.Hosting;
using Kiou.IoUring;
using Kiou.IoUring.Interop;
using Kiou.Protocol;
using Kiou.Protocol.Messages;
using FileRecords = Kiou.Storage.FileRecords;

namespace Kiou.Broker.Network;

/// <summary>
/// One client connection. The read loop takes whole frames, parses the header and body, and starts the handler;
/// the write loop sends responses strictly in request order (clients pipeline; a later request may finish first).
/// Every byte is untrusted: a bad size, an unknown API or version, or a body that does not parse closes this
/// connection with a log line and affects no other connection. In-flight requests are bounded per connection.
/// </summary>
public sealed class Connection
{
    readonly Socket _socket;
    readonly RequestRouter _router;
    readonly BrokerConfig _config;
    readonly Log _log;
    readonly ListenerKind _listener;
    readonly EndPoint? _remote;
    readonly CancellationTokenSource _closed;
    // Cancelled to stop reading (shutdown, an idle or slow connection being closed, or _closed): what was read is
    // still answered, then the connection ends.
    readonly CancellationTokenSource _stopReading;
    readonly Channel<RequestSlot> _pending;

    // For the listener's sweep (idle connections, requests arriving too slowly) and for choosing whom to close at
    // KIOU_MAX_CONNECTIONS. Times are Environment.TickCount64 milliseconds; 0 in _frameStartedMs: no request started.
    long _lastActiveMs = Environment.TickCount64;
    long _frameStartedMs;
    int _inFlight;
    int _unsent; // answers written but not yet handed to the socket (a client not reading keeps it set)
    int _partialBytes;
    int _closing;
    long _closingSinceMs;

    /// <summary>
    /// A request whose response is not sent yet. It owns its frame buffer and its charge to both budgets and gives
    /// them back exactly once, whichever way the request ends (answered, failed, cancelled, or the connection died):
    /// a leak here would hold the listener's shared budget for good.
    /// </summary>
    sealed class RequestSlot(Connection owner, RequestContext context, ValueTask<IKafkaMessage?> response, RequestFrame frame)
    {
        int _released;
        long _charged;

        public RequestContext Context { get; } = context;
        public ValueTask<IKafkaMessage?> Response { get; } = response;

        /// <summary>Counts the frame against both budgets; true when either is now full.</summary>
        public bool Charge()
        {
            _charged = frame.Capacity;
            return owner._budget.Add(_charged) | owner._listenerBudget.Add(_charged);
        }

        /// <summary>Returns the frame and the charge; only once the handler is done with the frame.</summary>
        public void Release()
        {
            if (Interlocked.Exchange(ref _released, 1) != 0)
                return;
            frame.Return(owner._frames);
            Volatile.Write(ref owner._lastActiveMs, Environment.TickCount64);
            Interlocked.Decrement(ref owner._inFlight);
            if (_charged > 0)
            {
                owner._budget.Release(_charged);
                owner._listenerBudget.Release(_charged);
            }
        }

        /// <summary>For a request that will not be answered: waits for its handler (which still reads the frame),
        /// drops the response and releases. Never throws.</summary>
        public async Task AbandonAsync()
        {
            try
            {
                (await Response.ConfigureAwait(false) as IDisposable)?.Dispose();
            }
            catch
            {
                // The connection is gone; nobody is left to tell.
            }
            Release();
        }
    }

    public Connection(Socket socket, RequestRouter router, BrokerConfig config, Log log, ListenerKind listener, CancellationToken shutdown, InFlightBudget? listenerBudget = null, NativeFramePool? frames = null, Kiou.Broker.Security.SecurityProtocol protocol = Kiou.Broker.Security.SecurityProtocol.Plaintext, Kiou.Broker.Security.BrokerListener? endpoint = null, Kiou.Broker.Security.TlsServer? tls = null)
    {
        Protocol = protocol;
        if (protocol is Kiou.Broker.Security.SecurityProtocol.SaslPlaintext or Kiou.Broker.Security.SecurityProtocol.SaslSsl && router.Sasl is { } sasl)
            _sasl = new Kiou.Broker.Security.SaslAuthenticator(sasl, principal => Principal = principal);
        _endpoint = endpoint;
        _tls = tls;
        _frames = frames ?? new NativeFramePool(0);
        _budget = new InFlightBudget(config.MaxInFlightBytesPerConnection);
        _listenerBudget = listenerBudget ?? new InFlightBudget(config.QueuedMaxRequestBytes);
        _socket = socket;
        _router = router;
        _config = config;
        _log = log;
        _listener = listener;
        _remote = socket.RemoteEndPoint;
        _closed = new CancellationTokenSource();
        _stopReading = CancellationTokenSource.CreateLinkedTokenSource(shutdown, _closed.Token);
        _pending = Channel.CreateBounded<RequestSlot>(new BoundedChannelOptions(config.MaxInFlightRequestsPerConnection)
        {
            SingleReader = true,
            SingleWriter = true,
        });
    }

    public EndPoint? Remote => _remote;

    // On a SASL listener: the authentication state; requests pass its gate before anything else.
    readonly Kiou.Broker.Security.SaslAuthenticator? _sasl;
    readonly Kiou.Broker.Security.BrokerListener? _endpoint;
    // Set for SSL and SASL_SSL listeners: the connection's bytes go through an SslStream, records included.
    readonly Kiou.Broker.Security.TlsServer? _tls;
    System.Net.Security.SslStream? _ssl;

    /// <summary>Its listener's security protocol.</summary>
    internal Kiou.Broker.Security.SecurityProtocol Protocol { get; }

    /// <summary>The connection's principal, set once when it authenticates; every request carries it (RequestContext).</summary>
    internal Kiou.Broker.Security.KafkaPrincipal Principal { get; set; } = Kiou.Broker.Security.KafkaPrincipal.Anonymous;

    /// <summary>No request read and unanswered, no answer unsent, none partly arrived.</summary>
    internal bool IsIdle => Volatile.Read(ref _inFlight) == 0 && Volatile.Read(ref _unsent) == 0 && Volatile.Read(ref _frameStartedMs) == 0;

    /// <summary>When bytes last arrived or a request was last answered (Environment.TickCount64 ms).</summary>
    internal long LastActiveMs => Volatile.Read(ref _lastActiveMs);

    /// <summary>When the first byte of a request still arriving came; 0 when none is.</summary>
    internal long FrameStartedMs => Volatile.Read(ref _frameStartedMs);

    /// <summary>Bytes of a large request's buffer held while the rest of it arrives; for tests.</summary>
    internal int PartialRequestBytes => Volatile.Read(ref _partialBytes);

    /// <summary>True for the first caller only: the listener closes a connection, and counts it as closing, once.</summary>
    internal bool TryMarkClosing()
    {
        if (Interlocked.Exchange(ref _closing, 1) != 0)
            return false;
        Volatile.Write(ref _closingSinceMs, Environment.TickCount64);
        return true;
    }

    /// <summary>When the listener asked it to close (Environment.TickCount64 ms).</summary>
    internal long ClosingSinceMs => Volatile.Read(ref _closingSinceMs);

    internal bool IsMarkedClosing => Volatile.Read(ref _closing) != 0;

    /// <summary>Asks the connection to close: it stops reading, answers the requests it has read, then ends. Safe to
    /// call at any time, also after the connection has ended.</summary>
    public void Close() => TryCancel(_stopReading);

    static void TryCancel(CancellationTokenSource cts)
    {
        try
        {
            cts.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The connection ended on its own between the caller's look-up and this call.
        }
    }

    public async Task RunAsync()
    {
        _socket.NoDelay = true;
        Stream stream = new NetworkStream(_socket, ownsSocket: true);
        if (_tls is not null)
        {
            var ssl = await HandshakeAsync(stream).ConfigureAwait(false);
            if (ssl is null)
            {
                await stream.DisposeAsync().ConfigureAwait(false);
                _stopReading.Dispose();
                _closed.Dispose();
                return;
            }
            stream = _ssl = ssl;
        }
        // Zero-byte reads: an idle connection waits for data without holding a buffer (as Kestrel does), so many
        // idle connections cost no read buffers.
        var input = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 65536, minimumReadSize: 16384, leaveOpen: true, useZeroByteReads: true));
        var output = PipeWriter.Create(stream, new StreamPipeWriterOptions(minimumBufferSize: 65536, leaveOpen: true));
        Task writer = WriteLoopAsync(output);
        try
        {
            await ReadLoopAsync(input, stream).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // The client went away or the broker is stopping.
            LogGone("reading", e);
        }
        catch (Exception e)
        {
            _log.Error($"connection from {_remote}: unexpected error, closing it: {e}");
        }
        finally
        {
            _pending.Writer.TryComplete();
        }
        try
        {
            await writer.ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            LogGone("answering", e);
        }
        catch (Exception e)
        {
            _log.Error($"connection from {_remote}: unexpected error while answering, closing it: {e}");
        }
        _closed.Cancel();
        // Whatever is still buffered belongs to a connection that is ending (every answer is flushed before the write
        // loop ends normally). Completing the writer would try to send it: forever to a client that does not read,
        // or failing against one that reset. So the socket closes first and the pipes are only given back.
        await stream.DisposeAsync().ConfigureAwait(false);
        await CompletePipesAsync(input, output).ConfigureAwait(false);
        _stopReading.Dispose();
        _closed.Dispose();
    }

    /// <summary>
    /// The server side of the TLS handshake, bounded: a client that stalls or sends something other than a TLS
    /// handshake is closed within the handshake deadline (at most KIOU_REQUEST_ARRIVAL_TIMEOUT_MS), with one
    /// rate-limited line. SslStream reads the handshake in records of bounded size, so nothing grows with what the
    /// client sends. Null: the handshake failed (logged); the caller closes the socket.
    /// </summary>
    async Task<System.Net.Security.SslStream?> HandshakeAsync(Stream inner)
    {
        var ssl = new System.Net.Security.SslStream(inner, leaveInnerStreamOpen: false);
        long deadlineMs = Math.Min(_config.RequestArrivalTimeoutMs, _tls!.Settings.HandshakeTimeoutMs);
        Volatile.Write(ref _frameStartedMs, Math.Max(1, Environment.TickCount64)); // the sweep's bound applies too
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_stopReading.Token);
        deadline.CancelAfter(TimeSpan.FromMilliseconds(deadlineMs));
        try
        {
            await ssl.AuthenticateAsServerAsync(_tls.Options(), deadline.Token).ConfigureAwait(false);
            Volatile.Write(ref _frameStartedMs, 0);
            Volatile.Write(ref _lastActiveMs, Environment.TickCount64);
            if (ssl.RemoteCertificate is { } cert)
            {
                Principal = Kiou.Broker.Security.TlsServer.PrincipalOf(cert);
                if (_log.IsEnabled(Log.Level.Debug))
                    _log.Debug($"connection from {_remote}: TLS {ssl.SslProtocol} with client certificate; principal {Principal}");
            }
            return ssl;
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException or System.Security.Authentication.AuthenticationException or InvalidOperationException)
        {
            Volatile.Write(ref _frameStartedMs, 0);
            string why = e is OperationCanceledException
                ? (_stopReading.IsCancellationRequested ? "the broker is stopping or closed it" : $"no complete handshake within {deadlineMs} ms (a client stalled, or not speaking TLS)")
                : e is System.Security.Authentication.AuthenticationException
                    ? $"{e.Message}{(e.InnerException is { } inner2 ? " (" + inner2.Message + ")" : "")} (a client not speaking TLS, not trusting this certificate, or whose certificate is expired, untrusted or missing while KIOU_SSL_CLIENT_AUTH requires one)"
                    : $"{e.Message} (the client went away)";
            if (_router.Refusals.ShouldLog(ClientAddress, "tls handshake", out int skipped))
                _log.Warn($"connection from {_remote}: TLS handshake failed on listener {_endpoint?.Name}: {why}; closing the connection{RefusalWarnings.Suffix(skipped)}");
            await ssl.DisposeAsync().ConfigureAwait(false);
            return null;
        }
    }

    /// <summary>Forces the connection to end: closes the socket, so a send blocked on a client that does not read
    /// returns. For shutdown, after <see cref="Close"/> has had its grace.</summary>
    public void Abort()
    {
        TryCancel(_closed);
        try
        {
            _socket.Dispose();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    async Task CompletePipesAsync(PipeReader input, PipeWriter output)
    {
        try
        {
            await input.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
        {
            LogGone("closing", e);
        }
        try
        {
            await output.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
        {
            LogGone("dropping unsent answers", e);
        }
    }

    void LogGone(string doing, Exception e)
    {
        if (_log.IsEnabled(Log.Level.Debug))
            _log.Debug($"connection from {_remote}: ended while {doing}: {e.Message} (the client went away or the broker is stopping)");
    }

    /// <summary>A request at least this large is read from the socket straight into its frame buffer once its size is
    /// known, instead of accumulating in the pipe and being copied out (one copy fewer for large Produce requests).</summary>
    internal const int DirectReadFrom = 64 * 1024;

    async Task ReadLoopAsync(PipeReader input, Stream stream)
    {
        var ct = _stopReading.Token;
        while (true)
        {
            ReadResult read = await input.ReadAsync(ct).ConfigureAwait(false);
            Volatile.Write(ref _lastActiveMs, Environment.TickCount64);
            ReadOnlySequence<byte> buffer = read.Buffer;
            RequestFrame partial = default;
            int partialSize = 0, partialHave = 0;
            try
            {
                while (buffer.Length >= 4)
                {
                    int size = ReadSize(buffer);
                    int maxSize = _sasl?.MaxFrameBytes(_config.MaxRequestBytes) ?? _config.MaxRequestBytes;
                    if (size <= 0 || size > maxSize)
                    {
                        _log.Warn($"connection from {_remote}: request size {size} is outside 1..{maxSize} (KIOU_SOCKET_REQUEST_MAX_BYTES; before SASL authentication at most {Kiou.Broker.Security.SaslAuthenticator.MaxReceiveBytes}); closing the connection");
                        return;
                    }
                    if (buffer.Length < 4L + size)
                    {
                        if (size >= DirectReadFrom && !read.IsCompleted)
                        {
                            // Take what the pipe has; the rest comes straight from the socket below, after AdvanceTo.
                            // The buffer grows as bytes arrive: a declared size alone takes no memory.
                            partial = RequestFrame.Rent(_frames, Math.Min(size, Math.Max(FirstDirectBuffer, (int)(buffer.Length - 4))));
                            Volatile.Write(ref _partialBytes, partial.Capacity);
                            partialSize = size;
                            partialHave = (int)(buffer.Length - 4);
                            buffer.Slice(4).CopyTo(partial.Span);
                            buffer = buffer.Slice(buffer.End);
                        }
                        break;
                    }
                    RequestFrame frame = RequestFrame.Rent(_frames, size);
                    buffer.Slice(4, size).CopyTo(frame.Span);
                    buffer = buffer.Slice(4 + size);
                    Volatile.Write(ref _frameStartedMs, 0);
                    if (!Dispatch(frame, size))
                        return;
                    await QueueAsync(ct).ConfigureAwait(false);
                }
                // A request has started arriving: the deadline for the rest runs from now (time spent waiting for
                // budget above is the broker's, not the client's).
                if ((!partial.IsEmpty || buffer.Length > 0) && Volatile.Read(ref _frameStartedMs) == 0)
                    Volatile.Write(ref _frameStartedMs, Math.Max(1, Environment.TickCount64));
            }
            finally
            {
                input.AdvanceTo(buffer.Start, buffer.End);
            }
            if (!partial.IsEmpty)
            {
                // No pipe read is in flight between ReadAsync calls, so reading the stream here keeps bytes in order.
                while (partialHave < partialSize)
                {
                    int n;
                    try
                    {
                        if (partialHave == partial.Capacity)
                        {
                            partial = Grow(partial, partialHave, partialSize);
                            Volatile.Write(ref _partialBytes, partial.Capacity);
                        }
                        n = await stream.ReadAsync(partial.Memory[partialHave..Math.Min(partialSize, partial.Capacity)], ct).ConfigureAwait(false);
                    }
                    catch
                    {
                        ReturnPartial(partial);
                        throw;
                    }
                    if (n == 0)
                    {
                        ReturnPartial(partial);
                        return; // the client closed mid-request
                    }
                    Volatile.Write(ref _lastActiveMs, Environment.TickCount64);
                    partialHave += n;
                }
                Volatile.Write(ref _partialBytes, 0);
                Volatile.Write(ref _frameStartedMs, 0);
                if (!Dispatch(partial, partialSize))
                    return;
                await QueueAsync(ct).ConfigureAwait(false);
                continue;
            }
            if (read.IsCompleted || read.IsCanceled)
                return;
        }
    }

    void ReturnPartial(RequestFrame partial)
    {
        partial.Return(_frames);
        Volatile.Write(ref _partialBytes, 0);
    }

    /// <summary>The first buffer of a request read straight from the socket; common large requests fit it whole.</summary>
    const int FirstDirectBuffer = 2 << 20;

    RequestFrame Grow(RequestFrame buffer, int have, int size)
    {
        RequestFrame bigger = RequestFrame.Rent(_frames, (int)Math.Min(size, 2L * buffer.Capacity));
        buffer.Span[..have].CopyTo(bigger.Span);
        buffer.Return(_frames);
        return bigger;
    }

    RequestSlot? _lastPending;

    // Request bytes read but not yet answered (frames still held), per connection and per listener (see InFlightBudget).
    readonly InFlightBudget _budget;
    readonly InFlightBudget _listenerBudget;
    readonly NativeFramePool _frames;

    /// <summary>Charges the request just dispatched and hands it to the write loop; waits while a budget is full.</summary>
    async ValueTask QueueAsync(CancellationToken ct)
    {
        RequestSlot slot = _lastPending!;
        _lastPending = null;
        Interlocked.Increment(ref _inFlight); // until the slot's Release
        bool full = slot.Charge();
        try
        {
            if (!_pending.Writer.TryWrite(slot))
                await _pending.Writer.WriteAsync(slot, ct).ConfigureAwait(false);
        }
        catch
        {
            _ = slot.AbandonAsync(); // never queued, so the write loop will not release it
            throw;
        }
        if (full)
        {
            await _budget.WaitForRoomAsync(ct).ConfigureAwait(false);
            await _listenerBudget.WaitForRoomAsync(ct).ConfigureAwait(false);
        }
    }

    static int ReadSize(ReadOnlySequence<byte> buffer)
    {
        Span<byte> b = stackalloc byte[4];
        buffer.Slice(0, 4).CopyTo(b);
        return BinaryPrimitives.ReadInt32BigEndian(b);
    }

    /// <summary>Parses one frame and starts its handler. False: close the connection (already logged).</summary>
    bool Dispatch(RequestFrame frame, int size)
    {
        if (_sasl is { ExpectsRawToken: true })
        {
            // After a SaslHandshake v0 the client sends its SASL tokens bare, without a request header.
            var tokenCtx = NewContext(SaslAuthenticateRequest.ApiKey, 0, 0, null);
            _lastPending = new RequestSlot(this, tokenCtx, _sasl.AuthenticateRaw(tokenCtx, frame.Span[..size]), frame);
            return true;
        }
        if (size < 8)
        {
            _log.Warn($"connection from {_remote}: request of {size} bytes is too short for a request header; closing the connection");
            frame.Return(_frames);
            return false;
        }
        ReadOnlySpan<byte> head = frame.Span;
        short apiKey = BinaryPrimitives.ReadInt16BigEndian(head);
        short version = BinaryPrimitives.ReadInt16BigEndian(head[2..]);
        int correlationId = BinaryPrimitives.ReadInt32BigEndian(head[4..]);
        if (_sasl?.Gate(apiKey) is { } refused)
        {
            if (_router.Refusals.ShouldLog(ClientAddress, refused, out int skipped))
                _log.Warn($"connection from {_remote}: {refused}{RefusalWarnings.Suffix(skipped)}");
            frame.Return(_frames);
            return false;
        }
        var handler = _router.Find(apiKey);
        if (handler is null)
        {
            if (_router.Refusals.ShouldLog(ClientAddress, $"api {apiKey}", out int skipped))
                _log.Warn($"connection from {_remote}: unknown or unsupported API key {apiKey} (version {version}); closing the connection as Kafka does{RefusalWarnings.Suffix(skipped)}");
            frame.Return(_frames);
            return false;
        }
        if (!handler.Serves(version))
        {
            if (apiKey == ApiVersionsRequest.ApiKey && version > handler.MaxVersion)
            {
                // README §4.2: answer a too-new ApiVersions with a v0 body, error 35 and our ApiVersions range.
                var ctx0 = NewContext(apiKey, 0, correlationId, null);
                _lastPending = new RequestSlot(this, ctx0, ValueTask.FromResult<IKafkaMessage?>(_router.UnsupportedApiVersionsResponse()), frame);
                return true;
            }
            // Kafka's SocketServer refuses a version it does not serve by closing the connection (only ApiVersions has
            // an answer every client can read); the client learns the ranges from ApiVersions.
            if (_router.Refusals.ShouldLog(ClientAddress, $"api {apiKey} v{version}", out int skipped))
                _log.Warn($"connection from {_remote}: {ApiMessageTypes.Name(apiKey)} version {version} is not served (we serve {Math.Max(handler.MinVersion, handler.MinServedVersion)}-{handler.MaxVersion}); closing the connection as Kafka does{RefusalWarnings.Suffix(skipped)}");
            frame.Return(_frames);
            return false;
        }
        ReadOnlyMemory<byte> memory = frame.Memory[..size];
        var reader = new KafkaReader(memory);
        var header = new RequestHeader();
        header.Read(ref reader, ApiMessageTypes.RequestHeaderVersion(apiKey, version));
        IKafkaMessage request = handler.CreateRequest();
        if (!reader.Failed)
            request.Read(ref reader, version);
        if (reader.Failed)
        {
            _log.Warn($"connection from {_remote} (client '{header.ClientId}'): malformed {ApiMessageTypes.Name(apiKey)} v{version} request (correlation id {correlationId}); closing the connection");
            frame.Return(_frames);
            return false;
        }
        var ctx = NewContext(apiKey, version, correlationId, header.ClientId);
        ValueTask<IKafkaMessage?> response;
        try
        {
            response = handler.Handle(ctx, request);
        }
        catch (Exception e)
        {
            response = ValueTask.FromException<IKafkaMessage?>(e);
        }
        _lastPending = new RequestSlot(this, ctx, response, frame);
        return true;
    }

    /// <summary>The client's address without the port: a client reconnecting after a refusal is the same client.</summary>
    string ClientAddress => (_remote as System.Net.IPEndPoint)?.Address.ToString() ?? _remote?.ToString() ?? "";

    RequestContext NewContext(short apiKey, short version, int correlationId, string? clientId) => new()
    {
        ApiKey = apiKey,
        ApiVersion = version,
        CorrelationId = correlationId,
        ClientId = clientId,
        Remote = _remote,
        Listener = _listener,
        Endpoint = _endpoint,
        Principal = Principal,
        SecurityProtocol = Protocol,
        Sasl = _sasl,
        StartTimestamp = System.Diagnostics.Stopwatch.GetTimestamp(),
        ConnectionClosed = _closed.Token,
        Stopping = _stopReading.Token,
    };

    /// <summary>Records shorter than this are copied into the response buffer (one small send beats three syscalls).</summary>
    internal const int DeferRecordsFrom = 16 * 1024;

    /// <summary>
    /// Sends a response whose records were deferred: the written bytes up to each deferred part through the pipe, then
    /// the part itself straight to the socket, from the file (sendfile) or from the read buffer. The pipe is flushed
    /// before every direct send, so bytes leave in order.
    /// </summary>
    async Task WriteWithDeferredAsync(PipeWriter output, KafkaWriter writer)
    {
        var ct = _closed.Token;
        int at = 0;
        foreach (var (position, bytes) in writer.Deferred)
        {
            output.Write(writer.WrittenSpan[at..position]);
            at = position;
            await output.FlushAsync(ct).ConfigureAwait(false);
            if (_ssl is not null)
                await SendThroughTlsAsync(_ssl, bytes, ct).ConfigureAwait(false);
            else if (MemoryMarshal.TryGetMemoryManager(bytes, out FileRecords? file))
                await SendFileAsync(file, ct).ConfigureAwait(false);
            else
                await SendAllAsync(bytes, ct).ConfigureAwait(false);
        }
        output.Write(writer.WrittenSpan[at..]);
    }

    async Task SendAllAsync(ReadOnlyMemory<byte> bytes, CancellationToken ct)
    {
        while (bytes.Length > 0)
        {
            int n = await _socket.SendAsync(bytes, SocketFlags.None, ct).ConfigureAwait(false);
            bytes = bytes[n..];
        }
    }

    /// <summary>Bytes read from a segment file per TLS write: sendfile cannot encrypt, so a file region is read in
    /// pieces of this size into a pooled buffer and written through the SslStream.</summary>
    internal const int TlsFileChunk = 256 * 1024;

    async Task SendThroughTlsAsync(System.Net.Security.SslStream ssl, ReadOnlyMemory<byte> bytes, CancellationToken ct)
    {
        if (!MemoryMarshal.TryGetMemoryManager(bytes, out FileRecords? file))
        {
            await ssl.WriteAsync(bytes, ct).ConfigureAwait(false);
            return;
        }
        byte[] buffer = ArrayPool<byte>.Shared.Rent(Math.Min(TlsFileChunk, file.Length));
        try
        {
            long sent = 0;
            while (sent < file.Length)
            {
                int want = (int)Math.Min(buffer.Length, file.Length - sent);
                int n = RandomAccess.Read(file.File, buffer.AsSpan(0, want), file.Position + sent);
                if (n <= 0)
                {
                    _log.Warn($"connection from {_remote}: {file.SegmentName} ended at position {file.Position + sent} while a fetch was sending it (truncated); closing the connection so the client fetches again");
                    throw new IOException("segment truncated during a TLS fetch");
                }
                await ssl.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
                sent += n;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>The whole region with sendfile(2), waiting for the socket whenever its buffer is full.</summary>
    async Task SendFileAsync(FileRecords file, CancellationToken ct)
    {
        long sent = 0;
        var socket = _socket.SafeHandle;
        while (sent < file.Length)
        {
            long n = SendFile.Send(socket, file.File, file.Position + sent, (int)(file.Length - sent));
            if (n > 0)
            {
                sent += n;
                continue;
            }
            if (n == SendFile.WouldBlock)
            {
                await SendFile.WaitWritableAsync(socket, ct).ConfigureAwait(false);
                continue;
            }
            if (n == 0)
            {
                // The segment shrank under the fetch (truncated by recovery after an I/O error): the response's size
                // is on the wire already, so the only honest answer is to end the connection; the client retries.
                _log.Warn($"connection from {_remote}: {file.SegmentName} ended at position {file.Position + sent} while a fetch was sending it (truncated); closing the connection so the client fetches again");
                throw new IOException("segment truncated during sendfile");
            }
            throw new IOException($"sendfile to the client failed (errno {-n})");
        }
    }

    async Task WriteLoopAsync(PipeWriter output)
    {
        try
        {
            await AnswerAsync(output).ConfigureAwait(false);
        }
        finally
        {
            // However answering ended, the read loop stops and every request still queued gives back its frame and
            // budget once its handler is done; the channel completes when the read loop has ended.
            _closed.Cancel();
            var reader = _pending.Reader;
            while (await reader.WaitToReadAsync().ConfigureAwait(false))
            {
                while (reader.TryRead(out var left))
                    await left.AbandonAsync().ConfigureAwait(false);
            }
        }
    }

    async Task AnswerAsync(PipeWriter output)
    {
        // Records of a Fetch response are not copied into the response buffer: they go out from where they are,
        // the segment file (sendfile, KIOU_FETCH_ZERO_COPY=true) or the read buffer (one copy into the socket).
        using var writer = new KafkaWriter(4096) { DeferRecordsFrom = DeferRecordsFrom };
        var header = new ResponseHeader();
        var reader = _pending.Reader;
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            while (reader.TryRead(out var pending))
            {
                IKafkaMessage? response;
                try
                {
                    response = await pending.Response.ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (_stopReading.IsCancellationRequested)
                {
                    // A handler that gave up because the connection is stopping (a parked join): its answer is
                    // missing, so the connection ends here, the answers before it sent.
                    pending.Release();
                    _closed.Cancel();
                    continue;
                }
                catch (Exception e)
                {
                    pending.Release();
                    _router.Metrics?.RequestFailed(pending.Context.ApiKey);
                    _log.Error($"{pending.Context.Client}: {ApiMessageTypes.Name(pending.Context.ApiKey)} v{pending.Context.ApiVersion} failed inside the broker; closing the connection: {e}");
                    _closed.Cancel();
                    return;
                }
                Volatile.Write(ref _unsent, 1); // before the release, so the connection never looks idle in between
                _router.Metrics?.Request(pending.Context.ApiKey, pending.Context.ApiVersion, pending.Context.StartTimestamp, response);
                pending.Release();
                if (_closed.IsCancellationRequested)
                {
                    (response as IDisposable)?.Dispose();
                    continue; // drain remaining handlers so their frames and buffers go back to their pools
                }
                if (response is not null)
                {
                    writer.Reset();
                    int sizeAt = writer.ReserveInt32();
                    header.CorrelationId = pending.Context.CorrelationId;
                    if (response is not Kiou.Broker.Security.RawSaslToken)
                        header.Write(writer, ApiMessageTypes.ResponseHeaderVersion(pending.Context.ApiKey, pending.Context.ApiVersion));
                    response.Write(writer, pending.Context.ApiVersion);
                    writer.PatchInt32(sizeAt, checked((int)(writer.Length - 4 + writer.DeferredBytes)));
                    if (writer.Deferred.Count == 0)
                    {
                        output.Write(writer.WrittenSpan);
                    }
                    else
                    {
                        try
                        {
                            await WriteWithDeferredAsync(output, writer).ConfigureAwait(false);
                        }
                        catch
                        {
                            (response as IDisposable)?.Dispose();
                            _closed.Cancel(); // the read loop stops too; the response is cut, so the connection ends
                            throw;
                        }
                    }
                }
                (response as IDisposable)?.Dispose();
                if (pending.Context.CloseConnection)
                {
                    await output.FlushAsync(_closed.Token).ConfigureAwait(false);
                    if (pending.Context.CloseReason is { } reason)
                    {
                        if (_router.Refusals.ShouldLog(ClientAddress, reason, out int skipped))
                            _log.Warn($"{pending.Context.Client}: {reason}{RefusalWarnings.Suffix(skipped)}");
                    }
                    else
                    {
                        _log.Warn($"{pending.Context.Client}: closing the connection after a failed {ApiMessageTypes.Name(pending.Context.ApiKey)} that expected no response (acks=0), as Kafka does, so the client notices");
                    }
                    _closed.Cancel();
                    continue;
                }
            }
            if (!_closed.IsCancellationRequested)
            {
                FlushResult flushed = await output.FlushAsync(_closed.Token).ConfigureAwait(false);
                Volatile.Write(ref _lastActiveMs, Environment.TickCount64);
                Volatile.Write(ref _unsent, 0);
                if (flushed.IsCompleted)
                    _closed.Cancel();
            }
        }
    }
}
