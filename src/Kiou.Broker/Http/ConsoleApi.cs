using System.Globalization;
using System.Net;
using System.Reflection;
using System.Text.Json;
using Kiou.Broker.Controller;
using Kiou.Broker.Groups;
using Kiou.Broker.Hosting;
using Kiou.Broker.Logs;
using Kiou.Protocol;
using Kiou.Protocol.Messages;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Kiou.Broker.Http;

/// <summary>What the console reads, handed over once start-up has opened the partitions and created the coordinators.</summary>
public sealed record ConsoleSources(BrokerConfig Config, LogManager Logs, GroupCoordinator Groups, ClusterController Controller,
    string IoMode, IPEndPoint BrokerEndPoint, IPEndPoint ControllerEndPoint, TimeProvider Time);

/// <summary>
/// The web console on the HTTP listener: JSON under /api (broker and settings, topics, groups, rates) and one static
/// page (/, /console.js, /console.css, embedded in the assembly) that renders it. Requests run on Kestrel's threads
/// and read the same figures the /metrics gauges read, the same way (partition tails without locks, each group under
/// its lock). Every list is paged or capped, so a broker with many topics answers a bounded page. Until
/// <see cref="Attach"/> the API answers 503. docs/design/console.md.
/// </summary>
public sealed class ConsoleApi : IDisposable
{
    /// <summary>Largest page of topics or groups (and the default page).</summary>
    public const int MaxLimit = 500;
    public const int DefaultLimit = 100;
    /// <summary>Partitions listed per topic in /api/topics, and members and offsets per group in /api/groups; the
    /// one-topic and one-group endpoints list up to <see cref="MaxDetail"/>.</summary>
    public const int MaxListed = 100;
    public const int MaxDetail = 10_000;
    /// <summary>Rates are averaged over this many one-second samples.</summary>
    const int Window = 5;

    readonly TrafficCounters _traffic;
    readonly Func<string?> _notReady;
    ConsoleSources? _sources;
    ITimer? _sampler;
    readonly Queue<(long Timestamp, Dictionary<string, (long Records, long Bytes, long FetchedRecords, long Fetched)> Totals)> _samples = new();
    volatile Rates _rates = new(0, new Dictionary<string, (double, double, double, double)>());

    sealed record Rates(double WindowSeconds, Dictionary<string, (double Records, double Bytes, double FetchedRecords, double Fetched)> ByTopic);

    public ConsoleApi(TrafficCounters traffic, Func<string?> notReady)
    {
        _traffic = traffic;
        _notReady = notReady;
    }

