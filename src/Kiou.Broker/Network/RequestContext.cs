using System.Net;
using Kiou.Protocol;

namespace Kiou.Broker.Network;

/// <summary>Which listener a connection came in on. Both serve every API; the name is for logs.</summary>
public enum ListenerKind { Broker, Controller }

/// <summary>One request as a handler sees it: its header fields and where it came from.</summary>
public sealed class RequestContext
{
    public required short ApiKey { get; init; }
    public required short ApiVersion { get; init; }
    public required int CorrelationId { get; init; }
    public required string? ClientId { get; init; }
    public required EndPoint? Remote { get; init; }
    public required ListenerKind Listener { get; init; }
    /// <summary>Who sent it: the connection's authenticated principal (ANONYMOUS before or without authentication).</summary>
    public Kiou.Broker.Security.KafkaPrincipal Principal { get; init; } = Kiou.Broker.Security.KafkaPrincipal.Anonymous;
    /// <summary>The security protocol of the listener it came in on.</summary>
    public Kiou.Broker.Security.SecurityProtocol SecurityProtocol { get; init; }
    /// <summary>The connection's SASL authentication state; null on a listener without SASL.</summary>
    internal Kiou.Broker.Security.SaslAuthenticator? Sasl { get; init; }
    /// <summary>The broker listener it came in on, whose advertised endpoint Metadata, FindCoordinator and
    /// DescribeCluster answer with (Kafka answers by listener name); null on the controller listener.</summary>
    public Kiou.Broker.Security.BrokerListener? Endpoint { get; init; }
    /// <summary><see cref="System.Diagnostics.Stopwatch.GetTimestamp"/> when the request was parsed (latency histogram).</summary>
    public long StartTimestamp { get; init; }
    /// <summary>Cancelled when the connection closes (parked fetches and joins stop waiting).</summary>
    public required CancellationToken ConnectionClosed { get; init; }
    /// <summary>Cancelled when the connection stops reading (the broker stops, or the connection is being closed) and
    /// when it closes: the requests it has read are still answered, so a parked fetch answers with what it has.</summary>
    public CancellationToken Stopping { get; init; }

    /// <summary>Set by a handler when Kafka would close the connection after this request (acks=0 with errors).</summary>
    public bool CloseConnection { get; set; }

    /// <summary>With <see cref="CloseConnection"/>: the warning logged when closing (null: the acks=0 one).</summary>
    public string? CloseReason { get; set; }

    public string Client => $"client '{ClientId}' at {Remote}";
}

/// <summary>A handler for one API: the versions it serves and how.</summary>
public sealed class ApiHandler
{
    public required short ApiKey { get; init; }
    /// <summary>Lowest version advertised in ApiVersions.</summary>
    public required short MinVersion { get; init; }
    public required short MaxVersion { get; init; }
    /// <summary>Lowest version actually served; versions below it close the connection (Produce v0–2).</summary>
    public short MinServedVersion { get; init; } = -1;
    public required Func<IKafkaMessage> CreateRequest { get; init; }
    /// <summary>Returns the response, or null for no response (Produce acks=0). Runs synchronously up to its first real wait,
    /// so that requests of one connection take effect in the order they arrived.</summary>
    public required Func<RequestContext, IKafkaMessage, ValueTask<IKafkaMessage?>> Handle { get; init; }

    /// <summary>False for an API answered only to refuse it clearly (SaslHandshake): ApiVersions leaves it out.</summary>
    public bool Advertised { get; init; } = true;

    public bool Serves(short version) => version >= Math.Max(MinVersion, MinServedVersion) && version <= MaxVersion;
}
