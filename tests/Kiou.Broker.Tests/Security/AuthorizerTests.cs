using System.Net;
using Kiou.Broker.Security;

namespace Kiou.Broker.Tests;

/// <summary>Kafka's StandardAuthorizer rules, checked on the authorizer alone.</summary>
public sealed class AuthorizerTests
{
    static readonly KafkaPrincipal Alice = KafkaPrincipal.User("alice");
    static readonly KafkaPrincipal Bob = KafkaPrincipal.User("bob");
    static readonly IPAddress Here = IPAddress.Loopback;

    static Authorizer With(bool allowEveryone = false, params AclBinding[] acls)
    {
        var a = new Authorizer(new AclSettings { Enabled = true, SuperUsers = ["User:admin"], AllowEveryoneIfNoAclFound = allowEveryone }, null);
        a.Create(acls);
        return a;
    }

    static AclBinding Acl(ResourceType type, string name, PatternType pattern, string principal, AclOperation op, AclPermission permission = AclPermission.Allow, string host = "*") =>
        new(type, name, pattern, principal, host, op, permission);

    [Fact]
    public void Literal_prefixed_wildcard_and_implied_operations()
    {
        var a = With(false,
            Acl(ResourceType.Topic, "orders-", PatternType.Prefixed, "User:alice", AclOperation.Write),
            Acl(ResourceType.Topic, "audit", PatternType.Literal, "User:alice", AclOperation.Read),
            Acl(ResourceType.Group, "*", PatternType.Literal, "User:*", AclOperation.Read),
            Acl(ResourceType.Topic, "cfg", PatternType.Literal, "User:bob", AclOperation.AlterConfigs));
        Assert.True(a.Authorize(Alice, Here, AclOperation.Write, ResourceType.Topic, "orders-eu"));
        Assert.False(a.Authorize(Alice, Here, AclOperation.Write, ResourceType.Topic, "order"));
        Assert.False(a.Authorize(Alice, Here, AclOperation.Read, ResourceType.Topic, "orders-eu"));
        Assert.True(a.Authorize(Alice, Here, AclOperation.Describe, ResourceType.Topic, "orders-eu")); // WRITE implies DESCRIBE
        Assert.True(a.Authorize(Alice, Here, AclOperation.Describe, ResourceType.Topic, "audit"));
        Assert.False(a.Authorize(Alice, Here, AclOperation.Write, ResourceType.Topic, "audit"));
        Assert.False(a.Authorize(Bob, Here, AclOperation.Write, ResourceType.Topic, "orders-eu"));
        Assert.True(a.Authorize(Bob, Here, AclOperation.Read, ResourceType.Group, "anything")); // User:* and "*"
        Assert.True(a.Authorize(Bob, Here, AclOperation.DescribeConfigs, ResourceType.Topic, "cfg")); // ALTER_CONFIGS implies it
        Assert.False(a.Authorize(Bob, Here, AclOperation.Alter, ResourceType.Topic, "cfg"));
        Assert.True(a.Authorize(KafkaPrincipal.User("admin"), Here, AclOperation.Delete, ResourceType.Cluster, Acls.ClusterName));
        Assert.False(a.Authorize(Alice, Here, AclOperation.Create, ResourceType.Cluster, Acls.ClusterName));
    }

    [Fact]
    public void Deny_beats_allow_and_all_matches_every_operation()
    {
        var a = With(false,
            Acl(ResourceType.Topic, "*", PatternType.Literal, "User:alice", AclOperation.All),
            Acl(ResourceType.Topic, "secret", PatternType.Prefixed, "User:alice", AclOperation.Read, AclPermission.Deny),
            Acl(ResourceType.Topic, "locked", PatternType.Literal, "User:*", AclOperation.All, AclPermission.Deny));
        Assert.True(a.Authorize(Alice, Here, AclOperation.Read, ResourceType.Topic, "public"));
        Assert.True(a.Authorize(Alice, Here, AclOperation.AlterConfigs, ResourceType.Topic, "public"));
        Assert.False(a.Authorize(Alice, Here, AclOperation.Read, ResourceType.Topic, "secret-1"));
        Assert.True(a.Authorize(Alice, Here, AclOperation.Write, ResourceType.Topic, "secret-1")); // the DENY names READ only
        Assert.False(a.Authorize(Alice, Here, AclOperation.Describe, ResourceType.Topic, "locked"));
        Assert.True(a.Authorize(KafkaPrincipal.User("admin"), Here, AclOperation.Read, ResourceType.Topic, "locked"));
    }

