using System.Text.Json;
using System.Text.Json.Serialization;
using Kiou.IoUring.Interop;

namespace Kiou.Broker.Controller;

/// <summary>One topic as the controller knows it. Immutable: a change makes a new record.</summary>
public sealed record TopicInfo(string Name, Guid Id, int Partitions, IReadOnlyDictionary<string, string> Configs);

/// <summary>
/// The controller's durable state: cluster id and topics, kept in <c>&lt;data dir&gt;/__cluster/metadata.json</c>.
/// Every change writes a new snapshot to a temporary file, fdatasyncs it, renames it over the old one and
/// syncs the directory, so a crash leaves either the old or the new snapshot, never a torn one.
/// Thread-safety: callers serialize changes (the <see cref="ClusterController"/> holds its lock).
/// </summary>
public sealed class MetadataStore
{
    public const int FormatVersion = 1;
    readonly string _dir;
    readonly string _path;

    public MetadataStore(string dataDir)
    {
        _dir = Path.Combine(dataDir, "__cluster");
        _path = Path.Combine(_dir, "metadata.json");
    }

    public string FilePath => _path;

    public sealed class Snapshot
    {
        public int Version { get; set; } = FormatVersion;
        public string ClusterId { get; set; } = "";
        public List<TopicRecord> Topics { get; set; } = [];
    }

    public sealed class TopicRecord
    {
        public string Name { get; set; } = "";
        public Guid Id { get; set; }
        public int Partitions { get; set; }
        public Dictionary<string, string> Configs { get; set; } = [];
    }

    /// <summary>Null when no snapshot exists yet (a new data dir).</summary>
    public Snapshot? Load()
    {
        if (!File.Exists(_path))
            return null;
        byte[] bytes = File.ReadAllBytes(_path);
        var snapshot = JsonSerializer.Deserialize(bytes, MetadataJson.Default.Snapshot)
            ?? throw new InvalidDataException($"{_path} is empty");
        if (snapshot.Version != FormatVersion)
            throw new InvalidDataException($"{_path} has format version {snapshot.Version}; this broker reads version {FormatVersion}");
        return snapshot;
    }

    public void Save(Snapshot snapshot)
    {
        Directory.CreateDirectory(_dir);
        string tmp = _path + ".tmp";
        byte[] bytes = JsonSerializer.SerializeToUtf8Bytes(snapshot, MetadataJson.Default.Snapshot);
        using (var handle = File.OpenHandle(tmp, FileMode.Create, FileAccess.Write))
        {
            RandomAccess.Write(handle, bytes, 0);
            int rc = FileSync.DataSync(handle);
            if (rc < 0)
                throw new IOException($"fdatasync of {tmp} failed (errno {-rc})");
        }
        File.Move(tmp, _path, overwrite: true);
        FileSync.SyncDirectory(_dir);
    }
}

[JsonSourceGenerationOptions(WriteIndented = true)]
[JsonSerializable(typeof(MetadataStore.Snapshot))]
internal sealed partial class MetadataJson : JsonSerializerContext;
