using System.Security.Cryptography;
using System.Text;

namespace Kiou.Broker.Security;

/// <summary>Authentication failed; the message goes to the client (it never says whether the user exists). A
/// <paramref name="generic"/> one is sent as Kafka's "invalid credentials" sentence instead, as Kafka does for SCRAM.</summary>
public sealed class SaslAuthenticationException(string message, bool generic = false) : Exception(message)
{
    public bool Generic { get; } = generic;
}

/// <summary>One SASL exchange on the server side: tokens in, challenges out, until complete.</summary>
abstract class SaslExchange
{
    public abstract string Mechanism { get; }
    public bool IsComplete { get; protected set; }
    /// <summary>The authenticated user once complete.</summary>
    public string? User { get; protected set; }
    public abstract byte[] Evaluate(ReadOnlySpan<byte> token);

    public static SaslExchange Create(string mechanism, SaslServer server) => mechanism == "PLAIN"
        ? new PlainExchange(server)
        : new ScramExchange(ScramMechanism.OfName(mechanism)!, server);

    protected static string Text(ReadOnlySpan<byte> token)
    {
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(token);
        }
        catch (DecoderFallbackException)
        {
            throw new SaslAuthenticationException("Authentication failed: the SASL token is not UTF-8");
        }
    }
}

/// <summary>SASL/PLAIN (RFC 4616), as Kafka's PlainSaslServer: [authzid] NUL authcid NUL passwd.</summary>
sealed class PlainExchange(SaslServer server) : SaslExchange
{
    public override string Mechanism => "PLAIN";

    public override byte[] Evaluate(ReadOnlySpan<byte> token)
    {
        string[] parts = Text(token).Split('\0');
        if (parts.Length != 3)
            throw new SaslAuthenticationException($"Invalid SASL/PLAIN response: expected 3 tokens, got {parts.Length}");
        var (authzid, user, password) = (parts[0], parts[1], parts[2]);
        if (user.Length == 0)
            throw new SaslAuthenticationException("Authentication failed: username not specified");
        if (password.Length == 0)
            throw new SaslAuthenticationException("Authentication failed: password not specified");
        if (server.PlainUsers is not { } users || !users.Verify(user, password))
            throw new SaslAuthenticationException("Authentication failed: Invalid username or password");
        if (authzid.Length != 0 && authzid != user)
            throw new SaslAuthenticationException("Authentication failed: Client requested an authorization id that is different from username");
        User = user;
        IsComplete = true;
        return [];
    }
}

/// <summary>
/// SCRAM (RFC 5802, RFC 7677), as Kafka's ScramSaslServer: client-first, server-first, client-final, server-final;
/// channel binding "n" only; the tokenauth extension (delegation tokens) is refused. An unknown user gets a
/// server-first message like a real one and fails at the proof, as a wrong password does.
/// </summary>
sealed class ScramExchange(ScramMechanism mech, SaslServer server) : SaslExchange
{
    int _step;
    string _clientFirstBare = "";
    string _gs2Header = "";
    string _serverFirst = "";
    string _nonce = "";
    string _user = "";
    ScramCredential? _credential;

    public override string Mechanism => mech.Name;

    static SaslAuthenticationException Invalid() => new("invalid SCRAM credentials", generic: true);

    public override byte[] Evaluate(ReadOnlySpan<byte> token)
    {
        string text = Text(token);
        return _step++ switch
        {
            0 => ClientFirst(text),
            1 => ClientFinal(text),
            _ => throw new SaslAuthenticationException("Unexpected SASL token after the SCRAM exchange completed"),
        };
    }

