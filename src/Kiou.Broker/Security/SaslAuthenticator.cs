using Kiou.Broker.Hosting;
using Kiou.Broker.Network;
using Kiou.Protocol;
using Kiou.Protocol.Messages;

namespace Kiou.Broker.Security;

/// <summary>
/// The authentication state of one connection on a SASL_PLAINTEXT or SASL_SSL listener, as Kafka's
/// SaslServerAuthenticator: before authentication only ApiVersions, SaslHandshake and then SaslAuthenticate are
/// served; anything else closes the connection. After a SaslHandshake v0 the client sends bare SASL tokens (no request
/// header) and gets bare tokens back. A failure answers SASL_AUTHENTICATION_FAILED after the failure delay and closes
/// the connection. With KIOU_CONNECTIONS_MAX_REAUTH_MS a session expires: the client re-authenticates on the same
/// connection (SaslHandshake again, same mechanism and user), or its next request after expiry closes the connection.
/// Requests of a connection are handled one after another in arrival order, so the state needs no lock.
/// </summary>
public sealed class SaslAuthenticator
{
    /// <summary>Kafka's sasl.server.max.receive.size: the largest request an unauthenticated client may send.</summary>
    public const int MaxReceiveBytes = 512 * 1024;

    /// <summary>Requests an unauthenticated connection may send before it must have authenticated.</summary>
    const int MaxRequestsBeforeAuthentication = 16;

    enum State { Initial, Authenticate, Complete, Failed }

    readonly SaslServer _server;
    readonly Action<KafkaPrincipal> _setPrincipal;
    State _state;
    bool _raw;
    bool _reauthenticating;
    int _requestsBefore;
    string? _mechanism;
    string? _user;
    SaslExchange? _exchange;
    long _expiresAtMs; // Environment.TickCount64; 0: never

    internal SaslAuthenticator(SaslServer server, Action<KafkaPrincipal> setPrincipal)
    {
        _server = server;
        _setPrincipal = setPrincipal;
    }

    /// <summary>Authenticated once (a re-authentication in progress keeps the session).</summary>
    public bool IsAuthenticated => _user is not null && _state != State.Failed;

    /// <summary>The next frame is a bare SASL token (after SaslHandshake v0), not a request.</summary>
    public bool ExpectsRawToken => _raw && _state == State.Authenticate;

    /// <summary>The largest frame the connection may send now.</summary>
    public int MaxFrameBytes(int configured) => IsAuthenticated ? configured : Math.Min(configured, MaxReceiveBytes);

    /// <summary>Null when the request may be served now; otherwise why the connection is closed.</summary>
    public string? Gate(short apiKey)
    {
        switch (_state)
        {
            case State.Complete:
                if (apiKey != SaslHandshakeRequest.ApiKey && _expiresAtMs != 0 && Environment.TickCount64 >= _expiresAtMs)
                    return $"the SASL session of {_user} expired (KIOU_CONNECTIONS_MAX_REAUTH_MS={_server.Settings.ConnectionsMaxReauthMs}) "
                        + $"and the client sent {ApiMessageTypes.Name(apiKey)} without re-authenticating; closing the connection as Kafka does";
                return null;
            case State.Initial:
                if (++_requestsBefore > MaxRequestsBeforeAuthentication)
                    return $"{MaxRequestsBeforeAuthentication} requests without SASL authentication; closing the connection";
                return apiKey is ApiVersionsRequest.ApiKey or SaslHandshakeRequest.ApiKey ? null
                    : $"{ApiMessageTypes.Name(apiKey)} before SASL authentication on a SASL listener; closing the connection as Kafka does "
                        + "(configure the client with security.protocol=SASL_PLAINTEXT or SASL_SSL and a sasl.mechanism)";
            case State.Authenticate:
                return apiKey == SaslAuthenticateRequest.ApiKey ? null
                    : $"{ApiMessageTypes.Name(apiKey)} during SASL authentication (only SaslAuthenticate is served until it completes); closing the connection as Kafka does";
            default:
                return $"{ApiMessageTypes.Name(apiKey)} after a failed SASL authentication; closing the connection";
        }
    }

    public ValueTask<IKafkaMessage?> Handshake(RequestContext ctx, SaslHandshakeRequest request)
    {
        var enabled = _server.Settings.EnabledMechanisms.ToList();
        if (_state == State.Complete)
        {
            if (_server.Settings.ConnectionsMaxReauthMs == 0)
                return Done(new SaslHandshakeResponse { ErrorCode = ErrorCodes.IllegalSaslState, Mechanisms = enabled });
            if (request.Mechanism != _mechanism)
            {
                return Fail(ctx, new SaslHandshakeResponse { ErrorCode = ErrorCodes.UnsupportedSaslMechanism, Mechanisms = enabled }, request.Mechanism,
                    $"SASL mechanism '{request.Mechanism}' requested by client is not supported for re-authentication of mechanism '{_mechanism}'");
            }
            _reauthenticating = true;
        }
        else if (!_server.IsEnabled(request.Mechanism))
        {
            return Fail(ctx, new SaslHandshakeResponse { ErrorCode = ErrorCodes.UnsupportedSaslMechanism, Mechanisms = enabled }, request.Mechanism,
                $"unsupported SASL mechanism '{request.Mechanism}'; enabled: {string.Join(",", enabled)} (KIOU_SASL_ENABLED_MECHANISMS)");
        }
        _mechanism = request.Mechanism;
        _exchange = SaslExchange.Create(request.Mechanism, _server);
        _raw = ctx.ApiVersion == 0;
        _state = State.Authenticate;
        return Done(new SaslHandshakeResponse { ErrorCode = ErrorCodes.None, Mechanisms = enabled });
    }

