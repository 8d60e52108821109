using Kiou.Protocol;
using Kiou.Protocol.Messages;
using Kiou.Testing;
using static Kiou.Broker.Tests.RawWire;

namespace Kiou.Broker.Tests;

/// <summary>
/// Names starting with "__" belong to the broker (Kafka's internal topics and whatever it adds later): a Metadata
/// request that may auto-create topics never creates one, so a lag tool asking for __consumer_offsets cannot leave an
/// ordinary topic of that name behind. Ordinary names are still auto-created.
/// </summary>
public sealed class InternalTopicRulesTests
{
    [Fact]
    public async Task Metadata_auto_creation_never_creates_a_double_underscore_topic()
    {
        await using var broker = TestBroker.Start();
        using var s = await ConnectAsync(broker.Broker.BrokerEndPoint);
        string[] names = ["__consumer_offsets", "__transaction_state", "__schemas_of_someone", "ordinary"];
        var request = new MetadataRequest
        {
            Topics = names.Select(n => new MetadataRequest.MetadataRequestTopic { Name = n }).ToList(),
            AllowAutoTopicCreation = true,
        };
        var response = await SendAsync<MetadataResponse>(s, request, 3, 9, 1);
        foreach (string name in names[..3])
        {
            var t = Assert.Single(response.Topics, t => t.Name == name);
            Assert.Equal(ErrorCodes.UnknownTopicOrPartition, t.ErrorCode);
        }
        Assert.Equal(ErrorCodes.None, Assert.Single(response.Topics, t => t.Name == "ordinary").ErrorCode);

        // Asked again (Burrow polls): still nothing created.
        var again = await SendAsync<MetadataResponse>(s, new MetadataRequest { Topics = null }, 3, 9, 2);
        Assert.Equal(new[] { "ordinary" }, again.Topics.Select(t => t.Name!).Where(n => !n.StartsWith("__transaction", StringComparison.Ordinal)).ToArray());
    }
}
