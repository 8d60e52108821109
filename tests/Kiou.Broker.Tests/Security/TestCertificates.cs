using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Kiou.Broker.Tests;

/// <summary>A test PKI written as PEM files in a temporary directory: a CA, a server certificate for localhost and
/// 127.0.0.1, client certificates, and the bad ones (expired, signed by another CA).</summary>
public sealed class TestCertificates : IDisposable
{
    public string Dir { get; } = Path.Combine(Path.GetTempPath(), "kiou-tls-" + Guid.NewGuid().ToString("N"));
    public X509Certificate2 Ca { get; }
    public X509Certificate2 OtherCa { get; }
    public string CaPem => Path.Combine(Dir, "ca.pem");
    public string OtherCaPem => Path.Combine(Dir, "other-ca.pem");

    public TestCertificates()
    {
        Directory.CreateDirectory(Dir);
        Ca = NewCa("CN=KIOU Test CA,O=KIOU");
        OtherCa = NewCa("CN=Other CA,O=Elsewhere");
        File.WriteAllText(CaPem, Ca.ExportCertificatePem());
        File.WriteAllText(OtherCaPem, OtherCa.ExportCertificatePem());
    }

    static X509Certificate2 NewCa(string subject)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(req.PublicKey, false));
        return req.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-30), DateTimeOffset.UtcNow.AddYears(1));
    }

    /// <summary>Writes name.pem (certificate) and name.key (PKCS#8 key) signed by <paramref name="issuer"/>; returns the paths.</summary>
    public (string Cert, string Key) Issue(string name, string subject, bool server, X509Certificate2? issuer = null, bool expired = false, string? password = null)
    {
        issuer ??= Ca;
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(server ? "1.3.6.1.5.5.7.3.1" : "1.3.6.1.5.5.7.3.2")], false));
        if (server)
        {
            var san = new SubjectAlternativeNameBuilder();
            san.AddDnsName("localhost");
            san.AddIpAddress(IPAddress.Loopback);
            req.CertificateExtensions.Add(san.Build());
        }
        var from = expired ? DateTimeOffset.UtcNow.AddDays(-10) : DateTimeOffset.UtcNow.AddHours(-1);
        var to = expired ? DateTimeOffset.UtcNow.AddDays(-2) : DateTimeOffset.UtcNow.AddDays(30);
        var serial = RandomNumberGenerator.GetBytes(12);
        serial[0] &= 0x7f;
        using var cert = req.Create(issuer, from, to, serial);
        string certPath = Path.Combine(Dir, name + ".pem"), keyPath = Path.Combine(Dir, name + ".key");
        WriteAtomically(certPath, cert.ExportCertificatePem() + "\n");
        WriteAtomically(keyPath, (password is null
            ? key.ExportPkcs8PrivateKeyPem()
            : key.ExportEncryptedPkcs8PrivateKeyPem(password, new PbeParameters(PbeEncryptionAlgorithm.Aes256Cbc, HashAlgorithmName.SHA256, 10_000))) + "\n");
        return (certPath, keyPath);
    }

    static void WriteAtomically(string path, string text)
    {
        string tmp = path + ".tmp";
        File.WriteAllText(tmp, text);
        File.Move(tmp, path, overwrite: true);
    }

    public void Dispose()
    {
        Ca.Dispose();
        OtherCa.Dispose();
        try
        {
            Directory.Delete(Dir, true);
        }
        catch (IOException)
        {
        }
    }
}
