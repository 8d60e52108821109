using System.Buffers.Binary;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Kiou.Broker.Logs;
using Kiou.Protocol;
using Kiou.Protocol.Messages;

namespace Kiou.Broker.Http;

/// <summary>
/// The broker's instruments on a Meter named "Kiou", one per broker: the instruments end with their broker (its HTTP
/// listener exports this Meter's instruments only, so brokers side by side in one process (tests) stay apart). Names and units are OpenTelemetry's; the Prometheus exporter
/// turns them into Prometheus' (kiou.produced in By: kiou_produced_bytes_total). Counters take tags per request or per partition, never per record.
/// </summary>
public sealed class BrokerMetrics : IDisposable
{
    public const string MeterName = "Kiou";

    readonly Counter<long> _requests;
    readonly Counter<long> _requestErrors;
    readonly Counter<long> _errors;
    readonly Histogram<double> _fsyncSeconds;
    readonly UpDownCounter<long> _fetchParked;
    readonly Counter<long> _fsyncErrors;
    readonly Dictionary<short, string> _errorNames = ErrorNames();
    readonly Histogram<double> _requestSeconds;
    readonly Counter<long> _recordsIn;
    readonly Counter<long> _bytesIn;
    readonly Counter<long> _bytesOut;
    readonly Counter<long> _recordsOut;
    readonly UpDownCounter<long> _produceParked;
    readonly Counter<long> _accepted;
    readonly Counter<long> _closed;
    readonly Counter<long> _refused;
    readonly string[] _apiNames = new string[128];
    readonly string[] _versions = new string[64];

    public BrokerMetrics()
    {
        Meter = new Meter(MeterName);
        for (int i = 0; i < _apiNames.Length; i++)
            _apiNames[i] = ApiMessageTypes.Name((short)i);
        for (int i = 0; i < _versions.Length; i++)
            _versions[i] = i.ToString(System.Globalization.CultureInfo.InvariantCulture);
        _requests = Meter.CreateCounter<long>("kiou.requests", description: "Requests answered (or dropped for acks=0), by API and version.");
        _requestErrors = Meter.CreateCounter<long>("kiou.request.errors", description: "Requests that failed inside the broker and closed their connection, by API.");
        _errors = Meter.CreateCounter<long>("kiou.errors",
            description: "Kafka error codes answered, by API and error (per partition for Produce and Fetch).");
        _fetchParked = Meter.CreateUpDownCounter<long>("kiou.fetch.purgatory.size",
            description: "Fetch requests parked now, waiting for MinBytes or their MaxWaitMs (Kafka's fetch purgatory).");
        _fsyncSeconds = Meter.CreateHistogram<double>("kiou.fsync.duration", unit: "s",
            description: "fdatasync of segment files, from request to completion (its count is the number of fsyncs).");
        _fsyncErrors = Meter.CreateCounter<long>("kiou.fsync.errors", description: "fdatasync calls of segment files that failed.");
        _requestSeconds = Meter.CreateHistogram<double>("kiou.request.duration", unit: "s",
            description: "Time from a request's parse to its answer being ready, by API.");
        _recordsIn = Meter.CreateCounter<long>("kiou.produced.records", description: "Records appended by Produce requests, by topic.");
        _bytesIn = Meter.CreateCounter<long>("kiou.produced", unit: "By", description: "Record batch bytes appended by Produce requests, by topic.");
        _bytesOut = Meter.CreateCounter<long>("kiou.fetched", unit: "By", description: "Record batch bytes sent in Fetch responses, by topic.");
        _recordsOut = Meter.CreateCounter<long>("kiou.fetched.records", description: "Records in the record batches sent in Fetch responses, by topic (consumers and tools; counted from batch headers).");
        _produceParked = Meter.CreateUpDownCounter<long>("kiou.produce.purgatory.size",
            description: "Produce requests waiting for their appends to complete (acks=all: until durable).");
        _accepted = Meter.CreateCounter<long>("kiou.connections.accepted", description: "TCP connections accepted, by listener.");
        _closed = Meter.CreateCounter<long>("kiou.connections.closed", description: "TCP connections that ended, by listener.");
        _refused = Meter.CreateCounter<long>("kiou.connections.refused", description: "TCP connections closed at once by a connection limit, by listener.");
    }

    public Meter Meter { get; }

    /// <summary>Per-topic totals beside the counters, for the web console's rates.</summary>
    public TrafficCounters Traffic { get; } = new();

