using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Kiou.Broker.Hosting;

/// <summary>
/// The broker's log: one line per event on standard error, written for the person running the broker.
/// Thread-safe; lines are never interleaved. Hot paths log only on errors. With KIOU_LOG_FORMAT=json each line is
/// one JSON object (timestamp, level, message) for log shippers.
/// </summary>
public sealed class Log
{
    public enum Level { Debug, Info, Warn, Error }

    readonly TextWriter _out;
    readonly Level _min;
    readonly bool _json;
    readonly Lock _gate = new();

    public Log(TextWriter output, Level min = Level.Info, bool json = false)
    {
        _out = output;
        _min = min;
        _json = json;
    }

    /// <summary>The broker's log from KIOU_LOG_LEVEL and KIOU_LOG_FORMAT; throws <see cref="ConfigException"/> on
    /// a value it does not know, so a typo cannot silently hide the lines the operator asked for.</summary>
    public static Log Stderr(string? level, string? format) => new(Console.Error, LevelOf(level), FormatOf(format));

    static Level LevelOf(string? v) => v?.ToLowerInvariant() switch
    {
        null or "" or "info" => Level.Info,
        "debug" => Level.Debug,
        "warn" => Level.Warn,
        "error" => Level.Error,
        _ => throw new ConfigException($"KIOU_LOG_LEVEL={v} is not valid: use debug, info, warn or error"),
    };

    static bool FormatOf(string? v) => v switch
    {
        null or "" or "text" => false,
        "json" => true,
        _ => throw new ConfigException($"KIOU_LOG_FORMAT={v} is not valid: use text or json"),
    };

    public bool IsEnabled(Level level) => level >= _min;

    public void Debug(string message) => Write(Level.Debug, message);
    public void Info(string message) => Write(Level.Info, message);
    public void Warn(string message) => Write(Level.Warn, message);
    public void Error(string message) => Write(Level.Error, message);

    public void Write(Level level, string message)
    {
        if (level < _min)
            return;
        string line = _json ? JsonLine(level, message) : string.Create(CultureInfo.InvariantCulture,
            $"{DateTime.UtcNow:yyyy-MM-ddTHH:mm:ss.fffZ} {LevelName(level)} {message}");
        lock (_gate)
        {
            _out.WriteLine(line);
            _out.Flush();
        }
    }

    static readonly JsonWriterOptions JsonOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    static string JsonLine(Level level, string message)
    {
        // A lone surrogate cannot be written as JSON; the line still goes out, with U+FFFD in its place.
        if (message.AsSpan().ContainsAnyInRange('\uD800', '\uDFFF'))
            message = Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(message));
        var buffer = new ArrayBufferWriter<byte>(message.Length + 96);
        using (var w = new Utf8JsonWriter(buffer, JsonOptions))
        {
            w.WriteStartObject();
            w.WriteString("timestamp", DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture));
            w.WriteString("level", LevelName(level).TrimEnd());
            w.WriteString("message", message);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    static string LevelName(Level level) => level switch
    {
        Level.Debug => "DEBUG",
        Level.Info => "INFO ",
        Level.Warn => "WARN ",
        _ => "ERROR",
    };
}
