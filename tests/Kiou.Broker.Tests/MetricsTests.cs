using System.Globalization;
using System.Net;
using Confluent.Kafka;
using Kiou.Broker.Hosting;

namespace Kiou.Broker.Tests;

/// <summary>The HTTP listener: /metrics scraped while a real client produces and consumes, /healthz and /readyz.</summary>
public sealed class MetricsTests
{
    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    /// <summary>
    /// N records of a known size produced with librdkafka and read back: the per-topic counters moved by exactly N records
    /// and by the batch bytes that reached the log, the Produce and Fetch request counters and latency histograms moved,
    /// and the whole page parses as Prometheus' text format with HELP and TYPE for every family.
    /// </summary>
    [Fact]
    public async Task Metrics_count_the_records_and_bytes_a_client_produced_and_consumed()
    {
        string dir = Path.Combine(Path.GetTempPath(), "kiou-metrics-" + Guid.NewGuid().ToString("N"));
        try
        {
            int httpPort = BrokerProcess.FreePort();
            int controllerPort = BrokerProcess.FreePort();
            using var broker = BrokerProcess.Start(dir, new Dictionary<string, string>
            {
                ["KIOU_HTTP_PORT"] = httpPort.ToString(),
                ["KIOU_CONTROLLER_PORT"] = controllerPort.ToString(),
                ["KIOU_FLUSH"] = "always", // every acks=all produce waits for an fsync
            });
            string url = $"http://127.0.0.1:{httpPort}";
            Assert.Equal(HttpStatusCode.OK, (await Http.GetAsync(url + "/healthz")).StatusCode);

            var before = Parse(await Http.GetStringAsync(url + "/metrics"));
            const string topic = "metrics-demo";
            const int partitions = 2;
            const int n = 300;
            await Clients.CreateTopicAsync(broker.Bootstrap, topic, partitions);
            using (var producer = Clients.Producer(broker.Bootstrap, Acks.All, CompressionType.None, c => c.LingerMs = 5))
            {
                var sends = Enumerable.Range(0, n).Select(i => producer.ProduceAsync(new TopicPartition(topic, i % partitions),
                    new Message<byte[]?, byte[]?> { Key = BitConverter.GetBytes(i), Value = new byte[100] }));
                await Task.WhenAll(sends);
            }
            // Read back with kcat, a consumer of another build of librdkafka: one line per record.
            var read = ChildProcess.Run("kcat", ["-C", "-b", broker.Bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p:%o\\n"]);
            Assert.True(read.ExitCode == 0, read.Stderr);
            Assert.Equal(n, read.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Distinct().Count());

            string text = await Http.GetStringAsync(url + "/metrics");
            var after = Parse(text);
            string t = $"topic=\"{topic}\"";
            Assert.Equal(n, Sum(after, "kiou_produced_records_total", t));
            // The bytes of the batches appended are the bytes of the partitions' segment files (nothing else is written).
            double logBytes = Sum(after, "kiou_log_size_bytes", t);
            Assert.True(logBytes > n * 100, $"log size {logBytes}");
            Assert.Equal(logBytes, Sum(after, "kiou_produced_bytes_total", t));
            // One consumer read every batch once from the start.
            Assert.Equal(logBytes, Sum(after, "kiou_fetched_bytes_total", t));
            Assert.Equal(n, Sum(after, "kiou_fetched_records_total", t));
            Assert.Equal(n, Sum(after, "kiou_log_end_offset", t));
            Assert.Equal(n, Sum(after, "kiou_log_high_watermark", t));
            Assert.Equal(n, Sum(after, "kiou_log_durable_offset", t)); // KIOU_FLUSH=always: every acknowledged record is fsynced
            Assert.Equal(0, Sum(after, "kiou_log_start_offset", t));

            foreach (var api in new[] { "Produce", "Fetch" })
            {
                string a = $"api=\"{api}\"";
                Assert.True(Sum(after, "kiou_requests_total", a) > Sum(before, "kiou_requests_total", a), $"{api} requests did not move");
                Assert.True(Sum(after, "kiou_request_duration_seconds_count", a) > Sum(before, "kiou_request_duration_seconds_count", a));
                Assert.True(Sum(after, "kiou_request_duration_seconds_bucket", a + ",le=\"+Inf\"") == Sum(after, "kiou_request_duration_seconds_count", a));
            }
            Assert.True(Sum(after, "kiou_connections_accepted_total", "listener=\"broker\"") >= 3); // admin, producer, consumer
            Assert.True(Sum(after, "kiou_connections_closed_total", "listener=\"broker\"") >= 2);
            double fsyncs = Sum(after, "kiou_fsync_duration_seconds_count", "") - Sum(before, "kiou_fsync_duration_seconds_count", "");
            Assert.True(fsyncs >= 1, "no fsync counted");
            Assert.Equal(0, Sum(after, "kiou_produce_purgatory_size", ""));
            if (TestBroker.IoModeFromEnvironment != "sync")
            {
                // Every fsync of the log device is one SQE and one CQE of the ring (writes add more); nothing is left in flight.
                double submitted = Sum(after, "kiou_io_uring_submissions_total", "") - Sum(before, "kiou_io_uring_submissions_total", "");
                double completed = Sum(after, "kiou_io_uring_completions_total", "") - Sum(before, "kiou_io_uring_completions_total", "");
                Assert.True(submitted >= fsyncs, $"{submitted} submissions for {fsyncs} fsyncs");
                Assert.True(completed >= fsyncs, $"{completed} completions for {fsyncs} fsyncs");
                Assert.True(Sum(after, "kiou_io_uring_enters_total", "") > Sum(before, "kiou_io_uring_enters_total", ""));
                Assert.Equal("gauge", after.Types["kiou_io_uring_in_flight"]);
            }
            else
                Assert.DoesNotContain(after.Samples, x => x.Name.StartsWith("kiou_io_uring", StringComparison.Ordinal));

            // Errors of APIs other than Produce and Fetch, by Kafka's name: creating the topic again.
            await Assert.ThrowsAsync<Confluent.Kafka.Admin.CreateTopicsException>(() => Clients.CreateTopicAsync(broker.Bootstrap, topic, partitions));
            // The controller listener's connections are counted apart from the broker listener's.
            using (var controllerClient = new System.Net.Sockets.TcpClient())
            {
                await controllerClient.ConnectAsync(IPAddress.Loopback, controllerPort);
                var deadline = DateTime.UtcNow.AddSeconds(10);
                Scrape open;
                while (Sum(open = Parse(await Http.GetStringAsync(url + "/metrics")), "kiou_connections_open", "listener=\"controller\"") < 1 && DateTime.UtcNow < deadline)
                    await Task.Delay(50);
                Assert.Equal(1, Sum(open, "kiou_connections_open", "listener=\"controller\""));
                Assert.Equal(1, Sum(open, "kiou_errors_total", "api=\"CreateTopics\",error=\"TOPIC_ALREADY_EXISTS\""));
            }

            // A group that committed offset 100 on partition 0 (n / partitions records there) lags by the rest.
            string commit = "from kafka import KafkaConsumer, TopicPartition\nfrom kafka.structs import OffsetAndMetadata\n" +
                $"c = KafkaConsumer(bootstrap_servers='{broker.Bootstrap}', group_id='metrics-group', enable_auto_commit=False)\n" +
                $"c.commit({{TopicPartition('{topic}', 0): OffsetAndMetadata(100, '')}})\nc.close()\n";
            var committed = ChildProcess.Run("/usr/bin/python3", ["-c", commit]);
            Assert.True(committed.ExitCode == 0, committed.Stderr);
            var lag = Parse(await Http.GetStringAsync(url + "/metrics"));
            Assert.Equal(n / partitions - 100, Sum(lag, "kiou_group_lag", $"group=\"metrics-group\",{t},partition=\"0\""));
            Assert.Equal(1, Sum(lag, "kiou_group_state", "group=\"metrics-group\",state=\"Empty\""));
            Assert.Equal(0, Sum(lag, "kiou_group_members", "group=\"metrics-group\""));
            // A fetch beyond the end is answered OFFSET_OUT_OF_RANGE, counted by API and error name.
            ChildProcess.Run("kcat", ["-C", "-b", broker.Bootstrap, "-t", topic, "-p", "0", "-o", "100000", "-e", "-q"]);
            var errors = Parse(await Http.GetStringAsync(url + "/metrics"));
            Assert.True(Sum(errors, "kiou_errors_total", "api=\"Fetch\",error=\"OFFSET_OUT_OF_RANGE\"") >= 1,
                string.Join('\n', errors.Samples.Where(x => x.Name.StartsWith("kiou_errors", StringComparison.Ordinal))));
            // A consumer waiting at the end of the log keeps a long-poll fetch parked most of the time.
            using (var waiting = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("kcat",
                ["-C", "-b", broker.Bootstrap, "-t", topic, "-p", "0", "-o", "end", "-q", "-X", "fetch.wait.max.ms=5000"])
            { RedirectStandardOutput = true, RedirectStandardError = true })!)
            {
                var until = DateTime.UtcNow.AddSeconds(10);
                double parked = 0;
                while (parked < 1 && DateTime.UtcNow < until)
                {
                    await Task.Delay(100);
                    parked = Sum(Parse(await Http.GetStringAsync(url + "/metrics")), "kiou_fetch_purgatory_size", "");
                }
                waiting.Kill();
                Assert.True(parked >= 1, "no parked fetch seen");
                // Released when the consumer's connection closes: the gauge goes back to zero.
                until = DateTime.UtcNow.AddSeconds(10);
                while (parked > 0 && DateTime.UtcNow < until)
                {
                    await Task.Delay(100);
                    parked = Sum(Parse(await Http.GetStringAsync(url + "/metrics")), "kiou_fetch_purgatory_size", "");
                }
                Assert.Equal(0, parked);
            }
            Assert.Contains(after.Samples, s => s.Name == "dotnet_process_cpu_time_seconds_total");
            Assert.Contains(after.Samples, s => s.Name == "dotnet_process_memory_working_set_bytes");
            Assert.Contains(after.Samples, s => s.Name == "dotnet_gc_collections_total" || s.Name == "dotnet_gc_heap_total_allocated_bytes_total");
            Assert.Equal("counter", after.Types["kiou_produced_records_total"]);
            Assert.Equal("histogram", after.Types["kiou_request_duration_seconds"]);
            Assert.Equal("gauge", after.Types["kiou_log_size_bytes"]);
        }
        finally
        {
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    /// <summary>/readyz answers 503 with the reason while the group coordinator still loads, 200 once it has; /healthz is 200 throughout.</summary>
    [Fact]
    public async Task Readyz_is_503_until_the_coordinators_have_loaded()
    {
        string dir = Path.Combine(Path.GetTempPath(), "kiou-readyz-" + Guid.NewGuid().ToString("N"));
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var config = new BrokerConfig
        {
            Port = 0,
            ControllerPort = 0,
            HttpPort = 0,
            DataDir = dir,
            IoMode = TestBroker.IoModeFromEnvironment,
            BeforeGroupLoad = () => gate.Task,
        };
        var broker = KiouBroker.Start(config, new Log(TextWriter.Null, Log.Level.Info));
        try
        {
            Assert.NotNull(broker.Http);
            string url = $"http://127.0.0.1:{broker.Http!.LocalEndPoint.Port}";
            var notReady = await Http.GetAsync(url + "/readyz");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, notReady.StatusCode);
            Assert.Contains("__consumer_offsets", await notReady.Content.ReadAsStringAsync());
            Assert.Equal(HttpStatusCode.OK, (await Http.GetAsync(url + "/healthz")).StatusCode);
            gate.SetResult();
            await broker.Groups.Loading;
            var deadline = DateTime.UtcNow.AddSeconds(10);
            HttpResponseMessage ready;
            while ((ready = await Http.GetAsync(url + "/readyz")).StatusCode != HttpStatusCode.OK && DateTime.UtcNow < deadline)
                await Task.Delay(20);
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        }
        finally
        {
            gate.TrySetResult();
            await broker.DisposeAsync();
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    /// <summary>
    /// An acks=all produce waits for its fsync in the produce purgatory: with the log device's fsyncs held, the gauge shows
    /// the one waiting request, and goes back to zero when the fsync completes and the producer has its answer.
    /// </summary>
    [Fact]
    public async Task The_produce_purgatory_holds_acks_all_requests_until_their_fsync()
    {
        // Another broker in this process first, as when tests run side by side: each broker's listener exports its own.
        await using var other = TestBroker.Start();
        string dir = Path.Combine(Path.GetTempPath(), "kiou-purgatory-" + Guid.NewGuid().ToString("N"));
        var held = new HeldFlushes();
        var config = new BrokerConfig
        {
            Port = 0,
            ControllerPort = 0,
            HttpPort = 0,
            DataDir = dir,
            IoMode = TestBroker.IoModeFromEnvironment,
            Flush = new Kiou.Storage.FlushPolicy(Kiou.Storage.FlushMode.Always, 0, 0),
            WrapDevice = d => new HeldFlushDevice(d, held),
        };
        var logText = new StringWriter();
        var broker = KiouBroker.Start(config, new Log(TextWriter.Synchronized(logText), Log.Level.Info));
        try
        {
            string url = $"http://127.0.0.1:{broker.Http!.LocalEndPoint.Port}";
            string bootstrap = $"127.0.0.1:{broker.Config.Port}";
            await Clients.CreateTopicAsync(bootstrap, "held", 1);
            using var producer = Clients.Producer(bootstrap, Acks.All, CompressionType.None);
            held.Hold = true;
            var send = producer.ProduceAsync(new TopicPartition("held", 0), new Message<byte[]?, byte[]?> { Value = [1, 2, 3] });
            var deadline = DateTime.UtcNow.AddSeconds(30);
            double parked = 0;
            while (parked < 1 && !send.IsCompleted && DateTime.UtcNow < deadline)
            {
                await Task.Delay(50);
                parked = Sum(Parse(await Http.GetStringAsync(url + "/metrics")), "kiou_produce_purgatory_size", "");
            }
            Assert.True(parked == 1, $"purgatory size {parked}, produce completed: {send.IsCompleted} ({(send.IsCompleted ? send.Exception?.Message ?? "ok" : "")}), flushes held: {held.Count}\n{logText}");
            Assert.False(send.IsCompleted, "acknowledged before its fsync");
            held.Release();
            Assert.Equal(0, (await send).Offset.Value);
            Assert.Equal(0, Sum(Parse(await Http.GetStringAsync(url + "/metrics")), "kiou_produce_purgatory_size", ""));
        }
        finally
        {
            held.Release();
            await broker.DisposeAsync();
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    sealed class HeldFlushes
    {
        readonly List<Action> _waiting = [];
        public volatile bool Hold;

        public int Count
        {
            get
            {
                lock (_waiting)
                    return _waiting.Count;
            }
        }

        public bool TryHold(Action flush)
        {
            lock (_waiting)
            {
                if (!Hold)
                    return false;
                _waiting.Add(flush);
                return true;
            }
        }

        public void Release()
        {
            Action[] flushes;
            lock (_waiting)
            {
                Hold = false;
                flushes = [.. _waiting];
                _waiting.Clear();
            }
            foreach (var flush in flushes)
                flush();
        }
    }

    /// <summary>Issues fsyncs late while held: a later fdatasync covers at least the writes the earlier one would have.</summary>
    sealed class HeldFlushDevice(Kiou.Storage.Devices.ILogDevice inner, HeldFlushes held) : Kiou.Storage.Devices.ILogDevice
    {
        public string Mode => inner.Mode;
        public bool DirectWrites => inner.DirectWrites;
        public int DirectMinRoundBytes => inner.DirectMinRoundBytes;
        public bool WriteIdleRoundsInline => inner.WriteIdleRoundsInline;
        public Kiou.Storage.Devices.LogDeviceStats? Stats => inner.Stats;

        public Microsoft.Win32.SafeHandles.SafeFileHandle? TryOpenDirect(string path, out int errno) => inner.TryOpenDirect(path, out errno);

        public void Write(Microsoft.Win32.SafeHandles.SafeFileHandle file, long position, ReadOnlyMemory<byte> data, Kiou.Storage.Devices.ILogDeviceCallback callback, long token) =>
            inner.Write(file, position, data, callback, token);

        public void Flush(Microsoft.Win32.SafeHandles.SafeFileHandle file, Kiou.Storage.Devices.ILogDeviceCallback callback, long token)
        {
            if (!held.TryHold(() => inner.Flush(file, callback, token)))
                inner.Flush(file, callback, token);
        }

        public void Dispose() => inner.Dispose();
    }

    [Fact]
    public void Http_port_minus_one_turns_the_listener_off_and_bad_values_are_refused()
    {
        Assert.Equal(BrokerConfig.DefaultHttpPort, BrokerConfig.FromEnvironment(_ => null).HttpPort);
        Assert.Equal(-1, BrokerConfig.FromEnvironment(k => k == "KIOU_HTTP_PORT" ? "-1" : null).HttpPort);
        var e = Assert.Throws<ConfigException>(() => BrokerConfig.FromEnvironment(k => k == "KIOU_HTTP_PORT" ? "http" : null));
        Assert.Contains("KIOU_HTTP_PORT", e.Message);
    }

    static double Sum(Scrape scrape, string name, string labels) =>
        scrape.Samples.Where(s => s.Name == name && labels.Split(',').All(l => s.Labels.Contains(l))).Sum(s => s.Value);

    sealed record Sample(string Name, string Labels, double Value);

    sealed record Scrape(List<Sample> Samples, Dictionary<string, string> Types, Dictionary<string, string> Help);

    /// <summary>
    /// A strict reader of Prometheus' text format (version 0.0.4): every line is a HELP, a TYPE or a sample; every
    /// sample belongs to a family declared with TYPE and HELP before it; names and labels are well formed; values parse.
    /// </summary>
    static Scrape Parse(string text)
    {
        var samples = new List<Sample>();
        var types = new Dictionary<string, string>();
        var help = new Dictionary<string, string>();
        Assert.EndsWith("\n", text);
        foreach (string line in text.Split('\n')[..^1])
        {
            if (line.StartsWith("# HELP ", StringComparison.Ordinal))
            {
                string[] parts = line["# HELP ".Length..].Split(' ', 2);
                Assert.True(IsName(parts[0]), line);
                Assert.True(parts.Length == 2 && parts[1].Length > 0, $"empty HELP: {line}");
                Assert.True(help.TryAdd(parts[0], parts[1]), $"HELP twice: {line}");
                continue;
            }
            if (line.StartsWith("# TYPE ", StringComparison.Ordinal))
            {
                string[] parts = line["# TYPE ".Length..].Split(' ');
                Assert.True(parts.Length == 2 && IsName(parts[0]), line);
                Assert.Contains(parts[1], new[] { "counter", "gauge", "histogram", "summary", "untyped" });
                Assert.True(types.TryAdd(parts[0], parts[1]), $"TYPE twice: {line}");
                continue;
            }
            Assert.False(line.StartsWith('#') || line.Length == 0, $"unexpected line: '{line}'");
            int brace = line.IndexOf('{');
            int space = brace >= 0 ? line.IndexOf(' ', line.IndexOf('}') + 1) : line.IndexOf(' ');
            Assert.True(space > 0, line);
            string name = line[..(brace >= 0 ? brace : space)];
            Assert.True(IsName(name), line);
            string labels = "";
            if (brace >= 0)
            {
                int close = line.LastIndexOf('}');
                labels = line[(brace + 1)..close];
                CheckLabels(labels, line);
            }
            string[] rest = line[(space + 1)..].Split(' ');
            Assert.True(rest.Length is 1 or 2, line); // value, optional timestamp
            double value = rest[0] switch
            {
                "+Inf" => double.PositiveInfinity,
                "-Inf" => double.NegativeInfinity,
                "NaN" => double.NaN,
                var v => double.Parse(v, NumberStyles.Float, CultureInfo.InvariantCulture),
            };
            string family = Family(name, types);
            Assert.True(types.ContainsKey(family), $"sample without TYPE: {line}");
            Assert.True(help.ContainsKey(family), $"family {family} has no HELP");
            if (types[family] == "counter")
                Assert.EndsWith("_total", name);
            samples.Add(new Sample(name, labels, value));
        }
        foreach (var family in types.Keys)
            Assert.True(help.ContainsKey(family), $"family {family} has no HELP");
        return new Scrape(samples, types, help);
    }

    static string Family(string name, Dictionary<string, string> types)
    {
        if (types.ContainsKey(name))
            return name;
        foreach (string suffix in new[] { "_bucket", "_sum", "_count" })
            if (name.EndsWith(suffix, StringComparison.Ordinal) && types.GetValueOrDefault(name[..^suffix.Length]) is "histogram" or "summary")
                return name[..^suffix.Length];
        return name;
    }

    static bool IsName(string s) =>
        s.Length > 0 && !char.IsAsciiDigit(s[0]) && s.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or ':');

    /// <summary>name="value" pairs separated by commas; values escape \, " and newline.</summary>
    static void CheckLabels(string labels, string line)
    {
        int i = 0;
        while (i < labels.Length)
        {
            int eq = labels.IndexOf('=', i);
            Assert.True(eq > i && IsName(labels[i..eq]) && !labels[i..eq].Contains(':'), $"bad label name: {line}");
            Assert.True(eq + 1 < labels.Length && labels[eq + 1] == '"', line);
            int j = eq + 2;
            while (j < labels.Length && labels[j] != '"')
            {
                if (labels[j] == '\\')
                {
                    Assert.True(j + 1 < labels.Length && labels[j + 1] is '\\' or '"' or 'n', $"bad escape: {line}");
                    j++;
                }
                j++;
            }
            Assert.True(j < labels.Length, $"unterminated label value: {line}");
            i = j + 1;
            if (i < labels.Length)
            {
                Assert.Equal(',', labels[i]);
                i++;
            }
        }
    }
}
