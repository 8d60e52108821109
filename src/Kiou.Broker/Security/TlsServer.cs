using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Kiou.Broker.Hosting;

namespace Kiou.Broker.Security;

/// <summary>Kafka's ssl.client.auth.</summary>
public enum ClientAuth { None, Requested, Required }

/// <summary>TLS settings of the SSL and SASL_SSL listeners (KIOU_SSL_*).</summary>
public sealed record TlsSettings
{
    /// <summary>KIOU_SSL_CERTIFICATE_LOCATION: PEM file, the server certificate first, then its intermediates.</summary>
    public string? CertificateLocation { get; init; }
    /// <summary>KIOU_SSL_KEY_LOCATION: PEM private key (PKCS#8, PKCS#1 or SEC1; encrypted PKCS#8 with a password).</summary>
    public string? KeyLocation { get; init; }
    /// <summary>KIOU_SSL_KEY_PASSWORD.</summary>
    public string? KeyPassword { get; init; }
    /// <summary>KIOU_SSL_CA_LOCATION: PEM certificates trusted for client certificates; unset: the system's.</summary>
    public string? CaLocation { get; init; }
    /// <summary>KIOU_SSL_CLIENT_AUTH.</summary>
    public ClientAuth ClientAuth { get; init; } = ClientAuth.None;
    /// <summary>Bound on a TLS handshake (also bounded by KIOU_REQUEST_ARRIVAL_TIMEOUT_MS).</summary>
    public int HandshakeTimeoutMs { get; init; } = 10_000;

    public static ClientAuth ClientAuthOf(string? v) => v switch
    {
        null or "" or "none" => ClientAuth.None,
        "requested" => ClientAuth.Requested,
        "required" => ClientAuth.Required,
        _ => throw new ConfigException($"KIOU_SSL_CLIENT_AUTH={v} is not valid: use none, requested or required (Kafka's ssl.client.auth)"),
    };
}

/// <summary>
/// The server side of TLS for SSL and SASL_SSL listeners: the certificate (reloaded when its files change: new
/// connections get the new one; a reload that fails keeps the old one with a WARN), TLS 1.2 and 1.3 only, and client
/// certificates checked against KIOU_SSL_CA_LOCATION as ssl.client.auth asks.
/// </summary>
public sealed class TlsServer
{
    readonly TlsSettings _settings;
    readonly Log _log;
    readonly X509Certificate2Collection? _trusted;
    SslStreamCertificateContext _context;
    (DateTime, long, DateTime, long) _stamp;
    long _checkedMs;
    readonly object _reload = new();

    /// <summary>How often the certificate files are looked at (on a new connection, at most this often).</summary>
    const long ReloadCheckMs = 1000;

    TlsServer(TlsSettings settings, Log log, SslStreamCertificateContext context, X509Certificate2Collection? trusted)
    {
        _settings = settings;
        _log = log;
        _context = context;
        _trusted = trusted;
        _stamp = Stamp();
        _checkedMs = Environment.TickCount64;
    }

    public TlsSettings Settings => _settings;

    /// <summary>Loads the certificate and CAs; a <see cref="ConfigException"/> says what is wrong with which file.</summary>
    public static TlsServer Create(TlsSettings settings, Log log)
    {
        if (string.IsNullOrEmpty(settings.CertificateLocation) || string.IsNullOrEmpty(settings.KeyLocation))
            throw new ConfigException("an SSL or SASL_SSL listener needs KIOU_SSL_CERTIFICATE_LOCATION (PEM certificate chain) and KIOU_SSL_KEY_LOCATION (PEM private key)");
        SslStreamCertificateContext context;
        try
        {
            context = Load(settings);
        }
        catch (Exception e) when (e is IOException or CryptographicException or UnauthorizedAccessException or ArgumentException)
        {
            throw new ConfigException($"cannot load the TLS certificate {settings.CertificateLocation} with key {settings.KeyLocation}: {e.Message}; check the files are PEM, the key matches the certificate, and KIOU_SSL_KEY_PASSWORD for an encrypted key");
        }
        X509Certificate2Collection? trusted = null;
        if (!string.IsNullOrEmpty(settings.CaLocation))
        {
            try
            {
                trusted = new X509Certificate2Collection();
                trusted.ImportFromPemFile(settings.CaLocation);
            }
            catch (Exception e) when (e is IOException or CryptographicException or UnauthorizedAccessException)
            {
                throw new ConfigException($"cannot load KIOU_SSL_CA_LOCATION {settings.CaLocation}: {e.Message}; give a PEM file of CA certificates");
            }
            if (trusted.Count == 0)
                throw new ConfigException($"KIOU_SSL_CA_LOCATION {settings.CaLocation} holds no PEM certificate");
        }
        else if (settings.ClientAuth != ClientAuth.None)
        {
            log.Warn("KIOU_SSL_CLIENT_AUTH asks for client certificates but KIOU_SSL_CA_LOCATION is unset: client certificates are checked against the system's CAs; set KIOU_SSL_CA_LOCATION to the CA that signs your clients' certificates");
        }
        WarnIfExpiring(context.TargetCertificate, settings, log);
        return new TlsServer(settings, log, context, trusted);
    }

