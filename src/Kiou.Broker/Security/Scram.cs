using System.Security.Cryptography;
using System.Text;

namespace Kiou.Broker.Security;

/// <summary>The SCRAM mechanisms (RFC 5802, RFC 7677), with Kafka's type numbers of the SCRAM admin APIs.</summary>
public sealed class ScramMechanism
{
    public static readonly ScramMechanism Sha256 = new("SCRAM-SHA-256", 1, HashAlgorithmName.SHA256, 32);
    public static readonly ScramMechanism Sha512 = new("SCRAM-SHA-512", 2, HashAlgorithmName.SHA512, 64);

    /// <summary>Kafka's bounds: fewer iterations are refused, more are refused by the admin API.</summary>
    public const int MinIterations = 4096;
    public const int MaxIterations = 16384;

    /// <summary>A multiple of three: its base64 has no padding, which librdkafka 2.0 (Debian's kcat) decodes wrongly.</summary>
    public const int SaltBytes = 24;

    public string Name { get; }
    public sbyte Type { get; }
    public HashAlgorithmName Hash { get; }
    public int HashBytes { get; }

    ScramMechanism(string name, sbyte type, HashAlgorithmName hash, int hashBytes)
    {
        Name = name;
        Type = type;
        Hash = hash;
        HashBytes = hashBytes;
    }

    public static ScramMechanism? OfType(sbyte type) => type switch { 1 => Sha256, 2 => Sha512, _ => null };

    public static ScramMechanism? OfName(string name) => name switch
    {
        "SCRAM-SHA-256" => Sha256,
        "SCRAM-SHA-512" => Sha512,
        _ => null,
    };

    public byte[] Hmac(ReadOnlySpan<byte> key, ReadOnlySpan<byte> data) =>
        Hash == HashAlgorithmName.SHA256 ? HMACSHA256.HashData(key, data) : HMACSHA512.HashData(key, data);

    public byte[] Digest(ReadOnlySpan<byte> data) =>
        Hash == HashAlgorithmName.SHA256 ? SHA256.HashData(data) : SHA512.HashData(data);

    public byte[] SaltedPassword(string password, byte[] salt, int iterations) =>
        Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, iterations, Hash, HashBytes);

    /// <summary>What the broker keeps of a password: never the password, nor the salted password.</summary>
    public ScramCredential Credential(byte[] salt, byte[] saltedPassword, int iterations)
    {
        byte[] clientKey = Hmac(saltedPassword, "Client Key"u8);
        byte[] serverKey = Hmac(saltedPassword, "Server Key"u8);
        return new ScramCredential(salt, Digest(clientKey), serverKey, iterations);
    }

    public override string ToString() => Name;
}

/// <summary>A user's SCRAM credential for one mechanism (RFC 5802 §3).</summary>
public sealed record ScramCredential(byte[] Salt, byte[] StoredKey, byte[] ServerKey, int Iterations);
