using System.Text.Json;
using System.Text.Json.Serialization;
using Kiou.Broker.Hosting;
using Kiou.IoUring.Interop;
using Kiou.Storage;

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
    readonly string _dataDir;
    readonly string _dir;
    readonly string _path;
    readonly string _metaProperties;

    public MetadataStore(string dataDir)
    {
        _dataDir = dataDir;
        _dir = Path.Combine(dataDir, "__cluster");
        _path = Path.Combine(_dir, "metadata.json");
        _metaProperties = Path.Combine(dataDir, "meta.properties");
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

    /// <summary>
    /// Null when no snapshot exists (a new data dir, or a lost file: the controller then adopts the partition
    /// directories). A file that exists but cannot be used throws <see cref="ConfigException"/> with one sentence:
    /// guessing would risk the data, so start-up stops and nothing is touched.
    /// </summary>
    public Snapshot? Load()
    {
        if (!File.Exists(_path))
            return null;
        string? why;
        Snapshot? snapshot = null;
        try
        {
            byte[]? bytes = SmallFiles.ReadAllBytes(_path, MaxFileBytes);
            if (bytes is null)
            {
                why = $"it is larger than {MaxFileBytes} bytes, far more than the metadata of {ClusterController.DefaultMaxPartitions} topics takes";
            }
            else if (bytes.Length == 0)
            {
                why = "it is empty";
            }
            else
            {
                snapshot = JsonSerializer.Deserialize(bytes, MetadataJson.Default.Snapshot);
                why = Check(snapshot);
            }
        }
        catch (JsonException e)
        {
            why = $"it is not valid JSON ({e.Message})";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            why = $"it cannot be read ({e.Message})";
        }
        if (why is not null)
        {
            throw new ConfigException($"{_path} cannot be used: {why}. No data was touched. Restore it from a backup, or move it aside " +
                $"(mv {_path} {_path}.bad) and start again: the broker then rebuilds the topics from the partition directories");
        }
        return snapshot;
    }

    static string? Check(Snapshot? snapshot)
    {
        if (snapshot is null)
            return "it holds no snapshot";
        if (snapshot.Version != FormatVersion)
            return $"it has format version {snapshot.Version}; this broker reads version {FormatVersion}";
        if (string.IsNullOrEmpty(snapshot.ClusterId))
            return "it has no ClusterId";
        if (snapshot.Topics is null)
            return "it has no Topics list";
        var names = new HashSet<string>(StringComparer.Ordinal);
        var ids = new HashSet<Guid>();
        foreach (var t in snapshot.Topics)
        {
            if (t is null || TopicNames.Validate(t.Name) is not null || t.Id == Guid.Empty || t.Partitions <= 0)
                return $"topic '{t?.Name}' has an invalid name, id or partition count";
            if (!names.Add(t.Name) || !ids.Add(t.Id))
                return $"topic '{t.Name}' or its id is listed twice";
            t.Configs ??= [];
        }
        return null;
    }

    /// <summary>
    /// Writes the snapshot (temporary file, fdatasync, rename, directory fsync). When the disk is full the reserve
    /// file is given up to make room, so metadata changes that free space (DeleteTopics) still succeed; the reserve
    /// comes back after a later successful save. Throws IOException when the write fails anyway.
    /// </summary>
    public void Save(Snapshot snapshot)
    {
        Directory.CreateDirectory(_dir);
        byte[] bytes = JsonSerializer.SerializeToUtf8Bytes(snapshot, MetadataJson.Default.Snapshot);
        try
        {
            Write(bytes);
        }
        catch (IOException e) when (IsDiskFull(e) && ReleaseReserve())
        {
            Write(bytes);
        }
        EnsureReserve();
    }

    void Write(byte[] bytes)
    {
        string tmp = _path + ".tmp";
        try
        {
            using (var handle = File.OpenHandle(tmp, FileMode.Create, FileAccess.Write))
            {
                RandomAccess.Write(handle, bytes, 0);
                int rc = FileSync.DataSync(handle);
                if (rc < 0)
                    throw new IOException($"fdatasync of {tmp} failed (errno {-rc})", -rc);
            }
            File.Move(tmp, _path, overwrite: true);
        }
        catch (IOException)
        {
            TryDelete(tmp);
            throw;
        }
        FileSync.SyncDirectory(_dir);
    }

    /// <summary>ENOSPC or EDQUOT behind an IOException (.NET puts the errno in HResult on Unix).</summary>
    public static bool IsDiskFull(Exception e) => e is IOException { HResult: 28 or 122 } || (e is StorageException s && s.Errno is 28 or 122);

    string ReservePath => Path.Combine(_dir, "reserve");

    /// <summary>Deletes the reserve file; true when there was one to give up.</summary>
    public bool ReleaseReserve()
    {
        if (!File.Exists(ReservePath))
            return false;
        TryDelete(ReservePath);
        return true;
    }

    /// <summary>Best effort: a disk too full for the reserve is reported by the writes that need space, not here.</summary>
    public void EnsureReserve()
    {
        try
        {
            if (File.Exists(ReservePath) && new FileInfo(ReservePath).Length >= ReserveBytes)
                return;
            // Taking the reserve back from a nearly full disk would only move the failure to the next write.
            if (new DriveInfo(_dir).AvailableFreeSpace < ReserveBytes * ReserveHeadroom)
                return;
            using var handle = File.OpenHandle(ReservePath, FileMode.Create, FileAccess.Write);
            RandomAccess.Write(handle, new byte[ReserveBytes], 0); // written, not sparse: the blocks must really be held
            FileSync.DataSync(handle);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(ReservePath);
        }
    }

    // 1 MiB: room for a snapshot of several thousand topics, small against any data disk.
    const int ReserveBytes = 1 << 20;
    const int MaxFileBytes = 256 << 20;
    const int ReserveHeadroom = 8;

    static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    /// <summary>
    /// <c>&lt;data dir&gt;/meta.properties</c> (Kafka's name and format): the cluster id kept outside metadata.json, so
    /// a lost metadata.json does not also lose the cluster's identity. Null when absent or unreadable.
    /// </summary>
    public string? ReadClusterIdBackup()
    {
        try
        {
            string text = SmallFiles.ReadAllText(_metaProperties, 64 * 1024) ?? string.Empty; // a few lines; larger is damage
            foreach (string line in text.Split('\n'))
            {
                if (line.StartsWith("cluster.id=", StringComparison.Ordinal) && line.Length > "cluster.id=".Length)
                    return line["cluster.id=".Length..].Trim();
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return null;
    }

    public void WriteClusterIdBackup(string clusterId, int nodeId)
    {
        if (ReadClusterIdBackup() == clusterId)
            return;
        string text = $"#Written by KIOU: the cluster id, also kept in __cluster/metadata.json\nversion=1\ncluster.id={clusterId}\nnode.id={nodeId}\n";
        string tmp = _metaProperties + ".tmp";
        using (var handle = File.OpenHandle(tmp, FileMode.Create, FileAccess.Write))
        {
            RandomAccess.Write(handle, System.Text.Encoding.UTF8.GetBytes(text), 0);
            FileSync.DataSync(handle);
        }
        File.Move(tmp, _metaProperties, overwrite: true);
        FileSync.SyncDirectory(_dataDir);
    }
}

[JsonSourceGenerationOptions(WriteIndented = true)]
[JsonSerializable(typeof(MetadataStore.Snapshot))]
internal sealed partial class MetadataJson : JsonSerializerContext;
