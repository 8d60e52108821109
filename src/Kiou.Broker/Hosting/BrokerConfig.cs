using System.Globalization;
using Kiou.Storage;
using Kiou.Storage.Devices;

namespace Kiou.Broker.Hosting;

/// <summary>Broker settings. Every setting comes from a KIOU_ environment variable; <see cref="Settings.All"/> lists
/// them all (for --help and README.md).</summary>
public sealed record BrokerConfig
{
    public string Host { get; init; } = "127.0.0.1";
    public int Port { get; init; } = 9092;
    public string ControllerHost { get; init; } = "127.0.0.1";
    public int ControllerPort { get; init; } = 9093;
    /// <summary>KIOU_HTTP_HOST / KIOU_HTTP_PORT: /metrics, /healthz, /readyz. Port -1 turns the listener off; 0 picks a free
    /// port. Off in a config built in code (in-process test brokers); KIOU_HTTP_PORT defaults to <see cref="DefaultHttpPort"/>.</summary>
    public string HttpHost { get; init; } = "127.0.0.1";
    public int HttpPort { get; init; } = -1;
    public const int DefaultHttpPort = 9644;
    /// <summary>Host put in Metadata answers; clients must reach it. Defaults to <see cref="Host"/>.</summary>
    public string? AdvertisedHost { get; init; }
    public string DataDir { get; init; } = "./data";
    public int NodeId { get; init; } = 1;
    public bool AutoCreateTopics { get; init; } = true;
    public int DefaultPartitions { get; init; } = 1;
    /// <summary>"auto" (io_uring, falling back to sync with a warning), "uring" or "sync".</summary>
    public string IoMode { get; init; } = "auto";
    /// <summary>KIOU_URING_WRITES: direct (default; O_DIRECT pages from a write-behind), ring (buffered IORING_OP_WRITE)
    /// or inline (the ring thread executes buffered writes itself with pwritev).</summary>
    public UringWriteMode UringWrites { get; init; }
    /// <summary>Default flush policy for topics without flush.ms / flush.messages.</summary>
    public FlushPolicy Flush { get; init; } = new(FlushMode.Roll, 0, 0);
    public int MaxRequestBytes { get; init; } = 104857600;
    public int FetchMaxBytes { get; init; } = 57671680;
    /// <summary>Fetch sends record data from the segment files with sendfile(2) instead of copying it (KIOU_FETCH_ZERO_COPY).</summary>
    public bool FetchZeroCopy { get; init; } = true;
    public int MessageMaxBytes { get; init; } = 1048588;
    public long RetentionCheckIntervalMs { get; init; } = 300000;
    /// <summary>KIOU_PRODUCER_ID_EXPIRATION_MS (Kafka's producer.id.expiration.ms): an idempotent producer's state is
    /// dropped from a partition after this long without a batch there (checked every 10 minutes).</summary>
    public long ProducerIdExpirationMs { get; init; } = 86_400_000;
    /// <summary>KIOU_MAX_PRODUCERS_PER_PARTITION (Redpanda's max_concurrent_producer_ids): producer ids a partition
    /// remembers; beyond it a new producer id evicts the least recently used ones (never one in a transaction).</summary>
    public int MaxProducersPerPartition { get; init; } = Kiou.Storage.Producers.ProducerStateManager.DefaultMaxProducers;
    public int MaxInFlightRequestsPerConnection { get; init; } = 128;

    /// <summary>KIOU_MAX_INFLIGHT_BYTES_PER_CONNECTION: request bytes read and not yet answered on one connection before
    /// the broker stops reading from it (default 16 MiB; a single larger request is still read).</summary>
    public long MaxInFlightBytesPerConnection { get; init; } = 16L << 20;

    /// <summary>KIOU_QUEUED_MAX_REQUEST_BYTES (Kafka's queued.max.request.bytes): request bytes read and not yet answered
    /// on one listener, all connections together, before its connections stop reading (default 32 MiB).</summary>
    public long QueuedMaxRequestBytes { get; init; } = 32L << 20;
    /// <summary>KIOU_MAX_CONNECTIONS (Kafka's max.connections, counted per listener): at the limit a new connection
    /// closes the least recently active idle one, or waits while none is idle.</summary>
    public int MaxConnections { get; init; } = 10000;

