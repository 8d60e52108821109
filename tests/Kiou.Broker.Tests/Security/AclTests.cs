using System.Text;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Kiou.Broker.Hosting;

namespace Kiou.Broker.Tests;

/// <summary>
/// ACLs through librdkafka (Confluent.Kafka): managed with the admin API, enforced on produce, consume, groups and
/// admin requests, kept across a restart. Every client authenticates with SASL/SCRAM-SHA-256 on a SASL_PLAINTEXT
/// listener, so the principals the ACLs name are the ones authentication gives.
/// </summary>
public sealed class AclTests
{
    const string Admin = "User:admin";

    // SCRAM users created at start: each "User:name" logs in as name with the password name-secret.
    static readonly Lazy<string> ScramUsers = new(() =>
    {
        string file = Path.Combine(Path.GetTempPath(), "kiou-acl-scram-users-" + Guid.NewGuid().ToString("N"));
        File.WriteAllText(file, string.Concat(new[] { "admin", "alice", "bob" }.Select(u => $"{u}:SCRAM-SHA-256:{u}-secret\n")));
        return file;
    });

    static BrokerConfig Secured(BrokerConfig c, bool allowEveryone = false) => c with
    {
        Acls = new Kiou.Broker.Security.AclSettings { Enabled = true, SuperUsers = [Admin], AllowEveryoneIfNoAclFound = allowEveryone },
        Listeners = [new Kiou.Broker.Security.BrokerListener("SASL_PLAINTEXT", Kiou.Broker.Security.SecurityProtocol.SaslPlaintext, "127.0.0.1", 0)],
        Sasl = new Kiou.Broker.Security.SaslSettings { ScramUsersFile = ScramUsers.Value },
    };

    /// <summary>Logs in as <paramref name="principal"/> ("User:alice").</summary>
    static T As<T>(T config, string principal)
        where T : ClientConfig
    {
        string user = principal["User:".Length..];
        config.ClientId = principal;
        config.SecurityProtocol = SecurityProtocol.SaslPlaintext;
        config.SaslMechanism = SaslMechanism.ScramSha256;
        config.SaslUsername = user;
        config.SaslPassword = user + "-secret";
        return config;
    }

    static IAdminClient AdminAs(string bootstrap, string principal) =>
        new AdminClientBuilder(As(new AdminClientConfig { BootstrapServers = bootstrap, SocketTimeoutMs = 10000 }, principal)).Build();

    static IProducer<string, string> ProducerAs(string bootstrap, string principal) =>
        new ProducerBuilder<string, string>(As(new ProducerConfig
        {
            BootstrapServers = bootstrap,
            Acks = Acks.All,
            EnableIdempotence = true,
            MessageTimeoutMs = 15000,
            LingerMs = 1,
        }, principal)).Build();

    static IConsumer<string, string> ConsumerAs(string bootstrap, string principal, string group) =>
        new ConsumerBuilder<string, string>(As(new ConsumerConfig
        {
            BootstrapServers = bootstrap,
            GroupId = group,
            EnableAutoCommit = false,
            AutoOffsetReset = AutoOffsetReset.Earliest,
            SessionTimeoutMs = 10000,
        }, principal)).Build();

    static AclBinding Allow(ResourceType type, string name, ResourcePatternType pattern, string principal, AclOperation op, AclPermissionType permission = AclPermissionType.Allow) => new()
    {
        Pattern = new ResourcePattern { Type = type, Name = name, ResourcePatternType = pattern },
        Entry = new AccessControlEntry { Principal = principal, Host = "*", Operation = op, PermissionType = permission },
    };

    static readonly AclBindingFilter Everything = new()
    {
        PatternFilter = new ResourcePatternFilter { Type = ResourceType.Any, ResourcePatternType = ResourcePatternType.Any },
        EntryFilter = new AccessControlEntryFilter { Operation = AclOperation.Any, PermissionType = AclPermissionType.Any },
    };

    static async Task CreateTopics(IAdminClient admin, params string[] names) =>
        await admin.CreateTopicsAsync(names.Select(n => new TopicSpecification { Name = n, NumPartitions = 1, ReplicationFactor = 1 }));

