using System.Net;
using Kiou.Broker.Network;
using Kiou.Broker.Security;
using Kiou.Protocol;
using Kiou.Protocol.Messages;

namespace Kiou.Broker.Handlers;

// CreateAcls, DescribeAcls, DeleteAcls v0-3 as Kafka's AclApis: SECURITY_DISABLED without an authorizer; DESCRIBE on
// the cluster to describe, ALTER to create or delete (CLUSTER_AUTHORIZATION_FAILED otherwise); each ACL or filter
// validated on its own (INVALID_REQUEST with Kafka's reason). v0 knows only literal patterns (the field's default).
//
// The authorization helpers every handler uses are here too: one check per resource, against the connection's principal
// and address (docs/design/security-acls.md).
public sealed partial class BrokerHandlers
{
    /// <summary>The authorizer (off: everything allowed).</summary>
    public Authorizer Authorizer { get; init; } = Authorizer.Off;

    void RegisterAclApis()
    {
        Add<DescribeAclsRequest>(DescribeAclsRequest.ApiKey, 0, 3, DescribeAcls);
        Add<CreateAclsRequest>(CreateAclsRequest.ApiKey, 0, 3, CreateAcls);
        Add<DeleteAclsRequest>(DeleteAclsRequest.ApiKey, 0, 3, DeleteAcls);
    }

    static IPAddress? ClientAddress(RequestContext ctx) => Acls.ClientAddress(ctx.Remote);

    /// <summary>Whether the request's principal may do <paramref name="op"/> on the resource.</summary>
    bool Allowed(RequestContext ctx, AclOperation op, ResourceType type, string name) =>
        Authorizer.Authorize(ctx.Principal, ClientAddress(ctx), op, type, name);

    bool AllowedOnCluster(RequestContext ctx, AclOperation op) => Allowed(ctx, op, ResourceType.Cluster, Acls.ClusterName);

    /// <summary>For the SCRAM credential APIs (Kafka checks DESCRIBE or ALTER on the cluster): true when allowed.</summary>
    internal bool AuthorizeClusterOperation(RequestContext ctx, AclOperation op) => AllowedOnCluster(ctx, op);

    /// <summary>Kafka's authorized operations of a resource for the request's principal; without an authorizer every
    /// supported operation, as Kafka answers.</summary>
    int AuthorizedOperations(RequestContext ctx, ResourceType type, string name, int whenOff) =>
        Authorizer.Enabled ? Authorizer.AuthorizedOperations(ctx.Principal, ClientAddress(ctx), type, name) : whenOff;

    ValueTask<IKafkaMessage?> DescribeAcls(RequestContext ctx, DescribeAclsRequest request)
    {
        var response = new DescribeAclsResponse();
        if (!Authorizer.Enabled)
            return Done(Refuse(response, ErrorCodes.SecurityDisabled, "No Authorizer is configured."));
        if (!AllowedOnCluster(ctx, AclOperation.Describe))
            return Done(Refuse(response, ErrorCodes.ClusterAuthorizationFailed, "Cluster authorization failed."));
        var filter = new AclFilter((ResourceType)request.ResourceTypeFilter, request.ResourceNameFilter, (PatternType)request.PatternTypeFilter,
            request.PrincipalFilter, request.HostFilter, (AclOperation)request.Operation, (AclPermission)request.PermissionType);
        if (filter.Validate() is { } bad)
            return Done(Refuse(response, ErrorCodes.InvalidRequest, bad));
        foreach (var group in Authorizer.Describe(filter).GroupBy(a => (a.ResourceType, a.ResourceName, a.PatternType)))
        {
            var resource = new DescribeAclsResponse.DescribeAclsResource
            {
                ResourceType = (sbyte)group.Key.ResourceType,
                ResourceName = group.Key.ResourceName,
                PatternType = (sbyte)group.Key.PatternType,
            };
            foreach (var a in group)
            {
                resource.Acls.Add(new DescribeAclsResponse.AclDescription
                {
                    Principal = a.Principal,
                    Host = a.Host,
                    Operation = (sbyte)a.Operation,
                    PermissionType = (sbyte)a.Permission,
                });
            }
            response.Resources.Add(resource);
        }
        response.ErrorMessage = null;
        return Done(response);

        static DescribeAclsResponse Refuse(DescribeAclsResponse r, short code, string message)
        {
            r.ErrorCode = code;
            r.ErrorMessage = message;
            return r;
        }
    }

