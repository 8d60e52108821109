using System.Globalization;
using Kiou.Storage;

namespace Kiou.Broker.Hosting;

/// <summary>Broker settings. Every setting comes from a KIOU_ environment variable; README.md lists them all.</summary>
public sealed record BrokerConfig
{
    public string Host { get; init; } = "127.0.0.1";
    public int Port { get; init; } = 9092;
    public string ControllerHost { get; init; } = "127.0.0.1";
    public int ControllerPort { get; init; } = 9093;
    /// <summary>Host put in Metadata answers; clients must reach it. Defaults to <see cref="Host"/>.</summary>
    public string? AdvertisedHost { get; init; }
    public string DataDir { get; init; } = "./data";
    public int NodeId { get; init; } = 1;
    public bool AutoCreateTopics { get; init; } = true;
    public int DefaultPartitions { get; init; } = 1;
    /// <summary>"auto" (io_uring, falling back to sync with a warning), "uring" or "sync".</summary>
    public string IoMode { get; init; } = "auto";
    /// <summary>KIOU_URING_WRITES=inline: the ring thread executes writes itself (pwritev) instead of IORING_OP_WRITE.</summary>
    public bool UringInlineWrites { get; init; }
    /// <summary>Default flush policy for topics without flush.ms / flush.messages.</summary>
    public FlushPolicy Flush { get; init; } = new(FlushMode.Roll, 0, 0);
    public int MaxRequestBytes { get; init; } = 104857600;
    public int FetchMaxBytes { get; init; } = 57671680;
    /// <summary>Fetch sends record data from the segment files with sendfile(2) instead of copying it (KIOU_FETCH_ZERO_COPY).</summary>
    public bool FetchZeroCopy { get; init; } = true;
    public int MessageMaxBytes { get; init; } = 1048588;
    public long RetentionCheckIntervalMs { get; init; } = 300000;
    public int MaxInFlightRequestsPerConnection { get; init; } = 128;
    public int MaxConnections { get; init; } = 10000;
    /// <summary>Test seam: wraps the chosen log device (fault injection). Not an operator setting.</summary>
    internal Func<Kiou.Storage.Devices.ILogDevice, Kiou.Storage.Devices.ILogDevice>? WrapDevice { get; init; }

    public string EffectiveAdvertisedHost =>
        AdvertisedHost ?? (Host is "0.0.0.0" or "::" or "" ? "127.0.0.1" : Host);

    /// <summary>Reads the KIOU_* variables; throws <see cref="ConfigException"/> with a sentence naming the variable.</summary>
    public static BrokerConfig FromEnvironment(Func<string, string?> env)
    {
        var c = new BrokerConfig();
        c = c with
        {
            Host = env("KIOU_HOST") ?? c.Host,
            Port = Int(env, "KIOU_PORT", c.Port, 0, 65535),
            ControllerHost = env("KIOU_CONTROLLER_HOST") ?? c.ControllerHost,
            ControllerPort = Int(env, "KIOU_CONTROLLER_PORT", c.ControllerPort, 0, 65535),
            AdvertisedHost = env("KIOU_ADVERTISED_HOST"),
            DataDir = env("KIOU_DATA_DIR") ?? c.DataDir,
            NodeId = Int(env, "KIOU_NODE_ID", c.NodeId, 0, int.MaxValue),
            AutoCreateTopics = Bool(env, "KIOU_AUTO_CREATE_TOPICS", c.AutoCreateTopics),
            DefaultPartitions = Int(env, "KIOU_NUM_PARTITIONS", c.DefaultPartitions, 1, 100000),
            IoMode = IoModeOf(env("KIOU_IO")),
            UringInlineWrites = UringWritesOf(env("KIOU_URING_WRITES")),
            Flush = FlushOf(env("KIOU_FLUSH")),
            MaxRequestBytes = Int(env, "KIOU_SOCKET_REQUEST_MAX_BYTES", c.MaxRequestBytes, 1024, int.MaxValue),
            FetchMaxBytes = Int(env, "KIOU_FETCH_MAX_BYTES", c.FetchMaxBytes, 1024, int.MaxValue),
            FetchZeroCopy = Bool(env, "KIOU_FETCH_ZERO_COPY", c.FetchZeroCopy),
            MessageMaxBytes = Int(env, "KIOU_MESSAGE_MAX_BYTES", c.MessageMaxBytes, 0, int.MaxValue),
            RetentionCheckIntervalMs = Int(env, "KIOU_RETENTION_CHECK_INTERVAL_MS", (int)c.RetentionCheckIntervalMs, 1, int.MaxValue),
        };
        return c;
    }

    static bool UringWritesOf(string? v) => v switch
    {
        null or "" or "ring" => false,
        "inline" => true,
        _ => throw new ConfigException($"KIOU_URING_WRITES={v} is not valid: use ring (IORING_OP_WRITE) or inline (pwritev on the ring thread)"),
    };

    static string IoModeOf(string? v) => v switch
    {
        null or "" or "auto" => "auto",
        "uring" or "io_uring" => "uring",
        "sync" => "sync",
        _ => throw new ConfigException($"KIOU_IO={v} is not valid: use uring, sync or auto"),
    };

    /// <summary>KIOU_FLUSH: "roll" (fsync at segment roll), a number of milliseconds, or "always".</summary>
    public static FlushPolicy FlushOf(string? v)
    {
        if (v is null or "" or "roll")
            return new FlushPolicy(FlushMode.Roll, 0, 0);
        if (v == "always")
            return new FlushPolicy(FlushMode.Always, 0, 0);
        if (long.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out long ms) && ms > 0)
            return new FlushPolicy(FlushMode.Interval, ms, 0);
        throw new ConfigException($"KIOU_FLUSH={v} is not valid: use roll, always, or a number of milliseconds above 0");
    }

    static int Int(Func<string, string?> env, string name, int dflt, int min, int max)
    {
        string? v = env(name);
        if (string.IsNullOrEmpty(v))
            return dflt;
        if (!int.TryParse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int n) || n < min || n > max)
            throw new ConfigException($"{name}={v} is not valid: expected a whole number from {min} to {max}");
        return n;
    }

    static bool Bool(Func<string, string?> env, string name, bool dflt)
    {
        string? v = env(name);
        return v switch
        {
            null or "" => dflt,
            "true" or "1" or "yes" => true,
            "false" or "0" or "no" => false,
            _ => throw new ConfigException($"{name}={v} is not valid: use true or false"),
        };
    }
}

public sealed class ConfigException(string message) : Exception(message);