    /// <summary>Clients refuse an expired certificate; the operator hears of it at load, not from every client.</summary>
    static void WarnIfExpiring(X509Certificate2 cert, TlsSettings settings, Log log)
    {
        var now = DateTime.UtcNow;
        if (cert.NotAfter.ToUniversalTime() < now)
            log.Warn($"TLS certificate {settings.CertificateLocation} (subject {cert.Subject}) expired at {cert.NotAfter.ToUniversalTime():u}: clients will refuse the SSL listeners; replace the file (it is reloaded without a restart)");
        else if (cert.NotBefore.ToUniversalTime() > now)
            log.Warn($"TLS certificate {settings.CertificateLocation} (subject {cert.Subject}) is not valid before {cert.NotBefore.ToUniversalTime():u}: clients will refuse it until then; check the clock or the certificate");
        else if (cert.NotAfter.ToUniversalTime() < now.AddDays(14))
            log.Warn($"TLS certificate {settings.CertificateLocation} (subject {cert.Subject}) expires at {cert.NotAfter.ToUniversalTime():u}; replace the file before then (it is reloaded without a restart)");
    }

    static SslStreamCertificateContext Load(TlsSettings s)
    {
        var chain = new X509Certificate2Collection();
        chain.ImportFromPemFile(s.CertificateLocation!);
        if (chain.Count == 0)
            throw new CryptographicException("no certificate in the file");
        X509Certificate2 leaf = string.IsNullOrEmpty(s.KeyPassword)
            ? X509Certificate2.CreateFromPemFile(s.CertificateLocation!, s.KeyLocation)
            : X509Certificate2.CreateFromEncryptedPemFile(s.CertificateLocation!, s.KeyPassword, s.KeyLocation);
        var intermediates = new X509Certificate2Collection();
        for (int i = 1; i < chain.Count; i++)
            intermediates.Add(chain[i]);
        return SslStreamCertificateContext.Create(leaf, intermediates, offline: true);
    }

    (DateTime, long, DateTime, long) Stamp()
    {
        static (DateTime, long) Of(string path)
        {
            var f = new FileInfo(path);
            return f.Exists ? (f.LastWriteTimeUtc, f.Length) : (default, -1);
        }
        var (cw, cl) = Of(_settings.CertificateLocation!);
        var (kw, kl) = Of(_settings.KeyLocation!);
        return (cw, cl, kw, kl);
    }

    /// <summary>The certificate for a new connection, reloaded first when its files changed.</summary>
    SslStreamCertificateContext Current()
    {
        long now = Environment.TickCount64;
        if (now - Volatile.Read(ref _checkedMs) >= ReloadCheckMs && Monitor.TryEnter(_reload))
        {
            try
            {
                Volatile.Write(ref _checkedMs, now);
                var stamp = Stamp();
                if (stamp != _stamp)
                {
                    _stamp = stamp;
                    try
                    {
                        Volatile.Write(ref _context, Load(_settings));
                        WarnIfExpiring(_context.TargetCertificate, _settings, _log);
                        _log.Info($"TLS certificate reloaded from {_settings.CertificateLocation} (subject {_context.TargetCertificate.Subject}, valid until {_context.TargetCertificate.NotAfter:u}); new connections use it");
                    }
                    catch (Exception e) when (e is IOException or CryptographicException or UnauthorizedAccessException or ArgumentException)
                    {
                        _log.Warn($"TLS certificate files {_settings.CertificateLocation} / {_settings.KeyLocation} changed but do not load ({e.Message}); new connections keep the previous certificate (subject {_context.TargetCertificate.Subject}); fix the files (write them whole, then rename into place)");
                    }
                }
            }
            finally
            {
                Monitor.Exit(_reload);
            }
        }
        return Volatile.Read(ref _context);
    }

