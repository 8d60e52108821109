using Confluent.Kafka;

namespace Kiou.Cli;

/// <summary>
/// What every tool shares: the bootstrap flag, client properties from flags and files, librdkafka's log and error
/// callbacks (kept quiet, remembered for the failure message), and the reachability check that turns "broker
/// unreachable" into one clear line within <see cref="ReachTimeout"/> instead of librdkafka's endless retries.
/// </summary>
public sealed class Kafka
{
    public const string DefaultBootstrap = "127.0.0.1:9092";

    /// <summary>10 s: how long a tool waits for the first Metadata answer before it says the broker is unreachable.</summary>
    public static readonly TimeSpan ReachTimeout = TimeSpan.FromSeconds(10);

    public static Flag BootstrapFlag => new("bootstrap-server", $"broker to connect to (default {DefaultBootstrap})", "HOST:PORT", Aliases: ["broker-list"]);

    readonly string _tool;
    readonly object _gate = new();
    string? _lastError;

    public string Bootstrap { get; }

    public Kafka(string tool, Options options)
    {
        _tool = tool;
        Bootstrap = options.Get("bootstrap-server", DefaultBootstrap);
        if (Bootstrap.Length == 0)
            throw options.Fail("--bootstrap-server is empty");
    }

    /// <summary>The last error librdkafka reported (connection refused, name resolution...), for failure messages.</summary>
    public string? LastError
    {
        get
        {
            lock (_gate)
                return _lastError;
        }
    }

    public void OnError(Error e)
    {
        // "1/1 brokers are down" says less than the connection error logged just before it.
        lock (_gate)
        {
            if (e.Code != ErrorCode.Local_AllBrokersDown || _lastError is null)
                _lastError = e.Reason;
        }
        if (e.IsFatal)
            Console.Error.WriteLine($"{_tool}: fatal client error: {e.Reason}");
    }

    public void OnLog(LogMessage m)
    {
        if (m.Level <= SyslogLevel.Error)
        {
            // "[thrd:127.0.0.1:9092/bootstrap]: 127.0.0.1:9092/bootstrap: Connect to ... failed: ..." -> after the thread tag.
            var text = m.Message;
            if (text.StartsWith("[thrd:", StringComparison.Ordinal) && text.IndexOf("]: ", StringComparison.Ordinal) is int at and > 0)
                text = text[(at + 3)..];
            lock (_gate)
                _lastError = text;
        }
    }

    /// <summary>Sets properties from --command-config style files and then from k=v flags (flags win).</summary>
    public static void Apply(ClientConfig config, Options options, string? pairsFlag, string? fileFlag)
    {
        if (fileFlag is not null && options.Get(fileFlag) is { } file)
        {
            foreach (var (k, v) in ReadProperties(file, options))
                config.Set(k, v);
        }
        if (pairsFlag is not null)
        {
            foreach (var (k, v) in options.Pairs(pairsFlag))
                config.Set(k, v);
        }
    }

    static IEnumerable<(string, string)> ReadProperties(string path, Options options)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw options.Fail($"cannot read {path}: {e.Message}");
        }
        foreach (var raw in lines)
        {
            var line = raw.Trim();
            if (line.Length == 0 || line[0] is '#' or '!')
                continue;
            int eq = line.IndexOf('=');
            if (eq <= 0)
                throw options.Fail($"{path}: expected key=value, not '{line}'");
            yield return (line[..eq].Trim(), line[(eq + 1)..].Trim());
        }
    }

    /// <summary>Builds a librdkafka client; a property librdkafka refuses is a usage error.</summary>
    public T Build<T>(Func<T> build, Options options)
    {
        try
        {
            return build();
        }
        catch (ArgumentException e)
        {
            throw options.Fail($"invalid client configuration: {e.Message}");
        }
        catch (InvalidOperationException e)
        {
            throw options.Fail($"invalid client configuration: {e.Message}");
        }
        catch (KafkaException e)
        {
            throw options.Fail($"invalid client configuration: {e.Error.Reason}");
        }
    }

    /// <summary>
    /// The admin client of a one-shot tool. Callers do not dispose it: it lives until the process exits, right after the
    /// tool's last (awaited) call. Disposing would wait out Confluent.Kafka's poll loops (one tenth of a second each)
    /// and librdkafka's shutdown, most of a tool's run time, for nothing the operating system does not do at exit.
    /// </summary>
    public IAdminClient Admin(Options options, string? pairsFlag = null, string? fileFlag = null)
    {
        // librdkafka (since 2.10) drops the bootstrap connection after the first Metadata answer and connects to the
        // broker it names, at most once per half reconnect.backoff.ms: the default 100 ms made every other run wait
        // for that tick. A failed connection still backs off exponentially up to reconnect.backoff.max.ms.
        var config = new AdminClientConfig { BootstrapServers = Bootstrap, SocketTimeoutMs = 10000, ReconnectBackoffMs = 20 };
        Apply(config, options, pairsFlag, fileFlag);
        var admin = Build(() => new AdminClientBuilder(config).SetErrorHandler((_, e) => OnError(e)).SetLogHandler((_, m) => OnLog(m)).Build(), options);
        lock (s_processLifetime)
            s_processLifetime.Add(admin);
        return admin;
    }

    // Never collected, so no finalizer shuts librdkafka down while the tool still runs.
    static readonly List<IAdminClient> s_processLifetime = [];

    /// <summary>Fails with one line when no broker answers Metadata within <see cref="ReachTimeout"/>.</summary>
    public Metadata Reach(IAdminClient admin)
    {
        try
        {
            return admin.GetMetadata(ReachTimeout);
        }
        catch (KafkaException e)
        {
            var why = LastError ?? e.Error.Reason;
            throw new FailedException($"cannot reach the broker at {Bootstrap} within {ReachTimeout.TotalSeconds:0} s ({why}): is it running, and is --bootstrap-server right?");
        }
    }

    /// <summary>Fails with Kafka's message when <paramref name="topic"/> is not in <paramref name="metadata"/>.</summary>
    public static TopicMetadata RequireTopic(Metadata metadata, string topic)
    {
        foreach (var t in metadata.Topics)
        {
            if (t.Topic == topic && t.Error.Code == ErrorCode.NoError)
                return t;
        }
        throw new FailedException($"topic '{topic}' does not exist: create it with bin/topics.sh --create --topic {topic}");
    }

    /// <summary>Runs an admin call to its end with a deadline, so a broker that stops answering cannot hang the tool.</summary>
    public static T Wait<T>(Task<T> task, string what)
    {
        Wait((Task)task, what);
        return task.GetAwaiter().GetResult();
    }

    public static void Wait(Task task, string what)
    {
        try
        {
            if (!task.Wait(TimeSpan.FromSeconds(60)))
                throw new FailedException($"{what}: no answer from the broker within 60 s");
        }
        catch (AggregateException)
        {
        }
        task.GetAwaiter().GetResult();
    }

    static IDisposable? s_sigterm;

    /// <summary>Cancelled on SIGINT or SIGTERM, so long-running tools can commit, close and print their summary.</summary>
    public static CancellationTokenSource StopOnSignals()
    {
        var cts = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            cts.Cancel();
        };
        s_sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c =>
        {
            c.Cancel = true;
            cts.Cancel();
        });
        return cts;
    }
}
