using System.Collections.Concurrent;

namespace Kiou.Broker.Http;

/// <summary>
/// Cumulative records and bytes in and out of one topic, read back by the web console (System.Diagnostics.Metrics
/// counters cannot be read). Written by Produce and Fetch handlers on any thread with Interlocked adds; read with
/// Volatile reads, so a reader may see the records of an append before its bytes: the console only shows rates.
/// </summary>
public sealed class TopicTraffic
{
    long _producedRecords;
    long _producedBytes;
    long _fetchedRecords;
    long _fetchedBytes;

    public long ProducedRecords => Volatile.Read(ref _producedRecords);
    public long ProducedBytes => Volatile.Read(ref _producedBytes);
    public long FetchedRecords => Volatile.Read(ref _fetchedRecords);
    public long FetchedBytes => Volatile.Read(ref _fetchedBytes);

    public void Produced(long records, long bytes)
    {
        Interlocked.Add(ref _producedRecords, records);
        Interlocked.Add(ref _producedBytes, bytes);
    }

    public void Fetched(long records, long bytes)
    {
        Interlocked.Add(ref _fetchedRecords, records);
        Interlocked.Add(ref _fetchedBytes, bytes);
    }
}

/// <summary>
/// Every topic's <see cref="TopicTraffic"/>, created on a topic's first produce or fetch. Bounded by the topics that
/// exist: <see cref="Prune"/> drops those of deleted topics (the console's sampler calls it).
/// </summary>
public sealed class TrafficCounters
{
    readonly ConcurrentDictionary<string, TopicTraffic> _topics = new(StringComparer.Ordinal);

    public TopicTraffic For(string topic) =>
        _topics.TryGetValue(topic, out var t) ? t : _topics.GetOrAdd(topic, static _ => new TopicTraffic());

    public IEnumerable<KeyValuePair<string, TopicTraffic>> All => _topics;

    public void Prune(Func<string, bool> exists)
    {
        foreach (var name in _topics.Keys)
        {
            if (!exists(name))
                _topics.TryRemove(name, out _);
        }
    }
}
