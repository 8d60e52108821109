using Kiou.Broker.Network;
using Kiou.Broker.Security;
using Kiou.Protocol;
using Kiou.Protocol.Messages;

namespace Kiou.Broker.Handlers;

/// <summary>SASL authentication (the state lives in each connection's <see cref="SaslAuthenticator"/>) and the SCRAM
/// credential admin APIs, with Kafka's semantics and error codes (docs/design/security-sasl.md).</summary>
public sealed partial class BrokerHandlers
{
    void RegisterSaslApis()
    {
        // Advertised on SASL listeners only (WithSaslApis): on a plaintext listener a SASL client learns at once that
        // the broker offers it no SASL there.
        Add<SaslAuthenticateRequest>(SaslAuthenticateRequest.ApiKey, 0, 2, SaslAuthenticate, advertised: false);
        Add<DescribeUserScramCredentialsRequest>(DescribeUserScramCredentialsRequest.ApiKey, 0, 0, DescribeUserScramCredentials);
        Add<AlterUserScramCredentialsRequest>(AlterUserScramCredentialsRequest.ApiKey, 0, 0, AlterUserScramCredentials);
    }

    static List<ApiVersionsResponse.ApiVersion> WithSaslApis(RequestContext ctx, List<ApiVersionsResponse.ApiVersion> versions)
    {
        if (ctx.Sasl is null)
            return versions;
        versions.Add(new ApiVersionsResponse.ApiVersion { ApiKey = SaslHandshakeRequest.ApiKey, MinVersion = 0, MaxVersion = 1 });
        versions.Add(new ApiVersionsResponse.ApiVersion { ApiKey = SaslAuthenticateRequest.ApiKey, MinVersion = 0, MaxVersion = 2 });
        versions.Sort((a, b) => a.ApiKey.CompareTo(b.ApiKey));
        return versions;
    }

    ValueTask<IKafkaMessage?> SaslAuthenticate(RequestContext ctx, SaslAuthenticateRequest request)
    {
        if (ctx.Sasl is { } sasl)
            return sasl.Authenticate(ctx, request);
        return Done(new SaslAuthenticateResponse
        {
            ErrorCode = ErrorCodes.IllegalSaslState,
            ErrorMessage = "SaslAuthenticate on a listener without SASL (use security.protocol=PLAINTEXT or SSL)",
        });
    }

    SaslServer Sasl => _router.Sasl ?? throw new InvalidOperationException("the broker was started without its SASL server");

    ValueTask<IKafkaMessage?> DescribeUserScramCredentials(RequestContext ctx, DescribeUserScramCredentialsRequest request)
    {
        // Kafka: DESCRIBE on the cluster, else the whole answer is refused.
        if (!AuthorizeClusterOperation(ctx, Kiou.Broker.Security.AclOperation.Describe))
            return Done(new DescribeUserScramCredentialsResponse { ErrorCode = ErrorCodes.ClusterAuthorizationFailed, ErrorMessage = "Cluster authorization failed." });
        var all = Sasl.Scram.All;
        var response = new DescribeUserScramCredentialsResponse { ErrorCode = ErrorCodes.None, ErrorMessage = null };
        IEnumerable<(string User, bool Duplicate)> users;
        if (request.Users is null or { Count: 0 })
        {
            users = all.Keys.Select(k => k.User).Distinct().Order(StringComparer.Ordinal).Select(u => (u, false));
        }
        else
        {
            var counts = new Dictionary<string, int>(StringComparer.Ordinal);
            var order = new List<string>();
            foreach (var u in request.Users)
            {
                if (counts.TryGetValue(u.Name, out int n))
                    counts[u.Name] = n + 1;
                else
                {
                    counts[u.Name] = 1;
                    order.Add(u.Name);
                }
            }
            users = order.Select(u => (u, counts[u] > 1));
        }
        foreach (var (user, duplicate) in users)
        {
            var result = new DescribeUserScramCredentialsResponse.DescribeUserScramCredentialsResult { User = user, ErrorMessage = null };
            if (duplicate)
            {
                result.ErrorCode = ErrorCodes.DuplicateResource;
                result.ErrorMessage = "Cannot describe SCRAM credentials for the same user twice in a single request: " + user;
            }
            else
            {
                foreach (var mech in new[] { ScramMechanism.Sha256, ScramMechanism.Sha512 })
                {
                    if (all.TryGetValue((user, mech.Type), out var credential))
                        result.CredentialInfos.Add(new DescribeUserScramCredentialsResponse.CredentialInfo { Mechanism = mech.Type, Iterations = credential.Iterations });
                }
                if (result.CredentialInfos.Count == 0)
                {
                    result.ErrorCode = ErrorCodes.ResourceNotFound;
                    result.ErrorMessage = "Attempt to describe a user credential that does not exist: " + user;
                }
            }
            response.Results.Add(result);
        }
        return Done(response);
    }