    [Fact]
    public async Task Acls_are_created_described_and_deleted_through_the_admin_api()
    {
        await using var broker = TestBroker.Start(c => Secured(c));
        using var admin = AdminAs(broker.Bootstrap, Admin);
        await admin.CreateAclsAsync([
            Allow(ResourceType.Topic, "alice-", ResourcePatternType.Prefixed, "User:alice", AclOperation.Write),
            Allow(ResourceType.Group, "alice-group", ResourcePatternType.Literal, "User:alice", AclOperation.Read),
            Allow(ResourceType.Topic, "*", ResourcePatternType.Literal, "User:bob", AclOperation.Read, AclPermissionType.Deny),
        ]);
        var all = await admin.DescribeAclsAsync(Everything);
        Assert.Equal(3, all.AclBindings.Count);
        var matching = await admin.DescribeAclsAsync(new AclBindingFilter
        {
            PatternFilter = new ResourcePatternFilter { Type = ResourceType.Topic, Name = "alice-orders", ResourcePatternType = ResourcePatternType.Match },
            EntryFilter = new AccessControlEntryFilter { Operation = AclOperation.Any, PermissionType = AclPermissionType.Any },
        });
        Assert.Equal(["*", "alice-"], matching.AclBindings.Select(b => b.Pattern.Name).Order(StringComparer.Ordinal));

        // Kafka's validation: the cluster resource has one name.
        var bad = await Assert.ThrowsAsync<CreateAclsException>(() => admin.CreateAclsAsync([
            Allow(ResourceType.Broker, "my-cluster", ResourcePatternType.Literal, "User:alice", AclOperation.Alter)]));
        Assert.Equal(ErrorCode.InvalidRequest, bad.Results[0].Error.Code);

        var deleted = await admin.DeleteAclsAsync([new AclBindingFilter
        {
            PatternFilter = new ResourcePatternFilter { Type = ResourceType.Any, ResourcePatternType = ResourcePatternType.Any },
            EntryFilter = new AccessControlEntryFilter { Principal = "User:alice", Operation = AclOperation.Any, PermissionType = AclPermissionType.Any },
        }]);
        Assert.Equal(2, deleted[0].AclBindings.Count);
        Assert.Single((await admin.DescribeAclsAsync(Everything)).AclBindings);

        // Without ALTER/DESCRIBE on the cluster, a principal may not manage ACLs. (librdkafka drops DescribeAcls'
        // top-level error code: a refused listing reads as an empty one.)
        using var alice = AdminAs(broker.Bootstrap, "User:alice");
        Assert.Empty((await alice.DescribeAclsAsync(Everything)).AclBindings);
        var refused = await Assert.ThrowsAsync<CreateAclsException>(() => alice.CreateAclsAsync([
            Allow(ResourceType.Topic, "*", ResourcePatternType.Literal, "User:alice", AclOperation.All)]));
        Assert.Equal(ErrorCode.ClusterAuthorizationFailed, refused.Results[0].Error.Code);
        Assert.Single((await admin.DescribeAclsAsync(Everything)).AclBindings);
    }

    [Fact]
    public async Task Without_an_authorizer_the_acl_apis_answer_security_disabled()
    {
        await using var broker = TestBroker.Start();
        using var admin = Clients.Admin(broker.Bootstrap);
        var e = await Assert.ThrowsAsync<CreateAclsException>(() => admin.CreateAclsAsync([
            Allow(ResourceType.Topic, "t", ResourcePatternType.Literal, "User:alice", AclOperation.Read)]));
        Assert.Equal(ErrorCode.SecurityDisabled, e.Results[0].Error.Code);
        var d = await Assert.ThrowsAsync<DeleteAclsException>(() => admin.DeleteAclsAsync([Everything]));
        Assert.Equal(ErrorCode.SecurityDisabled, d.Results[0].Error.Code);
    }

