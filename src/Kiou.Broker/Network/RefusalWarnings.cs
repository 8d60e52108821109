using System.Collections.Concurrent;

namespace Kiou.Broker.Network;

/// <summary>
/// Rate limit for the warnings about refused requests: an old client retries a refused request on a new connection
/// many times a second, and one line per attempt buries everything else. One line per client address and refusal per
/// <see cref="IntervalMs"/>; the next line says how many were left out.
/// </summary>
public sealed class RefusalWarnings
{
    public const long IntervalMs = 60_000;
    const int MaxKeys = 10_000;

    sealed class Entry
    {
        public long NextMs;
        public int Suppressed;
    }

    readonly ConcurrentDictionary<(string Client, string Refusal), Entry> _entries = new();

    /// <summary>True when this refusal is to be logged now; <paramref name="suppressed"/> counts those not logged since
    /// the last line for the same client and refusal.</summary>
    public bool ShouldLog(string client, string refusal, out int suppressed)
    {
        long now = Environment.TickCount64;
        if (_entries.Count > MaxKeys)
            _entries.Clear(); // many distinct clients: forgetting costs only an extra line each
        var entry = _entries.GetOrAdd((client, refusal), static _ => new Entry { NextMs = long.MinValue });
        lock (entry)
        {
            if (now >= entry.NextMs)
            {
                suppressed = entry.Suppressed;
                entry.Suppressed = 0;
                entry.NextMs = now + IntervalMs;
                return true;
            }
            entry.Suppressed++;
            suppressed = 0;
            return false;
        }
    }

    public static string Suffix(int suppressed) =>
        suppressed == 0 ? "" : $" ({suppressed} more like it from this client in the last minute not logged)";
}
