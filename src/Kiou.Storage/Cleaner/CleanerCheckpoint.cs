using System.Globalization;
using System.Text;
using Kiou.IoUring.Interop;

namespace Kiou.Storage.Cleaner;

/// <summary>
/// Kafka's <c>cleaner-offset-checkpoint</c> in the data directory: how far each partition has been cleaned. Format as
/// Kafka's CheckpointFile: a version line (0), a count line, then one "topic partition offset" line per partition.
/// Written atomically (temporary file, fsync, rename, directory fsync).
/// </summary>
public static class CleanerCheckpoint
{
    public const string FileName = "cleaner-offset-checkpoint";

    private const int MaxBytes = 64 << 20;

    /// <summary>
    /// The checkpointed offsets; empty when the file is missing. A damaged file is renamed aside (never deleted), reported
    /// through <paramref name="warn"/>, and every partition starts again from its log start.
    /// </summary>
    public static Dictionary<(string Topic, int Partition), long> Read(string dataDir, long nowMs, Action<string> warn)
    {
        var result = new Dictionary<(string, int), long>();
        string path = Path.Combine(dataDir, FileName);
        if (!File.Exists(path))
        {
            return result;
        }

        string? problem = null;
        try
        {
            string? text = SmallFiles.ReadAllText(path, MaxBytes);
            problem = text is null ? "it is larger than any checkpoint" : Parse(text, result);
        }
        catch (IOException ex)
        {
            problem = $"it could not be read ({ex.Message})";
        }

        if (problem is null)
        {
            return result;
        }

        result.Clear();
        string aside = path + ".damaged-" + nowMs.ToString(CultureInfo.InvariantCulture);
        try
        {
            File.Move(path, aside);
            FileSync.SyncDirectory(dataDir);
        }
        catch (IOException ex)
        {
            aside = $"{path} (could not be renamed: {ex.Message})";
        }

        warn($"log cleaner: {path} is damaged ({problem}); kept aside as {aside}. Every compacted partition is cleaned again from its log start, which rewrites data already cleaned but loses nothing");
        return result;
    }

    internal static string? Parse(string text, Dictionary<(string, int), long> into)
    {
        string[] lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        if (lines.Length < 2 || lines[0].Trim() != "0")
        {
            return "the first line is not version 0";
        }

        if (!int.TryParse(lines[1].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int count) || count != lines.Length - 2)
        {
            return $"the count line does not match its {lines.Length - 2} entries";
        }

        for (int i = 2; i < lines.Length; i++)
        {
            string[] parts = lines[i].Trim().Split(' ');
            if (parts.Length != 3
                || parts[0].Length == 0
                || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int partition)
                || !long.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out long offset))
            {
                return $"line {i + 1} is not 'topic partition offset'";
            }

            into[(parts[0], partition)] = offset;
        }

        return null;
    }

    /// <summary>Replaces the file with <paramref name="offsets"/>.</summary>
    public static void Write(string dataDir, IEnumerable<KeyValuePair<(string Topic, int Partition), long>> offsets)
    {
        var lines = new StringBuilder();
        int count = 0;
        var body = new StringBuilder();
        foreach (var ((topic, partition), offset) in offsets.OrderBy(e => e.Key.Topic, StringComparer.Ordinal).ThenBy(e => e.Key.Partition))
        {
            body.Append(CultureInfo.InvariantCulture, $"{topic} {partition} {offset}\n");
            count++;
        }

        lines.Append("0\n").Append(count.ToString(CultureInfo.InvariantCulture)).Append('\n').Append(body);
        SmallFiles.WriteAtomically(Path.Combine(dataDir, FileName), Encoding.UTF8.GetBytes(lines.ToString()));
        int rc = FileSync.SyncDirectory(dataDir);
        if (rc < 0)
        {
            throw new IOException($"fsync of directory {dataDir} failed: {ErrnoNames.Describe(rc)}", -rc);
        }
    }
}