    /// <summary>Options for one handshake.</summary>
    public SslServerAuthenticationOptions Options() => new()
    {
        ServerCertificateContext = Current(),
        EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
        ClientCertificateRequired = _settings.ClientAuth != ClientAuth.None,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        CertificateChainPolicy = _trusted is null ? null : ChainPolicy(_trusted),
        RemoteCertificateValidationCallback = Validate,
    };

    static X509ChainPolicy ChainPolicy(X509Certificate2Collection trusted)
    {
        var policy = new X509ChainPolicy
        {
            TrustMode = X509ChainTrustMode.CustomRootTrust,
            RevocationMode = X509RevocationMode.NoCheck,
        };
        policy.CustomTrustStore.AddRange(trusted);
        return policy;
    }

    bool Validate(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        if (certificate is null)
            return _settings.ClientAuth != ClientAuth.Required;
        // A certificate presented is checked whether required or requested, as Kafka does.
        return errors == SslPolicyErrors.None;
    }

    /// <summary>Kafka's default principal for a client certificate: User: and the subject in RFC 2253 form, as Java's
    /// X500Principal.getName() gives it ("CN=alice,O=Example").</summary>
    public static KafkaPrincipal PrincipalOf(X509Certificate? certificate)
    {
        if (certificate is null)
            return KafkaPrincipal.Anonymous;
        using var cert = new X509Certificate2(certificate);
        return KafkaPrincipal.User(Rfc2253(cert.SubjectName));
    }

    internal static string Rfc2253(X500DistinguishedName name)
    {
        // RFC 2253 writes the most specific name first: the reverse of the encoded order (the enumeration's default).
        var rdns = name.EnumerateRelativeDistinguishedNames(reversed: true).ToList();
        var sb = new StringBuilder();
        for (int i = 0; i < rdns.Count; i++)
        {
            if (sb.Length > 0)
                sb.Append(',');
            var rdn = rdns[i];
            if (rdn.HasMultipleElements)
            {
                sb.Append(name.Format(false)); // rare multi-valued names: .NET's own form of the whole name
                return sb.ToString();
            }
            string? keyword = rdn.GetSingleElementType().Value switch
            {
                "2.5.4.3" => "CN",
                "2.5.4.7" => "L",
                "2.5.4.8" => "ST",
                "2.5.4.10" => "O",
                "2.5.4.11" => "OU",
                "2.5.4.6" => "C",
                "2.5.4.9" => "STREET",
                "0.9.2342.19200300.100.1.25" => "DC",
                "0.9.2342.19200300.100.1.1" => "UID",
                _ => null,
            };
            if (keyword is null)
            {
                sb.Append(rdn.GetSingleElementType().Value).Append("=#").Append(Convert.ToHexStringLower(RdnValueDer(rdn)));
                continue;
            }
            sb.Append(keyword).Append('=');
            string value = rdn.GetSingleElementValue() ?? "";
            for (int j = 0; j < value.Length; j++)
            {
                char ch = value[j];
                if (ch is ',' or '+' or '"' or '\\' or '<' or '>' or ';' || (j == 0 && ch is '#' or ' ') || (j == value.Length - 1 && ch == ' '))
                    sb.Append('\\');
                sb.Append(ch);
            }
        }
        return sb.ToString();
    }

    /// <summary>The DER of an attribute's value (for attribute types without an RFC 2253 keyword).</summary>
    static byte[] RdnValueDer(X500RelativeDistinguishedName rdn)
    {
        // SET { SEQUENCE { OID, value } }: the value is the last element of the sequence.
        var reader = new System.Formats.Asn1.AsnReader(rdn.RawData, System.Formats.Asn1.AsnEncodingRules.DER);
        var set = reader.ReadSetOf();
        var seq = set.ReadSequence();
        seq.ReadObjectIdentifier();
        return seq.ReadEncodedValue().ToArray();
    }
}
