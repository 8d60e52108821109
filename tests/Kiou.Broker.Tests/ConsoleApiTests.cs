using System.Globalization;
using System.Net;
using System.Text.Json;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Kiou.Broker.Hosting;
using Kiou.Broker.Http;

namespace Kiou.Broker.Tests;

/// <summary>The web console's JSON API without a browser: shapes and figures, escaping of what clients sent, bounds.</summary>
public sealed class ConsoleApiTests
{
    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    /// <summary>Group ids and client ids are any string a client sends.</summary>
    const string HostileGroup = "</script><script>alert('group')</script>";
    const string HostileClient = "<script>alert(\"client\")</script>";

    static async Task<(HttpStatusCode Status, JsonElement Json, string Text)> GetAsync(string url)
    {
        using var response = await Http.GetAsync(url);
        string text = await response.Content.ReadAsStringAsync();
        Assert.Equal("application/json; charset=utf-8", response.Content.Headers.ContentType?.ToString());
        return (response.StatusCode, JsonDocument.Parse(text).RootElement.Clone(), text);
    }

    static JsonElement Find(JsonElement array, string field, string value) =>
        array.EnumerateArray().Single(e => e.GetProperty(field).GetString() == value);

    [Fact]
    public async Task Api_shows_topics_groups_rates_and_settings_and_escapes_what_clients_sent()
    {
        await using var broker = TestBroker.Start(c => c with { HttpPort = 0 });
        string url = $"http://127.0.0.1:{broker.Broker.Http!.LocalEndPoint.Port}";
        const string topic = "api-demo";
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 2, new Dictionary<string, string> { ["retention.ms"] = "3600000" });
        using (var producer = Clients.Producer(broker.Bootstrap, Acks.All))
        {
            await Task.WhenAll(Enumerable.Range(0, 10).Select(i => producer.ProduceAsync(new TopicPartition(topic, i % 2),
                new Message<byte[]?, byte[]?> { Value = new byte[50] })));
        }
        using var consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
        {
            BootstrapServers = broker.Bootstrap,
            GroupId = HostileGroup,
            ClientId = HostileClient,
            EnableAutoCommit = false,
            AutoOffsetReset = AutoOffsetReset.Earliest,
        }).Build();
        consumer.Subscribe(topic);
        int read = 0;
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (read < 10)
        {
            Assert.True(DateTime.UtcNow < deadline, $"read {read} of 10 records in 60 s");
            if (consumer.Consume(TimeSpan.FromMilliseconds(200)) is { IsPartitionEOF: false, Message: not null })
                read++;
        }
        consumer.Commit([new TopicPartitionOffset(topic, 0, 3), new TopicPartitionOffset(topic, 1, 3)]);

        var (status, b, _) = await GetAsync(url + "/api/broker");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.False(string.IsNullOrEmpty(b.GetProperty("version").GetString()));
        Assert.Equal(JsonValueKind.Null, b.GetProperty("notReady").ValueKind);
        Assert.Equal(3, b.GetProperty("listeners").GetArrayLength());
        var settings = b.GetProperty("settings");
        Assert.Equal(Settings.All.Select(s => s.Name), settings.EnumerateArray().Select(s => s.GetProperty("name").GetString()));
        var port = Find(settings, "name", "KIOU_PORT");
        Assert.Equal(broker.Broker.BrokerEndPoint.Port.ToString(CultureInfo.InvariantCulture), port.GetProperty("value").GetString());
        Assert.Equal("9092", port.GetProperty("default").GetString());
        Assert.Contains("port", port.GetProperty("meaning").GetString());
        Assert.Equal(broker.Broker.Http.LocalEndPoint.Port.ToString(CultureInfo.InvariantCulture),
            Find(settings, "name", "KIOU_HTTP_PORT").GetProperty("value").GetString());

        var (_, topics, _) = await GetAsync(url + "/api/topics");
        var t = Find(topics.GetProperty("topics"), "name", topic);
        Assert.False(t.GetProperty("internal").GetBoolean());
        Assert.True(Find(topics.GetProperty("topics"), "name", "__consumer_offsets").GetProperty("internal").GetBoolean());
        Assert.Equal(2, t.GetProperty("partitionCount").GetInt32());
        Assert.Equal(10, t.GetProperty("records").GetInt64());
        Assert.Equal(10, t.GetProperty("partitions").EnumerateArray().Sum(p => p.GetProperty("endOffset").GetInt64()));
        Assert.Equal(10, t.GetProperty("partitions").EnumerateArray().Sum(p => p.GetProperty("highWatermark").GetInt64()));
        Assert.Equal(t.GetProperty("sizeBytes").GetInt64(), t.GetProperty("partitions").EnumerateArray().Sum(p => p.GetProperty("sizeBytes").GetInt64()));
        Assert.True(t.GetProperty("sizeBytes").GetInt64() > 500);
        Assert.Equal("3600000", t.GetProperty("configs").GetProperty("retention.ms").GetString());
        var (_, one, _) = await GetAsync(url + "/api/topic?name=" + topic);
        Assert.Equal("3600000", one.GetProperty("effectiveConfigs").GetProperty("retention.ms").GetString());
        Assert.Equal("delete", one.GetProperty("effectiveConfigs").GetProperty("cleanup.policy").GetString());
        var (missing, error, _) = await GetAsync(url + "/api/topic?name=nope");
        Assert.Equal(HttpStatusCode.NotFound, missing);
        Assert.Equal("no such topic", error.GetProperty("error").GetString());

        // The group as the client named it, escaped in the JSON text: no '<' reaches a page that would paste it.
        var (_, groups, groupsText) = await GetAsync(url + "/api/groups");
        Assert.DoesNotContain("<", groupsText, StringComparison.Ordinal);
        Assert.DoesNotContain(">", groupsText, StringComparison.Ordinal);
        var g = Find(groups.GetProperty("groups"), "id", HostileGroup);
        Assert.Equal("Stable", g.GetProperty("state").GetString());
        Assert.Equal("consumer", g.GetProperty("protocolType").GetString());
        var member = Assert.Single(g.GetProperty("members").EnumerateArray());
        Assert.Equal(HostileClient, member.GetProperty("clientId").GetString());
        var assigned = Assert.Single(member.GetProperty("assignment").EnumerateArray());
        Assert.Equal(topic, assigned.GetProperty("topic").GetString());
        Assert.Equal([0, 1], assigned.GetProperty("partitions").EnumerateArray().Select(p => p.GetInt32()));
        Assert.All(g.GetProperty("offsets").EnumerateArray(), o =>
        {
            Assert.Equal(3, o.GetProperty("committed").GetInt64());
            Assert.Equal(5, o.GetProperty("highWatermark").GetInt64());
            Assert.Equal(2, o.GetProperty("lag").GetInt64());
        });
        Assert.Equal(4, g.GetProperty("lagListed").GetInt64());
        var (_, byId, _) = await GetAsync(url + "/api/group?id=" + Uri.EscapeDataString(HostileGroup));
        Assert.Equal(HostileGroup, byId.GetProperty("id").GetString());
        Assert.Equal(HttpStatusCode.NotFound, (await GetAsync(url + "/api/group?id=nope")).Status);

        var (_, rates, _) = await GetAsync(url + "/api/rates");
        var r = Find(rates.GetProperty("topics"), "topic", topic);
        Assert.Equal(10, r.GetProperty("producedRecords").GetInt64());
        Assert.Equal(t.GetProperty("sizeBytes").GetInt64(), r.GetProperty("producedBytes").GetInt64());
        Assert.True(r.GetProperty("fetchedBytes").GetInt64() > 0);
        Assert.Equal(10, r.GetProperty("fetchedRecords").GetInt64()); // the one consumer read each record once
        Assert.True(r.GetProperty("producedRecordsPerSecond").GetDouble() >= 0);

        // The page: its own script and style only, whatever a string in the data tries.
        using var page = await Http.GetAsync(url + "/");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("text/html; charset=utf-8", page.Content.Headers.ContentType?.ToString());
        string csp = string.Join(";", page.Headers.GetValues("Content-Security-Policy"));
        Assert.Contains("script-src 'self'", csp);
        Assert.DoesNotContain("unsafe-inline", csp);
        Assert.Equal("nosniff", page.Headers.GetValues("X-Content-Type-Options").Single());
        Assert.Contains("<script src=\"/console.js\"", await page.Content.ReadAsStringAsync());
        string js = await Http.GetStringAsync(url + "/console.js");
        Assert.DoesNotMatch(@"\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write", js); // the DOM is built from text nodes
        consumer.Close();
    }

    /// <summary>
    /// Lists are paged and capped: a page of at most <see cref="ConsoleApi.DefaultLimit"/> topics with the count of the
    /// rest, a topic's partitions and a group's offsets capped in lists (the one-topic and one-group answers have them
    /// all), and a limit out of range refused.
    /// </summary>
    [Fact]
    public async Task Api_lists_are_paged_and_capped()
    {
        await using var broker = TestBroker.Start(c => c with { HttpPort = 0 });
        string url = $"http://127.0.0.1:{broker.Broker.Http!.LocalEndPoint.Port}";
        const int many = ConsoleApi.DefaultLimit + 5;
        const int wide = ConsoleApi.MaxListed + 50;
        using (var admin = Clients.Admin(broker.Bootstrap))
        {
            var specs = Enumerable.Range(0, many).Select(i => new TopicSpecification { Name = $"page-{i:D3}", NumPartitions = 1, ReplicationFactor = 1 })
                .Append(new TopicSpecification { Name = "wide", NumPartitions = wide, ReplicationFactor = 1 });
            await admin.CreateTopicsAsync(specs);
        }

        var (_, first, _) = await GetAsync(url + "/api/topics");
        int total = first.GetProperty("total").GetInt32();
        Assert.True(total >= many + 1, $"total {total}");
        Assert.Equal(ConsoleApi.DefaultLimit, first.GetProperty("topics").GetArrayLength());
        Assert.Equal(total - ConsoleApi.DefaultLimit, first.GetProperty("more").GetInt32());
        var (_, second, _) = await GetAsync(url + $"/api/topics?offset={ConsoleApi.DefaultLimit}&limit={ConsoleApi.DefaultLimit}");
        Assert.Equal(total - ConsoleApi.DefaultLimit, second.GetProperty("topics").GetArrayLength());
        Assert.Equal(0, second.GetProperty("more").GetInt32());
        var listed = Find(second.GetProperty("topics"), "name", "wide");
        Assert.Equal(wide, listed.GetProperty("partitionCount").GetInt32());
        Assert.Equal(ConsoleApi.MaxListed, listed.GetProperty("partitions").GetArrayLength());
        Assert.Equal(wide - ConsoleApi.MaxListed, listed.GetProperty("partitionsMore").GetInt32());
        var (_, whole, _) = await GetAsync(url + "/api/topic?name=wide");
        Assert.Equal(wide, whole.GetProperty("partitions").GetArrayLength());
        Assert.Equal(0, whole.GetProperty("partitionsMore").GetInt32());
        var (_, small, _) = await GetAsync(url + "/api/topics?limit=3");
        Assert.Equal(3, small.GetProperty("topics").GetArrayLength());

        foreach (string bad in new[] { "limit=0", $"limit={ConsoleApi.MaxLimit + 1}", "limit=abc", "offset=-1" })
        {
            var (status, error, _) = await GetAsync(url + "/api/topics?" + bad);
            Assert.Equal(HttpStatusCode.BadRequest, status);
            Assert.Contains("must be a whole number", error.GetProperty("error").GetString());
        }

        // A group with an offset committed on every partition of the wide topic: the list caps them, the group has them all.
        using (var committer = Clients.Consumer(broker.Bootstrap, group: "wide-group"))
            committer.Commit(Enumerable.Range(0, wide).Select(p => new TopicPartitionOffset("wide", p, 0)));
        var (_, groups, _) = await GetAsync(url + "/api/groups");
        var g = Find(groups.GetProperty("groups"), "id", "wide-group");
        Assert.Equal(ConsoleApi.MaxListed, g.GetProperty("offsets").GetArrayLength());
        Assert.Equal(wide - ConsoleApi.MaxListed, g.GetProperty("offsetsMore").GetInt32());
        var (_, one, _) = await GetAsync(url + "/api/group?id=wide-group");
        Assert.Equal(wide, one.GetProperty("offsets").GetArrayLength());
    }

    /// <summary>Every setting but the log's comes from the running config, so a new setting cannot show a stale default.</summary>
    [Fact]
    public void Every_setting_shows_the_value_the_broker_runs_with()
    {
        var config = BrokerConfig.FromEnvironment(name => name switch
        {
            "KIOU_FLUSH" => "250",
            "KIOU_GROUP_MAX_SIZE" => "7",
            _ => null,
        });
        foreach (var s in Settings.All.Where(s => s.Name is not ("KIOU_LOG_LEVEL" or "KIOU_LOG_FORMAT" or "KIOU_MAX_PARTITIONS")))
            Assert.True(EffectiveSettings.FromConfig(config, s.Name) is not null, $"{s.Name} is not read from the broker's config");
        Assert.Equal("250", EffectiveSettings.ValueOf(config, "KIOU_FLUSH", _ => null));
        Assert.Equal("7", EffectiveSettings.ValueOf(config, "KIOU_GROUP_MAX_SIZE", _ => null));
        Assert.Equal("json", EffectiveSettings.ValueOf(config, "KIOU_LOG_FORMAT", n => n == "KIOU_LOG_FORMAT" ? "json" : null));
        Assert.Equal("info", EffectiveSettings.ValueOf(config, "KIOU_LOG_LEVEL", _ => null));
    }
}
