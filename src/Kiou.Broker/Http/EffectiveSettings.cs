using System.Globalization;
using Kiou.Broker.Hosting;

namespace Kiou.Broker.Http;

/// <summary>
/// The value in effect of each <see cref="Settings.All"/> entry, read from the running broker's config (so a port 0
/// shows the port bound, a partition limit lowered to the descriptor limit shows the lowered one). A setting the
/// config does not carry (the log's) shows its environment variable, else its default.
/// </summary>
public static class EffectiveSettings
{
    public static string ValueOf(BrokerConfig c, string name, Func<string, string?> env)
    {
        if (FromConfig(c, name) is { } value)
            return value;
        if (env(name) is { Length: > 0 } set)
            return set;
        return Settings.All.FirstOrDefault(s => s.Name == name)?.Default ?? "";
    }

    /// <summary>Null for a setting the config does not carry.</summary>
    internal static string? FromConfig(BrokerConfig c, string name) => name switch
    {
        "KIOU_HOST" => c.Host,
        "KIOU_PORT" => N(c.Port),
        "KIOU_CONTROLLER_HOST" => c.ControllerHost,
        "KIOU_CONTROLLER_PORT" => N(c.ControllerPort),
        "KIOU_HTTP_HOST" => c.HttpHost,
        "KIOU_HTTP_PORT" => N(c.HttpPort),
        "KIOU_ADVERTISED_HOST" => c.EffectiveAdvertisedHost,
        "KIOU_LISTENERS" => string.Join(",", c.EffectiveListeners),
        "KIOU_LISTENER_SECURITY_PROTOCOL_MAP" => string.Join(",", c.EffectiveListeners.Select(l => $"{l.Name}:{Kiou.Broker.Security.BrokerListener.ProtocolName(l.Protocol)}")),
        "KIOU_ADVERTISED_LISTENERS" => string.Join(",", c.EffectiveListeners.Select(l => $"{l.Name}://{l.EffectiveAdvertisedHost}:{l.EffectiveAdvertisedPort}")),
        "KIOU_SSL_CERTIFICATE_LOCATION" => c.Tls.CertificateLocation ?? "",
        "KIOU_SSL_KEY_LOCATION" => c.Tls.KeyLocation ?? "",
        // A secret: the console shows only whether it is set.
        "KIOU_SSL_KEY_PASSWORD" => c.Tls.KeyPassword is null ? "" : "(set)",
        "KIOU_SSL_CA_LOCATION" => c.Tls.CaLocation ?? "",
        "KIOU_SSL_CLIENT_AUTH" => c.Tls.ClientAuth.ToString().ToLowerInvariant(),
        "KIOU_DATA_DIR" => c.DataDir,
        "KIOU_NODE_ID" => N(c.NodeId),
        "KIOU_AUTO_CREATE_TOPICS" => B(c.AutoCreateTopics),
        "KIOU_NUM_PARTITIONS" => N(c.DefaultPartitions),
        "KIOU_MAX_PARTITIONS" => c.MaxPartitions is { } max ? N(max) : null,
        "KIOU_IO" => c.IoMode,
        "KIOU_URING_WRITES" => c.UringWrites.ToString().ToLowerInvariant(),
        "KIOU_MAX_INFLIGHT_BYTES_PER_CONNECTION" => N(c.MaxInFlightBytesPerConnection),
        "KIOU_QUEUED_MAX_REQUEST_BYTES" => N(c.QueuedMaxRequestBytes),
        "KIOU_MAX_CONNECTIONS" => N(c.MaxConnections),
        "KIOU_MAX_CONNECTIONS_PER_IP" => N(c.MaxConnectionsPerIp),
        "KIOU_CONNECTIONS_MAX_IDLE_MS" => N(c.ConnectionsMaxIdleMs),
        "KIOU_REQUEST_ARRIVAL_TIMEOUT_MS" => N(c.RequestArrivalTimeoutMs),
        "KIOU_FLUSH" => c.Flush.Mode switch
        {
            Kiou.Storage.FlushMode.Always => "always",
            Kiou.Storage.FlushMode.Interval => N(c.Flush.IntervalMs),
            _ => "roll",
        },
        "KIOU_SOCKET_REQUEST_MAX_BYTES" => N(c.MaxRequestBytes),
        "KIOU_FETCH_MAX_BYTES" => N(c.FetchMaxBytes),
        "KIOU_FETCH_ZERO_COPY" => B(c.FetchZeroCopy),
        "KIOU_MAX_OPEN_SEGMENT_FILES" => N(c.MaxOpenSegmentFiles),
        "KIOU_READ_CACHE_BYTES" => N(c.ReadCacheBytes),
        "KIOU_MESSAGE_MAX_BYTES" => N(c.MessageMaxBytes),
        "KIOU_RETENTION_CHECK_INTERVAL_MS" => N(c.RetentionCheckIntervalMs),
        "KIOU_LOG_CLEANER_ENABLE" => B(c.Cleaner.Enable),
        "KIOU_LOG_CLEANER_DEDUPE_BUFFER_SIZE" => N(c.Cleaner.DedupeBufferBytes),
        "KIOU_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND" => N(c.Cleaner.IoMaxBytesPerSecond),
        "KIOU_LOG_CLEANER_BACKOFF_MS" => N(c.Cleaner.BackoffMs),
        "KIOU_PRODUCER_ID_EXPIRATION_MS" => N(c.ProducerIdExpirationMs),
        "KIOU_MAX_PRODUCERS_PER_PARTITION" => N(c.MaxProducersPerPartition),
        "KIOU_GROUP_MIN_SESSION_TIMEOUT_MS" => N(c.Groups.MinSessionTimeoutMs),
        "KIOU_GROUP_MAX_SESSION_TIMEOUT_MS" => N(c.Groups.MaxSessionTimeoutMs),
        "KIOU_GROUP_INITIAL_REBALANCE_DELAY_MS" => N(c.Groups.InitialRebalanceDelayMs),
        "KIOU_GROUP_MAX_SIZE" => N(c.Groups.MaxSize),
        "KIOU_OFFSETS_RETENTION_MINUTES" => N(c.Groups.OffsetsRetentionMs / 60_000),
        "KIOU_OFFSETS_RETENTION_CHECK_INTERVAL_MS" => N(c.Groups.OffsetsRetentionCheckIntervalMs),
        "KIOU_OFFSET_METADATA_MAX_BYTES" => N(c.Groups.OffsetMetadataMaxBytes),
        "KIOU_OFFSETS_TOPIC_NUM_PARTITIONS" => N(c.Groups.OffsetsTopicPartitions),
        "KIOU_TRANSACTION_MAX_TIMEOUT_MS" => N(c.Transactions.MaxTimeoutMs),
        "KIOU_TRANSACTION_ABORT_TIMED_OUT_CLEANUP_INTERVAL_MS" => N(c.Transactions.AbortTimedOutIntervalMs),
        "KIOU_TRANSACTION_STATE_LOG_NUM_PARTITIONS" => N(c.Transactions.StateLogPartitions),
        "KIOU_TRANSACTION_PARTITION_VERIFICATION_ENABLE" => B(c.Transactions.PartitionVerificationEnable),
        "KIOU_SASL_ENABLED_MECHANISMS" => string.Join(',', c.Sasl.EnabledMechanisms),
        "KIOU_SASL_PLAIN_USERS_FILE" => c.Sasl.PlainUsersFile ?? "(none)",
        "KIOU_SASL_SCRAM_USERS_FILE" => c.Sasl.ScramUsersFile ?? "(none)",
        "KIOU_CONNECTIONS_MAX_REAUTH_MS" => N(c.Sasl.ConnectionsMaxReauthMs),
        "KIOU_CONNECTION_FAILED_AUTHENTICATION_DELAY_MS" => N(c.Sasl.FailedAuthenticationDelayMs),
        "KIOU_AUTHORIZER" => c.Acls.Enabled ? "standard" : "none",
        "KIOU_SUPER_USERS" => c.Acls.SuperUsers.Count == 0 ? "none" : string.Join(';', c.Acls.SuperUsers),
        "KIOU_ALLOW_EVERYONE_IF_NO_ACL_FOUND" => B(c.Acls.AllowEveryoneIfNoAclFound),
        _ => null,
    };

    static string N(long v) => v.ToString(CultureInfo.InvariantCulture);
    static string B(bool v) => v ? "true" : "false";
}