    /// <summary>As Kafka's ScramControlManager.alterCredentials: a user named twice in one request (deletion or
    /// upsertion, any mechanism) fails with DUPLICATE_RESOURCE; the valid changes are applied together.</summary>
    ValueTask<IKafkaMessage?> AlterUserScramCredentials(RequestContext ctx, AlterUserScramCredentialsRequest request)
    {
        // Kafka: ALTER on the cluster, else every user named is answered CLUSTER_AUTHORIZATION_FAILED.
        if (!AuthorizeClusterOperation(ctx, Kiou.Broker.Security.AclOperation.Alter))
        {
            var refused = new AlterUserScramCredentialsResponse();
            foreach (string user in request.Deletions.Select(d => d.Name).Concat(request.Upsertions.Select(u => u.Name)).Distinct(StringComparer.Ordinal))
                refused.Results.Add(new AlterUserScramCredentialsResponse.AlterUserScramCredentialsResult { User = user, ErrorCode = ErrorCodes.ClusterAuthorizationFailed, ErrorMessage = "Cluster authorization failed." });
            return Done(refused);
        }
        var store = Sasl.Scram;
        var deletions = new Dictionary<string, AlterUserScramCredentialsRequest.ScramCredentialDeletion>(StringComparer.Ordinal);
        var upsertions = new Dictionary<string, AlterUserScramCredentialsRequest.ScramCredentialUpsertion>(StringComparer.Ordinal);
        var errors = new Dictionary<string, (short Code, string Message)>(StringComparer.Ordinal);
        const string twice = "A user credential cannot be altered twice in the same request";
        foreach (var d in request.Deletions)
        {
            if (errors.ContainsKey(d.Name))
                continue;
            if (deletions.Remove(d.Name))
                errors[d.Name] = (ErrorCodes.DuplicateResource, twice);
            else if (ValidateName(d.Name, d.Mechanism) is { } error)
                errors[d.Name] = error;
            else if (store.Find(d.Name, ScramMechanism.OfType(d.Mechanism)!) is null)
                errors[d.Name] = (ErrorCodes.ResourceNotFound, "Attempt to delete a user credential that does not exist");
            else
                deletions[d.Name] = d;
        }
        foreach (var u in request.Upsertions)
        {
            if (errors.ContainsKey(u.Name))
                continue;
            if (deletions.Remove(u.Name) | upsertions.Remove(u.Name))
                errors[u.Name] = (ErrorCodes.DuplicateResource, twice);
            else if (ValidateName(u.Name, u.Mechanism) is { } error)
                errors[u.Name] = error;
            else if (u.Iterations < ScramMechanism.MinIterations)
                errors[u.Name] = (ErrorCodes.UnacceptableCredential, "Too few iterations");
            else if (u.Iterations > ScramMechanism.MaxIterations)
                errors[u.Name] = (ErrorCodes.UnacceptableCredential, "Too many iterations");
            else if (u.Salt.Length == 0 || u.SaltedPassword.Length == 0)
                errors[u.Name] = (ErrorCodes.UnacceptableCredential, "Salt and salted password must not be empty");
            else
                upsertions[u.Name] = u;
        }
        var response = new AlterUserScramCredentialsResponse();
        if (deletions.Count + upsertions.Count > 0)
        {
            try
            {
                store.Change(
                    deletions.Values.Select(d => (d.Name, d.Mechanism)),
                    upsertions.Values.Select(u => (u.Name, u.Mechanism, ScramMechanism.OfType(u.Mechanism)!.Credential(u.Salt, u.SaltedPassword, u.Iterations))));
                foreach (string user in deletions.Keys.Concat(upsertions.Keys))
                    response.Results.Add(new AlterUserScramCredentialsResponse.AlterUserScramCredentialsResult { User = user, ErrorCode = ErrorCodes.None, ErrorMessage = null });
                _log.Info($"{ctx.Client} ({ctx.Principal}): SCRAM credentials changed: "
                    + string.Join(", ", deletions.Values.Select(d => $"{d.Name} {ScramMechanism.OfType(d.Mechanism)} deleted")
                        .Concat(upsertions.Values.Select(u => $"{u.Name} {ScramMechanism.OfType(u.Mechanism)} set ({u.Iterations} iterations)"))));
            }
            catch (IOException e)
            {
                _log.Error($"{store.FilePath} could not be written ({e.Message}); the SCRAM credential change of {ctx.Client} was not made. Check the disk of the data dir");
                foreach (string user in deletions.Keys.Concat(upsertions.Keys))
                    errors[user] = (ErrorCodes.UnknownServerError, $"the broker could not write its credential file ({e.Message}); nothing was changed");
            }
        }
        foreach (var (user, (code, message)) in errors)
            response.Results.Add(new AlterUserScramCredentialsResponse.AlterUserScramCredentialsResult { User = user, ErrorCode = code, ErrorMessage = message });
        return Done(response);
    }

    static (short, string)? ValidateName(string user, sbyte mechanism)
    {
        if (user.Length == 0)
            return (ErrorCodes.UnacceptableCredential, "Username must not be empty");
        if (ScramMechanism.OfType(mechanism) is null)
            return (ErrorCodes.UnsupportedSaslMechanism, "Unknown SCRAM mechanism");
        return null;
    }
}
