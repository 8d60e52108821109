using System.Collections.Concurrent;
using Kiou.Broker.Controller;
using Kiou.Broker.Hosting;
using Kiou.Storage;
using Kiou.Storage.Producers;
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
public sealed class LogManager : IAsyncDisposable
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
    Kiou.Storage.Cleaner.LogCleaner? _cleaner;

    /// <summary>The log cleaner, null when KIOU_LOG_CLEANER_ENABLE=false (its per-partition stats are for metrics).</summary>
    public Kiou.Storage.Cleaner.LogCleaner? Cleaner => _cleaner;

    public LogManager(BrokerConfig config, ILogDevice device, TimeProvider time, Log log)
    {
        _config = config;
        _device = device;
        _time = time;
        _log = log;
        _segmentFiles = new SegmentFileCache(config.MaxOpenSegmentFiles, new ReadCache(config.ReadCacheBytes));
    }

    /// <summary>The broker-wide descriptors of sealed segments (KIOU_MAX_OPEN_SEGMENT_FILES).</summary>
    public SegmentFileCache SegmentFiles => _segmentFiles;

    public ILogDevice Device => _device;

    /// <summary>The broker's producer ids (InitProducerId), reserved durably in blocks in the data directory.</summary>
    public ProducerIdAllocator ProducerIds => _producerIds ??= OpenProducerIds();

    ProducerIdAllocator? _producerIds;

    ProducerIdAllocator OpenProducerIds()
    {
        lock (_gate)
            return _producerIds ??= ProducerIdAllocator.Open(_config.DataDir, _time.GetUtcNow().ToUnixTimeMilliseconds(), _log.Info, _log.Warn);
    }

    /// <summary>Broker-level values of topic configs (dynamic broker configs, KIOU_* settings), by topic config name;
    /// topics without their own value take them.</summary>
    public IReadOnlyDictionary<string, string> TopicDefaults => Volatile.Read(ref _topicDefaults);

    IReadOnlyDictionary<string, string> _topicDefaults = new Dictionary<string, string>();

    /// <summary>New broker-level defaults: every open partition gets its recomputed config at once.</summary>
    public void ApplyTopicDefaults(IReadOnlyDictionary<string, string> defaults)
    {
        lock (_gate)
        {
            Volatile.Write(ref _topicDefaults, defaults);
            foreach (var t in _topics.Values.ToList())
            {
                var logConfig = LogConfigOf(t.Info);
                foreach (var p in t.Partitions)
                    p.Config = logConfig;
            }
        }
    }

    LogConfig LogConfigOf(TopicInfo topic) =>
        TopicConfigs.ToLogConfig(topic.Configs, _config.Flush, TopicDefaults) with { ProducerIdExpirationMs = _config.ProducerIdExpirationMs, MaxProducersPerPartition = _config.MaxProducersPerPartition };

    public TopicLogs? Get(string topic) => _topics.GetValueOrDefault(topic);

    public PartitionLog? Get(string topic, int partition)
    {
        var t = _topics.GetValueOrDefault(topic);
        return t is not null && (uint)partition < (uint)t.Partitions.Length ? t.Partitions[partition] : null;
    }

    public IEnumerable<TopicLogs> All => _topics.Values;

    /// <summary>
    /// Opens every partition of a topic the metadata lists (start-up), recovering each, and records its topic id in
    /// partition.metadata (directories written before that file existed get it now).
    /// </summary>
    public void OpenTopic(TopicInfo topic)
    {
        lock (_gate)
        {
            var logConfig = LogConfigOf(topic);
            var existing = _topics.GetValueOrDefault(topic.Name);
            var partitions = new PartitionLog[topic.Partitions];
            for (int p = 0; p < partitions.Length; p++)
            {
                if (existing is not null && p < existing.Partitions.Length)
                {
                    partitions[p] = existing.Partitions[p];
                    continue;
                }
                partitions[p] = PartitionLog.Open(_config.DataDir, topic.Name, p, logConfig, _device, _time, _log.Info, _log.Warn, _segmentFiles);
                try
                {
                    PartitionDirectories.WriteTopicId(Path.Combine(_config.DataDir, $"{topic.Name}-{p}"), topic.Id);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    // Only needed to rebuild a lost metadata.json; a full disk must not stop the start for it.
                    _log.Warn($"partition {topic.Name}-{p}: could not write {PartitionDirectories.MetadataFileName} ({e.Message}); the next start tries again");
                }
            }
            _topics[topic.Name] = new TopicLogs(topic, partitions);
        }
    }

    /// <summary>
    /// Creates partitions <c>From</c> and up of each new or growing topic, without publishing them. Every directory must
    /// be new. Partitions are created by several threads at once: each new directory is fsynced, and concurrent
    /// fsyncs share the file system's journal commits, where one after another each waits for its own. A topic
    /// any of whose partitions fails (EMFILE, ENOSPC, ...) gets the exception, and the partitions created for it are
    /// closed and removed (they are empty and were never visible); the other topics keep theirs.
    /// </summary>
    public async Task<(PartitionLog[]? Logs, Exception? Error)[]> CreatePartitionsAsync(IReadOnlyList<(TopicInfo Topic, int From)> topics)
    {
        var work = new List<(int Topic, int Partition)>();
        var logs = new PartitionLog?[topics.Count][];
        var errors = new Exception?[topics.Count];
        var configs = new LogConfig[topics.Count];
        for (int i = 0; i < topics.Count; i++)
        {
            var (topic, from) = topics[i];
            logs[i] = new PartitionLog?[topic.Partitions - from];
            configs[i] = LogConfigOf(topic);
            for (int p = from; p < topic.Partitions; p++)
                work.Add((i, p));
        }
        int next = -1;
        var halfMade = new ConcurrentBag<string>();
        void Run()
        {
            int w;
            while ((w = Interlocked.Increment(ref next)) < work.Count)
            {
                var (i, p) = work[w];
                if (Volatile.Read(ref errors[i]) is not null)
                    continue;
                var (topic, from) = topics[i];
                string dir = Path.Combine(_config.DataDir, $"{topic.Name}-{p}");
                bool ours = false;
                try
                {
                    if (Directory.Exists(dir))
                        throw new IOException($"{dir} exists already although the metadata does not list it; move it out of {_config.DataDir} (the broker adopts such directories at start-up)");
                    ours = true;
                    var log = PartitionLog.Open(_config.DataDir, topic.Name, p, configs[i], _device, _time, _log.Info, _log.Warn, _segmentFiles);
                    logs[i][p - from] = log;
                    PartitionDirectories.WriteTopicId(dir, topic.Id);
                }
                catch (Exception e)
                {
                    // Any failure is this topic's answer: an exception escaping a thread would end the broker.
                    Interlocked.CompareExchange(ref errors[i], e, null);
                    if (ours && logs[i][p - from] is null)
                        halfMade.Add(dir); // Open may have made the directory before it failed
                }
            }
        }
        // 32 threads: enough concurrent fsyncs to fill a journal commit, few enough to start quickly.
        int threads = Math.Min(32, work.Count) - 1;
        var helpers = new List<Thread>(Math.Max(0, threads));
        for (int t = 0; t < threads; t++)
        {
            var helper = new Thread(Run) { IsBackground = true, Name = "kiou-create-partitions" };
            try
            {
                helper.Start();
            }
            catch (Exception e) when (e is OutOfMemoryException or ThreadStartException)
            {
                // Out of threads or memory for their stacks (as when descriptors are short too): the threads that
                // started, and this one, share the work; fewer helpers only make it slower.
                _log.Warn($"creating partitions with {helpers.Count + 1} thread(s) instead of {threads + 1}: could not start another ({e.Message})");
                break;
            }
            helpers.Add(helper);
        }
        Run();
        foreach (var t in helpers)
            t.Join();
        var results = new (PartitionLog[]? Logs, Exception? Error)[topics.Count];
        for (int i = 0; i < topics.Count; i++)
        {
            if (errors[i] is { } error)
            {
                await RemoveCreatedAsync(logs[i].OfType<PartitionLog>()).ConfigureAwait(false);
                results[i] = (null, error);
            }
            else
            {
                results[i] = (Array.ConvertAll(logs[i], static l => l!), null);
            }
        }
        // After the closes above: removing a directory needs descriptors too, and EMFILE may be why it is here.
        foreach (string dir in halfMade)
        {
            try
            {
                if (Directory.Exists(dir))
                    Directory.Delete(dir, recursive: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                _log.Warn($"could not remove {dir}, made for a partition that was not created ({e.Message}); remove it by hand");
            }
        }
        return results;
    }

    /// <summary>Closes and removes partitions made by <see cref="CreatePartitionsAsync"/> that will not be published.</summary>
    public async Task RemoveCreatedAsync(IEnumerable<PartitionLog> created)
    {
        foreach (var log in created)
        {
            try
            {
                await log.DeleteAsync().ConfigureAwait(false);
            }
            catch (Exception e)
            {
                _log.Warn($"partition {log.Topic}-{log.Partition}: could not remove the directory of a topic that was not created ({e.GetType().Name}: {e.Message}); it is empty, remove it by hand");
            }
        }
    }

    /// <summary>Makes created partitions visible, after the metadata naming them is durable.</summary>
    public void Attach(TopicInfo topic, PartitionLog[] created)
    {
        lock (_gate)
        {
            var existing = _topics.GetValueOrDefault(topic.Name);
            int old = existing?.Partitions.Length ?? 0;
            var partitions = new PartitionLog[topic.Partitions];
            for (int p = 0; p < old; p++)
                partitions[p] = existing!.Partitions[p];
            for (int p = old; p < partitions.Length; p++)
                partitions[p] = created[p - old];
            _topics[topic.Name] = new TopicLogs(topic, partitions);
        }
    }

    public void UpdateConfigs(TopicInfo topic)
    {
        lock (_gate)
        {
            if (!_topics.TryGetValue(topic.Name, out var existing))
                return;
            var logConfig = LogConfigOf(topic);
            foreach (var p in existing.Partitions)
                p.Config = logConfig;
            _topics[topic.Name] = new TopicLogs(topic, existing.Partitions);
        }
    }

    /// <summary>Stops serving a topic (requests find it no longer); its logs stay open until <see cref="CloseDeletedAsync"/>.</summary>
    public TopicLogs? Detach(string name)
    {
        lock (_gate)
        {
            _topics.TryRemove(name, out var removed);
            return removed;
        }
    }

    /// <summary>Puts back a topic whose deletion changed nothing on disk.</summary>
    public void Reattach(TopicLogs logs)
    {
        lock (_gate)
            _topics[logs.Info.Name] = logs;
    }

    /// <summary>
    /// Closes the logs of a deleted topic whose directories were renamed to their delete markers (in-flight appends
    /// finish first). <see cref="PartitionLog.DeleteAsync"/> finds its old path gone, so it removes nothing: the
    /// markers are removed once the metadata no longer lists the topic.
    /// </summary>
    public async Task CloseDeletedAsync(TopicLogs removed)
    {
        foreach (var p in removed.Partitions)
        {
            _lastFlushMs.TryRemove(p, out _);
            try
            {
                await p.DeleteAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                _log.Warn($"partition {p.Topic}-{p.Partition}: closing the deleted partition failed ({e.Message}); its directory is already marked for deletion");
            }
        }
    }

    /// <summary>
    /// Removes delete-marker directories in the background. Only called for markers whose topic the durable metadata
    /// no longer lists, so a crash at any point leaves either the marker (removed at the next start) or nothing.
    /// </summary>
    public void RemoveMarkersInBackground(IReadOnlyList<string> markerDirs)
    {
        if (markerDirs.Count == 0)
            return;
        var task = Task.Run(() =>
        {
            foreach (string dir in markerDirs)
            {
                try
                {
                    Directory.Delete(dir, recursive: true);
                }
                catch (DirectoryNotFoundException)
                {
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    _log.Warn($"could not remove {dir} of a deleted topic ({e.Message}); the next start tries again, or remove it by hand");
                }
            }
        });
        lock (_removals)
        {
            _removals.RemoveAll(static t => t.IsCompleted);
            _removals.Add(task);
        }
    }

    readonly List<Task> _removals = [];

    /// <param name="configureCleaner">Called with the cleaner before its thread starts (dynamic broker configs).</param>
    public void StartBackgroundWork(Action<Kiou.Storage.Cleaner.LogCleaner>? configureCleaner = null)
    {
        try
        {
            _ = ProducerIds; // opened at start: a damaged file is reported now, not at the first InitProducerId
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.Error($"producer ids: cannot open {Path.Combine(_config.DataDir, ProducerIdAllocator.FileName)}: {e.Message}; InitProducerId answers COORDINATOR_LOAD_IN_PROGRESS and tries again until the file can be written");
        }
        _background = Task.Run(() => BackgroundLoopAsync(_stop.Token));
        if (_config.Cleaner.Enable)
        {
            _cleaner = new Kiou.Storage.Cleaner.LogCleaner(_config.DataDir, _config.Cleaner, AllPartitions, _time, _log.Info, _log.Warn);
            configureCleaner?.Invoke(_cleaner);
            _cleaner.Start();
        }
    }

    IEnumerable<PartitionLog> AllPartitions()
    {
        foreach (var topic in _topics.Values)
            foreach (var p in topic.Partitions)
                yield return p;
    }

    async Task BackgroundLoopAsync(CancellationToken ct)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(100), _time);
        long lastRetentionMs = _time.GetUtcNow().ToUnixTimeMilliseconds();
        long lastProducerExpiryMs = lastRetentionMs;
        try
        {
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false))
            {
                long now = _time.GetUtcNow().ToUnixTimeMilliseconds();
                _segmentFiles.Reads.EvictOlderThan(ReadCache.MaxAgeMs);
                foreach (var topic in _topics.Values)
                {
                    foreach (var p in topic.Partitions)
                    {
                        ReleaseIfIdle(p);
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
                if (now - lastProducerExpiryMs >= ProducerIdExpirationCheckIntervalMs)
                {
                    lastProducerExpiryMs = now;
                    RemoveExpiredProducers(now);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>
    /// How long an active segment goes without appends before its descriptors close (reopened by the next append):
    /// long enough that a partition written every few seconds keeps them, short enough that a broker with many quiet
    /// partitions holds few.
    /// </summary>
    public const long IdleDescriptorMs = 10_000;

    void ReleaseIfIdle(PartitionLog p)
    {
        try
        {
            p.ReleaseIdleDescriptors(IdleDescriptorMs);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            _log.Error($"partition {p.Topic}-{p.Partition}: could not close the descriptors of its idle segment: {e.Message}; they stay open");
        }
    }

    /// <summary>Kafka's producer.id.expiration.check.interval.ms default.</summary>
    public const long ProducerIdExpirationCheckIntervalMs = 600_000;

    public void RemoveExpiredProducers(long nowMs)
    {
        foreach (var topic in _topics.Values)
            foreach (var p in topic.Partitions)
            {
                int removed = p.RemoveExpiredProducers(nowMs);
                if (removed > 0)
                    _log.Info($"partition {p.Topic}-{p.Partition}: forgot {removed} producer id(s) idle for more than {_config.ProducerIdExpirationMs} ms (KIOU_PRODUCER_ID_EXPIRATION_MS)");
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
        _cleaner?.Dispose(); // finishes or abandons its pass before the logs close
        if (_background is not null)
            await _background.ConfigureAwait(false);
        Task[] removals;
        lock (_removals)
            removals = _removals.ToArray();
        await Task.WhenAll(removals).ConfigureAwait(false);
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
