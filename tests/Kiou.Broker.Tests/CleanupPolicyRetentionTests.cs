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
}
