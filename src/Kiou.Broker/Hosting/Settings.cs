using System.Text;

namespace Kiou.Broker.Hosting;

/// <summary>One operator setting: its environment variable, its default as README shows it, and what it does
/// (Markdown, the README's wording).</summary>
public sealed record Setting(string Name, string Default, string Meaning);

/// <summary>
/// Every KIOU_* setting, the one source of `kiou --help` and of README's settings table (a test compares them).
/// A new setting is one entry here plus its parsing in <see cref="BrokerConfig.FromEnvironment"/>; a test fails
/// when either lacks the other.
/// </summary>
public static class Settings
{
    public static readonly IReadOnlyList<Setting> All =
    [
        new("KIOU_HOST", "127.0.0.1",
            "broker listener address"),
        new("KIOU_PORT", "9092",
            "broker listener port (0: any free port)"),
        new("KIOU_CONTROLLER_HOST", "127.0.0.1",
            "controller listener address"),
        new("KIOU_CONTROLLER_PORT", "9093",
            "controller listener port"),
        new("KIOU_HTTP_HOST", "127.0.0.1",
            "HTTP listener address (the web console at /, /metrics, /healthz, /readyz)"),
        new("KIOU_HTTP_PORT", "9644",
            "HTTP listener port (0: any free port; -1: no HTTP listener)"),
        new("KIOU_ADVERTISED_HOST", "KIOU_HOST",
            "host name put in Metadata answers; clients must be able to reach it"),
        new("KIOU_DATA_DIR", "./data",
            "where partition logs and metadata live"),
        new("KIOU_NODE_ID", "1",
            "this node's broker id"),
        new("KIOU_AUTO_CREATE_TOPICS", "true",
            "create unknown topics when a client's Metadata request allows it (Kafka's `auto.create.topics.enable`)"),
        new("KIOU_NUM_PARTITIONS", "1",
            "partitions of auto-created topics and of CreateTopics with -1"),
        new("KIOU_MAX_PARTITIONS", "10000",
            "partitions of all topics together; CreateTopics and CreatePartitions beyond it get INVALID_PARTITIONS before anything is written. Each partition being written keeps its active segment open (two descriptors with `KIOU_URING_WRITES=direct`; one idle for 10 s gives them up, see `KIOU_MAX_OPEN_SEGMENT_FILES`): the broker raises its soft descriptor limit to the hard one at start-up, and when this is unset lowers the default to fit that limit (less 1024), with a warning"),
        new("KIOU_IO", "auto",
            "`uring`, `sync`, or `auto` (io_uring, falling back to pwrite with one warning)"),
        new("KIOU_URING_WRITES", "direct",
            "io_uring mode only: `direct` (appends are staged in page-aligned memory and written a round of whole pages at a time through an O_DIRECT descriptor, skipping the page cache; falls back to `ring` per file, with one log line, where the file system refuses O_DIRECT), `ring` (each append is a buffered IORING_OP_WRITE/WRITEV) or `inline` (the ring thread writes them itself with pwritev; fsyncs stay on the ring); see docs/design/io_uring.md"),
        new("KIOU_MAX_INFLIGHT_BYTES_PER_CONNECTION", "16777216",
            "request bytes read from one connection and not yet answered before the broker stops reading from it (a client pipelining large produce requests waits in TCP, not in broker memory); one larger request is still read"),
        new("KIOU_QUEUED_MAX_REQUEST_BYTES", "33554432",
            "the same bound for all connections of a listener together (Kafka's `queued.max.request.bytes`)"),
        new("KIOU_MAX_CONNECTIONS", "10000",
            "connections per listener (Kafka's `max.connections`, which Kafka counts broker-wide). At the limit a new connection closes the least recently active idle one (no request in flight), with an INFO line naming both addresses, so idle connections never lock out a working client; while every connection has a request in flight the new one waits to be accepted, as in Kafka"),
        new("KIOU_MAX_CONNECTIONS_PER_IP", "2147483647",
            "connections from one client address per listener (Kafka's `max.connections.per.ip`); one more is closed at once, with an INFO line"),
        new("KIOU_CONNECTIONS_MAX_IDLE_MS", "600000",
            "a connection with no request in flight that has received nothing and been answered nothing for this long is closed (Kafka's `connections.max.idle.ms`); `-1`: never"),
        new("KIOU_REQUEST_ARRIVAL_TIMEOUT_MS", "30000",
            "once the first byte of a request has arrived, the whole request must arrive within this time, or the connection is closed with a WARN line (a stalled or trickling client cannot hold a buffer); the default is the Kafka clients' `request.timeout.ms`"),
        new("KIOU_FLUSH", "roll",
            "when appends are fsynced: `roll` (at segment roll), a number of milliseconds, or `always` (acks=all answers only once durable)"),
        new("KIOU_SOCKET_REQUEST_MAX_BYTES", "104857600",
            "largest request accepted; larger ones close the connection. A request's buffer grows as its bytes arrive, so a declared size alone takes no memory"),
        new("KIOU_FETCH_MAX_BYTES", "57671680",
            "cap on one Fetch response"),
        new("KIOU_FETCH_ZERO_COPY", "true",
            "Fetch sends record data from the segment files with sendfile(2); `false` reads it into memory first (docs/design/request-path.md)"),
        new("KIOU_MAX_OPEN_SEGMENT_FILES", "1024",
            "descriptors of sealed segments kept open for reads, broker-wide: a sealed segment closes its descriptor once durable, reads reopen it on demand and the least recently read are closed beyond this number (a read or sendfile in flight keeps its own until done). An active segment keeps its own descriptor (and, with `KIOU_URING_WRITES=direct`, its O_DIRECT one) while it is written; after 10 s without appends, with every write finished and its data fdatasync'ed, both close and its descriptor joins this cache, and the next append reopens them. Opening failing (EMFILE) fails that fetch, or that append, with KAFKA_STORAGE_ERROR"),
        new("KIOU_READ_CACHE_BYTES", "83886080",
            "memory for recently written record data, broker-wide, so that consumers a little behind the producers read it from memory: with `KIOU_URING_WRITES=direct` appends skip the page cache, and their written 64 KiB blocks stay here, oldest out first, instead of being freed, for partitions read in the last 5 minutes (a partition nobody reads costs no memory); taken only as data arrives, and given back once written more than 60 s ago. `0` turns it off. Fetches of data not held read it from the files and ask the kernel to read 8 MiB ahead. Unused with `KIOU_IO=sync` or other write modes, whose appends stay in the page cache (docs/design/read-cache.md)"),
        new("KIOU_MESSAGE_MAX_BYTES", "1048588",
            "broker default for `max.message.bytes`"),
        new("KIOU_RETENTION_CHECK_INTERVAL_MS", "300000",
            "how often retention deletes old segments"),
        new("KIOU_LOG_CLEANER_ENABLE", "true",
            "Kafka's `log.cleaner.enable`: one background thread compacts topics whose `cleanup.policy` includes `compact` (docs/design/compaction.md); `false` leaves them growing"),
        new("KIOU_LOG_CLEANER_DEDUPE_BUFFER_SIZE", "33554432",
            "memory of the cleaner's key → offset map (Kafka's `log.cleaner.dedupe.buffer.size`, 128 MiB there), allocated at the first cleaning: 28 bytes per key slot, filled to 90%, so about 1.1 million distinct keys per pass; a dirty section with more keys is cleaned in several passes"),
        new("KIOU_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND", "33554432",
            "the cleaner's reads plus writes per second (Kafka's `log.cleaner.io.max.bytes.per.second`, unlimited there): 32 MiB/s is a small share of an SSD's sequential bandwidth, so compaction on a 2-core node leaves produce latency alone; raise it on faster disks"),
        new("KIOU_LOG_CLEANER_BACKOFF_MS", "15000",
            "pause of the cleaner when no partition needs cleaning (Kafka's `log.cleaner.backoff.ms`)"),
        new("KIOU_PRODUCER_ID_EXPIRATION_MS", "86400000",
            "Kafka's producer.id.expiration.ms: a partition forgets an idempotent producer after this long without a batch from it there (checked every 10 minutes); its next batch is then accepted at any sequence"),
        new("KIOU_MAX_PRODUCERS_PER_PARTITION", "100000",
            "idempotent producer ids a partition remembers (after Redpanda's `max_concurrent_producer_ids`; Kafka has only the expiry above). A batch from a new producer id beyond it evicts the least recently used producer ids of that partition, never one with a transaction open there, with a WARN at most once a minute per partition; an evicted producer is unknown, as after expiry, so a retry of its earlier batch is appended again instead of being recognised. Bounds the memory a client creating producer ids in a loop can take: about 300 bytes per producer id, some 30 MB per partition at the default. Also applied when the state is rebuilt at start-up"),
        new("KIOU_GROUP_MIN_SESSION_TIMEOUT_MS", "1000",
            "shortest session timeout a JoinGroup may ask for (Kafka's `group.min.session.timeout.ms`, whose default is 6000; KIOU allows shorter ones for tests and short-lived consumers); shorter ones get INVALID_SESSION_TIMEOUT"),
        new("KIOU_GROUP_MAX_SESSION_TIMEOUT_MS", "1800000",
            "longest session timeout (Kafka's `group.max.session.timeout.ms`)"),
        new("KIOU_GROUP_INITIAL_REBALANCE_DELAY_MS", "0",
            "how long the first rebalance of an empty group waits for more joiners, extended per joiner up to the rebalance timeout (Kafka's `group.initial.rebalance.delay.ms`: 0 as in Kafka's shipped server.properties for development; Kafka's production default is 3000, worth setting when many consumers start together)"),
        new("KIOU_GROUP_MAX_SIZE", "10000",
            "members (and members awaiting their id) per group; more get GROUP_MAX_SIZE_REACHED"),
        new("KIOU_OFFSETS_RETENTION_MINUTES", "10080",
            "committed offsets of an empty group expire this long after it became empty (offsets-only groups: after the commit)"),
        new("KIOU_OFFSETS_RETENTION_CHECK_INTERVAL_MS", "600000",
            "how often expired offsets are removed"),
        new("KIOU_OFFSET_METADATA_MAX_BYTES", "4096",
            "longest commit metadata string; longer ones get OFFSET_METADATA_TOO_LARGE"),
        new("KIOU_OFFSETS_TOPIC_NUM_PARTITIONS", "4",
            "partitions of the internal topic `__consumer_offsets` when the first consumer group uses it (Kafka's `offsets.topic.num.partitions`, whose default 50 spreads coordinators over brokers; each partition costs a few files and a descriptor: docs/design/groups.md has the measurements); an existing topic keeps its count, since groups map to partitions by it"),
        new("KIOU_TRANSACTION_MAX_TIMEOUT_MS", "900000",
            "longest `transaction.timeout.ms` a transactional producer may ask for (Kafka's `transaction.max.timeout.ms`); longer ones get INVALID_TRANSACTION_TIMEOUT from InitProducerId"),
        new("KIOU_TRANSACTION_ABORT_TIMED_OUT_CLEANUP_INTERVAL_MS", "10000",
            "how often the coordinator aborts transactions open longer than their timeout (Kafka's `transaction.abort.timed.out.transaction.cleanup.interval.ms`)"),
        new("KIOU_TRANSACTION_STATE_LOG_NUM_PARTITIONS", "50",
            "partitions of the internal topic `__transaction_state` when the first transactional producer creates it (Kafka's `transaction.state.log.num.partitions`); an existing topic keeps its count"),
        new("KIOU_TRANSACTION_PARTITION_VERIFICATION_ENABLE", "true",
            "KIP-890 (Kafka's `transaction.partition.verification.enable`): a transactional batch that would start a transaction on a partition is appended only once the coordinator confirms the partition is in the producer's open transaction, and not if a marker was written in between; otherwise INVALID_TXN_STATE (NOT_ENOUGH_REPLICAS, retried, while the coordinator is busy). A late or stray batch then cannot leave a transaction nobody ends, which would hold the last stable offset and block read_committed consumers. `false` appends such batches unchecked"),
        new("KIOU_LOG_LEVEL", "info",
            "`debug`, `info`, `warn` or `error`"),
        new("KIOU_LOG_FORMAT", "text",
            "`text` (one line per event) or `json` (one JSON object per line, with `timestamp`, `level` and `message`, for log shippers); both on standard error"),
        new("KIOU_SASL_ENABLED_MECHANISMS", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            "SASL mechanisms served on SASL_PLAINTEXT and SASL_SSL listeners (Kafka's `sasl.enabled.mechanisms`); a client asking for another gets UNSUPPORTED_SASL_MECHANISM with this list"),
        new("KIOU_SASL_PLAIN_USERS_FILE", "(none)",
            "file of SASL/PLAIN users, one `name:password` per line (`#` comments and blank lines ignored); read again when it changes. Unset: PLAIN logins all fail. Keep it readable by the broker only"),
        new("KIOU_SASL_SCRAM_USERS_FILE", "(none)",
            "SCRAM users created at start, one `name:SCRAM-SHA-256:password` or `name:SCRAM-SHA-512:password` per line (as Kafka's `kafka-storage format --add-scram`); a user that already has a credential for that mechanism keeps it. Credentials live salted in `scram-credentials.json` in the data dir and are managed with AlterUserScramCredentials (`kafka-configs.sh --alter --add-config 'SCRAM-SHA-256=[password=...]' --entity-type users`)"),
        new("KIOU_CONNECTIONS_MAX_REAUTH_MS", "0",
            "SASL session lifetime told to clients (Kafka's `connections.max.reauth.ms`): a client re-authenticates on its connection before it ends, and a request after it closes the connection; 0: sessions never expire"),
        new("KIOU_CONNECTION_FAILED_AUTHENTICATION_DELAY_MS", "100",
            "a failed SASL authentication is answered (SASL_AUTHENTICATION_FAILED) this long after it failed, then the connection closes (Kafka's `connection.failed.authentication.delay.ms`), which slows password guessing"),
        new("KIOU_AUTHORIZER", "none",
            "`none` (every client may do everything; the ACL APIs answer SECURITY_DISABLED) or `standard` (Kafka's StandardAuthorizer: every request is checked against the ACLs, kept in `__cluster/acls.json` and managed with CreateAcls/DescribeAcls/DeleteAcls, e.g. `kafka-acls.sh`); see docs/design/security-acls.md"),
        new("KIOU_SUPER_USERS", "none",
            "principals allowed everything whatever the ACLs say, separated by `;` (Kafka's `super.users`, e.g. `User:admin;User:ops`); `none`: no one"),
        new("KIOU_ALLOW_EVERYONE_IF_NO_ACL_FOUND", "false",
            "with `KIOU_AUTHORIZER=standard`: a resource that no ACL names is open to everyone (Kafka's `allow.everyone.if.no.acl.found`); `false` refuses it to all but super users"),
        new("KIOU_LISTENERS", "",
            "broker listeners as Kafka's `listeners`: `NAME://host:port`, comma separated (e.g. `PLAINTEXT://127.0.0.1:9092,SSL://0.0.0.0:9094`); each name maps to a protocol through `KIOU_LISTENER_SECURITY_PROTOCOL_MAP`. Unset: one PLAINTEXT listener on `KIOU_HOST`:`KIOU_PORT`. A listener on a non-loopback address that authenticates nobody (PLAINTEXT, or SSL without `KIOU_SSL_CLIENT_AUTH=required`) starts with a WARN: every API, DeleteTopics included, is open to whoever reaches it (docs/design/security-tls.md)"),
        new("KIOU_LISTENER_SECURITY_PROTOCOL_MAP", "",
            "Kafka's `listener.security.protocol.map`: `NAME:PROTOCOL`, comma separated, PROTOCOL one of `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`. Unset: each of those four names maps to itself"),
        new("KIOU_ADVERTISED_LISTENERS", "",
            "Kafka's `advertised.listeners`: `NAME://host:port` per listener, what Metadata, FindCoordinator and DescribeCluster tell a client that came in on that listener. A listener not named here advertises `KIOU_ADVERTISED_HOST` (or its bind address) and its bound port"),
        new("KIOU_SSL_CERTIFICATE_LOCATION", "",
            "PEM file of the SSL and SASL_SSL listeners' certificate, then its intermediates. Reloaded when the file changes (checked at most once a second, on new connections; a reload that fails keeps the previous certificate, with a WARN)"),
        new("KIOU_SSL_KEY_LOCATION", "",
            "PEM file of that certificate's private key; reloaded with it"),
        new("KIOU_SSL_KEY_PASSWORD", "",
            "password of an encrypted (PKCS#8) key"),
        new("KIOU_SSL_CA_LOCATION", "",
            "PEM file of the CAs trusted for client certificates (unset: the system's CAs)"),
        new("KIOU_SSL_CLIENT_AUTH", "none",
            "Kafka's `ssl.client.auth`: `none`, `requested` (a certificate is asked for; one presented must be valid) or `required` (a connection without a valid client certificate fails its handshake). A client certificate makes the connection's principal `User:` and its subject (`User:CN=alice,O=Example`), as Kafka's default principal builder"),
    ];