    ValueTask<IKafkaMessage?> CreateAcls(RequestContext ctx, CreateAclsRequest request)
    {
        var response = new CreateAclsResponse();
        (short, string?) refusal = !Authorizer.Enabled ? (ErrorCodes.SecurityDisabled, "No Authorizer is configured.")
            : !AllowedOnCluster(ctx, AclOperation.Alter) ? (ErrorCodes.ClusterAuthorizationFailed, "Cluster authorization failed.")
            : (ErrorCodes.None, null);
        var valid = new List<AclBinding>();
        foreach (var c in request.Creations)
        {
            var result = new CreateAclsResponse.AclCreationResult { ErrorMessage = null };
            response.Results.Add(result);
            if (refusal.Item1 != ErrorCodes.None)
            {
                (result.ErrorCode, result.ErrorMessage) = refusal;
                continue;
            }
            var acl = new AclBinding((ResourceType)c.ResourceType, c.ResourceName, (PatternType)c.ResourcePatternType, c.Principal, c.Host,
                (AclOperation)c.Operation, (AclPermission)c.PermissionType);
            if (Acls.Validate(acl) is { } bad)
            {
                result.ErrorCode = ErrorCodes.InvalidRequest;
                result.ErrorMessage = bad;
                continue;
            }
            valid.Add(acl);
        }
        if (valid.Count == 0)
            return Done(response);
        try
        {
            Authorizer.Create(valid);
            _log.Info($"{ctx.Client} ({ctx.Principal}): created ACLs {string.Join(", ", valid)}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.Error($"{ctx.Client}: writing the ACL file failed ({e.Message}); the ACLs were not created. Check the data dir's disk and permissions");
            foreach (var r in response.Results.Where(r => r.ErrorCode == ErrorCodes.None))
            {
                r.ErrorCode = ErrorCodes.UnknownServerError;
                r.ErrorMessage = "the broker could not write its ACL file: " + e.Message;
            }
        }
        return Done(response);
    }

    ValueTask<IKafkaMessage?> DeleteAcls(RequestContext ctx, DeleteAclsRequest request)
    {
        var response = new DeleteAclsResponse();
        (short, string?) refusal = !Authorizer.Enabled ? (ErrorCodes.SecurityDisabled, "No Authorizer is configured.")
            : !AllowedOnCluster(ctx, AclOperation.Alter) ? (ErrorCodes.ClusterAuthorizationFailed, "Cluster authorization failed.")
            : (ErrorCodes.None, null);
        var filters = new List<AclFilter>();
        var results = new List<DeleteAclsResponse.DeleteAclsFilterResult>();
        foreach (var f in request.Filters)
        {
            var result = new DeleteAclsResponse.DeleteAclsFilterResult { ErrorMessage = null };
            response.FilterResults.Add(result);
            if (refusal.Item1 != ErrorCodes.None)
            {
                (result.ErrorCode, result.ErrorMessage) = refusal;
                continue;
            }
            var filter = new AclFilter((ResourceType)f.ResourceTypeFilter, f.ResourceNameFilter, (PatternType)f.PatternTypeFilter, f.PrincipalFilter,
                f.HostFilter, (AclOperation)f.Operation, (AclPermission)f.PermissionType);
            if (filter.Validate() is { } bad)
            {
                result.ErrorCode = ErrorCodes.InvalidRequest;
                result.ErrorMessage = bad;
                continue;
            }
            filters.Add(filter);
            results.Add(result);
        }
        if (filters.Count == 0)
            return Done(response);
        try
        {
            var removed = Authorizer.Delete(filters);
            for (int i = 0; i < removed.Length; i++)
            {
                foreach (var a in removed[i])
                {
                    results[i].MatchingAcls.Add(new DeleteAclsResponse.DeleteAclsMatchingAcl
                    {
                        ErrorMessage = null,
                        ResourceType = (sbyte)a.ResourceType,
                        ResourceName = a.ResourceName,
                        PatternType = (sbyte)a.PatternType,
                        Principal = a.Principal,
                        Host = a.Host,
                        Operation = (sbyte)a.Operation,
                        PermissionType = (sbyte)a.Permission,
                    });
                }
            }
            var all = removed.SelectMany(r => r).Distinct().ToList();
            if (all.Count > 0)
                _log.Info($"{ctx.Client} ({ctx.Principal}): deleted ACLs {string.Join(", ", all)}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.Error($"{ctx.Client}: writing the ACL file failed ({e.Message}); no ACL was deleted. Check the data dir's disk and permissions");
            foreach (var r in results)
            {
                r.ErrorCode = ErrorCodes.UnknownServerError;
                r.ErrorMessage = "the broker could not write its ACL file: " + e.Message;
            }
        }
        return Done(response);
    }
}
