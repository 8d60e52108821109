using System.Text;
using System.Text.RegularExpressions;
using Kiou.IoUring.Interop;

namespace Kiou.Broker.Logs;

/// <summary>
/// The names and marker files of partition directories in the data dir (docs/design/metadata.md):
/// <list type="bullet">
/// <item><c>&lt;topic&gt;-&lt;p&gt;</c>: a live partition; its <c>partition.metadata</c> (Kafka's format:
/// <c>version: 0</c>, <c>topic_id: &lt;base64url&gt;</c>) names the topic id it belongs to.</item>
/// <item><c>&lt;topic&gt;-&lt;p&gt;.&lt;topic id hex&gt;-delete</c>: a deleted partition. The rename is the durable record
/// of the deletion; only directories with this suffix are ever deleted by the broker.</item>
/// <item><c>&lt;topic&gt;-&lt;p&gt;.&lt;topic id hex&gt;-stale</c>: a directory of another topic id set aside, never deleted.</item>
/// </list>
/// Stateless and thread-safe.
/// </summary>
public static partial class PartitionDirectories
{
    public const string MetadataFileName = "partition.metadata";
    const string DeleteSuffix = "-delete";
    const string StaleSuffix = "-stale";
    const int NameMax = 255; // NAME_MAX: a long topic name is cut in a marker's name; the id identifies it

    public sealed record Live(string Path, string Topic, int Partition, Guid? TopicId);

    public sealed record Deleted(string Path, Guid TopicId);

    [GeneratedRegex(@"^(?<topic>.+)-(?<partition>[0-9]{1,9})$")]
    private static partial Regex LiveName();

    [GeneratedRegex(@"^.+-[0-9]{1,9}\.(?<id>[0-9a-f]{32})-delete$")]
    private static partial Regex DeletedName();

    /// <summary>Lists live partition directories and delete markers. The broker's own directories ("__..." other than
    /// internal topics' partitions) and others are left out.</summary>
    public static (List<Live> Live, List<Deleted> Deleted) Scan(string dataDir)
    {
        var live = new List<Live>();
        var deleted = new List<Deleted>();
        if (!Directory.Exists(dataDir))
            return (live, deleted);
        foreach (string dir in Directory.EnumerateDirectories(dataDir))
        {
            string name = Path.GetFileName(dir);
            var m = LiveName().Match(name);
            // "__" directories are the broker's own (__cluster, the pre-topic __consumer_offsets/groups.log), except
            // the partitions of Kafka's internal topics, which must be found again if metadata.json is lost.
            if (name.StartsWith("__", StringComparison.Ordinal) && !(m.Success && Controller.InternalTopics.IsInternal(m.Groups["topic"].Value)))
                continue;
            var d = DeletedName().Match(name);
            if (d.Success)
            {
                deleted.Add(new Deleted(dir, Guid.ParseExact(d.Groups["id"].Value, "N")));
                continue;
            }
            if (m.Success && int.TryParse(m.Groups["partition"].Value, out int partition))
                live.Add(new Live(dir, m.Groups["topic"].Value, partition, ReadTopicId(dir)));
        }
        return (live, deleted);
    }

    public static string DeletedPath(string dataDir, string topic, int partition, Guid topicId) => MarkerPath(dataDir, topic, partition, topicId, DeleteSuffix);

    public static string StalePath(string dataDir, string topic, int partition, Guid topicId) => MarkerPath(dataDir, topic, partition, topicId, StaleSuffix);

    static string MarkerPath(string dataDir, string topic, int partition, Guid topicId, string suffix)
    {
        string tail = $"-{partition}.{topicId:N}{suffix}";
        string prefix = topic.Length + tail.Length > NameMax ? topic[..(NameMax - tail.Length)] : topic;
        return Path.Combine(dataDir, prefix + tail);
    }

    /// <summary>The topic id in the directory's partition.metadata; null when the file is absent or unreadable.</summary>
    public static Guid? ReadTopicId(string partitionDir)
    {
        try
        {
            string path = Path.Combine(partitionDir, MetadataFileName);
            if (!File.Exists(path))
                return null;
            Span<byte> bytes = stackalloc byte[18];
            string text = Kiou.Storage.SmallFiles.ReadAllText(path, 64 * 1024) ?? string.Empty; // a few lines; larger is damage
            foreach (string line in text.Split('\n'))
            {
                if (!line.StartsWith("topic_id:", StringComparison.Ordinal))
                    continue;
                string b64 = line["topic_id:".Length..].Trim().Replace('-', '+').Replace('_', '/');
                b64 = b64.PadRight(b64.Length + ((4 - (b64.Length % 4)) % 4), '=');
                if (Convert.TryFromBase64String(b64, bytes, out int n) && n == 16)
                    return new Guid(bytes[..16], bigEndian: true);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return null;
    }

    /// <summary>
    /// Writes partition.metadata unless it already names this id. Not fsynced on its own: metadata.json is the record
    /// of truth; this file only lets a lost metadata.json be rebuilt with the real topic id.
    /// </summary>
    public static void WriteTopicId(string partitionDir, Guid topicId)
    {
        if (ReadTopicId(partitionDir) == topicId)
            return;
        string path = Path.Combine(partitionDir, MetadataFileName);
        string tmp = path + ".tmp";
        File.WriteAllText(tmp, $"version: 0\ntopic_id: {KafkaUuid(topicId)}\n", Encoding.ASCII);
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>Kafka's Uuid.toString: base64url of the 16 big-endian bytes, no padding.</summary>
    public static string KafkaUuid(Guid id)
    {
        Span<byte> b = stackalloc byte[16];
        id.TryWriteBytes(b, bigEndian: true, out _);
        return Convert.ToBase64String(b).TrimEnd('=').Replace('+', '-').Replace('/', '_');
    }

    /// <summary>Renames a live directory to its delete marker; false when it was not there (already renamed).</summary>
    public static bool MarkDeleted(string liveDir, string markerDir)
    {
        try
        {
            Directory.Move(liveDir, markerDir);
            return true;
        }
        catch (DirectoryNotFoundException)
        {
            return false;
        }
    }

    /// <summary>Frees a delete marker's data but keeps the directory, which still records the deletion.</summary>
    public static void EmptyMarker(string markerDir)
    {
        foreach (string file in Directory.EnumerateFiles(markerDir))
        {
            if (Path.GetFileName(file) != MetadataFileName)
                File.Delete(file);
        }
    }

    public static void SyncDataDir(string dataDir)
    {
        int rc = FileSync.SyncDirectory(dataDir);
        if (rc < 0)
            throw new IOException($"fsync of {dataDir} failed (errno {-rc})", -rc);
    }
}