    string Api(short key) => (uint)key < (uint)_apiNames.Length ? _apiNames[key] : "unknown";
    string Version(short v) => (uint)v < (uint)_versions.Length ? _versions[v] : "other";

    /// <summary>A request answered; <paramref name="startTimestamp"/> from <see cref="Stopwatch.GetTimestamp"/>.</summary>
    /// <remarks><paramref name="response"/>'s error codes other than NONE are counted per API and code
    /// (<see cref="IHasErrorCodes"/>: top level, per topic and per partition, as Kafka's ErrorsPerSec).</remarks>
    public void Request(short apiKey, short version, long startTimestamp, IKafkaMessage? response = null)
    {
        string api = Api(apiKey);
        _requests.Add(1, new KeyValuePair<string, object?>("api", api), new KeyValuePair<string, object?>("version", Version(version)));
        if (_requestSeconds.Enabled)
            _requestSeconds.Record(Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds, new KeyValuePair<string, object?>("api", api));
        if (response is IHasErrorCodes withErrors && _errors.Enabled)
        {
            var counter = t_errorCounter ??= new ErrorCounter();
            counter.Metrics = this;
            counter.ApiKey = apiKey;
            withErrors.VisitErrorCodes(counter);
            counter.Metrics = null;
        }
    }

    [ThreadStatic]
    static ErrorCounter? t_errorCounter;

    sealed class ErrorCounter : IErrorCodeVisitor
    {
        public BrokerMetrics? Metrics;
        public short ApiKey;

        public void Visit(short errorCode)
        {
            if (errorCode != ErrorCodes.None)
                Metrics!.Error(ApiKey, errorCode);
        }
    }

    public void ProduceParked(int delta) => _produceParked.Add(delta);

    public void Error(short apiKey, short error) => _errors.Add(1, new KeyValuePair<string, object?>("api", Api(apiKey)),
        new KeyValuePair<string, object?>("error", _errorNames.GetValueOrDefault(error) ?? error.ToString(System.Globalization.CultureInfo.InvariantCulture)));

    /// <summary>Kafka's names (OFFSET_OUT_OF_RANGE) of the codes in <see cref="ErrorCodes"/>.</summary>
    static Dictionary<short, string> ErrorNames()
    {
        var names = new Dictionary<short, string>();
        foreach (var f in typeof(ErrorCodes).GetFields(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static))
        {
            if (f.IsLiteral && f.GetRawConstantValue() is short code)
                names.TryAdd(code, System.Text.RegularExpressions.Regex.Replace(f.Name, "(?<=[a-z0-9])([A-Z])", "_$1").ToUpperInvariant());
        }
        return names;
    }

    public void FetchParked(int delta) => _fetchParked.Add(delta);

    public void Fsync(long startTimestamp, bool failed)
    {
        _fsyncSeconds.Record(Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds);
        if (failed)
            _fsyncErrors.Add(1);
    }

    public void RequestFailed(short apiKey) => _requestErrors.Add(1, new KeyValuePair<string, object?>("api", Api(apiKey)));

    /// <summary>A Produce append to a partition of <paramref name="topic"/> succeeded: its batches' record counts.</summary>
    public void ProducedTo(string topic, ReadOnlySpan<byte> batches)
    {
        long records = RecordCount(batches);
        Traffic.For(topic).Produced(records, batches.Length);
        if (!_recordsIn.Enabled && !_bytesIn.Enabled)
            return;
        var tag = new KeyValuePair<string, object?>("topic", topic);
        _recordsIn.Add(records, tag);
        _bytesIn.Add(batches.Length, tag);
    }

    /// <summary>A Fetch response carries <paramref name="records"/> of <paramref name="topic"/> (one partition's). A
    /// zero-copy region is not read: its records are the offsets it spans (fewer only on compacted topics' holes).</summary>
    public void FetchedFrom(string topic, ReadOnlyMemory<byte> records)
    {
        long count = System.Runtime.InteropServices.MemoryMarshal.TryGetMemoryManager<byte, Kiou.Storage.FileRecords>(records, out var region)
            ? Math.Max(0, region.EndOffset - region.BaseOffset)
            : RecordCount(records.Span);
        Traffic.For(topic).Fetched(count, records.Length);
        var tag = new KeyValuePair<string, object?>("topic", topic);
        _bytesOut.Add(records.Length, tag);
        _recordsOut.Add(count, tag);
    }