    public void Attach(ConsoleSources sources)
    {
        Volatile.Write(ref _sources, sources);
        _sampler = sources.Time.CreateTimer(_ => Sample(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
    }

    public void Map(WebApplication app)
    {
        app.MapGet("/", () => Asset("console.html", "text/html; charset=utf-8"));
        app.MapGet("/console.js", () => Asset("console.js", "text/javascript; charset=utf-8"));
        app.MapGet("/console.css", () => Asset("console.css", "text/css; charset=utf-8"));
        app.MapGet("/favicon.ico", () => Results.NoContent()); // browsers ask for it; none is better than a 404 in their console
        app.MapGet("/api/broker", (HttpContext ctx) => Json(ctx, Broker));
        app.MapGet("/api/topics", (HttpContext ctx) => Paged(ctx, Topics));
        // One topic or group by query string, not by path: a group id may hold '/', which a path cannot carry unambiguously.
        app.MapGet("/api/topic", (HttpContext ctx) => Json(ctx, (w, s) => Topic(w, s, ctx.Request.Query["name"].ToString())));
        app.MapGet("/api/groups", (HttpContext ctx) => Paged(ctx, Groups));
        app.MapGet("/api/group", (HttpContext ctx) => Json(ctx, (w, s) => Group(w, s, ctx.Request.Query["id"].ToString())));
        app.MapGet("/api/rates", (HttpContext ctx) => Paged(ctx, RatesJson));
    }

    // -----------------------------------------------------------------------------------------------------------
    // The page

    static readonly Dictionary<string, byte[]> Assets = LoadAssets();

    static Dictionary<string, byte[]> LoadAssets()
    {
        var assets = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        var assembly = typeof(ConsoleApi).Assembly;
        foreach (string name in new[] { "console.html", "console.js", "console.css" })
        {
            using var stream = assembly.GetManifestResourceStream("Kiou.Console." + name)
                ?? throw new InvalidOperationException($"embedded resource Kiou.Console.{name} is missing from the build");
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            assets[name] = copy.ToArray();
        }
        return assets;
    }

    static IResult Asset(string name, string contentType) => new AssetResult(Assets[name], contentType);

    /// <summary>The page's own script and style only: a string that slipped past escaping still could not run.</summary>
    sealed class AssetResult(byte[] body, string contentType) : IResult
    {
        public Task ExecuteAsync(HttpContext ctx)
        {
            Secure(ctx.Response);
            ctx.Response.ContentType = contentType;
            ctx.Response.ContentLength = body.Length;
            return ctx.Response.Body.WriteAsync(body).AsTask();
        }
    }

    static void Secure(HttpResponse response)
    {
        response.Headers.CacheControl = "no-store";
        response.Headers.XContentTypeOptions = "nosniff";
        response.Headers.ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
        response.Headers["Referrer-Policy"] = "no-referrer";
    }

    // -----------------------------------------------------------------------------------------------------------
    // JSON plumbing

    delegate IResult? Writer(Utf8JsonWriter w, ConsoleSources s);
    delegate void PageWriter(Utf8JsonWriter w, ConsoleSources s, int offset, int limit);

    IResult Json(HttpContext ctx, Writer write)
    {
        Secure(ctx.Response);
        if (Volatile.Read(ref _sources) is not { } sources)
            return Error(StatusCodes.Status503ServiceUnavailable, _notReady() ?? "starting");
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        // The default encoder escapes < > & ' " and non-ASCII: the JSON is safe even if pasted into HTML.
        using (var w = new Utf8JsonWriter(buffer))
        {
            if (write(w, sources) is { } error)
                return error;
        }
        return new JsonResult(buffer.WrittenMemory.ToArray(), StatusCodes.Status200OK);
    }

    IResult Paged(HttpContext ctx, PageWriter write)
    {
        if (!TryQueryInt(ctx, "offset", 0, 0, int.MaxValue, out int offset, out var bad)
            || !TryQueryInt(ctx, "limit", DefaultLimit, 1, MaxLimit, out int limit, out bad))
        {
            Secure(ctx.Response);
            return bad!;
        }
        return Json(ctx, (w, s) =>
        {
            write(w, s, offset, limit);
            return null;
        });
    }

    static bool TryQueryInt(HttpContext ctx, string name, int dflt, int min, int max, out int value, out IResult? error)
    {
        error = null;
        value = dflt;
        string? text = ctx.Request.Query[name];
        if (string.IsNullOrEmpty(text))
            return true;
        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value) && value >= min && value <= max)
            return true;
        error = Error(StatusCodes.Status400BadRequest, $"{name} must be a whole number from {min} to {max}");
        return false;
    }

    sealed class JsonResult(byte[] body, int status) : IResult
    {
        public Task ExecuteAsync(HttpContext ctx)
        {
            ctx.Response.StatusCode = status;
            ctx.Response.ContentType = "application/json; charset=utf-8";
            ctx.Response.ContentLength = body.Length;
            return ctx.Response.Body.WriteAsync(body).AsTask();
        }
    }

