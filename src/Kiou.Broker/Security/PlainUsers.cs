using System.Collections.Frozen;
using System.Security.Cryptography;
using System.Text;
using Kiou.Broker.Hosting;

namespace Kiou.Broker.Security;

/// <summary>
/// The SASL/PLAIN users, from KIOU_SASL_PLAIN_USERS_FILE: one <c>name:password</c> per line (the password is the rest
/// of the line after the first colon), blank lines and lines starting with <c>#</c> ignored. The file is read again
/// when it changes; a bad file at start stops the broker, a bad file later keeps the users read before (with a WARN).
/// Only SHA-256 digests of the passwords stay in memory, compared in constant time.
/// </summary>
public sealed class PlainUsers
{
    const int MaxFileBytes = 16 << 20;

    readonly string _path;
    readonly Action<string> _warn;
    readonly Lock _reload = new();
    FrozenDictionary<string, byte[]> _users;
    (DateTime Written, long Length) _seen;
    long _nextCheckMs;

    public PlainUsers(string path, Action<string> warn)
    {
        _path = path;
        _warn = warn;
        _seen = Stamp();
        (var users, string? why) = Read();
        _users = users ?? throw new ConfigException($"KIOU_SASL_PLAIN_USERS_FILE={path}: {why}");
    }

    public int Count => _users.Count;

    (DateTime, long) Stamp()
    {
        var info = new FileInfo(_path);
        return info.Exists ? (info.LastWriteTimeUtc, info.Length) : default;
    }

    (FrozenDictionary<string, byte[]>?, string?) Read()
    {
        byte[]? bytes;
        try
        {
            bytes = Kiou.Storage.SmallFiles.ReadAllBytes(_path, MaxFileBytes);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return (null, $"cannot be read ({e.Message})");
        }
        if (bytes is null)
            return (null, $"is larger than {MaxFileBytes} bytes");
        string text;
        try
        {
            text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            return (null, "is not UTF-8 text");
        }
        var users = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        int lineNo = 0;
        foreach (string raw in text.Split('\n'))
        {
            lineNo++;
            string line = raw.TrimEnd('\r');
            if (line.Trim().Length == 0 || line.TrimStart().StartsWith('#'))
                continue;
            int colon = line.IndexOf(':');
            if (colon <= 0 || colon == line.Length - 1)
                return (null, $"line {lineNo} is not name:password (both non-empty)");
            string name = line[..colon];
            if (!users.TryAdd(name, Digest(line[(colon + 1)..])))
                return (null, $"line {lineNo} names user '{name}' a second time");
        }
        return (users.ToFrozenDictionary(StringComparer.Ordinal), null);
    }

    static byte[] Digest(string password) => SHA256.HashData(Encoding.UTF8.GetBytes(password));

    static readonly byte[] NoUser = SHA256.HashData("\0no such user\0"u8);

    /// <summary>True when the user is in the file with this password. An unknown user costs the same comparison.</summary>
    public bool Verify(string user, string password)
    {
        MaybeReload();
        byte[] given = Digest(password);
        bool known = _users.TryGetValue(user, out byte[]? expected);
        bool equal = CryptographicOperations.FixedTimeEquals(given, expected ?? NoUser);
        return known & equal;
    }

    /// <summary>Reads the file again when its time or size changed (looked at most once a second).</summary>
    void MaybeReload()
    {
        long now = Environment.TickCount64;
        if (now < Volatile.Read(ref _nextCheckMs))
            return;
        lock (_reload)
        {
            if (now < _nextCheckMs)
                return;
            _nextCheckMs = now + 1000;
            var stamp = Stamp();
            if (stamp == _seen)
                return;
            _seen = stamp;
            var (users, why) = Read();
            if (users is null)
            {
                _warn($"KIOU_SASL_PLAIN_USERS_FILE={_path} changed and {why}; the users read before stay in force until the file is fixed");
                return;
            }
            _users = users;
        }
    }
}
