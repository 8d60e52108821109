using Kiou.Broker.Groups;
using Kiou.Broker.Logs;

namespace Kiou.Broker.Http;

/// <summary>A committed partition of a consumer group: lag is the high watermark minus the committed offset.</summary>
public readonly record struct PartitionLag(string Topic, int Partition, long Committed, long HighWatermark, long Lag);

/// <summary>
/// Figures read at request time by both the /metrics gauges and the web console's JSON, so the two cannot disagree
/// on what lag means.
/// </summary>
public static class BrokerSnapshot
{
    /// <summary>The committed partitions of <paramref name="group"/> whose partition still exists, appended to
    /// <paramref name="into"/>. The caller holds the group's lock.</summary>
    public static void Lags(Group group, LogManager logs, List<PartitionLag> into)
    {
        foreach (var ((topic, partition), committed) in group.Offsets)
        {
            if (logs.Get(topic, partition) is not { } log)
                continue;
            long hw = log.HighWatermark;
            into.Add(new PartitionLag(topic, partition, committed.Offset, hw, Math.Max(0, hw - committed.Offset)));
        }
    }
}
