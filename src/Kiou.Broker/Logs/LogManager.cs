using System.Collections.Concurrent;
using System.Text.RegularExpressions;
using Kiou.Broker.Controller;
using Kiou.Broker.Hosting;
using Kiou.Storage;
using Kiou.Storage.Devices;

namespace Kiou.Broker.Logs;

/// <summary>The open partition logs of one topic. Replaced as a whole when partitions are added.</summary>
public sealed class TopicLogs(TopicInfo info, PartitionLog[] partitions)
{
    public TopicInfo Info { get; } = info;
    public PartitionLog[] Partitions { get; } = partitions;
}

/// <summary>
/// Owns every <see cref="PartitionLog"/> of the broker: opens them (recovering after an unclean stop),
/// applies config changes, deletes them, and runs the background work: interval flushes and retention.
/// Lookups on the request path are lock-free dictionary reads.
/// </summary>
public sealed partial class LogManager : IAsyncDisposable
{
    readonly BrokerConfig _config;
    readonly ILogDevice _device;
    readonly TimeProvider _time;
    readonly Log _log;
    readonly SegmentFileCache _segmentFiles;
    readonly ConcurrentDictionary<string, TopicLogs> _topics = new(StringComparer.Ordinal);
    readonly ConcurrentDictionary<PartitionLog, long> _lastFlushMs = new();
    readonly CancellationTokenSource _stop = new();
    readonly Lock _gate = new();
    Task? _background;

    public LogManager(BrokerConfig config, ILogDevice device, TimeProvider time, Log log)
    {
        _config = config;
        _device = device;
        _time = time;
        _log = log;
        _segmentFiles = new SegmentFileCache(config.MaxOpenSegmentFiles);
    }

    /// <summary>The broker-wide descriptors of sealed segments (KIOU_MAX_OPEN_SEGMENT_FILES).</summary>
    public SegmentFileCache SegmentFiles => _segmentFiles;

    public ILogDevice Device => _device;

    public TopicLogs? Get(string topic) => _topics.GetValueOrDefault(topic);

    public PartitionLog? Get(string topic, int partition)
    {
        var t = _topics.GetValueOrDefault(topic);
        return t is not null && (uint)partition < (uint)t.Partitions.Length ? t.Partitions[partition] : null;
    }

    public IEnumerable<TopicLogs> All => _topics.Values;

    /// <summary>Opens every partition of the topic that is not open yet (a new topic, or added partitions).</summary>
    public void OpenTopic(TopicInfo topic)
    {
        lock (_gate)
        {
            var logConfig = TopicConfigs.ToLogConfig(topic.Configs, _config.Flush);
            var existing = _topics.GetValueOrDefault(topic.Name);
            var partitions = new PartitionLog[topic.Partitions];
            for (int p = 0; p < partitions.Length; p++)
            {
                if (existing is not null && p < existing.Partitions.Length)
                {
                    partitions[p] = existing.Partitions[p];
                    continue;
                }
                partitions[p] = PartitionLog.Open(_config.DataDir, topic.Name, p, logConfig, _device, _time, _log.Info, _segmentFiles);
            }
            _topics[topic.Name] = new TopicLogs(topic, partitions);
        }
    }

    public void UpdateConfigs(TopicInfo topic)
    {
        lock (_gate)
        {
            if (!_topics.TryGetValue(topic.Name, out var existing))
                return;
            var logConfig = TopicConfigs.ToLogConfig(topic.Configs, _config.Flush);
            foreach (var p in existing.Partitions)
                p.Config = logConfig;
            _topics[topic.Name] = new TopicLogs(topic, existing.Partitions);
        }
    }

    public async Task DeleteTopicAsync(string name)
    {
        TopicLogs? removed;
        lock (_gate)
        {
            _topics.TryRemove(name, out removed);
        }
        if (removed is null)
            return;
        foreach (var p in removed.Partitions)
        {
            _lastFlushMs.TryRemove(p, out _);
            await p.DeleteAsync().ConfigureAwait(false);
        }
    }

    [GeneratedRegex(@"^(?<topic>.+)-(?<partition>[0-9]+)$")]
    private static partial Regex PartitionDirName();

    /// <summary>
    /// Removes partition directories that belong to no known topic (left by a crash during DeleteTopics).
    /// Directories not shaped like a partition, and internal ones (starting with "__"), are left alone.
    /// </summary>
    public void RemoveOrphans(IReadOnlyDictionary<string, TopicInfo> topics)
    {
        if (!Directory.Exists(_config.DataDir))
            return;
        foreach (var dir in Directory.EnumerateDirectories(_config.DataDir))
        {
            string name = Path.GetFileName(dir);
            if (name.StartsWith("__", StringComparison.Ordinal))
                continue;
            var m = PartitionDirName().Match(name);
            if (!m.Success)
                continue;
            string topic = m.Groups["topic"].Value;
            if (!int.TryParse(m.Groups["partition"].Value, out int partition))
                continue;
            if (topics.TryGetValue(topic, out var t) && partition < t.Partitions)
                continue;
            _log.Warn($"removing {dir}: no topic '{topic}' with partition {partition} is in the metadata (left over from a topic deletion interrupted by a crash)");
            Directory.Delete(dir, recursive: true);
        }
    }

    public void StartBackgroundWork() => _background = Task.Run(() => BackgroundLoopAsync(_stop.Token));

    async Task BackgroundLoopAsync(CancellationToken ct)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(100), _time);
        long lastRetentionMs = _time.GetUtcNow().ToUnixTimeMilliseconds();
        try
        {
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false))
            {
                long now = _time.GetUtcNow().ToUnixTimeMilliseconds();
                foreach (var topic in _topics.Values)
                {
                    foreach (var p in topic.Partitions)
                    {
                        var flush = p.Config.Flush;
                        if (flush.Mode != FlushMode.Interval)
                            continue;
                        long last = _lastFlushMs.GetOrAdd(p, now);
                        if (now - last < flush.IntervalMs || p.DurableOffset >= p.HighWatermark)
                            continue;
                        _lastFlushMs[p] = now;
                        await FlushQuietlyAsync(p).ConfigureAwait(false);
                    }
                }
                if (now - lastRetentionMs >= _config.RetentionCheckIntervalMs)
                {
                    lastRetentionMs = now;
                    EnforceRetention(now);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    public void EnforceRetention(long nowMs)
    {
        foreach (var topic in _topics.Values)
        {
            foreach (var p in topic.Partitions)
            {
                try
                {
                    p.EnforceRetention(nowMs);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    _log.Error($"partition {p.Topic}-{p.Partition}: retention could not delete old segments: {e.Message}");
                }
            }
        }
    }

    async Task FlushQuietlyAsync(PartitionLog p)
    {
        try
        {
            await p.FlushAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is StorageException or IOException)
        {
            _log.Error($"partition {p.Topic}-{p.Partition}: periodic flush failed: {e.Message}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        if (_background is not null)
            await _background.ConfigureAwait(false);
        foreach (var topic in _topics.Values)
        {
            foreach (var p in topic.Partitions)
            {
                try
                {
                    await p.DisposeAsync().ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    _log.Error($"partition {p.Topic}-{p.Partition}: close failed: {e.Message}; it will be recovered at the next start");
                }
            }
        }
        _topics.Clear();
    }
}
