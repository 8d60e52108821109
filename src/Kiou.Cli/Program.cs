using System.Reflection;

namespace Kiou.Cli;

/// <summary>
/// kiou-cli TOOL [FLAGS]: the command-line tools behind bin/*.sh, modelled on Kafka's console and perf tools.
/// Records go to standard output; prompts, progress and errors to standard error.
/// Exit codes: 0 done, 1 the operation failed (broker unreachable, unknown topic, undelivered record...), 2 bad usage.
/// </summary>
public static class Program
{
    public const int ExitOk = 0;
    public const int ExitFailed = 1;
    public const int ExitUsage = 2;

    static readonly (string Name, Func<string[], int> Run)[] Tools =
    [
        ("topics", TopicsTool.Run),
        ("producer", ConsoleProducer.Run),
        ("consumer", ConsoleConsumer.Run),
        ("consumer-groups", ConsumerGroupsTool.Run),
        ("producer-perf", ProducerPerf.Run),
        ("consumer-perf", ConsumerPerf.Run),
        ("get-offsets", GetOffsetsTool.Run),
        ("dump-log", DumpLogTool.Run),
        ("delete-records", DeleteRecordsTool.Run),
        ("configs", ConfigsTool.Run),
    ];

    public static int Main(string[] args)
    {
        if (args.Length == 0)
            return NoTool();
        foreach (var (name, run) in Tools)
        {
            if (name == args[0])
            {
                try
                {
                    BundledLibrdkafka.Load();
                }
                catch (Exception e) when (e is DllNotFoundException or InvalidOperationException)
                {
                    Console.Error.WriteLine($"{name}: {e.Message}");
                    return ExitFailed;
                }
                if (args.AsSpan(1).Contains("--version"))
                {
                    Console.Out.WriteLine($"kiou-cli {name} {Version} (librdkafka {Confluent.Kafka.Library.VersionString})");
                    return ExitOk;
                }
                try
                {
                    return run(args[1..]);
                }
                catch (UsageException e)
                {
                    Console.Error.WriteLine($"{name}: {e.Message}");
                    Console.Error.WriteLine();
                    Console.Error.Write(e.Usage);
                    return ExitUsage;
                }
                catch (FailedException e)
                {
                    Console.Error.WriteLine($"{name}: {e.Message}");
                    return ExitFailed;
                }
            }
        }
        return NoTool();
    }

    static string Version =>
        typeof(Program).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(Program).Assembly.GetName().Version?.ToString() ?? "unknown";

    static int NoTool()
    {
        Console.Error.WriteLine($"usage: kiou-cli {string.Join('|', Tools.Select(t => t.Name))} [--help] [FLAGS]");
        return ExitUsage;
    }
}

/// <summary>A bad command line: the message and the tool's usage go to standard error, exit code 2.</summary>
public sealed class UsageException(string message, string usage) : Exception(message)
{
    public string Usage { get; } = usage;
}

/// <summary>The operation failed for a reason the user can act on: one line on standard error, exit code 1.</summary>
public sealed class FailedException(string message) : Exception(message);