    /// <summary>KIOU_MAX_CONNECTIONS_PER_IP (Kafka's max.connections.per.ip): beyond it a new connection from that
    /// address is closed at once.</summary>
    public int MaxConnectionsPerIp { get; init; } = int.MaxValue;

    /// <summary>KIOU_CONNECTIONS_MAX_IDLE_MS (Kafka's connections.max.idle.ms): a connection with no request in
    /// flight and no bytes moved for this long is closed; -1: never.</summary>
    public long ConnectionsMaxIdleMs { get; init; } = 600_000;

    /// <summary>KIOU_REQUEST_ARRIVAL_TIMEOUT_MS: once a request's first byte has arrived, the whole request must arrive
    /// within this time or the connection is closed (the Kafka clients' request.timeout.ms default).</summary>
    public long RequestArrivalTimeoutMs { get; init; } = 30_000;

    /// <summary>KIOU_MAX_PARTITIONS: partitions of all topics together; CreateTopics and CreatePartitions beyond it are
    /// refused before anything is written. Null: 10000, lowered at start-up to what the descriptor limit can hold.</summary>
    public int? MaxPartitions { get; init; }
    /// <summary>KIOU_MAX_OPEN_SEGMENT_FILES: descriptors of sealed segments kept open for reads, broker-wide; the least
    /// recently read are closed beyond it and reopened on demand (active segments keep their own).</summary>
    public int MaxOpenSegmentFiles { get; init; } = Kiou.Storage.SegmentFileCache.DefaultCapacity;
    /// <summary>KIOU_READ_CACHE_BYTES: memory for recently written record data, broker-wide (docs/design/read-cache.md); 0: off.</summary>
    public long ReadCacheBytes { get; init; } = Kiou.Storage.ReadCache.DefaultCapacityBytes;
    /// <summary>The log cleaner (KIOU_LOG_CLEANER_*; docs/design/compaction.md).</summary>
    public Kiou.Storage.Cleaner.LogCleanerSettings Cleaner { get; init; } = new();
    /// <summary>Consumer group coordinator settings (KIOU_GROUP_*, KIOU_OFFSETS_*).</summary>
    public Kiou.Broker.Groups.GroupSettings Groups { get; init; } = new();
    /// <summary>Transaction coordinator settings (KIOU_TRANSACTION_*).</summary>
    public Kiou.Broker.Transactions.TransactionSettings Transactions { get; init; } = new();
    /// <summary>SASL on SASL_PLAINTEXT and SASL_SSL listeners (KIOU_SASL_*, docs/design/security-sasl.md).</summary>
    public Kiou.Broker.Security.SaslSettings Sasl { get; init; } = new();
    /// <summary>The authorizer (KIOU_AUTHORIZER, KIOU_SUPER_USERS, KIOU_ALLOW_EVERYONE_IF_NO_ACL_FOUND; docs/design/security-acls.md).</summary>
    public Kiou.Broker.Security.AclSettings Acls { get; init; } = new();
    /// <summary>Test seam: awaited before the group coordinator loads its log (COORDINATOR_LOAD_IN_PROGRESS meanwhile).</summary>
    internal Func<Task>? BeforeGroupLoad { get; init; }
    /// <summary>Test seam: wraps the chosen log device (fault injection). Not an operator setting.</summary>
    internal Func<Kiou.Storage.Devices.ILogDevice, Kiou.Storage.Devices.ILogDevice>? WrapDevice { get; init; }
    /// <summary>Test seam: runs after a long-poll fetch built a response with too few bytes, before it parks
    /// (widens the window a publish could slip through).</summary>
    internal Action? BeforeFetchParks { get; init; }
    /// <summary>Test seam: runs each time a woken long-poll fetch builds its response again.</summary>
    internal Action? OnFetchRebuilt { get; init; }

    public string EffectiveAdvertisedHost =>
        AdvertisedHost ?? (Host is "0.0.0.0" or "::" or "" ? "127.0.0.1" : Host);

    /// <summary>KIOU_LISTENERS (with KIOU_LISTENER_SECURITY_PROTOCOL_MAP and KIOU_ADVERTISED_LISTENERS): the broker
    /// listeners; null: one PLAINTEXT listener on <see cref="Host"/>:<see cref="Port"/>. Once started, the bound ports.</summary>
    public IReadOnlyList<Kiou.Broker.Security.BrokerListener>? Listeners { get; init; }
    /// <summary>TLS of the SSL and SASL_SSL listeners (KIOU_SSL_*).</summary>
    public Kiou.Broker.Security.TlsSettings Tls { get; init; } = new();