    /// <summary>The sum of the record counts of the whole v2 batches (header field at byte 57), or of legacy messages;
    /// walks headers only. A batch cut short at the end (a fetch's size limit) is not counted: the client drops it.</summary>
    public static long RecordCount(ReadOnlySpan<byte> batches)
    {
        long records = 0;
        int pos = 0;
        while (pos + 17 <= batches.Length)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(batches[(pos + 8)..]);
            if (length < 14 || 12L + length > batches.Length - pos)
                break;
            byte magic = batches[pos + 16]; // the same place in a v2 batch and in a legacy message
            if (magic == 2 && length >= 49)
                records += Math.Max(0, BinaryPrimitives.ReadInt32BigEndian(batches[(pos + 57)..]));
            else if (magic is 0 or 1)
                records++; // Fetch v0-3's down-converted messages; a compressed wrapper counts once (not decompressed here)
            else
                break;
            pos += 12 + length;
        }
        return records;
    }

    public void Accepted(string listener) => _accepted.Add(1, new KeyValuePair<string, object?>("listener", listener));
    public void Closed(string listener) => _closed.Add(1, new KeyValuePair<string, object?>("listener", listener));
    public void Refused(string listener) => _refused.Add(1, new KeyValuePair<string, object?>("listener", listener));

    /// <summary>Gauges read when scraped: partitions' offsets and sizes, the cleaner's figures, open connections.</summary>
    public void Observe(LogManager logs, Func<int> brokerConnections, Func<int> controllerConnections, Kiou.Storage.Devices.ILogDevice device)
    {
        Meter.CreateObservableGauge("kiou.connections.open", () => new[]
        {
            new Measurement<int>(brokerConnections(), new KeyValuePair<string, object?>("listener", "broker")),
            new Measurement<int>(controllerConnections(), new KeyValuePair<string, object?>("listener", "controller")),
        }, description: "TCP connections open, by listener.");
        if (device.Stats is not null)
        {
            Meter.CreateObservableCounter("kiou.io_uring.submissions", () => device.Stats?.Submissions ?? 0,
                description: "Submission queue entries handed to the kernel by the log's io_uring (writes, fsyncs, the ring's wake-up reads).");
            Meter.CreateObservableCounter("kiou.io_uring.completions", () => device.Stats?.Completions ?? 0,
                description: "Completion queue entries the log's io_uring thread has handled.");
            Meter.CreateObservableCounter("kiou.io_uring.enters", () => device.Stats?.Enters ?? 0,
                description: "io_uring_enter system calls of the log's ring (submissions per enter show the batching).");
            Meter.CreateObservableGauge("kiou.io_uring.in_flight", () => device.Stats?.InFlight ?? 0,
                description: "Operations the kernel holds now for the log's io_uring (submitted, not yet completed): the queue depth.");
            Meter.CreateObservableGauge("kiou.io_uring.queued", () => device.Stats?.Queued ?? 0,
                description: "Writes and fsyncs waiting for the io_uring thread to submit them.");
        }
        Kiou.Storage.ReadCache reads = logs.SegmentFiles.Reads;
        Meter.CreateObservableCounter("kiou.read_cache.hits", () => reads.HitBytes, unit: "By",
            description: "Fetched record bytes served from memory (the read cache of recently written data, KIOU_READ_CACHE_BYTES).");
        Meter.CreateObservableCounter("kiou.read_cache.misses", () => reads.MissBytes, unit: "By",
            description: "Fetched record bytes read from the segment files (sendfile or pread; the page cache or the device).");
        Meter.CreateObservableCounter("kiou.read_cache.evicted", () => reads.EvictedBytes, unit: "By",
            description: "Bytes the read cache gave up to stay within its budget or because they were written over a minute ago.");
        Meter.CreateObservableGauge("kiou.read_cache.size", () => reads.SizeBytes, unit: "By",
            description: "Memory the read cache holds now.");
        Meter.CreateObservableGauge("kiou.log.durable_offset", () => PerPartition(logs, static p => p.DurableOffset),
            description: "Offset below which records are on disk (fsynced), by partition; end_offset - high_watermark - durable_offset are the log's three tails.");
        Meter.CreateObservableGauge("kiou.log.end_offset", () => PerPartition(logs, static p => p.LogEndOffset),
            description: "Offset the next appended record gets, by partition.");
        Meter.CreateObservableGauge("kiou.log.start_offset", () => PerPartition(logs, static p => p.LogStartOffset),
            description: "First offset still in the log, by partition.");
        Meter.CreateObservableGauge("kiou.log.high_watermark", () => PerPartition(logs, static p => p.HighWatermark),
            description: "Offset below which records are readable (published), by partition.");
        Meter.CreateObservableGauge("kiou.log.size", () => PerPartition(logs, static p => p.SizeBytes), unit: "By",
            description: "Bytes of the partition's segment files, by partition.");
        Meter.CreateObservableCounter("kiou.log_cleaner.read", () => Cleaner(logs, static s => s.BytesRead), unit: "By",
            description: "Bytes the log cleaner read from dirty segments, by partition.");
        Meter.CreateObservableCounter("kiou.log_cleaner.written", () => Cleaner(logs, static s => s.BytesWritten), unit: "By",
            description: "Bytes the log cleaner wrote as cleaned segments, by partition.");
        Meter.CreateObservableCounter("kiou.log_cleaner.cleanings", () => Cleaner(logs, static s => s.Cleanings),
            description: "Cleanings the log cleaner completed, by partition.");
        Meter.CreateObservableCounter("kiou.log_cleaner.errors", () => Cleaner(logs, static s => s.Errors),
            description: "Cleanings the log cleaner gave up with an error, by partition.");
        Meter.CreateObservableGauge("kiou.log_cleaner.dirty_ratio", () => CleanerRatio(logs),
            description: "Share of the partition's bytes not yet cleaned, as last measured by the log cleaner.");
    }

    /// <summary>Per group, read when scraped: its state, members, and per committed partition the lag (high watermark
    /// minus the committed offset), the figure people run Burrow or kafka-lag-exporter for.</summary>
    public void ObserveGroups(Kiou.Broker.Groups.GroupCoordinator groups, LogManager logs)
    {
        Meter.CreateObservableGauge("kiou.group.members", () =>
        {
            var list = new List<Measurement<int>>();
            foreach (var g in groups.All)
                lock (g)
                    list.Add(new Measurement<int>(g.Members.Count, new KeyValuePair<string, object?>("group", g.GroupId)));
            return list;
        }, description: "Members of the consumer group.");
        Meter.CreateObservableGauge("kiou.group.state", () =>
        {
            var list = new List<Measurement<int>>();
            foreach (var g in groups.All)
                lock (g)
                    list.Add(new Measurement<int>(1, new KeyValuePair<string, object?>("group", g.GroupId), new KeyValuePair<string, object?>("state", g.StateName)));
            return list;
        }, description: "1 for the consumer group's current state (Empty, PreparingRebalance, CompletingRebalance, Stable, Dead).");
        Meter.CreateObservableGauge("kiou.group.lag", () =>
        {
            var list = new List<Measurement<long>>();
            var lags = new List<PartitionLag>();
            foreach (var g in groups.All)
            {
                lags.Clear();
                lock (g)
                    BrokerSnapshot.Lags(g, logs, lags);
                foreach (var l in lags)
                {
                    list.Add(new Measurement<long>(l.Lag, new KeyValuePair<string, object?>("group", g.GroupId),
                        new KeyValuePair<string, object?>("topic", l.Topic), new KeyValuePair<string, object?>("partition", l.Partition)));
                }
            }
            return list;
        }, description: "Records between the consumer group's committed offset and the partition's high watermark.");
    }

    static IEnumerable<Measurement<long>> PerPartition(LogManager logs, Func<Kiou.Storage.PartitionLog, long> value)
    {
        var list = new List<Measurement<long>>();
        foreach (var topic in logs.All)
            foreach (var p in topic.Partitions)
                list.Add(new Measurement<long>(value(p), new KeyValuePair<string, object?>("topic", p.Topic),
                    new KeyValuePair<string, object?>("partition", p.Partition)));
        return list;
    }

    static IEnumerable<Measurement<long>> Cleaner(LogManager logs, Func<Kiou.Storage.Cleaner.CleanerStats, long> value)
    {
        var list = new List<Measurement<long>>();
        if (logs.Cleaner is { } cleaner)
            foreach (var (name, stats) in cleaner.Stats)
                list.Add(new Measurement<long>(value(stats), new KeyValuePair<string, object?>("log", name)));
        return list;
    }

    static IEnumerable<Measurement<double>> CleanerRatio(LogManager logs)
    {
        var list = new List<Measurement<double>>();
        if (logs.Cleaner is { } cleaner)
            foreach (var (name, stats) in cleaner.Stats)
                list.Add(new Measurement<double>(stats.DirtyRatio, new KeyValuePair<string, object?>("log", name)));
        return list;
    }

    public void Dispose() => Meter.Dispose();
}
