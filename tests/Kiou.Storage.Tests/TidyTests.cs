using System.Runtime.CompilerServices;

namespace Kiou.Storage.Tests;

/// <summary>STYLE §10: no wall clock, unseeded randomness, sleeps, blocking waits or console output in Storage and Records.</summary>
public class TidyTests
{
    private static readonly string[] Forbidden = ["DateTime.Now", "DateTime.UtcNow", "Random.Shared", "Thread.Sleep", ".Result;", ".Wait()", "Console.", "unsafe "];

    [Fact]
    public void StorageAndRecordsSources_AreTidy()
    {
        string root = RepoRoot();
        var offenders = new List<string>();
        int scanned = 0;
        foreach (string dir in new[] { "src/Kiou.Storage", "src/Kiou.Protocol/Records" })
        {
            foreach (string file in Directory.EnumerateFiles(Path.Combine(root, dir), "*.cs", SearchOption.AllDirectories))
            {
                if (file.Contains("/obj/") || file.Contains("/bin/"))
                {
                    continue;
                }

                scanned++;
                string[] lines = File.ReadAllLines(file);
                for (int i = 0; i < lines.Length; i++)
                {
                    string code = lines[i].Split("//")[0];
                    foreach (string word in Forbidden)
                    {
                        if (code.Contains(word, StringComparison.Ordinal))
                        {
                            offenders.Add($"{Path.GetRelativePath(root, file)}:{i + 1}: {word}");
                        }
                    }
                }
            }
        }

        Assert.True(scanned >= 10, $"only {scanned} files scanned under {root}");
        Assert.Empty(offenders);
    }

    private static string RepoRoot([CallerFilePath] string path = "") =>
        Path.GetFullPath(Path.Combine(Path.GetDirectoryName(path)!, "..", ".."));
}
