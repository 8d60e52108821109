using System.Collections.Frozen;
using System.Net;

namespace Kiou.Broker.Security;

/// <summary>The authorizer settings (KIOU_AUTHORIZER, KIOU_SUPER_USERS, KIOU_ALLOW_EVERYONE_IF_NO_ACL_FOUND).</summary>
public sealed record AclSettings
{
    /// <summary>False: every request is allowed and the ACL APIs answer SECURITY_DISABLED, as Kafka without an authorizer.</summary>
    public bool Enabled { get; init; }
    /// <summary>Principals allowed everything, as Kafka's super.users ("User:admin;User:ops").</summary>
    public IReadOnlyList<string> SuperUsers { get; init; } = [];
    /// <summary>Kafka's allow.everyone.if.no.acl.found: a resource no ACL names is open to all.</summary>
    public bool AllowEveryoneIfNoAclFound { get; init; }
}

/// <summary>
/// Kafka's StandardAuthorizer on one node: ACLs indexed by resource type and name, super users, deny before allow,
/// implied operations, literal and prefixed patterns, the wildcard resource, principal and host. The index is an
/// immutable snapshot replaced whole on every change (changes are serialized and persisted first), so a check reads
/// one reference and allocates nothing.
/// </summary>
public sealed class Authorizer
{
    /// <summary>No authorizer: everything allowed.</summary>
    public static readonly Authorizer Off = new(new AclSettings(), null);

    readonly AclSettings _settings;
    readonly FrozenSet<KafkaPrincipal> _superUsers;
    readonly AclStore? _store;
    readonly Lock _gate = new();
    List<AclBinding> _acls = [];
    volatile Index _index = Index.Empty;

    public Authorizer(AclSettings settings, AclStore? store)
    {
        _settings = settings;
        _store = store;
        _superUsers = settings.SuperUsers.Select(s => Acls.ParsePrincipal(s.Trim())).OfType<KafkaPrincipal>().ToFrozenSet();
    }

    public bool Enabled => _settings.Enabled;

    /// <summary>Reads the stored ACLs (throws ConfigException when the file is damaged).</summary>
    public int Load()
    {
        if (_store is null)
            return 0;
        var loaded = _store.Load();
        lock (_gate)
        {
            _acls = loaded;
            _index = Index.Build(loaded);
        }
        return loaded.Count;
    }

    public IReadOnlyList<AclBinding> All => _acls;

    public bool IsSuperUser(KafkaPrincipal principal) => _superUsers.Contains(principal);

    /// <summary>Whether <paramref name="principal"/> from <paramref name="host"/> may do <paramref name="op"/> on the
    /// resource. Allocation-free.</summary>
    public bool Authorize(KafkaPrincipal principal, IPAddress? host, AclOperation op, ResourceType type, string name)
    {
        if (!_settings.Enabled || _superUsers.Contains(principal))
            return true;
        var index = _index;
        var check = new Check(principal, host, op);
        var literal = index.Literal[(int)type];
        if (literal.TryGetValue(name, out var exact))
            check.Scan(exact);
        if (name != Acls.Wildcard && literal.TryGetValue(Acls.Wildcard, out var wildcard))
            check.Scan(wildcard);
        foreach (var entry in index.Prefixed[(int)type])
        {
            if (name.StartsWith(entry.Name, StringComparison.Ordinal))
                check.Scan(entry.Acls);
        }
        if (check.Denied)
            return false;
        if (!check.FoundResourceAcl)
            return _settings.AllowEveryoneIfNoAclFound;
        return check.Allowed;
    }

    /// <summary>Whether any ACL of <paramref name="type"/> lets the principal do <paramref name="op"/> on some resource
    /// (Kafka's authorizeByResourceType, for IDEMPOTENT_WRITE through WRITE on any topic): allowed by an ALLOW on any
    /// pattern not denied by a DENY on the wildcard or a prefix of it.</summary>
    public bool AuthorizeAny(KafkaPrincipal principal, IPAddress? host, AclOperation op, ResourceType type)
    {
        if (!_settings.Enabled || _superUsers.Contains(principal))
            return true;
        var index = _index;
        var check = new Check(principal, host, op);
        if (index.Literal[(int)type].TryGetValue(Acls.Wildcard, out var wildcard))
        {
            check.Scan(wildcard);
            if (check.Denied)
                return false;
        }
        foreach (var (_, acls) in index.Literal[(int)type])
            check.Scan(acls);
        foreach (var entry in index.Prefixed[(int)type])
            check.Scan(entry.Acls);
        if (check.Allowed)
            return true;
        return _settings.AllowEveryoneIfNoAclFound && index.Literal[(int)type].Count == 0 && index.Prefixed[(int)type].Length == 0;
    }

    /// <summary>Kafka's authorized operations bit set (1 &lt;&lt; operation code) for a resource.</summary>
    public int AuthorizedOperations(KafkaPrincipal principal, IPAddress? host, ResourceType type, string name)
    {
        int bits = 0;
        foreach (var op in Acls.SupportedOperations(type))
        {
            if (Authorize(principal, host, op, type, name))
                bits |= 1 << (int)op;
        }
        return bits;
    }