    byte[] ClientFirst(string text)
    {
        // gs2-header: "n," [ "a=" authzid ] ","; then client-first-message-bare.
        if (!text.StartsWith("n,", StringComparison.Ordinal))
            throw new SaslAuthenticationException("Authentication failed: Invalid SCRAM client first message (channel binding is not supported)");
        int second = text.IndexOf(',', 2);
        if (second < 0)
            throw new SaslAuthenticationException("Authentication failed: Invalid SCRAM client first message");
        string authzid = text[2..second];
        if (authzid.Length > 0 && !authzid.StartsWith("a=", StringComparison.Ordinal))
            throw new SaslAuthenticationException("Authentication failed: Invalid SCRAM client first message");
        _gs2Header = text[..(second + 1)];
        _clientFirstBare = text[(second + 1)..];
        string[] fields = _clientFirstBare.Split(',');
        if (fields.Length < 2 || !fields[0].StartsWith("n=", StringComparison.Ordinal) || !fields[1].StartsWith("r=", StringComparison.Ordinal) || fields[1].Length == 2)
            throw new SaslAuthenticationException("Authentication failed: Invalid SCRAM client first message");
        foreach (string ext in fields.AsSpan(2))
        {
            if (ext.Equals("tokenauth=true", StringComparison.OrdinalIgnoreCase))
                throw new SaslAuthenticationException("Authentication failed: delegation tokens are not supported by this broker");
        }
        _user = UserOf(fields[0][2..]);
        if (authzid.Length > 0 && UserOf(authzid[2..]) != _user)
            throw new SaslAuthenticationException("Authentication failed: Client requested an authorization id that is different from username");
        _credential = server.Scram.Find(_user, mech);
        byte[] salt = _credential?.Salt ?? FakeSalt(_user);
        int iterations = _credential?.Iterations ?? ScramMechanism.MinIterations;
        // Letters and digits only, as Kafka's: some clients mishandle other printable characters in the nonce.
        _nonce = fields[1][2..] + RandomNumberGenerator.GetString("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 32);
        _serverFirst = $"r={_nonce},s={Convert.ToBase64String(salt)},i={iterations}";
        return Encoding.UTF8.GetBytes(_serverFirst);
    }

    byte[] FakeSalt(string user) => HMACSHA256.HashData(server.UnknownUserKey, Encoding.UTF8.GetBytes(mech.Name + "\0" + user))[..ScramMechanism.SaltBytes];

    static string UserOf(string saslName)
    {
        // RFC 5802 §5.1: ',' and '=' are sent as "=2C" and "=3D"; any other '=' is malformed.
        var sb = new StringBuilder(saslName.Length);
        for (int i = 0; i < saslName.Length; i++)
        {
            if (saslName[i] != '=')
            {
                sb.Append(saslName[i]);
                continue;
            }
            if (string.CompareOrdinal(saslName, i, "=2C", 0, 3) == 0)
                sb.Append(',');
            else if (string.CompareOrdinal(saslName, i, "=3D", 0, 3) == 0)
                sb.Append('=');
            else
                throw new SaslAuthenticationException("Authentication failed: Invalid SCRAM user name encoding");
            i += 2;
        }
        return sb.ToString();
    }

    byte[] ClientFinal(string text)
    {
        // c=<base64 gs2-header>,r=<nonce>[,extensions],p=<base64 proof>
        int p = text.LastIndexOf(",p=", StringComparison.Ordinal);
        if (!text.StartsWith("c=", StringComparison.Ordinal) || p < 0)
            throw new SaslAuthenticationException("Authentication failed: Invalid SCRAM client final message");
        string withoutProof = text[..p];
        string[] fields = withoutProof.Split(',');
        if (fields.Length < 2 || !fields[1].StartsWith("r=", StringComparison.Ordinal))
            throw new SaslAuthenticationException("Authentication failed: Invalid SCRAM client final message");
        byte[] proof, binding;
        try
        {
            binding = Convert.FromBase64String(fields[0][2..]);
            proof = Convert.FromBase64String(text[(p + 3)..]);
        }
        catch (FormatException)
        {
            throw new SaslAuthenticationException("Authentication failed: Invalid SCRAM client final message");
        }
        // Kafka checks only that the nonce ends with the server-first one: librdkafka 2.0 repeats the client's part.
        if (!fields[1].EndsWith(_nonce, StringComparison.Ordinal))
            throw Invalid();
        if (_credential is null || proof.Length != mech.HashBytes || Encoding.UTF8.GetString(binding) != _gs2Header)
            throw Invalid();
        byte[] authMessage = Encoding.UTF8.GetBytes($"{_clientFirstBare},{_serverFirst},{withoutProof}");
        byte[] clientSignature = mech.Hmac(_credential.StoredKey, authMessage);
        byte[] clientKey = new byte[proof.Length];
        for (int i = 0; i < proof.Length; i++)
            clientKey[i] = (byte)(proof[i] ^ clientSignature[i]);
        if (!CryptographicOperations.FixedTimeEquals(mech.Digest(clientKey), _credential.StoredKey))
            throw Invalid();
        byte[] serverSignature = mech.Hmac(_credential.ServerKey, authMessage);
        User = _user;
        IsComplete = true;
        return Encoding.UTF8.GetBytes("v=" + Convert.ToBase64String(serverSignature));
    }
}
