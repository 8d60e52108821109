using System.Globalization;

namespace Kiou.Broker.Hosting;

/// <summary>
/// The broker's log: one line per event on standard error, written for the person running the broker.
/// Thread-safe; lines are never interleaved. Hot paths log only on errors.
/// </summary>
public sealed class Log
{
    public enum Level { Debug, Info, Warn, Error }

    readonly TextWriter _out;
    readonly Level _min;
    readonly Lock _gate = new();

    public Log(TextWriter output, Level min = Level.Info)
    {
        _out = output;
        _min = min;
    }

    public static Log Stderr(string? level) => new(Console.Error, level?.ToLowerInvariant() switch
    {
        "debug" => Level.Debug,
        "warn" => Level.Warn,
        "error" => Level.Error,
        _ => Level.Info,
    });

    public bool IsEnabled(Level level) => level >= _min;

    public void Debug(string message) => Write(Level.Debug, message);
    public void Info(string message) => Write(Level.Info, message);
    public void Warn(string message) => Write(Level.Warn, message);
    public void Error(string message) => Write(Level.Error, message);

    public void Write(Level level, string message)
    {
        if (level < _min)
            return;
        string line = string.Create(CultureInfo.InvariantCulture,
            $"{DateTime.UtcNow:yyyy-MM-ddTHH:mm:ss.fffZ} {LevelName(level)} {message}");
        lock (_gate)
        {
            _out.WriteLine(line);
            _out.Flush();
        }
    }

    static string LevelName(Level level) => level switch
    {
        Level.Debug => "DEBUG",
        Level.Info => "INFO ",
        Level.Warn => "WARN ",
        _ => "ERROR",
    };
}
