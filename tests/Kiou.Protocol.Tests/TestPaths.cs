using Kiou.Protocol.Gen;

namespace Kiou.Protocol.Tests;

internal static class TestPaths
{
    private static readonly Lazy<string> Root = new(() =>
        Generator.FindRepoRoot(AppContext.BaseDirectory)
        ?? throw new InvalidOperationException($"Kiou.sln not found above {AppContext.BaseDirectory}"));

    public static string RepoRoot => Root.Value;

    public static string SchemaDir => Path.Combine(RepoRoot, Generator.DefaultSchemaDir);

    public static string GeneratedDir => Path.Combine(RepoRoot, Generator.DefaultOutputDir);

    public static byte[] Hex(string hex)
    {
        string compact = string.Concat(hex.Where(c => !char.IsWhiteSpace(c)));
        return Convert.FromHexString(compact);
    }
}