    public ValueTask<IKafkaMessage?> Authenticate(RequestContext ctx, SaslAuthenticateRequest request)
    {
        if (_state != State.Authenticate || _raw || _exchange is null)
            return Fail(ctx, new SaslAuthenticateResponse { ErrorCode = ErrorCodes.IllegalSaslState, ErrorMessage = "SaslAuthenticate without a SaslHandshake v1" }, _mechanism ?? "none", "SaslAuthenticate without a SaslHandshake v1");
        try
        {
            byte[] challenge = Step(ctx, request.AuthBytes);
            return Done(new SaslAuthenticateResponse
            {
                ErrorCode = ErrorCodes.None,
                ErrorMessage = null,
                AuthBytes = challenge,
                SessionLifetimeMs = _state == State.Complete ? _server.Settings.ConnectionsMaxReauthMs : 0,
            });
        }
        catch (SaslAuthenticationException e)
        {
            string message = MessageOf(e);
            return Fail(ctx, new SaslAuthenticateResponse { ErrorCode = ErrorCodes.SaslAuthenticationFailed, ErrorMessage = message }, _mechanism!, message);
        }
    }

    /// <summary>A bare token after SaslHandshake v0: the answer is a bare token; a failure only closes the connection
    /// (this exchange has no way to carry an error).</summary>
    public ValueTask<IKafkaMessage?> AuthenticateRaw(RequestContext ctx, ReadOnlySpan<byte> token)
    {
        try
        {
            return Done(new RawSaslToken(Step(ctx, token)));
        }
        catch (SaslAuthenticationException e)
        {
            return Fail(ctx, null, _mechanism!, MessageOf(e));
        }
    }

    string MessageOf(SaslAuthenticationException e) => e.Generic
        ? $"Authentication failed during {(_reauthenticating ? "re-authentication" : "authentication")} due to invalid credentials with SASL mechanism {_mechanism}"
        : e.Message;

    byte[] Step(RequestContext ctx, ReadOnlySpan<byte> token)
    {
        byte[] challenge = _exchange!.Evaluate(token);
        if (!_exchange.IsComplete)
            return challenge;
        string user = _exchange.User!;
        if (_reauthenticating && user != _user)
            throw new SaslAuthenticationException($"Cannot change principals during re-authentication from User:{_user} to User:{user}");
        if (_server.Log is { } log && log.IsEnabled(Log.Level.Debug))
            log.Debug($"{ctx.Client}: SASL {(_reauthenticating ? "re-authentication" : "authentication")} of User:{user} with {_mechanism} succeeded");
        _user = user;
        _exchange = null;
        _raw = false;
        _reauthenticating = false;
        _state = State.Complete;
        long lifetime = _server.Settings.ConnectionsMaxReauthMs;
        _expiresAtMs = lifetime > 0 ? Environment.TickCount64 + lifetime : 0;
        _setPrincipal(KafkaPrincipal.User(user));
        return challenge;
    }

    ValueTask<IKafkaMessage?> Fail(RequestContext ctx, IKafkaMessage? response, string mechanism, string why)
    {
        _state = State.Failed;
        _exchange = null;
        int delay = _server.Settings.FailedAuthenticationDelayMs;
        ctx.CloseConnection = true;
        ctx.CloseReason = $"SASL authentication with mechanism {mechanism} failed ({why}); answered after {delay} ms "
            + "(KIOU_CONNECTION_FAILED_AUTHENTICATION_DELAY_MS) and closed the connection";
        return delay <= 0 ? Done(response) : Delayed(response, delay, ctx.Stopping);
    }

    async ValueTask<IKafkaMessage?> Delayed(IKafkaMessage? response, int delayMs, CancellationToken ct)
    {
        await Task.Delay(TimeSpan.FromMilliseconds(delayMs), _server.Time, ct).ConfigureAwait(false);
        return response;
    }

    static ValueTask<IKafkaMessage?> Done(IKafkaMessage? response) => ValueTask.FromResult(response);
}

/// <summary>A SASL token sent bare (size prefix, no response header), the answer after a SaslHandshake v0.</summary>
public sealed class RawSaslToken(byte[] token) : IKafkaMessage
{
    public void Read(ref KafkaReader reader, short version) => throw new NotSupportedException();

    public void Write(KafkaWriter writer, short version) => writer.WriteRaw(token);
}