    /// <summary>The ACLs a filter matches.</summary>
    public List<AclBinding> Describe(AclFilter filter) => _acls.Where(filter.Matches).ToList();

    /// <summary>Adds the ACLs (already validated; ones already present are kept once) and persists. Throws IOException
    /// when the file cannot be written: then nothing changed.</summary>
    public void Create(IReadOnlyList<AclBinding> acls)
    {
        lock (_gate)
        {
            var next = new List<AclBinding>(_acls);
            var present = new HashSet<AclBinding>(_acls);
            foreach (var acl in acls)
            {
                if (present.Add(acl))
                    next.Add(acl);
            }
            if (next.Count == _acls.Count)
                return;
            _store?.Save(next);
            _acls = next;
            _index = Index.Build(next);
        }
    }

    /// <summary>Removes every ACL one of the filters matches and persists; returns the removed ACLs per filter.
    /// Throws IOException when the file cannot be written: then nothing changed.</summary>
    public List<AclBinding>[] Delete(IReadOnlyList<AclFilter> filters)
    {
        lock (_gate)
        {
            var removed = new List<AclBinding>[filters.Count];
            var gone = new HashSet<AclBinding>();
            for (int i = 0; i < filters.Count; i++)
            {
                removed[i] = _acls.Where(filters[i].Matches).ToList();
                gone.UnionWith(removed[i]);
            }
            if (gone.Count == 0)
                return removed;
            var next = _acls.Where(a => !gone.Contains(a)).ToList();
            _store?.Save(next);
            _acls = next;
            _index = Index.Build(next);
            return removed;
        }
    }

    /// <summary>One ACL as the check reads it: principal, host and operation parsed once.</summary>
    sealed class Entry
    {
        public required bool AnyPrincipal { get; init; }
        public required string PrincipalType { get; init; }
        public required string PrincipalName { get; init; }
        public required bool AnyHost { get; init; }
        /// <summary>The host as an address and as its IPv4/IPv6-mapped twin; null when it is not an address (then it
        /// matches no client, as Kafka compares with the client's address).</summary>
        public required IPAddress? Host { get; init; }
        public required IPAddress? HostTwin { get; init; }
        public required AclOperation Operation { get; init; }
        public required bool Deny { get; init; }

        public static Entry Of(AclBinding a)
        {
            var p = Acls.ParsePrincipal(a.Principal)!;
            IPAddress.TryParse(a.Host, out var ip);
            IPAddress? twin = ip is null ? null
                : ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4()
                : ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? ip.MapToIPv6() : null;
            return new Entry
            {
                AnyPrincipal = a.Principal == Acls.WildcardPrincipal,
                PrincipalType = p.Type,
                PrincipalName = p.Name,
                AnyHost = a.Host == Acls.Wildcard,
                Host = ip,
                HostTwin = twin,
                Operation = a.Operation,
                Deny = a.Permission == AclPermission.Deny,
            };
        }

        public bool Applies(KafkaPrincipal principal, IPAddress? host) =>
            (AnyPrincipal || (PrincipalName == principal.Name && PrincipalType == principal.Type))
            && (AnyHost || (host is not null && (host.Equals(Host) || host.Equals(HostTwin))));
    }

    struct Check(KafkaPrincipal principal, IPAddress? host, AclOperation op)
    {
        public bool FoundResourceAcl;
        public bool Denied;
        public bool Allowed;

        public void Scan(Entry[] acls)
        {
            foreach (var e in acls)
            {
                FoundResourceAcl = true;
                if (!e.Applies(principal, host))
                    continue;
                if (e.Deny)
                {
                    if (e.Operation == op || e.Operation == AclOperation.All)
                        Denied = true;
                }
                else if (Acls.Implies(e.Operation, op))
                {
                    Allowed = true;
                }
            }
        }
    }

    sealed record PrefixEntry(string Name, Entry[] Acls);

    /// <summary>ACLs by resource type code: literal ones by name, prefixed ones as a list.</summary>
    sealed class Index
    {
        const int Types = 8;
        public required FrozenDictionary<string, Entry[]>[] Literal { get; init; }
        public required PrefixEntry[][] Prefixed { get; init; }

        public static readonly Index Empty = Build([]);

        public static Index Build(IReadOnlyList<AclBinding> acls)
        {
            var literal = new FrozenDictionary<string, Entry[]>[Types];
            var prefixed = new PrefixEntry[Types][];
            for (int t = 0; t < Types; t++)
            {
                var ofType = acls.Where(a => (int)a.ResourceType == t).ToList();
                literal[t] = ofType.Where(a => a.PatternType == PatternType.Literal).GroupBy(a => a.ResourceName, StringComparer.Ordinal)
                    .ToFrozenDictionary(g => g.Key, g => g.Select(Entry.Of).ToArray(), StringComparer.Ordinal);
                prefixed[t] = ofType.Where(a => a.PatternType == PatternType.Prefixed).GroupBy(a => a.ResourceName, StringComparer.Ordinal)
                    .Select(g => new PrefixEntry(g.Key, g.Select(Entry.Of).ToArray())).ToArray();
            }
            return new Index { Literal = literal, Prefixed = prefixed };
        }
    }
}
