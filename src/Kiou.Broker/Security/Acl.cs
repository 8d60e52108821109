using System.Net;

namespace Kiou.Broker.Security;

/// <summary>Kafka's ResourceType codes (org.apache.kafka.common.resource.ResourceType).</summary>
public enum ResourceType : sbyte
{
    Unknown = 0,
    Any = 1,
    Topic = 2,
    Group = 3,
    Cluster = 4,
    TransactionalId = 5,
    DelegationToken = 6,
    User = 7,
}

/// <summary>Kafka's PatternType codes: ACLs are LITERAL or PREFIXED; filters may also say ANY or MATCH.</summary>
public enum PatternType : sbyte
{
    Unknown = 0,
    Any = 1,
    Match = 2,
    Literal = 3,
    Prefixed = 4,
}

/// <summary>Kafka's AclOperation codes.</summary>
public enum AclOperation : sbyte
{
    Unknown = 0,
    Any = 1,
    All = 2,
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
    CreateTokens = 13,
    DescribeTokens = 14,
}

/// <summary>Kafka's AclPermissionType codes.</summary>
public enum AclPermission : sbyte
{
    Unknown = 0,
    Any = 1,
    Deny = 2,
    Allow = 3,
}

/// <summary>One ACL as Kafka's AclBinding: a resource pattern and an access control entry.</summary>
public sealed record AclBinding(ResourceType ResourceType, string ResourceName, PatternType PatternType, string Principal, string Host,
    AclOperation Operation, AclPermission Permission)
{
    public override string ToString() =>
        $"(resource {ResourceType} {PatternType} '{ResourceName}', principal {Principal}, host {Host}, {Operation} {Permission})";
}

/// <summary>
/// Kafka's AclBindingFilter (DescribeAcls and DeleteAcls): null name, principal or host match anything; ANY matches
/// every type, pattern, operation or permission; the MATCH pattern type matches every ACL that would apply to the named
/// resource (the literal name, the literal wildcard, and prefixes of it).
/// </summary>
public sealed record AclFilter(ResourceType ResourceType, string? ResourceName, PatternType PatternType, string? Principal, string? Host,
    AclOperation Operation, AclPermission Permission)
{
    public bool Matches(AclBinding acl)
    {
        if (ResourceType != ResourceType.Any && ResourceType != acl.ResourceType)
            return false;
        if (PatternType is not (PatternType.Any or PatternType.Match) && PatternType != acl.PatternType)
            return false;
        if (ResourceName is not null)
        {
            if (PatternType == PatternType.Any || PatternType == acl.PatternType)
            {
                if (ResourceName != acl.ResourceName)
                    return false;
            }
            else if (acl.PatternType == PatternType.Literal)
            {
                if (ResourceName != acl.ResourceName && acl.ResourceName != Acls.Wildcard)
                    return false;
            }
            else if (!ResourceName.StartsWith(acl.ResourceName, StringComparison.Ordinal))
            {
                return false;
            }
        }
        return (Principal is null || Principal == acl.Principal)
            && (Host is null || Host == acl.Host)
            && (Operation == AclOperation.Any || Operation == acl.Operation)
            && (Permission == AclPermission.Any || Permission == acl.Permission);
    }

    /// <summary>Null when the filter can be used, else Kafka's reason (INVALID_REQUEST).</summary>
    public string? Validate()
    {
        if (!Enum.IsDefined(ResourceType) || ResourceType == ResourceType.Unknown)
            return "Invalid resource type filter";
        if (!Enum.IsDefined(PatternType) || PatternType == PatternType.Unknown)
            return "Invalid pattern type filter";
        if (!Enum.IsDefined(Operation) || Operation == AclOperation.Unknown)
            return "Invalid operation filter";
        if (!Enum.IsDefined(Permission) || Permission == AclPermission.Unknown)
            return "Invalid permission type filter";
        return null;
    }
}

/// <summary>Kafka's names and rules for ACLs.</summary>
public static class Acls
{
    /// <summary>The literal resource name that matches every resource of its type.</summary>
    public const string Wildcard = "*";

    /// <summary>The principal that matches every user.</summary>
    public const string WildcardPrincipal = "User:*";

    /// <summary>The only name of the CLUSTER resource.</summary>
    public const string ClusterName = "kafka-cluster";

