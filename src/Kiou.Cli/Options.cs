using System.Globalization;
using System.Text;

namespace Kiou.Cli;

/// <summary>One flag of a tool: `--name VALUE` (or `--name=VALUE`) when it takes a value, `--name` otherwise.</summary>
public sealed record Flag(string Name, string Help, string? Value = null, bool Repeatable = false, string[]? Aliases = null);

/// <summary>
/// A tool's flags and the parsed command line. Parsing is strict as in Kafka's tools: an unknown flag, a missing
/// value, a repeated single flag or a stray argument is a <see cref="UsageException"/> (exit code 2).
/// </summary>
public sealed class Options
{
    readonly Dictionary<string, List<string>> _values = new(StringComparer.Ordinal);

    public string Usage { get; }

    Options(string usage) => Usage = usage;

    /// <summary>Parses <paramref name="args"/>; null when --help was given (the usage is then printed to standard output).</summary>
    public static Options? Parse(string[] args, string synopsis, string description, IReadOnlyList<Flag> flags)
    {
        var usage = FormatUsage(synopsis, description, flags);
        var options = new Options(usage);
        var byName = new Dictionary<string, Flag>(StringComparer.Ordinal);
        foreach (var f in flags)
        {
            byName[f.Name] = f;
            foreach (var a in f.Aliases ?? [])
                byName[a] = f;
        }
        for (int i = 0; i < args.Length; i++)
        {
            string arg = args[i];
            if (arg is "--help" or "-h")
            {
                Console.Out.Write(usage);
                return null;
            }
            if (!arg.StartsWith("--", StringComparison.Ordinal))
                throw new UsageException($"unexpected argument '{arg}'", usage);
            string name = arg[2..];
            string? inline = null;
            int eq = name.IndexOf('=');
            if (eq >= 0)
            {
                inline = name[(eq + 1)..];
                name = name[..eq];
            }
            if (!byName.TryGetValue(name, out var flag))
                throw new UsageException($"unknown flag --{name}", usage);
            string value;
            if (flag.Value is null)
            {
                if (inline is not null)
                    throw new UsageException($"--{name} takes no value", usage);
                value = "";
            }
            else if (inline is not null)
                value = inline;
            else if (i + 1 < args.Length)
                value = args[++i];
            else
                throw new UsageException($"--{name} needs a value ({flag.Value})", usage);
            if (!options._values.TryGetValue(flag.Name, out var list))
                options._values[flag.Name] = list = [];
            else if (!flag.Repeatable)
                throw new UsageException($"--{flag.Name} given more than once", usage);
            list.Add(value);
        }
        return options;
    }

    static string FormatUsage(string synopsis, string description, IReadOnlyList<Flag> flags)
    {
        var sb = new StringBuilder();
        sb.Append("usage: ").Append(synopsis).Append('\n');
        sb.Append(description).Append("\n\n");
        int width = 0;
        var left = new List<string>();
        foreach (var f in flags)
        {
            var l = "--" + f.Name + (f.Value is null ? "" : " " + f.Value);
            left.Add(l);
            width = Math.Max(width, l.Length);
        }
        for (int i = 0; i < flags.Count; i++)
        {
            var f = flags[i];
            sb.Append("  ").Append(left[i].PadRight(width + 2)).Append(f.Help);
            if (f.Aliases is { Length: > 0 })
                sb.Append(" (also --").Append(string.Join(", --", f.Aliases)).Append(')');
            sb.Append('\n');
        }
        sb.Append("  ").Append("--help".PadRight(width + 2)).Append("print this help\n");
        sb.Append("  ").Append("--version".PadRight(width + 2)).Append("print the version of the tools and of the librdkafka they run on\n");
        return sb.ToString();
    }

    public bool Has(string name) => _values.ContainsKey(name);

    public string? Get(string name) => _values.TryGetValue(name, out var l) ? l[0] : null;

    public string Get(string name, string fallback) => Get(name) ?? fallback;

    public IReadOnlyList<string> All(string name) => _values.TryGetValue(name, out var l) ? l : [];

    public string Required(string name) => Get(name) ?? throw Fail($"--{name} is required");

    public UsageException Fail(string message) => new(message, Usage);

    public long Long(string name, long fallback, long min = long.MinValue, long max = long.MaxValue)
    {
        var s = Get(name);
        if (s is null)
            return fallback;
        if (!long.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v) || v < min || v > max)
            throw Fail($"--{name} must be a whole number" + (min > long.MinValue ? $" of at least {min}" : "") + $", not '{s}'");
        return v;
    }

    public int Int(string name, int fallback, int min = int.MinValue, int max = int.MaxValue) => (int)Long(name, fallback, min, max);

    public double Double(string name, double fallback)
    {
        var s = Get(name);
        if (s is null)
            return fallback;
        if (!double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v))
            throw Fail($"--{name} must be a number, not '{s}'");
        return v;
    }

    /// <summary>Repeated `k=v` values (--property, --config, --producer-props...) in order; a later key wins.</summary>
    public Dictionary<string, string> Pairs(string name)
    {
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var kv in All(name))
        {
            int eq = kv.IndexOf('=');
            if (eq <= 0)
                throw Fail($"--{name} takes key=value, not '{kv}'");
            d[kv[..eq]] = kv[(eq + 1)..];
        }
        return d;
    }

    /// <summary>At most one of <paramref name="names"/>: the one given, or null.</summary>
    public string? AtMostOne(params string[] names) => names.Any(Has) ? OneOf(names) : null;

    /// <summary>Exactly one of <paramref name="names"/> (the action flags of a tool such as --create, --list).</summary>
    public string OneOf(params string[] names)
    {
        string? found = null;
        foreach (var n in names)
        {
            if (!Has(n))
                continue;
            if (found is not null)
                throw Fail($"--{found} and --{n} cannot be combined");
            found = n;
        }
        return found ?? throw Fail("one of --" + string.Join(", --", names) + " is required");
    }
}
