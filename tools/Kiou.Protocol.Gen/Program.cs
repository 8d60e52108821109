// Usage: dotnet run --project tools/Kiou.Protocol.Gen -c Release -- [schemaDir] [outDir]
// Defaults are protocol/schemas and src/Kiou.Protocol/Generated under the repository root (the
// directory holding Kiou.sln, found by walking up from the current directory, then from the tool).
using Kiou.Protocol.Gen;

if (args.Length > 2 || args.Any(a => a is "-h" or "--help"))
{
    Console.Error.WriteLine("usage: Kiou.Protocol.Gen [schemaDir] [outDir]");
    return 2;
}

string? root = Generator.FindRepoRoot(Directory.GetCurrentDirectory()) ?? Generator.FindRepoRoot(AppContext.BaseDirectory);
if (root is null && args.Length < 2)
{
    Console.Error.WriteLine("Kiou.sln not found above the current directory; pass schemaDir and outDir explicitly.");
    return 2;
}

string schemaDir = args.Length > 0 ? Path.GetFullPath(args[0]) : Path.Combine(root!, Generator.DefaultSchemaDir);
string outDir = args.Length > 1 ? Path.GetFullPath(args[1]) : Path.Combine(root!, Generator.DefaultOutputDir);
try
{
    int changed = Generator.Run(schemaDir, outDir);
    Console.WriteLine($"{Generator.ToolName}: {schemaDir} -> {outDir}: {changed} file(s) written or deleted");
    return 0;
}
catch (Exception e) when (e is InvalidOperationException or FormatException or IOException)
{
    Console.Error.WriteLine($"{Generator.ToolName}: {e.Message}");
    return 1;
}