    /// <summary>Test-only broker seams (e.g. KIOU_TEST_CLEANER_SWAP_DELAY_MS): accepted, not listed in --help.</summary>
    public const string TestPrefix = "KIOU_TEST_";

    /// <summary>Variables read by the test suites and soak scripts, not by the broker. A broker they start inherits
    /// them, so they must not stop it.</summary>
    public static readonly IReadOnlyList<string> HarnessVariables =
    [
        "KIOU_CLEANER_KILLS", "KIOU_CRASH_CYCLES", "KIOU_CRASH_REPORT", "KIOU_EOS_KILLS",
        "KIOU_IDEMPOTENCE_CYCLES", "KIOU_IDEMPOTENCE_RECORDS", "KIOU_STORAGE_SEEDS",
    ];

    public static bool IsKnown(string name) =>
        name.StartsWith(TestPrefix, StringComparison.Ordinal)
        || HarnessVariables.Contains(name)
        || All.Any(s => s.Name == name);

    /// <summary>The first KIOU_* variable among <paramref name="names"/> that no one reads, as one sentence with the
    /// closest known name; null when all are known. A typo must not leave the broker running on a default.</summary>
    public static string? FindUnknown(IEnumerable<string> names)
    {
        foreach (string name in names.Where(n => n.StartsWith("KIOU_", StringComparison.Ordinal)).Order(StringComparer.Ordinal))
        {
            if (IsKnown(name))
                continue;
            string closest = All.MinBy(s => Distance(name, s.Name))!.Name;
            return $"{name} is not a KIOU setting (did you mean {closest}?); kiou --help lists them all";
        }
        return null;
    }