    /// <summary>The broker listeners: <see cref="Listeners"/>, or the one PLAINTEXT listener of KIOU_HOST/KIOU_PORT.</summary>
    public IReadOnlyList<Kiou.Broker.Security.BrokerListener> EffectiveListeners =>
        Listeners ?? [new("PLAINTEXT", Kiou.Broker.Security.SecurityProtocol.Plaintext, Host, Port, AdvertisedHost)];

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
            HttpHost = env("KIOU_HTTP_HOST") ?? c.HttpHost,
            HttpPort = Int(env, "KIOU_HTTP_PORT", DefaultHttpPort, -1, 65535),
            DataDir = env("KIOU_DATA_DIR") ?? c.DataDir,
            NodeId = Int(env, "KIOU_NODE_ID", c.NodeId, 0, int.MaxValue),
            AutoCreateTopics = Bool(env, "KIOU_AUTO_CREATE_TOPICS", c.AutoCreateTopics),
            DefaultPartitions = Int(env, "KIOU_NUM_PARTITIONS", c.DefaultPartitions, 1, 100000),
            IoMode = IoModeOf(env("KIOU_IO")),
            UringWrites = UringWritesOf(env("KIOU_URING_WRITES")),
            Flush = FlushOf(env("KIOU_FLUSH")),
            MaxRequestBytes = Int(env, "KIOU_SOCKET_REQUEST_MAX_BYTES", c.MaxRequestBytes, 1024, int.MaxValue),
            MaxInFlightBytesPerConnection = Int(env, "KIOU_MAX_INFLIGHT_BYTES_PER_CONNECTION", (int)c.MaxInFlightBytesPerConnection, 65536, int.MaxValue),
            QueuedMaxRequestBytes = Int(env, "KIOU_QUEUED_MAX_REQUEST_BYTES", (int)c.QueuedMaxRequestBytes, 65536, int.MaxValue),
            FetchMaxBytes = Int(env, "KIOU_FETCH_MAX_BYTES", c.FetchMaxBytes, 1024, int.MaxValue),
            FetchZeroCopy = Bool(env, "KIOU_FETCH_ZERO_COPY", c.FetchZeroCopy),
            MessageMaxBytes = Int(env, "KIOU_MESSAGE_MAX_BYTES", c.MessageMaxBytes, 0, int.MaxValue),
            ProducerIdExpirationMs = Int(env, "KIOU_PRODUCER_ID_EXPIRATION_MS", (int)c.ProducerIdExpirationMs, 1, int.MaxValue),
            MaxProducersPerPartition = Int(env, "KIOU_MAX_PRODUCERS_PER_PARTITION", c.MaxProducersPerPartition, 1, int.MaxValue),
            RetentionCheckIntervalMs = Int(env, "KIOU_RETENTION_CHECK_INTERVAL_MS", (int)c.RetentionCheckIntervalMs, 1, int.MaxValue),
            MaxPartitions = string.IsNullOrEmpty(env("KIOU_MAX_PARTITIONS")) ? null : Int(env, "KIOU_MAX_PARTITIONS", 0, 1, 1_000_000),
            MaxOpenSegmentFiles = Int(env, "KIOU_MAX_OPEN_SEGMENT_FILES", c.MaxOpenSegmentFiles, 1, 1 << 20),
            ReadCacheBytes = Int(env, "KIOU_READ_CACHE_BYTES", (int)c.ReadCacheBytes, 0, int.MaxValue),
            MaxConnections = Int(env, "KIOU_MAX_CONNECTIONS", c.MaxConnections, 1, int.MaxValue),
            MaxConnectionsPerIp = Int(env, "KIOU_MAX_CONNECTIONS_PER_IP", c.MaxConnectionsPerIp, 1, int.MaxValue),
            ConnectionsMaxIdleMs = IdleMsOf(env),
            RequestArrivalTimeoutMs = Int(env, "KIOU_REQUEST_ARRIVAL_TIMEOUT_MS", (int)c.RequestArrivalTimeoutMs, 1, int.MaxValue),
        };
        var cl = c.Cleaner;
        c = c with
        {
            Cleaner = cl with
            {
                Enable = Bool(env, "KIOU_LOG_CLEANER_ENABLE", cl.Enable),
                DedupeBufferBytes = Int(env, "KIOU_LOG_CLEANER_DEDUPE_BUFFER_SIZE", cl.DedupeBufferBytes, 1 << 16, int.MaxValue),
                IoMaxBytesPerSecond = Int(env, "KIOU_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND", (int)cl.IoMaxBytesPerSecond, 1 << 16, int.MaxValue),
                BackoffMs = Int(env, "KIOU_LOG_CLEANER_BACKOFF_MS", (int)cl.BackoffMs, 1, int.MaxValue),
                TestSwapDelayMs = Int(env, "KIOU_TEST_CLEANER_SWAP_DELAY_MS", 0, 0, 600_000),
            },
        };
        var g = c.Groups;
        c = c with
        {
            Groups = g with
            {
                MinSessionTimeoutMs = Int(env, "KIOU_GROUP_MIN_SESSION_TIMEOUT_MS", g.MinSessionTimeoutMs, 1, int.MaxValue),
                MaxSessionTimeoutMs = Int(env, "KIOU_GROUP_MAX_SESSION_TIMEOUT_MS", g.MaxSessionTimeoutMs, 1, int.MaxValue),
                InitialRebalanceDelayMs = Int(env, "KIOU_GROUP_INITIAL_REBALANCE_DELAY_MS", g.InitialRebalanceDelayMs, 0, int.MaxValue),
                MaxSize = Int(env, "KIOU_GROUP_MAX_SIZE", g.MaxSize, 1, int.MaxValue),
                OffsetsRetentionMs = 60_000L * Int(env, "KIOU_OFFSETS_RETENTION_MINUTES", (int)(g.OffsetsRetentionMs / 60_000), 1, int.MaxValue),
                OffsetsRetentionCheckIntervalMs = Int(env, "KIOU_OFFSETS_RETENTION_CHECK_INTERVAL_MS", (int)g.OffsetsRetentionCheckIntervalMs, 1, int.MaxValue),
                OffsetMetadataMaxBytes = Int(env, "KIOU_OFFSET_METADATA_MAX_BYTES", g.OffsetMetadataMaxBytes, 0, 1024 * 1024),
                OffsetsTopicPartitions = Int(env, "KIOU_OFFSETS_TOPIC_NUM_PARTITIONS", g.OffsetsTopicPartitions, 1, 1000),
            },
        };
        var tx = c.Transactions;
        c = c with
        {
            Transactions = tx with
            {
                MaxTimeoutMs = Int(env, "KIOU_TRANSACTION_MAX_TIMEOUT_MS", tx.MaxTimeoutMs, 1, int.MaxValue),
                AbortTimedOutIntervalMs = Int(env, "KIOU_TRANSACTION_ABORT_TIMED_OUT_CLEANUP_INTERVAL_MS", tx.AbortTimedOutIntervalMs, 1, int.MaxValue),
                StateLogPartitions = Int(env, "KIOU_TRANSACTION_STATE_LOG_NUM_PARTITIONS", tx.StateLogPartitions, 1, 1000),
                PartitionVerificationEnable = Bool(env, "KIOU_TRANSACTION_PARTITION_VERIFICATION_ENABLE", tx.PartitionVerificationEnable),
            },
        };
        c = c with
        {
            Sasl = new Kiou.Broker.Security.SaslSettings
            {
                EnabledMechanisms = Kiou.Broker.Security.SaslSettings.MechanismsOf(env("KIOU_SASL_ENABLED_MECHANISMS")),
                PlainUsersFile = env("KIOU_SASL_PLAIN_USERS_FILE") is { Length: > 0 } plain ? plain : null,
                ScramUsersFile = env("KIOU_SASL_SCRAM_USERS_FILE") is { Length: > 0 } scram ? scram : null,
                ConnectionsMaxReauthMs = Int(env, "KIOU_CONNECTIONS_MAX_REAUTH_MS", 0, 0, int.MaxValue),
                FailedAuthenticationDelayMs = Int(env, "KIOU_CONNECTION_FAILED_AUTHENTICATION_DELAY_MS", 100, 0, 60_000),
            },
            Acls = new Kiou.Broker.Security.AclSettings
            {
                Enabled = AuthorizerOf(env("KIOU_AUTHORIZER")),
                SuperUsers = SuperUsersOf(env("KIOU_SUPER_USERS")),
                AllowEveryoneIfNoAclFound = Bool(env, "KIOU_ALLOW_EVERYONE_IF_NO_ACL_FOUND", false),
            },
        };
        string? listeners = env("KIOU_LISTENERS");
        if (!string.IsNullOrWhiteSpace(listeners))
            c = c with { Listeners = Kiou.Broker.Security.BrokerListener.Parse(listeners, env("KIOU_LISTENER_SECURITY_PROTOCOL_MAP"), env("KIOU_ADVERTISED_LISTENERS"), c.AdvertisedHost) };
        else if (!string.IsNullOrWhiteSpace(env("KIOU_ADVERTISED_LISTENERS")) || !string.IsNullOrWhiteSpace(env("KIOU_LISTENER_SECURITY_PROTOCOL_MAP")))
            throw new ConfigException("KIOU_ADVERTISED_LISTENERS and KIOU_LISTENER_SECURITY_PROTOCOL_MAP need KIOU_LISTENERS; set it (e.g. PLAINTEXT://127.0.0.1:9092) or unset them");
        c = c with
        {
            Tls = new Kiou.Broker.Security.TlsSettings
            {
                CertificateLocation = NullIfEmpty(env("KIOU_SSL_CERTIFICATE_LOCATION")),
                KeyLocation = NullIfEmpty(env("KIOU_SSL_KEY_LOCATION")),
                KeyPassword = NullIfEmpty(env("KIOU_SSL_KEY_PASSWORD")),
                CaLocation = NullIfEmpty(env("KIOU_SSL_CA_LOCATION")),
                ClientAuth = Kiou.Broker.Security.TlsSettings.ClientAuthOf(env("KIOU_SSL_CLIENT_AUTH")),
            },
        };
        if (c.Groups.MinSessionTimeoutMs > c.Groups.MaxSessionTimeoutMs)
            throw new ConfigException($"KIOU_GROUP_MIN_SESSION_TIMEOUT_MS ({c.Groups.MinSessionTimeoutMs}) is above KIOU_GROUP_MAX_SESSION_TIMEOUT_MS ({c.Groups.MaxSessionTimeoutMs})");
        return c;
    }

    static bool AuthorizerOf(string? v) => v switch
    {
        null or "" or "none" => false,
        "standard" or "org.apache.kafka.metadata.authorizer.StandardAuthorizer" => true,
        _ => throw new ConfigException($"KIOU_AUTHORIZER={v} is not valid: use none (no ACL checks) or standard (Kafka's StandardAuthorizer)"),
    };

    static string[] SuperUsersOf(string? v)
    {
        if (v is null or "" or "none")
            return [];
        var users = v.Split(';', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        foreach (var u in users)
        {
            if (Kiou.Broker.Security.Acls.ParsePrincipal(u) is null)
                throw new ConfigException($"KIOU_SUPER_USERS={v} is not valid: '{u}' is not a principal; use Type:Name entries separated by ';', e.g. User:admin;User:ops");
        }
        return users;
    }
    static string? NullIfEmpty(string? v) => string.IsNullOrEmpty(v) ? null : v;

    static long IdleMsOf(Func<string, string?> env)
    {
        int ms = Int(env, "KIOU_CONNECTIONS_MAX_IDLE_MS", 600_000, -1, int.MaxValue);
        if (ms == 0)
            throw new ConfigException("KIOU_CONNECTIONS_MAX_IDLE_MS=0 is not valid: use a number of milliseconds above 0, or -1 to never close idle connections");
        return ms;
    }

    static UringWriteMode UringWritesOf(string? v) => v switch
    {
        null or "" or "direct" => UringWriteMode.Direct,
        "ring" or "buffered" => UringWriteMode.Ring,
        "inline" => UringWriteMode.Inline,
        _ => throw new ConfigException($"KIOU_URING_WRITES={v} is not valid: use direct (O_DIRECT pages, the default), ring (buffered IORING_OP_WRITE) or inline (pwritev on the ring thread)"),
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
