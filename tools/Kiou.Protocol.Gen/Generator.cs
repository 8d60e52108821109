namespace Kiou.Protocol.Gen;

/// <summary>Turns a folder of Kafka JSON schemas into checked-in C# codecs.</summary>
public static class Generator
{
    public const string ToolName = "Kiou.Protocol.Gen";

    public const string DefaultSchemaDir = "protocol/schemas";

    public const string DefaultOutputDir = "src/Kiou.Protocol/Generated";

    /// <summary>File name to content for every generated file, ordered by name.</summary>
    public static SortedDictionary<string, string> GenerateAll(string schemaDir)
    {
        List<MessageSpec> messages = SchemaLoader.LoadDirectory(schemaDir);
        if (messages.Count == 0)
            throw new InvalidOperationException($"no *.json schemas in {schemaDir}");
        var files = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (MessageSpec m in messages)
        {
            if (!files.TryAdd(m.Name + ".g.cs", MessageEmitter.Emit(m)))
                throw new InvalidOperationException($"two schemas named {m.Name}");
        }
        files.Add("ApiMessageTypes.g.cs", ApiMessageTypesEmitter.Emit(messages));
        return files;
    }

    /// <summary>
    /// Writes every generated file into <paramref name="outDir"/> (only when its content changed)
    /// and deletes stale *.g.cs files there. Returns the number of files written or deleted.
    /// </summary>
    public static int Run(string schemaDir, string outDir)
    {
        SortedDictionary<string, string> files = GenerateAll(schemaDir);
        Directory.CreateDirectory(outDir);
        int changed = 0;
        foreach ((string name, string content) in files)
        {
            string path = Path.Combine(outDir, name);
            if (File.Exists(path) && File.ReadAllText(path) == content)
                continue;
            File.WriteAllText(path, content);
            changed++;
        }
        foreach (string path in Directory.GetFiles(outDir, "*.g.cs"))
        {
            if (!files.ContainsKey(Path.GetFileName(path)))
            {
                File.Delete(path);
                changed++;
            }
        }
        return changed;
    }

    /// <summary>The nearest directory at or above <paramref name="start"/> holding Kiou.sln, or null.</summary>
    public static string? FindRepoRoot(string start)
    {
        for (DirectoryInfo? dir = new(start); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Kiou.sln")))
                return dir.FullName;
        }
        return null;
    }
}