    static IResult Error(int status, string message)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("error", message);
            w.WriteEndObject();
        }
        return new JsonResult(buffer.WrittenMemory.ToArray(), status);
    }

    static void PageFields(Utf8JsonWriter w, int total, int offset, int limit, int shown)
    {
        w.WriteNumber("total", total);
        w.WriteNumber("offset", offset);
        w.WriteNumber("limit", limit);
        w.WriteNumber("more", Math.Max(0, total - offset - shown));
    }

    // -----------------------------------------------------------------------------------------------------------
    // /api/broker

    static readonly string Version = typeof(ConsoleApi).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(ConsoleApi).Assembly.GetName().Version?.ToString() ?? "unknown";

    readonly long _startedTimestamp = TimeProvider.System.GetTimestamp();

    IResult? Broker(Utf8JsonWriter w, ConsoleSources s)
    {
        var c = s.Config;
        w.WriteStartObject();
        w.WriteString("version", Version);
        w.WriteString("runtime", System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription);
        w.WriteNumber("uptimeSeconds", Math.Round(TimeProvider.System.GetElapsedTime(_startedTimestamp).TotalSeconds, 1));
        w.WriteString("clusterId", s.Controller.ClusterId);
        w.WriteNumber("nodeId", c.NodeId);
        w.WriteString("io", s.IoMode);
        w.WriteString("dataDir", c.DataDir);
        if (_notReady() is { } why)
            w.WriteString("notReady", why);
        else
            w.WriteNull("notReady");
        w.WriteStartArray("listeners");
        Listener(w, "broker (Kafka)", s.BrokerEndPoint.ToString());
        Listener(w, "controller", s.ControllerEndPoint.ToString());
        Listener(w, "http (metrics, console)", $"{c.HttpHost}:{c.HttpPort}");
        w.WriteEndArray();
        int topics = 0, partitions = 0;
        foreach (var t in s.Logs.All)
        {
            topics++;
            partitions += t.Partitions.Length;
        }
        w.WriteNumber("topics", topics);
        w.WriteNumber("partitions", partitions);
        w.WriteNumber("groups", s.Groups.All.Count());
        w.WriteStartArray("settings");
        foreach (var setting in Settings.All)
        {
            w.WriteStartObject();
            w.WriteString("name", setting.Name);
            w.WriteString("value", EffectiveSettings.ValueOf(c, setting.Name, Environment.GetEnvironmentVariable));
            w.WriteString("default", setting.Default);
            w.WriteString("meaning", setting.Meaning);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
        return null;
    }

    static void Listener(Utf8JsonWriter w, string name, string address)
    {
        w.WriteStartObject();
        w.WriteString("name", name);
        w.WriteString("address", address);
        w.WriteEndObject();
    }

    // -----------------------------------------------------------------------------------------------------------
    // /api/topics

    static List<TopicLogs> SortedTopics(LogManager logs)
    {
        var list = logs.All.ToList();
        list.Sort(static (a, b) => string.CompareOrdinal(a.Info.Name, b.Info.Name));
        return list;
    }

    void Topics(Utf8JsonWriter w, ConsoleSources s, int offset, int limit)
    {
        var all = SortedTopics(s.Logs);
        int shown = Math.Max(0, Math.Min(limit, all.Count - offset));
        w.WriteStartObject();
        PageFields(w, all.Count, offset, limit, shown);
        w.WriteStartArray("topics");
        for (int i = offset; i < offset + shown; i++)
            TopicJson(w, all[i], MaxListed, brokerDefaults: null);
        w.WriteEndArray();
        w.WriteEndObject();
    }

    IResult? Topic(Utf8JsonWriter w, ConsoleSources s, string name)
    {
        if (s.Logs.Get(name) is not { } topic)
            return Error(StatusCodes.Status404NotFound, "no such topic");
        TopicJson(w, topic, MaxDetail, brokerDefaults: s.Logs.TopicDefaults);
        return null;
    }

    /// <param name="brokerDefaults">Non-null: also every config's value in effect (the topic's, else the broker's).</param>
    static void TopicJson(Utf8JsonWriter w, TopicLogs topic, int maxPartitions, IReadOnlyDictionary<string, string>? brokerDefaults)
    {
        var info = topic.Info;
        var parts = topic.Partitions;
        w.WriteStartObject();
        w.WriteString("name", info.Name);
        w.WriteString("id", info.Id.ToString());
        w.WriteBoolean("internal", info.Name.StartsWith("__", StringComparison.Ordinal));
        w.WriteNumber("partitionCount", parts.Length);
        long size = 0, records = 0;
        foreach (var p in parts)
        {
            size += p.SizeBytes;
            records += p.HighWatermark - p.LogStartOffset;
        }
        w.WriteNumber("sizeBytes", size);
        w.WriteNumber("records", records);
        w.WriteStartArray("partitions");
        int listed = Math.Min(parts.Length, maxPartitions);
        for (int i = 0; i < listed; i++)
        {
            var p = parts[i];
            w.WriteStartObject();
            w.WriteNumber("partition", p.Partition);
            w.WriteNumber("startOffset", p.LogStartOffset);
            w.WriteNumber("highWatermark", p.HighWatermark);
            w.WriteNumber("endOffset", p.LogEndOffset);
            w.WriteNumber("sizeBytes", p.SizeBytes);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteNumber("partitionsMore", parts.Length - listed);
        w.WriteStartObject("configs");
        foreach (var (key, value) in info.Configs.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            w.WriteString(key, value);
        w.WriteEndObject();
        if (brokerDefaults is not null)
        {
            w.WriteStartObject("effectiveConfigs");
            foreach (var d in TopicConfigs.All)
                w.WriteString(d.Name, TopicConfigs.Effective(info.Configs, d.Name, brokerDefaults));
            w.WriteEndObject();
        }
        w.WriteEndObject();
    }

    // -----------------------------------------------------------------------------------------------------------
    // /api/groups

    /// <summary>A group copied under its lock; assignments decoded after, outside it.</summary>
    sealed record GroupCopy(string Id, string State, string? ProtocolType, string? Protocol, int Generation, string? Leader,
        List<(string MemberId, string? InstanceId, string ClientId, string ClientHost, byte[] Assignment)> Members, int MembersTotal,
        List<PartitionLag> Offsets, int OffsetsTotal);

    static GroupCopy Copy(Group g, LogManager logs, int max)
    {
        var lags = new List<PartitionLag>();
        lock (g)
        {
            var members = new List<(string, string?, string, string, byte[])>(Math.Min(g.Members.Count, max));
            foreach (var m in g.OrderedMembers())
            {
                if (members.Count == max)
                    break;
                members.Add((m.MemberId, m.InstanceId, m.ClientId, m.ClientHost, m.Assignment));
            }
            BrokerSnapshot.Lags(g, logs, lags);
            int offsetsTotal = lags.Count;
            lags.Sort(static (a, b) => a.Topic == b.Topic ? a.Partition.CompareTo(b.Partition) : string.CompareOrdinal(a.Topic, b.Topic));
            if (lags.Count > max)
                lags.RemoveRange(max, lags.Count - max);
            return new GroupCopy(g.GroupId, g.StateName, g.ProtocolType, g.ProtocolName, g.GenerationId, g.LeaderId,
                members, g.Members.Count, lags, offsetsTotal);
        }
    }

    void Groups(Utf8JsonWriter w, ConsoleSources s, int offset, int limit)
    {
        var all = s.Groups.All.ToList();
        all.Sort(static (a, b) => string.CompareOrdinal(a.GroupId, b.GroupId));
        int shown = Math.Max(0, Math.Min(limit, all.Count - offset));
        w.WriteStartObject();
        PageFields(w, all.Count, offset, limit, shown);
        w.WriteStartArray("groups");
        for (int i = offset; i < offset + shown; i++)
            GroupJson(w, Copy(all[i], s.Logs, MaxListed));
        w.WriteEndArray();
        w.WriteEndObject();
    }

    IResult? Group(Utf8JsonWriter w, ConsoleSources s, string id)
    {
        if (s.Groups.Find(id) is not { } g)
            return Error(StatusCodes.Status404NotFound, "no such group");
        GroupJson(w, Copy(g, s.Logs, MaxDetail));
        return null;
    }

    static void GroupJson(Utf8JsonWriter w, GroupCopy g)
    {
        w.WriteStartObject();
        w.WriteString("id", g.Id);
        w.WriteString("state", g.State);
        w.WriteString("protocolType", g.ProtocolType);
        w.WriteString("protocol", g.Protocol);
        w.WriteNumber("generation", g.Generation);
        w.WriteString("leader", g.Leader);
        w.WriteNumber("memberCount", g.MembersTotal);
        w.WriteStartArray("members");
        foreach (var m in g.Members)
        {
            w.WriteStartObject();
            w.WriteString("memberId", m.MemberId);
            w.WriteString("instanceId", m.InstanceId);
            w.WriteString("clientId", m.ClientId);
            w.WriteString("clientHost", m.ClientHost);
            w.WriteStartArray("assignment");
            if (g.ProtocolType == "consumer" && DecodeAssignment(m.Assignment) is { } assigned)
            {
                foreach (var tp in assigned)
                {
                    w.WriteStartObject();
                    w.WriteString("topic", tp.Topic);
                    w.WriteStartArray("partitions");
                    foreach (int p in tp.Partitions.Take(MaxDetail))
                        w.WriteNumberValue(p);
                    w.WriteEndArray();
                    w.WriteEndObject();
                }
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteNumber("membersMore", g.MembersTotal - g.Members.Count);
        long totalLag = 0;
        w.WriteStartArray("offsets");
        foreach (var o in g.Offsets)
        {
            totalLag += o.Lag;
            w.WriteStartObject();
            w.WriteString("topic", o.Topic);
            w.WriteNumber("partition", o.Partition);
            w.WriteNumber("committed", o.Committed);
            w.WriteNumber("highWatermark", o.HighWatermark);
            w.WriteNumber("lag", o.Lag);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteNumber("offsetsMore", g.OffsetsTotal - g.Offsets.Count);
        w.WriteNumber("lagListed", totalLag);
        w.WriteEndObject();
    }

    /// <summary>A "consumer" protocol assignment (INT16 version, then that version's fields), or null when the member's
    /// bytes do not parse: they come from a client.</summary>
    static List<ConsumerProtocolAssignment.TopicPartition>? DecodeAssignment(byte[] bytes)
    {
        if (bytes.Length < 2)
            return null;
        var reader = new KafkaReader(bytes);
        short version = reader.ReadInt16();
        if (reader.Failed || version < 0)
            return null;
        var assignment = new ConsumerProtocolAssignment();
        assignment.Read(ref reader, Math.Min(version, ConsumerProtocolAssignment.HighestSupportedVersion));
        return reader.Failed ? null : assignment.AssignedPartitions;
    }

    // -----------------------------------------------------------------------------------------------------------
    // /api/rates: a one-second sampler of the per-topic totals, averaged over the last few samples

    void Sample()
    {
        if (Volatile.Read(ref _sources) is not { } s)
            return;
        _traffic.Prune(name => s.Logs.Get(name) is not null);
        var now = new Dictionary<string, (long, long, long, long)>(StringComparer.Ordinal);
        foreach (var (topic, t) in _traffic.All)
            now[topic] = (t.ProducedRecords, t.ProducedBytes, t.FetchedRecords, t.FetchedBytes);
        long timestamp = s.Time.GetTimestamp();
        lock (_samples)
        {
            _samples.Enqueue((timestamp, now));
            while (_samples.Count > Window + 1)
                _samples.Dequeue();
            var (oldTimestamp, old) = _samples.Peek();
            double seconds = s.Time.GetElapsedTime(oldTimestamp, timestamp).TotalSeconds;
            var rates = new Dictionary<string, (double, double, double, double)>(StringComparer.Ordinal);
            if (seconds > 0)
            {
                foreach (var (topic, (records, bytes, fetchedRecords, fetched)) in now)
                {
                    var (r0, b0, fr0, f0) = old.GetValueOrDefault(topic);
                    rates[topic] = (Math.Max(0, records - r0) / seconds, Math.Max(0, bytes - b0) / seconds,
                        Math.Max(0, fetchedRecords - fr0) / seconds, Math.Max(0, fetched - f0) / seconds);
                }
            }
            _rates = new Rates(seconds, rates);
        }
    }

    void RatesJson(Utf8JsonWriter w, ConsoleSources s, int offset, int limit)
    {
        var rates = _rates;
        var rows = new List<(string Topic, TopicTraffic Totals, (double Records, double Bytes, double FetchedRecords, double Fetched) Rate)>();
        foreach (var (topic, t) in _traffic.All)
            rows.Add((topic, t, rates.ByTopic.GetValueOrDefault(topic)));
        // Busiest first, so the page's first rows are the topics that move.
        rows.Sort(static (a, b) =>
        {
            int c = (b.Rate.Bytes + b.Rate.Fetched).CompareTo(a.Rate.Bytes + a.Rate.Fetched);
            return c != 0 ? c : string.CompareOrdinal(a.Topic, b.Topic);
        });
        int shown = Math.Max(0, Math.Min(limit, rows.Count - offset));
        w.WriteStartObject();
        w.WriteNumber("windowSeconds", Math.Round(rates.WindowSeconds, 2));
        PageFields(w, rows.Count, offset, limit, shown);
        w.WriteStartArray("topics");
        for (int i = offset; i < offset + shown; i++)
        {
            var (topic, totals, rate) = rows[i];
            w.WriteStartObject();
            w.WriteString("topic", topic);
            w.WriteNumber("producedRecordsPerSecond", Math.Round(rate.Records, 1));
            w.WriteNumber("producedBytesPerSecond", Math.Round(rate.Bytes, 1));
            w.WriteNumber("fetchedRecordsPerSecond", Math.Round(rate.FetchedRecords, 1));
            w.WriteNumber("fetchedBytesPerSecond", Math.Round(rate.Fetched, 1));
            w.WriteNumber("producedRecords", totals.ProducedRecords);
            w.WriteNumber("producedBytes", totals.ProducedBytes);
            w.WriteNumber("fetchedRecords", totals.FetchedRecords);
            w.WriteNumber("fetchedBytes", totals.FetchedBytes);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    public void Dispose() => _sampler?.Dispose();
}
