using System.Security.Cryptography;
using System.Text;
using Kiou.Broker.Hosting;

namespace Kiou.Broker.Security;

/// <summary>The SASL settings (KIOU_SASL_*, and Kafka's connections.max.reauth.ms and
/// connection.failed.authentication.delay.ms).</summary>
public sealed record SaslSettings
{
    public const string DefaultMechanisms = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512";

    public IReadOnlyList<string> EnabledMechanisms { get; init; } = DefaultMechanisms.Split(',');
    public string? PlainUsersFile { get; init; }
    public string? ScramUsersFile { get; init; }
    /// <summary>0: sessions never expire.</summary>
    public long ConnectionsMaxReauthMs { get; init; }
    public int FailedAuthenticationDelayMs { get; init; } = 100;

    public bool Equals(SaslSettings? other) => other is not null && EnabledMechanisms.SequenceEqual(other.EnabledMechanisms)
        && PlainUsersFile == other.PlainUsersFile && ScramUsersFile == other.ScramUsersFile
        && ConnectionsMaxReauthMs == other.ConnectionsMaxReauthMs && FailedAuthenticationDelayMs == other.FailedAuthenticationDelayMs;

    public override int GetHashCode() => HashCode.Combine(string.Join(",", EnabledMechanisms), PlainUsersFile, ScramUsersFile, ConnectionsMaxReauthMs, FailedAuthenticationDelayMs);

    public static IReadOnlyList<string> MechanismsOf(string? v)
    {
        if (string.IsNullOrWhiteSpace(v))
            return DefaultMechanisms.Split(',');
        var list = v.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Distinct().ToArray();
        foreach (string m in list)
        {
            if (m != "PLAIN" && ScramMechanism.OfName(m) is null)
                throw new ConfigException($"KIOU_SASL_ENABLED_MECHANISMS={v} is not valid: {m} is not served; use a comma-separated list of PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512");
        }
        return list;
    }
}

/// <summary>
/// What every SASL connection shares: the settings, the PLAIN users and the SCRAM credentials. Each connection on a
/// SASL_PLAINTEXT or SASL_SSL listener has its own <see cref="SaslAuthenticator"/>.
/// </summary>
public sealed class SaslServer
{
    public SaslSettings Settings { get; }
    public PlainUsers? PlainUsers { get; }
    public ScramCredentialStore Scram { get; }
    public TimeProvider Time { get; }
    public Log? Log { get; init; }

    /// <summary>Keys fake credentials for unknown SCRAM users, so their salt is stable and looks like a real one.</summary>
    internal byte[] UnknownUserKey { get; } = RandomNumberGenerator.GetBytes(32);

    public SaslServer(SaslSettings settings, PlainUsers? plainUsers, ScramCredentialStore scram, TimeProvider time)
    {
        Settings = settings;
        PlainUsers = plainUsers;
        Scram = scram;
        Time = time;
    }

    public bool IsEnabled(string mechanism) => Settings.EnabledMechanisms.Contains(mechanism, StringComparer.Ordinal);

    /// <summary>
    /// Opens the credential stores: the SCRAM file in the data dir (a damaged one refuses the start), the PLAIN users
    /// file when set, and the SCRAM users file, whose users are created when they have no credential yet for that
    /// mechanism (credentials changed since through the admin API are kept).
    /// </summary>
    public static SaslServer Open(SaslSettings settings, string dataDir, TimeProvider time, Log log)
    {
        var store = new ScramCredentialStore(dataDir);
        store.Load(log.Warn);
        PlainUsers? plain = settings.PlainUsersFile is { Length: > 0 } p ? new PlainUsers(p, log.Warn) : null;
        if (settings.ScramUsersFile is { Length: > 0 } s)
            ApplyScramUsersFile(s, store, log);
        return new SaslServer(settings, plain, store, time) { Log = log };
    }

    /// <summary>Lines <c>name:mechanism:password</c> (e.g. <c>alice:SCRAM-SHA-256:secret</c>), blank and <c>#</c>
    /// lines ignored; Kafka's kafka-storage format --add-scram.</summary>
    static void ApplyScramUsersFile(string path, ScramCredentialStore store, Log log)
    {
        string[] lines;
        try
        {
            var bytes = Kiou.Storage.SmallFiles.ReadAllBytes(path, 16 << 20)
                ?? throw new ConfigException($"KIOU_SASL_SCRAM_USERS_FILE={path} is larger than 16 MiB");
            lines = Encoding.UTF8.GetString(bytes).Split('\n');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException($"KIOU_SASL_SCRAM_USERS_FILE={path} cannot be read ({e.Message})");
        }
        var add = new List<(string, sbyte, ScramCredential)>();
        var seen = new HashSet<(string, sbyte)>();
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i].TrimEnd('\r');
            if (line.Trim().Length == 0 || line.TrimStart().StartsWith('#'))
                continue;
            string[] parts = line.Split(':', 3);
            if (parts.Length != 3 || parts[0].Length == 0 || parts[2].Length == 0 || ScramMechanism.OfName(parts[1]) is not { } mech)
                throw new ConfigException($"KIOU_SASL_SCRAM_USERS_FILE={path}: line {i + 1} is not name:SCRAM-SHA-256:password or name:SCRAM-SHA-512:password");
            if (!seen.Add((parts[0], mech.Type)))
                throw new ConfigException($"KIOU_SASL_SCRAM_USERS_FILE={path}: line {i + 1} names user '{parts[0]}' with {mech.Name} a second time");
            if (store.Find(parts[0], mech) is not null)
                continue;
            byte[] salt = RandomNumberGenerator.GetBytes(ScramMechanism.SaltBytes);
            add.Add((parts[0], mech.Type, mech.Credential(salt, mech.SaltedPassword(parts[2], salt, ScramMechanism.MinIterations), ScramMechanism.MinIterations)));
        }
        if (add.Count == 0)
            return;
        try
        {
            store.Change([], add);
        }
        catch (IOException e)
        {
            throw new ConfigException($"{store.FilePath} cannot be written ({e.Message}); the users of KIOU_SASL_SCRAM_USERS_FILE were not created");
        }
        log.Info($"SCRAM credentials created from KIOU_SASL_SCRAM_USERS_FILE={path}: {string.Join(", ", add.Select(a => $"{a.Item1} ({ScramMechanism.OfType(a.Item2)})"))}");
    }
}
