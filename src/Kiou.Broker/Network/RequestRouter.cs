using Kiou.Protocol;
using Kiou.Protocol.Messages;

namespace Kiou.Broker.Network;

/// <summary>
/// API key → handler. ApiVersions is answered from this table, so the broker advertises exactly what it serves.
/// Built once at start-up, read-only afterwards.
/// </summary>
public sealed class RequestRouter
{
    readonly ApiHandler?[] _byKey = new ApiHandler?[128];
    readonly List<ApiHandler> _all = [];

    /// <summary>The broker's instruments (requests, connections, records in and out); null in tests without them.</summary>
    public Kiou.Broker.Http.BrokerMetrics? Metrics { get; init; }

    /// <summary>SASL credentials and settings for connections on SASL listeners (null: none served).</summary>
    public Kiou.Broker.Security.SaslServer? Sasl { get; set; }

    /// <summary>Shared by every connection, so a client that reconnects after each refusal is still counted once.</summary>
    public RefusalWarnings Refusals { get; } = new();

    public void Register(ApiHandler handler)
    {
        if ((uint)handler.ApiKey >= (uint)_byKey.Length || _byKey[handler.ApiKey] is not null)
            throw new InvalidOperationException($"API key {handler.ApiKey} registered twice or out of range");
        if (handler.MaxVersion > HighestKnown(handler.ApiKey))
            throw new InvalidOperationException($"API key {handler.ApiKey}: version {handler.MaxVersion} is beyond the schemas");
        _byKey[handler.ApiKey] = handler;
        _all.Add(handler);
        _all.Sort((a, b) => a.ApiKey.CompareTo(b.ApiKey));
    }

    static short HighestKnown(short apiKey) => ApiMessageTypes.HighestStableVersion(apiKey);

    public ApiHandler? Find(short apiKey) => (uint)apiKey < (uint)_byKey.Length ? _byKey[apiKey] : null;

    public IReadOnlyList<ApiHandler> Handlers => _all;

    public List<ApiVersionsResponse.ApiVersion> AdvertisedVersions()
    {
        var list = new List<ApiVersionsResponse.ApiVersion>(_all.Count);
        foreach (var h in _all)
        {
            if (h.Advertised)
                list.Add(new ApiVersionsResponse.ApiVersion { ApiKey = h.ApiKey, MinVersion = h.MinVersion, MaxVersion = h.MaxVersion });
        }
        return list;
    }

    /// <summary>README §4.2: the v0-format answer to an ApiVersions request newer than we serve.</summary>
    public IKafkaMessage UnsupportedApiVersionsResponse()
    {
        var h = _byKey[ApiVersionsRequest.ApiKey]!;
        return new ApiVersionsResponse
        {
            ErrorCode = ErrorCodes.UnsupportedVersion,
            ApiKeys = [new ApiVersionsResponse.ApiVersion { ApiKey = h.ApiKey, MinVersion = h.MinVersion, MaxVersion = h.MaxVersion }],
        };
    }
}