    [Fact]
    public async Task A_user_can_produce_to_its_prefix_and_read_with_its_group_and_nothing_else_also_after_a_restart()
    {
        await using var broker = TestBroker.Start(c => Secured(c));
        using (var admin = AdminAs(broker.Bootstrap, Admin))
        {
            await CreateTopics(admin, "alice-orders", "alice-locked", "payroll");
            await admin.CreateAclsAsync([
                Allow(ResourceType.Topic, "alice-", ResourcePatternType.Prefixed, "User:alice", AclOperation.Write),
                Allow(ResourceType.Topic, "alice-", ResourcePatternType.Prefixed, "User:alice", AclOperation.Read),
                Allow(ResourceType.Group, "alice-group", ResourcePatternType.Literal, "User:alice", AclOperation.Read),
                Allow(ResourceType.Topic, "alice-locked", ResourcePatternType.Literal, "User:alice", AclOperation.Write, AclPermissionType.Deny),
            ]);
        }
        await Check();
        await broker.RestartAsync();
        Assert.Contains("4 ACLs", broker.LogText.ToString());
        await Check();

        async Task Check()
        {
            using (var producer = ProducerAs(broker.Bootstrap, "User:alice"))
            {
                var ok = await producer.ProduceAsync("alice-orders", new Message<string, string> { Key = "k", Value = "v" });
                Assert.Equal(PersistenceStatus.Persisted, ok.Status);
                var other = await Assert.ThrowsAsync<ProduceException<string, string>>(() => producer.ProduceAsync("payroll", new Message<string, string> { Key = "k", Value = "v" }));
                Assert.Equal(ErrorCode.TopicAuthorizationFailed, other.Error.Code);
                // Deny beats the prefixed allow.
                var denied = await Assert.ThrowsAsync<ProduceException<string, string>>(() => producer.ProduceAsync("alice-locked", new Message<string, string> { Key = "k", Value = "v" }));
                Assert.Equal(ErrorCode.TopicAuthorizationFailed, denied.Error.Code);
            }

            using (var consumer = ConsumerAs(broker.Bootstrap, "User:alice", "alice-group"))
            {
                consumer.Subscribe("alice-orders");
                var record = consumer.Consume(TimeSpan.FromSeconds(30));
                Assert.NotNull(record);
                Assert.Equal("v", record.Message.Value);
                consumer.Commit(record);
                consumer.Close();
            }

            using (var consumer = ConsumerAs(broker.Bootstrap, "User:alice", "other-group"))
            {
                consumer.Subscribe("alice-orders");
                var e = Assert.Throws<ConsumeException>(() =>
                {
                    var deadline = DateTime.UtcNow.AddSeconds(30);
                    while (DateTime.UtcNow < deadline)
                        consumer.Consume(TimeSpan.FromSeconds(1));
                });
                Assert.Equal(ErrorCode.GroupAuthorizationFailed, e.Error.Code);
            }

            using var alice = AdminAs(broker.Bootstrap, "User:alice");
            var created = await Assert.ThrowsAsync<CreateTopicsException>(() => CreateTopics(alice, "alice-new"));
            Assert.Equal(ErrorCode.TopicAuthorizationFailed, created.Results[0].Error.Code);
            var deleted = await Assert.ThrowsAsync<DeleteTopicsException>(() => alice.DeleteTopicsAsync(["alice-orders"]));
            Assert.Equal(ErrorCode.TopicAuthorizationFailed, deleted.Results[0].Error.Code);
            // Metadata of all topics leaves out the ones alice may not describe.
            var visible = alice.GetMetadata(TimeSpan.FromSeconds(10)).Topics.Select(t => t.Topic).Order(StringComparer.Ordinal);
            Assert.Equal(["alice-locked", "alice-orders"], visible);
            var described = await alice.DescribeTopicsAsync(TopicCollection.OfTopicNames(["alice-orders"]), new DescribeTopicsOptions { IncludeAuthorizedOperations = true });
            Assert.Equal([AclOperation.Read, AclOperation.Write, AclOperation.Describe], described.TopicDescriptions[0].AuthorizedOperations.Order());
            var cluster = await alice.DescribeClusterAsync(new DescribeClusterOptions { IncludeAuthorizedOperations = true });
            Assert.Empty(cluster.AuthorizedOperations ?? []);
        }
    }

