using System.Collections.Frozen;
using System.Text.Json;
using Kiou.Broker.Hosting;
using Kiou.IoUring.Interop;

namespace Kiou.Broker.Security;

/// <summary>
/// The SCRAM credentials (salt, iterations, StoredKey, ServerKey per user and mechanism; never a password), kept in
/// <c>scram-credentials.json</c> in the data dir and replaced whole on each change (temporary file, fdatasync, rename,
/// directory sync), as Kafka keeps them in its metadata log. Readers take an immutable snapshot without locking.
/// </summary>
public sealed class ScramCredentialStore
{
    public const string FileName = "scram-credentials.json";
    const int FormatVersion = 1;
    const int MaxFileBytes = 64 << 20;

    readonly string _path;
    readonly Lock _write = new();
    FrozenDictionary<(string User, sbyte Mechanism), ScramCredential> _all = FrozenDictionary<(string, sbyte), ScramCredential>.Empty;

    public ScramCredentialStore(string dataDir)
    {
        _path = Path.Combine(dataDir, FileName);
    }

    public string FilePath => _path;

    public ScramCredential? Find(string user, ScramMechanism mechanism) => _all.GetValueOrDefault((user, mechanism.Type));

    /// <summary>Every credential now, by user and mechanism type.</summary>
    public IReadOnlyDictionary<(string User, sbyte Mechanism), ScramCredential> All => _all;

    /// <summary>
    /// Reads the file. A file that cannot be used is renamed aside and the start refused: running without the
    /// credentials would lock every SCRAM user out, or, worse, let an operator recreate them unaware.
    /// </summary>
    public void Load(Action<string> warn)
    {
        if (!File.Exists(_path))
            return;
        string? why;
        Dictionary<(string, sbyte), ScramCredential>? loaded = null;
        try
        {
            var bytes = Kiou.Storage.SmallFiles.ReadAllBytes(_path, MaxFileBytes);
            if (bytes is null)
                why = $"it is larger than {MaxFileBytes} bytes";
            else
                (loaded, why) = Parse(bytes);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException($"{_path} cannot be read ({e.Message}); the SCRAM credentials are in it. Make it readable by the broker and start again");
        }
        if (loaded is null)
        {
            string aside = $"{_path}.damaged-{DateTime.UtcNow:yyyyMMddTHHmmssZ}";
            try
            {
                File.Move(_path, aside);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new ConfigException($"{_path} cannot be used: {why}, and could not be moved aside ({e.Message}). Restore it from a backup, "
                    + "or move it away to start without SCRAM credentials and create them again");
            }
            warn($"{_path} cannot be used: {why}; moved aside to {aside}");
            throw new ConfigException($"{_path} cannot be used: {why}. It was moved aside to {aside} and the broker does not start without its "
                + "SCRAM credentials: restore the file from a backup, or start again to run without them and create the users again "
                + "(KIOU_SASL_SCRAM_USERS_FILE or AlterUserScramCredentials)");
        }
        _all = loaded.ToFrozenDictionary();
    }

    static (Dictionary<(string, sbyte), ScramCredential>?, string?) Parse(byte[] bytes)
    {
        try
        {
            using var doc = JsonDocument.Parse(bytes);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("Version", out var v) || v.ValueKind != JsonValueKind.Number
                || !v.TryGetInt32(out int version) || version != FormatVersion)
                return (null, $"it has no format version {FormatVersion}");
            if (!root.TryGetProperty("Credentials", out var list) || list.ValueKind != JsonValueKind.Array)
                return (null, "it has no Credentials list");
            var result = new Dictionary<(string, sbyte), ScramCredential>();
            foreach (var e in list.EnumerateArray())
            {
                if (e.ValueKind != JsonValueKind.Object
                    || !e.TryGetProperty("User", out var u) || u.ValueKind != JsonValueKind.String || string.IsNullOrEmpty(u.GetString())
                    || !e.TryGetProperty("Mechanism", out var m) || m.ValueKind != JsonValueKind.String || ScramMechanism.OfName(m.GetString()!) is not { } mech
                    || !e.TryGetProperty("Iterations", out var it) || it.ValueKind != JsonValueKind.Number || !it.TryGetInt32(out int iterations)
                    || iterations < ScramMechanism.MinIterations || iterations > ScramMechanism.MaxIterations
                    || Base64(e, "Salt") is not { Length: > 0 } salt
                    || Base64(e, "StoredKey") is not { } stored || stored.Length != mech.HashBytes
                    || Base64(e, "ServerKey") is not { } server || server.Length != mech.HashBytes)
                    return (null, "an entry of its Credentials list is incomplete or invalid");
                if (!result.TryAdd((u.GetString()!, mech.Type), new ScramCredential(salt, stored, server, iterations)))
                    return (null, $"user '{u.GetString()}' has two {mech.Name} credentials");
            }
            return (result, null);
        }
        catch (JsonException e)
        {
            return (null, $"it is not valid JSON ({e.Message})");
        }
    }

    static byte[]? Base64(JsonElement e, string name)
    {
        if (!e.TryGetProperty(name, out var p) || p.ValueKind != JsonValueKind.String)
            return null;
        try
        {
            return Convert.FromBase64String(p.GetString()!);
        }
        catch (FormatException)
        {
            return null;
        }
    }

    /// <summary>Applies deletions and upsertions together, durably, then publishes them; throws IOException (nothing
    /// changed) when the file cannot be written.</summary>
    public void Change(IEnumerable<(string User, sbyte Mechanism)> deletions, IEnumerable<(string User, sbyte Mechanism, ScramCredential Credential)> upsertions)
    {
        lock (_write)
        {
            var next = new Dictionary<(string, sbyte), ScramCredential>(_all);
            foreach (var d in deletions)
                next.Remove(d);
            foreach (var (user, mech, cred) in upsertions)
                next[(user, mech)] = cred;
            Write(next);
            _all = next.ToFrozenDictionary();
        }
    }

    void Write(Dictionary<(string, sbyte), ScramCredential> all)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteNumber("Version", FormatVersion);
            w.WriteStartArray("Credentials");
            foreach (var ((user, mech), c) in all.OrderBy(kv => kv.Key.Item1, StringComparer.Ordinal).ThenBy(kv => kv.Key.Item2))
            {
                w.WriteStartObject();
                w.WriteString("User", user);
                w.WriteString("Mechanism", ScramMechanism.OfType(mech)!.Name);
                w.WriteNumber("Iterations", c.Iterations);
                w.WriteString("Salt", Convert.ToBase64String(c.Salt));
                w.WriteString("StoredKey", Convert.ToBase64String(c.StoredKey));
                w.WriteString("ServerKey", Convert.ToBase64String(c.ServerKey));
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        try
        {
            // Salted keys are not passwords, but they still let an attacker guess passwords offline.
            FileSync.ReplaceDurably(_path, buffer.GetBuffer().AsSpan(0, (int)buffer.Length), UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new IOException(e.Message, e);
        }
    }
}