    /// <summary>README's settings table, as it must read between its markers.</summary>
    public static string MarkdownTable()
    {
        var sb = new StringBuilder();
        sb.Append("| Variable | Default | Meaning |\n|---|---|---|\n");
        foreach (var s in All)
            sb.Append($"| `{s.Name}` | {(s.Default.Length == 0 ? "unset" : $"`{s.Default}`")} | {s.Meaning} |\n");
        return sb.ToString();
    }

    public static string HelpText()
    {
        var sb = new StringBuilder();
        sb.Append("""
            Usage: kiou [--help | --version]

            KIOU, a single-node broker speaking Kafka's wire protocol. It takes no arguments: every setting is a
            KIOU_* environment variable, and an unknown variable or a value out of range stops it with one line
            (exit 1). Logs go to standard error.

            Settings (default in brackets):

            """);
        foreach (var s in All)
        {
            sb.Append($"  {s.Name} [{s.Default}]\n");
            Wrap(sb, s.Meaning.Replace("`", "", StringComparison.Ordinal), "      ", 100);
        }
        return sb.ToString();
    }

    static void Wrap(StringBuilder sb, string text, string indent, int width)
    {
        int col = 0;
        foreach (string word in text.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            if (col > 0 && col + 1 + word.Length > width)
            {
                sb.Append('\n');
                col = 0;
            }
            if (col == 0)
            {
                sb.Append(indent).Append(word);
                col = indent.Length + word.Length;
            }
            else
            {
                sb.Append(' ').Append(word);
                col += 1 + word.Length;
            }
        }
        sb.Append('\n');
    }

    static int Distance(string a, string b)
    {
        var prev = new int[b.Length + 1];
        var cur = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++)
            prev[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            cur[0] = i;
            for (int j = 1; j <= b.Length; j++)
                cur[j] = Math.Min(Math.Min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (prev, cur) = (cur, prev);
        }
        return prev[b.Length];
    }
}
