using Kiou.Broker.Hosting;

namespace Kiou.Broker.Security;

/// <summary>
/// One broker listener as Kafka's listeners/advertised.listeners have it: a name (PLAINTEXT, SSL, or any name mapped to
/// a protocol), its security protocol, where it binds, and the host and port clients are told to connect to. Port 0
/// binds any free port; the bound port is then advertised unless KIOU_ADVERTISED_LISTENERS names another.
/// </summary>
public sealed record BrokerListener(string Name, SecurityProtocol Protocol, string Host, int Port, string? AdvertisedHost = null, int? AdvertisedPort = null)
{
    /// <summary>The host clients are told (a wildcard bind address is no address to connect to).</summary>
    public string EffectiveAdvertisedHost => AdvertisedHost ?? (Host is "0.0.0.0" or "::" or "" ? "127.0.0.1" : Host);

    public int EffectiveAdvertisedPort => AdvertisedPort ?? Port;

    public bool UsesTls => Protocol is SecurityProtocol.Ssl or SecurityProtocol.SaslSsl;

    public override string ToString() => $"{Name}://{Host}:{Port}";

    /// <summary>Kafka's name of a security protocol.</summary>
    public static string ProtocolName(SecurityProtocol p) => p switch
    {
        SecurityProtocol.Ssl => "SSL",
        SecurityProtocol.SaslPlaintext => "SASL_PLAINTEXT",
        SecurityProtocol.SaslSsl => "SASL_SSL",
        _ => "PLAINTEXT",
    };

    static SecurityProtocol? ProtocolOf(string name) => name switch
    {
        "PLAINTEXT" => SecurityProtocol.Plaintext,
        "SSL" => SecurityProtocol.Ssl,
        "SASL_PLAINTEXT" => SecurityProtocol.SaslPlaintext,
        "SASL_SSL" => SecurityProtocol.SaslSsl,
        _ => null,
    };

    /// <summary>
    /// KIOU_LISTENERS with KIOU_LISTENER_SECURITY_PROTOCOL_MAP and KIOU_ADVERTISED_LISTENERS, as Kafka parses
    /// listeners (NAME://host:port, comma separated; an empty host binds every address; [::1] for IPv6). Throws
    /// <see cref="ConfigException"/> naming the variable and the bad part.
    /// </summary>
    public static IReadOnlyList<BrokerListener> Parse(string listeners, string? protocolMap, string? advertised, string? advertisedHost)
    {
        var map = new Dictionary<string, SecurityProtocol>(StringComparer.Ordinal)
        {
            ["PLAINTEXT"] = SecurityProtocol.Plaintext,
            ["SSL"] = SecurityProtocol.Ssl,
            ["SASL_PLAINTEXT"] = SecurityProtocol.SaslPlaintext,
            ["SASL_SSL"] = SecurityProtocol.SaslSsl,
        };
        if (!string.IsNullOrWhiteSpace(protocolMap))
        {
            map.Clear();
            foreach (string entry in protocolMap.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                int colon = entry.IndexOf(':', StringComparison.Ordinal);
                string name = colon > 0 ? entry[..colon].Trim().ToUpperInvariant() : "";
                SecurityProtocol? p = colon > 0 ? ProtocolOf(entry[(colon + 1)..].Trim().ToUpperInvariant()) : null;
                if (name.Length == 0 || p is null)
                    throw new ConfigException($"KIOU_LISTENER_SECURITY_PROTOCOL_MAP: '{entry}' is not NAME:PROTOCOL with PROTOCOL one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL");
                map[name] = p.Value;
            }
        }
        var result = new List<BrokerListener>();
        foreach (var (name, host, port) in Endpoints("KIOU_LISTENERS", listeners))
        {
            if (!map.TryGetValue(name, out var protocol))
                throw new ConfigException($"KIOU_LISTENERS: listener name {name} has no security protocol; name one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, or map it in KIOU_LISTENER_SECURITY_PROTOCOL_MAP (e.g. {name}:SSL)");
            if (name == "CONTROLLER")
                throw new ConfigException("KIOU_LISTENERS: CONTROLLER is the controller listener's name (KIOU_CONTROLLER_HOST, KIOU_CONTROLLER_PORT); choose another name");
            if (result.Exists(l => l.Name == name))
                throw new ConfigException($"KIOU_LISTENERS: listener name {name} appears twice; each listener needs its own name");
            if (port != 0 && result.Exists(l => l.Port == port))
                throw new ConfigException($"KIOU_LISTENERS: port {port} is used by two listeners; each listener needs its own port");
            result.Add(new BrokerListener(name, protocol, host, port, advertisedHost));
        }
        if (result.Count == 0)
            throw new ConfigException("KIOU_LISTENERS is empty; give at least one listener, e.g. PLAINTEXT://127.0.0.1:9092, or unset it to use KIOU_HOST and KIOU_PORT");
        if (!string.IsNullOrWhiteSpace(advertised))
        {
            foreach (var (name, host, port) in Endpoints("KIOU_ADVERTISED_LISTENERS", advertised))
            {
                int i = result.FindIndex(l => l.Name == name);
                if (i < 0)
                    throw new ConfigException($"KIOU_ADVERTISED_LISTENERS: {name} is not a listener in KIOU_LISTENERS ({string.Join(",", result)})");
                if (host.Length == 0 || host is "0.0.0.0" or "::")
                    throw new ConfigException($"KIOU_ADVERTISED_LISTENERS: {name} advertises '{host}', which no client can connect to; give a host name or address clients reach");
                result[i] = result[i] with { AdvertisedHost = host, AdvertisedPort = port == 0 ? null : port };
            }
        }
        return result;
    }

    static IEnumerable<(string Name, string Host, int Port)> Endpoints(string variable, string value)
    {
        foreach (string entry in value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            int sep = entry.IndexOf("://", StringComparison.Ordinal);
            int colon = entry.LastIndexOf(':');
            if (sep <= 0 || colon <= sep + 2)
                throw new ConfigException($"{variable}: '{entry}' is not NAME://host:port (e.g. PLAINTEXT://127.0.0.1:9092,SSL://0.0.0.0:9094)");
            string name = entry[..sep].ToUpperInvariant();
            string host = entry[(sep + 3)..colon];
            if (host.StartsWith('[') && host.EndsWith(']'))
                host = host[1..^1];
            if (!int.TryParse(entry[(colon + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int port) || port > 65535)
                throw new ConfigException($"{variable}: '{entry}' has no valid port (0 to 65535)");
            yield return (name, host.Length == 0 ? "0.0.0.0" : host, port);
        }
    }
}