    [Fact]
    public async Task Super_users_may_do_everything_and_allow_everyone_if_no_acl_found_opens_unnamed_resources()
    {
        await using var broker = TestBroker.Start(c => Secured(c, allowEveryone: true));
        using (var admin = AdminAs(broker.Bootstrap, Admin))
        {
            await CreateTopics(admin, "open", "guarded");
            await admin.CreateAclsAsync([Allow(ResourceType.Topic, "guarded", ResourcePatternType.Literal, "User:alice", AclOperation.Write)]);
            var cluster = await admin.DescribeClusterAsync(new DescribeClusterOptions { IncludeAuthorizedOperations = true });
            Assert.Equal(7, cluster.AuthorizedOperations.Count);
            using var producer = ProducerAs(broker.Bootstrap, Admin);
            await producer.ProduceAsync("guarded", new Message<string, string> { Key = "k", Value = "admin" });
        }
        using var bob = ProducerAs(broker.Bootstrap, "User:bob");
        await bob.ProduceAsync("open", new Message<string, string> { Key = "k", Value = "bob" });
        var e = await Assert.ThrowsAsync<ProduceException<string, string>>(() => bob.ProduceAsync("guarded", new Message<string, string> { Key = "k", Value = "bob" }));
        Assert.Equal(ErrorCode.TopicAuthorizationFailed, e.Error.Code);
    }

    [Fact]
    public async Task A_transactional_producer_needs_write_on_its_transactional_id()
    {
        await using var broker = TestBroker.Start(c => Secured(c));
        using (var admin = AdminAs(broker.Bootstrap, Admin))
        {
            await CreateTopics(admin, "alice-tx-topic");
            await admin.CreateAclsAsync([Allow(ResourceType.Topic, "alice-", ResourcePatternType.Prefixed, "User:alice", AclOperation.Write)]);
        }
        IProducer<string, string> Transactional() => new ProducerBuilder<string, string>(As(new ProducerConfig
        {
            BootstrapServers = broker.Bootstrap,
            TransactionalId = "alice-tx",
            MessageTimeoutMs = 15000,
        }, "User:alice")).Build();
        using (var refused = Transactional())
        {
            var e = Assert.Throws<KafkaException>(() => refused.InitTransactions(TimeSpan.FromSeconds(20)));
            Assert.Equal(ErrorCode.TransactionalIdAuthorizationFailed, e.Error.Code);
        }
        using (var admin = AdminAs(broker.Bootstrap, Admin))
            await admin.CreateAclsAsync([Allow((ResourceType)5 /* TRANSACTIONAL_ID: librdkafka knows it, Confluent.Kafka names it not */, "alice-tx", ResourcePatternType.Literal, "User:alice", AclOperation.Write)]);
        using var producer = Transactional();
        producer.InitTransactions(TimeSpan.FromSeconds(20));
        producer.BeginTransaction();
        await producer.ProduceAsync("alice-tx-topic", new Message<string, string> { Key = "k", Value = "in a transaction" });
        producer.CommitTransaction(TimeSpan.FromSeconds(20));
        using var reader = ConsumerAs(broker.Bootstrap, Admin, "admin-group");
        reader.Assign(new TopicPartitionOffset("alice-tx-topic", 0, Offset.Beginning));
        var read = reader.Consume(TimeSpan.FromSeconds(30)); // read_committed: only a committed transaction shows
        Assert.Equal("in a transaction", read?.Message.Value);
    }

    [Fact]
    public async Task A_damaged_acl_file_is_set_aside_and_the_broker_refuses_to_start()
    {
        var broker = TestBroker.Start(c => Secured(c));
        string dataDir = broker.DataDir;
        await broker.StopAsync();
        string file = Path.Combine(dataDir, "__cluster", Kiou.Broker.Security.AclStore.FileName);
        Directory.CreateDirectory(Path.GetDirectoryName(file)!);
        await File.WriteAllTextAsync(file, "{\"Version\":1,\"Acls\":[{\"ResourceType\":2", Encoding.UTF8);
        var e = Assert.Throws<ConfigException>(() => broker.StartAgain());
        Assert.Contains("moved aside", e.Message);
        Assert.False(File.Exists(file));
        Assert.Single(Directory.GetFiles(Path.GetDirectoryName(file)!, Kiou.Broker.Security.AclStore.FileName + ".damaged-*"));
        // The next start runs with no ACLs, as the message says.
        broker.StartAgain();
        await broker.DisposeAsync();
    }
}