    /// <summary>Null when the ACL can be created, else Kafka's reason (INVALID_REQUEST), as AclControlManager and
    /// AclApis check it.</summary>
    public static string? Validate(AclBinding acl)
    {
        if (acl.PatternType is not (PatternType.Literal or PatternType.Prefixed))
            return $"Invalid patternType {acl.PatternType.ToString().ToUpperInvariant()}";
        if (!Enum.IsDefined(acl.ResourceType) || acl.ResourceType is ResourceType.Unknown or ResourceType.Any)
            return "Invalid resourceType " + (Enum.IsDefined(acl.ResourceType) ? acl.ResourceType.ToString().ToUpperInvariant() : "UNKNOWN");
        if (!Enum.IsDefined(acl.Operation) || acl.Operation is AclOperation.Unknown or AclOperation.Any)
            return "Invalid operation " + (Enum.IsDefined(acl.Operation) ? acl.Operation.ToString().ToUpperInvariant() : "UNKNOWN");
        if (acl.Permission is not (AclPermission.Allow or AclPermission.Deny))
            return "Invalid permissionType " + (Enum.IsDefined(acl.Permission) ? acl.Permission.ToString().ToUpperInvariant() : "UNKNOWN");
        if (acl.ResourceType == ResourceType.Cluster && acl.ResourceName != ClusterName)
            return "The only valid name for the CLUSTER resource is " + ClusterName;
        if (acl.ResourceName.Length == 0)
            return "Resource name should not be empty";
        if (ParsePrincipal(acl.Principal) is null)
            return $"Could not parse principal from `{acl.Principal}` (no colon is found between principal type and principal name)";
        if (acl.Host.Length == 0)
            return "Invalid host: it must be * or an address";
        return null;
    }

    /// <summary>"Type:Name" as Kafka's SecurityUtils.parseKafkaPrincipal; null when it has no colon or an empty part.</summary>
    public static KafkaPrincipal? ParsePrincipal(string s)
    {
        int colon = s.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0 || colon == s.Length - 1)
            return null;
        return new KafkaPrincipal(s[..colon], s[(colon + 1)..]);
    }

    /// <summary>Whether an ALLOW on <paramref name="granted"/> allows <paramref name="wanted"/>: ALL allows all, and
    /// DESCRIBE follows from READ, WRITE, DELETE and ALTER, DESCRIBE_CONFIGS from ALTER_CONFIGS (Kafka's implied
    /// operations).</summary>
    public static bool Implies(AclOperation granted, AclOperation wanted) =>
        granted == wanted || granted == AclOperation.All || wanted switch
        {
            AclOperation.Describe => granted is AclOperation.Read or AclOperation.Write or AclOperation.Delete or AclOperation.Alter,
            AclOperation.DescribeConfigs => granted == AclOperation.AlterConfigs,
            _ => false,
        };

    /// <summary>The operations Kafka lists as authorized operations of each resource type.</summary>
    public static ReadOnlySpan<AclOperation> SupportedOperations(ResourceType type) => type switch
    {
        ResourceType.Topic => TopicOps,
        ResourceType.Group => GroupOps,
        ResourceType.Cluster => ClusterOps,
        ResourceType.TransactionalId => TransactionalIdOps,
        _ => [],
    };

    static readonly AclOperation[] TopicOps = [AclOperation.Read, AclOperation.Write, AclOperation.Create, AclOperation.Describe, AclOperation.Delete,
        AclOperation.Alter, AclOperation.DescribeConfigs, AclOperation.AlterConfigs];
    static readonly AclOperation[] GroupOps = [AclOperation.Read, AclOperation.Describe, AclOperation.Delete];
    static readonly AclOperation[] ClusterOps = [AclOperation.Create, AclOperation.ClusterAction, AclOperation.DescribeConfigs, AclOperation.AlterConfigs,
        AclOperation.IdempotentWrite, AclOperation.Alter, AclOperation.Describe];
    static readonly AclOperation[] TransactionalIdOps = [AclOperation.Describe, AclOperation.Write];

    /// <summary>The client address an ACL's host is compared with (IPv4-mapped IPv6 as IPv4, as Java reports it).</summary>
    public static IPAddress? ClientAddress(EndPoint? remote) => remote is IPEndPoint ip ? ip.Address : null;
}
