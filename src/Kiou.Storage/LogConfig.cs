namespace Kiou.Storage;

/// <summary>When appended bytes are fdatasync'ed.</summary>
public enum FlushMode
{
    /// <summary>Only when a segment rolls, on <see cref="PartitionLog.FlushAsync"/> and at close (Kafka's default: rely on the page cache).</summary>
    Roll = 0,

    /// <summary>As Roll, plus the broker's timer calls <see cref="PartitionLog.FlushAsync"/> every <see cref="FlushPolicy.IntervalMs"/> (flush.ms).</summary>
    Interval = 1,

    /// <summary>After every append, group-committed: at most one fdatasync in flight per partition.</summary>
    Always = 2,
}

/// <summary>
/// Flush policy of a topic. <paramref name="Messages"/> is Kafka's flush.messages: once that many completed
/// messages are not yet durable, a flush is started (≤ 0 or long.MaxValue: off). <paramref name="IntervalMs"/>
/// (flush.ms) is read by the broker's timer, not by the log.
/// </summary>
public readonly record struct FlushPolicy(FlushMode Mode, long IntervalMs, long Messages)
{
    /// <summary>Kafka's defaults: flush.ms = flush.messages = long.MaxValue, i.e. flush at roll only.</summary>
    public static FlushPolicy Default => new(FlushMode.Roll, long.MaxValue, long.MaxValue);

    internal bool MessagesEnabled => Messages > 0 && Messages != long.MaxValue;
}

/// <summary>Topic-level log settings, with Kafka's defaults (README §7.11).</summary>
public sealed record LogConfig
{
    /// <summary>segment.bytes. Positions in a segment are int32, so values above int.MaxValue act as int.MaxValue.</summary>
    public long SegmentBytes { get; init; } = 1073741824;

    /// <summary>segment.ms: roll a non-empty active segment this long after it was created.</summary>
    public long SegmentMs { get; init; } = 604800000;

    /// <summary>retention.ms; -1 keeps segments forever.</summary>
    public long RetentionMs { get; init; } = 604800000;

    /// <summary>retention.bytes; -1 means no size limit.</summary>
    public long RetentionBytes { get; init; } = -1;

    /// <summary>cleanup.policy includes delete: retention.ms and retention.bytes delete old segments. As in Kafka, a
    /// compact-only topic keeps them whatever their age or size (they are the cleaner's to rewrite, never to drop).</summary>
    public bool DeleteRetention { get; init; } = true;

    /// <summary>cleanup.policy includes compact: the log cleaner keeps the latest record per key (docs/design/compaction.md),
    /// so every record needs a key (KIP-467).</summary>
    public bool Compact { get; init; }

    /// <summary>min.cleanable.dirty.ratio: the share of the log not yet cleaned above which the cleaner takes the partition.</summary>
    public double MinCleanableDirtyRatio { get; init; } = 0.5;

    /// <summary>min.compaction.lag.ms: records younger than this stay uncompacted.</summary>
    public long MinCompactionLagMs { get; init; }

    /// <summary>max.compaction.lag.ms: a record stays ineligible for compaction at most this long (whatever the dirty ratio).</summary>
    public long MaxCompactionLagMs { get; init; } = long.MaxValue;

    /// <summary>delete.retention.ms: how long tombstones and transaction markers stay after they were first cleaned.</summary>
    public long DeleteRetentionMs { get; init; } = 86400000;

    /// <summary>max.message.bytes: the largest batch (whole, compressed size) a producer may send.</summary>
    public int MaxMessageBytes { get; init; } = 1048588;

    /// <summary>message.timestamp.type=LogAppendTime: the log stamps its clock into every appended batch.</summary>
    public bool LogAppendTime { get; init; }

    /// <summary>index.interval.bytes: one sparse index entry about every this many bytes of log.</summary>
    public int IndexIntervalBytes { get; init; } = 4096;

    public FlushPolicy Flush { get; init; } = FlushPolicy.Default;

    /// <summary>Kafka's producer.id.expiration.ms (broker-wide, KIOU_PRODUCER_ID_EXPIRATION_MS): idle producers' state is dropped after it.</summary>
    public long ProducerIdExpirationMs { get; init; } = Producers.ProducerStateManager.DefaultProducerIdExpirationMs;

    /// <summary>
    /// Broker-wide KIOU_MAX_PRODUCERS_PER_PARTITION (Redpanda's max_concurrent_producer_ids): beyond it a new producer id
    /// evicts the least recently used ones. Read when the partition opens.
    /// </summary>
    public int MaxProducersPerPartition { get; init; } = Producers.ProducerStateManager.DefaultMaxProducers;

    internal int SegmentBytesEffective => (int)Math.Clamp(SegmentBytes, 1, int.MaxValue);

    /// <summary>segment.ms, shortened to max.compaction.lag.ms on a compacted topic as Kafka does: the active segment is
    /// never cleaned, so it must roll for its records to become cleanable in time.</summary>
    internal long RollMs => Compact && MaxCompactionLagMs > 0 && MaxCompactionLagMs < SegmentMs ? MaxCompactionLagMs : SegmentMs;
}