    [Fact]
    public void Hosts_and_no_acl_found()
    {
        var a = With(false, Acl(ResourceType.Topic, "t", PatternType.Literal, "User:alice", AclOperation.Read, host: "10.0.0.7"));
        Assert.True(a.Authorize(Alice, IPAddress.Parse("10.0.0.7"), AclOperation.Read, ResourceType.Topic, "t"));
        Assert.True(a.Authorize(Alice, IPAddress.Parse("::ffff:10.0.0.7"), AclOperation.Read, ResourceType.Topic, "t"));
        Assert.False(a.Authorize(Alice, IPAddress.Parse("10.0.0.8"), AclOperation.Read, ResourceType.Topic, "t"));
        Assert.False(a.Authorize(Alice, Here, AclOperation.Read, ResourceType.Topic, "no-acl"));

        var open = With(true, Acl(ResourceType.Topic, "t", PatternType.Literal, "User:alice", AclOperation.Read));
        Assert.True(open.Authorize(Bob, Here, AclOperation.Write, ResourceType.Topic, "no-acl"));
        Assert.False(open.Authorize(Bob, Here, AclOperation.Read, ResourceType.Topic, "t")); // an ACL names it: no longer open
    }

    [Fact]
    public void Filters_match_as_kafka()
    {
        var prefixed = Acl(ResourceType.Topic, "orders-", PatternType.Prefixed, "User:alice", AclOperation.Write);
        var wildcard = Acl(ResourceType.Topic, "*", PatternType.Literal, "User:bob", AclOperation.Read);
        var literal = Acl(ResourceType.Topic, "orders-eu", PatternType.Literal, "User:bob", AclOperation.Read);
        var match = new AclFilter(ResourceType.Topic, "orders-eu", PatternType.Match, null, null, AclOperation.Any, AclPermission.Any);
        Assert.True(match.Matches(prefixed) && match.Matches(wildcard) && match.Matches(literal));
        var any = new AclFilter(ResourceType.Any, "orders-eu", PatternType.Any, null, null, AclOperation.Any, AclPermission.Any);
        Assert.False(any.Matches(prefixed));
        Assert.True(any.Matches(literal));
        var bobOnly = new AclFilter(ResourceType.Any, null, PatternType.Any, "User:bob", null, AclOperation.Any, AclPermission.Any);
        Assert.False(bobOnly.Matches(prefixed));
        Assert.NotNull(Acls.Validate(Acl(ResourceType.Cluster, "other", PatternType.Literal, "User:a", AclOperation.Alter)));
        Assert.NotNull(Acls.Validate(Acl(ResourceType.Topic, "t", PatternType.Literal, "alice", AclOperation.Read)));
        Assert.NotNull(Acls.Validate(Acl(ResourceType.Topic, "t", PatternType.Match, "User:alice", AclOperation.Read)));
        Assert.Null(Acls.Validate(prefixed));
    }

    [Fact]
    public void A_check_allocates_nothing()
    {
        var a = With(false,
            Acl(ResourceType.Topic, "orders-", PatternType.Prefixed, "User:alice", AclOperation.Write),
            Acl(ResourceType.Topic, "orders-eu", PatternType.Literal, "User:bob", AclOperation.Read));
        a.Authorize(Alice, Here, AclOperation.Write, ResourceType.Topic, "orders-eu");
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
            a.Authorize(Alice, Here, AclOperation.Write, ResourceType.Topic, "orders-eu");
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
