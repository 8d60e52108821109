using System.Text.Json;
using Kiou.Broker.Hosting;
using Kiou.IoUring.Interop;

namespace Kiou.Broker.Security;

/// <summary>
/// The ACLs on disk: <c>__cluster/acls.json</c>, written as metadata.json is (temporary file, fdatasync, rename,
/// directory sync), so a crash leaves the old list or the new one. A file that cannot be read is set aside and the
/// broker refuses to start: running without the ACLs it holds would change who may do what without anyone noticing.
/// </summary>
public sealed class AclStore
{
    public const string FileName = "acls.json";
    const int FormatVersion = 1;
    const int MaxFileBytes = 64 << 20;

    readonly string _dir;
    readonly string _path;

    public AclStore(string dataDir)
    {
        _dir = Path.Combine(dataDir, "__cluster");
        _path = Path.Combine(_dir, FileName);
    }

    public string FilePath => _path;

    /// <summary>The stored ACLs (none when there is no file). Throws <see cref="ConfigException"/> with what to do
    /// when the file is damaged, after moving it aside.</summary>
    public List<AclBinding> Load()
    {
        if (!File.Exists(_path))
            return [];
        string? why;
        List<AclBinding>? loaded = null;
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
            why = $"it cannot be read ({e.Message})";
        }
        if (loaded is not null)
            return loaded;
        string aside = $"{_path}.damaged-{DateTime.UtcNow:yyyyMMddTHHmmssZ}";
        try
        {
            File.Move(_path, aside);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException($"the ACL file {_path} cannot be used: {why}, and could not be moved aside ({e.Message}). The broker does not start " +
                "without its ACLs: restore the file from a backup, or move it away to start with no ACLs, then create them again");
        }
        throw new ConfigException($"the ACL file {_path} cannot be used: {why}. It was moved aside to {aside}; the broker does not start without its ACLs. " +
            $"Restore a good copy to {_path}, or start again to run with no ACLs and create them again (kafka-acls.sh or an admin client)");
    }

    static (List<AclBinding>?, string?) Parse(byte[] bytes)
    {
        try
        {
            using var doc = JsonDocument.Parse(bytes);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                return (null, "it is not a JSON object");
            if (!root.TryGetProperty("Version", out var v) || v.ValueKind != JsonValueKind.Number || v.GetInt32() != FormatVersion)
                return (null, $"it has no format version {FormatVersion}");
            if (!root.TryGetProperty("Acls", out var list) || list.ValueKind != JsonValueKind.Array)
                return (null, "it has no Acls list");
            var result = new List<AclBinding>();
            int i = 0;
            foreach (var e in list.EnumerateArray())
            {
                if (e.ValueKind != JsonValueKind.Object)
                    return (null, $"ACL {i} is not an object");
                var acl = new AclBinding(
                    (ResourceType)Code(e, "ResourceType"), Text(e, "ResourceName"), (PatternType)Code(e, "PatternType"),
                    Text(e, "Principal"), Text(e, "Host"), (AclOperation)Code(e, "Operation"), (AclPermission)Code(e, "Permission"));
                if (Acls.Validate(acl) is { } bad)
                    return (null, $"ACL {i} is not valid: {bad}");
                result.Add(acl);
                i++;
            }
            return (result, null);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or KeyNotFoundException)
        {
            return (null, $"it is not valid ({e.Message})");
        }
    }

    static sbyte Code(JsonElement e, string name) => e.GetProperty(name).GetSByte();

    static string Text(JsonElement e, string name) => e.GetProperty(name).GetString() ?? throw new FormatException($"{name} is null");

    /// <summary>Replaces the file with <paramref name="acls"/>. Throws IOException when it cannot: then the file
    /// still holds the previous list.</summary>
    public void Save(IEnumerable<AclBinding> acls)
    {
        Directory.CreateDirectory(_dir);
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteNumber("Version", FormatVersion);
            w.WriteStartArray("Acls");
            foreach (var a in acls)
            {
                w.WriteStartObject();
                w.WriteNumber("ResourceType", (sbyte)a.ResourceType);
                w.WriteString("ResourceName", a.ResourceName);
                w.WriteNumber("PatternType", (sbyte)a.PatternType);
                w.WriteString("Principal", a.Principal);
                w.WriteString("Host", a.Host);
                w.WriteNumber("Operation", (sbyte)a.Operation);
                w.WriteNumber("Permission", (sbyte)a.Permission);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        FileSync.ReplaceDurably(_path, buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
    }
}
