using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Kiou.Broker.Hosting;
using Kiou.Protocol;
using Kiou.Protocol.Messages;

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
    readonly Channel<Pending> _pending;

    /// <summary>A request whose response is not sent yet. The frame buffer is returned once the handler is done.</summary>
    readonly struct Pending(RequestContext context, ValueTask<IKafkaMessage?> response, byte[] frame)
    {
        public RequestContext Context { get; } = context;
        public ValueTask<IKafkaMessage?> Response { get; } = response;
        public byte[] Frame { get; } = frame;
    }

    public Connection(Socket socket, RequestRouter router, BrokerConfig config, Log log, ListenerKind listener, CancellationToken shutdown)
    {
        _socket = socket;
        _router = router;
        _config = config;
        _log = log;
        _listener = listener;
        _remote = socket.RemoteEndPoint;
        _closed = CancellationTokenSource.CreateLinkedTokenSource(shutdown);
        _pending = Channel.CreateBounded<Pending>(new BoundedChannelOptions(config.MaxInFlightRequestsPerConnection)
        {
            SingleReader = true,
            SingleWriter = true,
        });
    }

    public EndPoint? Remote => _remote;

    /// <summary>Asks the connection to close; safe to call at any time, also after the connection has ended.</summary>
    public void Close()
    {
        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The connection ended on its own between the caller's look-up and this call.
        }
    }

    public async Task RunAsync()
    {
        _socket.NoDelay = true;
        var stream = new NetworkStream(_socket, ownsSocket: true);
        var input = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 65536, minimumReadSize: 16384, leaveOpen: true));
        var output = PipeWriter.Create(stream, new StreamPipeWriterOptions(minimumBufferSize: 65536, leaveOpen: true));
        Task writer = WriteLoopAsync(output);
        try
        {
            await ReadLoopAsync(input).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // The client went away or the broker is stopping.
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
        }
        catch (Exception e)
        {
            _log.Error($"connection from {_remote}: unexpected error while answering, closing it: {e}");
        }
        _closed.Cancel();
        await input.CompleteAsync().ConfigureAwait(false);
        await output.CompleteAsync().ConfigureAwait(false);
        await stream.DisposeAsync().ConfigureAwait(false);
        _closed.Dispose();
    }

    async Task ReadLoopAsync(PipeReader input)
    {
        var ct = _closed.Token;
        while (true)
        {
            ReadResult read = await input.ReadAsync(ct).ConfigureAwait(false);
            ReadOnlySequence<byte> buffer = read.Buffer;
            try
            {
                while (buffer.Length >= 4)
                {
                    int size = ReadSize(buffer);
                    if (size <= 0 || size > _config.MaxRequestBytes)
                    {
                        _log.Warn($"connection from {_remote}: request size {size} is outside 1..{_config.MaxRequestBytes} (KIOU_SOCKET_REQUEST_MAX_BYTES); closing the connection");
                        return;
                    }
                    if (buffer.Length < 4L + size)
                        break;
                    byte[] frame = ArrayPool<byte>.Shared.Rent(size);
                    buffer.Slice(4, size).CopyTo(frame);
                    buffer = buffer.Slice(4 + size);
                    if (!Dispatch(frame, size))
                        return;
                    if (_pending.Writer.TryWrite(_lastPending))
                        continue;
                    await _pending.Writer.WriteAsync(_lastPending, ct).ConfigureAwait(false);
                }
            }
            finally
            {
                input.AdvanceTo(buffer.Start, buffer.End);
            }
            if (read.IsCompleted || read.IsCanceled)
                return;
        }
    }

    Pending _lastPending;

    static int ReadSize(ReadOnlySequence<byte> buffer)
    {
        Span<byte> b = stackalloc byte[4];
        buffer.Slice(0, 4).CopyTo(b);
        return BinaryPrimitives.ReadInt32BigEndian(b);
    }

    /// <summary>Parses one frame and starts its handler. False: close the connection (already logged).</summary>
    bool Dispatch(byte[] frame, int size)
    {
        if (size < 8)
        {
            _log.Warn($"connection from {_remote}: request of {size} bytes is too short for a request header; closing the connection");
            ArrayPool<byte>.Shared.Return(frame);
            return false;
        }
        short apiKey = BinaryPrimitives.ReadInt16BigEndian(frame);
        short version = BinaryPrimitives.ReadInt16BigEndian(frame.AsSpan(2));
        int correlationId = BinaryPrimitives.ReadInt32BigEndian(frame.AsSpan(4));
        var handler = _router.Find(apiKey);
        if (handler is null)
        {
            _log.Warn($"connection from {_remote}: unknown or unsupported API key {apiKey} (version {version}); closing the connection as Kafka does");
            ArrayPool<byte>.Shared.Return(frame);
            return false;
        }
        if (!handler.Serves(version))
        {
            if (apiKey == ApiVersionsRequest.ApiKey && version > handler.MaxVersion)
            {
                // README §4.2: answer a too-new ApiVersions with a v0 body, error 35 and our ApiVersions range.
                var ctx0 = NewContext(apiKey, 0, correlationId, null);
                _lastPending = new Pending(ctx0, ValueTask.FromResult<IKafkaMessage?>(_router.UnsupportedApiVersionsResponse()), frame);
                return true;
            }
            _log.Warn($"connection from {_remote}: {ApiMessageTypes.Name(apiKey)} version {version} is not served (we serve {Math.Max(handler.MinVersion, handler.MinServedVersion)}-{handler.MaxVersion}); closing the connection");
            ArrayPool<byte>.Shared.Return(frame);
            return false;
        }
        var memory = new ReadOnlyMemory<byte>(frame, 0, size);
        var reader = new KafkaReader(memory);
        var header = new RequestHeader();
        header.Read(ref reader, ApiMessageTypes.RequestHeaderVersion(apiKey, version));
        IKafkaMessage request = handler.CreateRequest();
        if (!reader.Failed)
            request.Read(ref reader, version);
        if (reader.Failed)
        {
            _log.Warn($"connection from {_remote} (client '{header.ClientId}'): malformed {ApiMessageTypes.Name(apiKey)} v{version} request (correlation id {correlationId}); closing the connection");
            ArrayPool<byte>.Shared.Return(frame);
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
        _lastPending = new Pending(ctx, response, frame);
        return true;
    }

    RequestContext NewContext(short apiKey, short version, int correlationId, string? clientId) => new()
    {
        ApiKey = apiKey,
        ApiVersion = version,
        CorrelationId = correlationId,
        ClientId = clientId,
        Remote = _remote,
        Listener = _listener,
        ConnectionClosed = _closed.Token,
    };

    async Task WriteLoopAsync(PipeWriter output)
    {
        using var writer = new KafkaWriter(4096);
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
                catch (OperationCanceledException) when (_closed.IsCancellationRequested)
                {
                    ArrayPool<byte>.Shared.Return(pending.Frame);
                    continue;
                }
                catch (Exception e)
                {
                    ArrayPool<byte>.Shared.Return(pending.Frame);
                    _log.Error($"{pending.Context.Client}: {ApiMessageTypes.Name(pending.Context.ApiKey)} v{pending.Context.ApiVersion} failed inside the broker; closing the connection: {e}");
                    _closed.Cancel();
                    return;
                }
                ArrayPool<byte>.Shared.Return(pending.Frame);
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
                    header.Write(writer, ApiMessageTypes.ResponseHeaderVersion(pending.Context.ApiKey, pending.Context.ApiVersion));
                    response.Write(writer, pending.Context.ApiVersion);
                    writer.PatchInt32(sizeAt, writer.Length - 4);
                    output.Write(writer.WrittenSpan);
                }
                (response as IDisposable)?.Dispose();
                if (pending.Context.CloseConnection)
                {
                    await output.FlushAsync().ConfigureAwait(false);
                    _log.Warn($"{pending.Context.Client}: closing the connection after a failed {ApiMessageTypes.Name(pending.Context.ApiKey)} that expected no response (acks=0), as Kafka does, so the client notices");
                    _closed.Cancel();
                    continue;
                }
            }
            if (!_closed.IsCancellationRequested)
            {
                FlushResult flushed = await output.FlushAsync(_closed.Token).ConfigureAwait(false);
                if (flushed.IsCompleted)
                    _closed.Cancel();
            }
        }
    }
}
