using System.Globalization;
using System.Text;
using Kiou.IoUring.Interop;

namespace Kiou.Storage;

/// <summary>
/// The log start offset that DeleteRecords set, in <c>log-start-offset-checkpoint</c> in the partition's directory, in
/// the format of Kafka's file of that name (version line 0, count line 1, "topic partition offset"). Written
/// atomically (temporary file, fdatasync, rename, directory fsync) before DeleteRecords answers; at open the log
/// starts at the larger of it and the first segment's base offset. Retention's advances need no entry: they delete
/// the segments below.
/// </summary>
internal static class LogStartCheckpoint
{
    public const string FileName = "log-start-offset-checkpoint";

    private const int MaxBytes = 4096;

    /// <summary>
    /// The checkpointed log start, or null when there is none. A damaged file (or one naming another partition) is
    /// renamed aside, never deleted, and reported through <paramref name="warn"/>; the log then starts at its first
    /// segment and nothing is deleted because of it.
    /// </summary>
    public static long? Read(string directory, string topic, int partition, long nowMs, Action<string> warn)
    {
        string path = Path.Combine(directory, FileName);
        if (!File.Exists(path))
        {
            return null;
        }

        string? problem;
        long? offset = null;
        int length = 0;
        try
        {
            string? text = SmallFiles.ReadAllText(path, MaxBytes);
            length = text?.Length ?? MaxBytes;
            var entries = new Dictionary<(string, int), long>();
            problem = text is null ? "it is larger than any checkpoint of one partition" : Cleaner.CleanerCheckpoint.Parse(text, entries);
            if (problem is null)
            {
                if (entries.Count != 1 || !entries.TryGetValue((topic, partition), out long o) || o < 0)
                {
                    problem = $"it does not hold one non-negative entry for {topic} {partition}";
                }
                else
                {
                    offset = o;
                }
            }
        }
        catch (IOException ex)
        {
            problem = $"it could not be read ({ex.Message})";
        }

        if (problem is null)
        {
            return offset;
        }

        string aside = path + ".damaged-" + nowMs.ToString(CultureInfo.InvariantCulture);
        try
        {
            File.Move(path, aside);
            FileSync.SyncDirectory(directory);
        }
        catch (IOException ex)
        {
            aside = $"{path} (could not be renamed: {ex.Message})";
        }

        warn($"partition {topic}-{partition}: {path} ({length} bytes) is damaged ({problem}); kept aside as {aside}. The log starts at its first segment instead, so records that DeleteRecords removed may be served again; nothing was deleted. Delete the records again if needed");
        return null;
    }

    /// <summary>Replaces the file with <paramref name="offset"/>; throws <see cref="IOException"/> if it is not durable.</summary>
    public static void Write(string directory, string topic, int partition, long offset)
    {
        string text = string.Create(CultureInfo.InvariantCulture, $"0\n1\n{topic} {partition} {offset}\n");
        SmallFiles.WriteAtomically(Path.Combine(directory, FileName), Encoding.UTF8.GetBytes(text));
        int rc = FileSync.SyncDirectory(directory);
        if (rc < 0)
        {
            throw new IOException($"fsync of directory {directory} failed: {ErrnoNames.Describe(rc)}", -rc);
        }
    }
}
