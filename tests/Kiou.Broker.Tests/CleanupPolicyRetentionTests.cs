using Kiou.Broker.Controller;
using Kiou.Storage;

namespace Kiou.Broker.Tests;

/// <summary>
/// cleanup.policy decides whether retention.ms and retention.bytes delete segments, as in Kafka: with delete (the
/// default) or compact,delete they do; with compact alone they do not (the cleaner keeps the latest value per key).
/// </summary>
public sealed class CleanupPolicyRetentionTests
{
    [Theory]
    [InlineData(null, true)]
    [InlineData("delete", true)]
    [InlineData("compact", false)]
    [InlineData("compact,delete", true)]
    [InlineData("delete,compact", true)]
    public void Retention_deletes_only_when_the_cleanup_policy_includes_delete(string? policy, bool deletes)
    {
        var configs = new Dictionary<string, string>();
        if (policy is not null)
            configs["cleanup.policy"] = policy;
        LogConfig config = TopicConfigs.ToLogConfig(configs, new FlushPolicy(FlushMode.Interval, 1000, 0));
        Assert.Equal(deletes, config.DeleteRetention);
    }

    [Fact]
    public void The_compaction_configs_reach_the_log_config_with_Kafka_defaults()
    {
        LogConfig defaults = TopicConfigs.ToLogConfig(new Dictionary<string, string>(), FlushPolicy.Default);
        Assert.False(defaults.Compact);
        Assert.Equal(0.5, defaults.MinCleanableDirtyRatio);
        Assert.Equal(0, defaults.MinCompactionLagMs);
        Assert.Equal(long.MaxValue, defaults.MaxCompactionLagMs);
        Assert.Equal(86400000, defaults.DeleteRetentionMs);

        LogConfig set = TopicConfigs.ToLogConfig(new Dictionary<string, string>
        {
            ["cleanup.policy"] = "compact,delete",
            ["min.cleanable.dirty.ratio"] = "0.1",
            ["min.compaction.lag.ms"] = "5",
            ["max.compaction.lag.ms"] = "60000",
            ["delete.retention.ms"] = "1000",
        }, FlushPolicy.Default);
        Assert.True(set.Compact);
        Assert.True(set.DeleteRetention);
        Assert.Equal(0.1, set.MinCleanableDirtyRatio);
        Assert.Equal(5, set.MinCompactionLagMs);
        Assert.Equal(60000, set.MaxCompactionLagMs);
        Assert.Equal(1000, set.DeleteRetentionMs);
    }
}
