using Kiou.Broker.Controller;
using Kiou.Broker.Network;
using Kiou.Broker.Security;
using Kiou.Protocol;
using Kiou.Protocol.Messages;

namespace Kiou.Broker.Handlers;

// Topic administration, served on both listeners; the controller owns the metadata and persists it.
// CreateTopics v2-7: partitions -1 = KIOU_NUM_PARTITIONS, replication factor 1 or -1; manual assignments may name
//   only this node; v5+ echo partitions, replication factor and configs, v7 the topic id.
// DeleteTopics v1-6 (v6: by name or id). CreatePartitions v0-3 (only increases).
// DescribeConfigs v1-4: topics (every config, with its source and Kafka's synonyms) and this broker or the cluster
//   default (static settings read-only, dynamic ones with their source).
// AlterConfigs v0-2 / IncrementalAlterConfigs v0-1: topics, and this broker or the cluster default (empty name) for the
//   dynamic broker configs (Controller/DynamicBrokerConfigs.cs); the other broker settings come from KIOU_* variables.
public sealed partial class BrokerHandlers
{
    const sbyte ResourceTopic = 2;
    const sbyte ResourceBroker = 4;
    const sbyte SourceTopicConfig = 1;
    const sbyte SourceStaticBroker = 4;
    const sbyte SourceDefault = 5;

    async ValueTask<IKafkaMessage?> CreateTopics(RequestContext ctx, CreateTopicsRequest request)
    {
        var pending = new List<(CreateTopicsResponse.CreatableTopicResult Result, TopicRequest Request)>();
        var response = new CreateTopicsResponse();
        var names = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var t in request.Topics)
            names[t.Name] = names.GetValueOrDefault(t.Name) + 1;
        bool clusterCreate = AllowedOnCluster(ctx, AclOperation.Create);
        foreach (var t in request.Topics)
        {
            var result = new CreateTopicsResponse.CreatableTopicResult { Name = t.Name, NumPartitions = -1, ReplicationFactor = -1 };
            response.Topics.Add(result);
            if (names[t.Name] > 1)
            {
                (result.ErrorCode, result.ErrorMessage) = (ErrorCodes.InvalidRequest, $"Topic '{t.Name}' appears more than once in the request");
                continue;
            }
            // Kafka: CREATE on the cluster, or on the topic.
            if (!clusterCreate && !Allowed(ctx, AclOperation.Create, ResourceType.Topic, t.Name))
            {
                (result.ErrorCode, result.ErrorMessage) = (ErrorCodes.TopicAuthorizationFailed, "Authorization failed.");
                continue;
            }
            if (IsInternalTopic(t.Name))
            {
                (result.ErrorCode, result.ErrorMessage) = (ErrorCodes.InvalidRequest, $"Creation of internal topic {t.Name} is prohibited.");
                continue;
            }
            int partitions = t.NumPartitions;
            short rf = t.ReplicationFactor;
            if (t.Assignments.Count > 0)
            {
                if (partitions != -1 || rf != -1)
                {
                    (result.ErrorCode, result.ErrorMessage) = (ErrorCodes.InvalidRequest, "Both a replica assignment and a partition count or replication factor were given");
                    continue;
                }
                bool ok = t.Assignments.All(a => a.BrokerIds.Count == 1 && a.BrokerIds[0] == _config.NodeId);
                if (!ok)
                {
                    (result.ErrorCode, result.ErrorMessage) = (ErrorCodes.InvalidReplicaAssignment, $"Replica assignments may only name this broker ({_config.NodeId})");
                    continue;
                }
                partitions = t.Assignments.Count;
                rf = 1;
            }
            var configs = new Dictionary<string, string?>(StringComparer.Ordinal);
            string? nullConfig = null;
            foreach (var c in t.Configs)
            {
                if (c.Value is null)
                    nullConfig = c.Name;
                configs[c.Name] = c.Value;
            }
            if (nullConfig is not null)
            {
                (result.ErrorCode, result.ErrorMessage) = (ErrorCodes.InvalidConfig, $"Null value not supported for topic config {nullConfig}");
                continue;
            }
            pending.Add((result, new TopicRequest(t.Name, partitions, rf, configs)));
        }
        AdminResult[] outcomes;
        try
        {
            outcomes = await _controller.CreateTopicsAsync(pending.Select(p => p.Request).ToList(), request.validateOnly).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            var failed = Failed(ctx, "CreateTopics", e);
            outcomes = pending.Select(_ => failed).ToArray();
        }
        for (int i = 0; i < pending.Count; i++)
        {
            var (result, wanted) = pending[i];
            var created = outcomes[i];
            result.ErrorCode = created.ErrorCode;
            result.ErrorMessage = created.Message;
            if (created.ErrorCode == ErrorCodes.None && created.Topic is { } topic)
            {
                result.TopicId = topic.Id;
                result.NumPartitions = topic.Partitions;
                result.ReplicationFactor = 1;
                result.Configs = [];
                foreach (var d in TopicConfigs.All)
                {
                    bool set = topic.Configs.TryGetValue(d.Name, out var v);
                    result.Configs.Add(new CreateTopicsResponse.CreatableTopicConfigs
                    {
                        Name = d.Name,
                        Value = set ? v : d.Default,
                        ReadOnly = false,
                        ConfigSource = set ? SourceTopicConfig : SourceDefault,
                        IsSensitive = false,
                    });
                }
            }
            else if (created.ErrorCode != ErrorCodes.TopicAlreadyExists)
            {
                _log.Info($"{ctx.Client}: CreateTopics {wanted.Name} refused: {created.Message}");
            }
        }
        return response;
    }

    /// <summary>An unexpected failure inside an admin operation becomes that request's error code, never a dropped connection.</summary>
    AdminResult Failed(RequestContext ctx, string api, Exception e)
    {
        _log.Error($"{ctx.Client}: {api} failed inside the broker: {e}");
        return e is IOException or UnauthorizedAccessException
            ? new AdminResult(ErrorCodes.KafkaStorageError, $"{api} failed on the broker's disk: {e.Message}")
            : new AdminResult(ErrorCodes.UnknownServerError, $"{api} failed inside the broker: {e.Message}");
    }

    async ValueTask<IKafkaMessage?> DeleteTopics(RequestContext ctx, DeleteTopicsRequest request)
    {
        var response = new DeleteTopicsResponse();
        var wanted = new List<(string? Name, Guid Id)>();
        if (ctx.ApiVersion >= 6)
        {
            foreach (var t in request.Topics)
                wanted.Add((t.Name, t.TopicId));
        }
        else
        {
            foreach (var n in request.TopicNames)
                wanted.Add((n, Guid.Empty));
        }
        foreach (var (name, id) in wanted)
        {
            var result = new DeleteTopicsResponse.DeletableTopicResult { Name = name, TopicId = id };
            response.Responses.Add(result);
            string? target = name;
            if (target is null)
            {
                var byId = _controller.Find(id);
                if (byId is null)
                {
                    (result.ErrorCode, result.ErrorMessage) = (ErrorCodes.UnknownTopicId, $"Topic id {id} does not exist");
                    continue;
                }
                target = byId.Name;
                result.Name = target;
            }
            if (!Allowed(ctx, AclOperation.Delete, ResourceType.Topic, target))
            {
                (result.ErrorCode, result.ErrorMessage) = (ErrorCodes.TopicAuthorizationFailed, "Topic authorization failed.");
                continue;
            }
            if (IsInternalTopic(target))
            {
                (result.ErrorCode, result.ErrorMessage) = (ErrorCodes.InvalidRequest, $"Topic {target} is an internal topic and cannot be deleted.");
                continue;
            }
            AdminResult deleted;
            try
            {
                deleted = await _controller.DeleteTopicAsync(target).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                deleted = Failed(ctx, "DeleteTopics", e);
            }
            result.ErrorCode = deleted.ErrorCode;
            result.ErrorMessage = deleted.Message;
            if (deleted.Topic is { } t)
                result.TopicId = t.Id;
        }
        return response;
    }

    async ValueTask<IKafkaMessage?> CreatePartitions(RequestContext ctx, CreatePartitionsRequest request)
    {
        var response = new CreatePartitionsResponse();
        foreach (var t in request.Topics)
        {
            var result = new CreatePartitionsResponse.CreatePartitionsTopicResult { Name = t.Name };
            response.Results.Add(result);
            if (t.Assignments is not null && !t.Assignments.All(a => a.BrokerIds.Count == 1 && a.BrokerIds[0] == _config.NodeId))
            {
                (result.ErrorCode, result.ErrorMessage) = (ErrorCodes.InvalidReplicaAssignment, $"Replica assignments may only name this broker ({_config.NodeId})");
                continue;
            }
            if (!Allowed(ctx, AclOperation.Alter, ResourceType.Topic, t.Name))
            {
                (result.ErrorCode, result.ErrorMessage) = (ErrorCodes.TopicAuthorizationFailed, "The topic authorization is failed.");
                continue;
            }
            if (IsInternalTopic(t.Name))
            {
                (result.ErrorCode, result.ErrorMessage) = (ErrorCodes.InvalidRequest, $"Topic {t.Name} is an internal topic; its partition count is fixed.");
                continue;
            }
            AdminResult r;
            try
            {
                r = await _controller.CreatePartitionsAsync(t.Name, t.Count, request.ValidateOnly).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                r = Failed(ctx, "CreatePartitions", e);
            }
            result.ErrorCode = r.ErrorCode;
            result.ErrorMessage = r.Message;
        }
        return response;
    }

    ValueTask<IKafkaMessage?> DescribeConfigs(RequestContext ctx, DescribeConfigsRequest request)
    {
        var response = new DescribeConfigsResponse();
        foreach (var resource in request.Resources)
        {
            var result = new DescribeConfigsResponse.DescribeConfigsResult { ResourceType = resource.ResourceType, ResourceName = resource.ResourceName };
            response.Results.Add(result);
            bool Wanted(string name) => resource.ConfigurationKeys is null || resource.ConfigurationKeys.Contains(name);
            if (resource.ResourceType == ResourceTopic && !Allowed(ctx, AclOperation.DescribeConfigs, ResourceType.Topic, resource.ResourceName))
            {
                (result.ErrorCode, result.ErrorMessage) = (ErrorCodes.TopicAuthorizationFailed, "Topic authorization failed.");
                continue;
            }
            if (resource.ResourceType != ResourceTopic && !AllowedOnCluster(ctx, AclOperation.DescribeConfigs))
            {
                (result.ErrorCode, result.ErrorMessage) = (ErrorCodes.ClusterAuthorizationFailed, "Cluster authorization failed.");
                continue;
            }
            if (resource.ResourceType == ResourceTopic)
            {
                var topic = _controller.Find(resource.ResourceName);
                if (topic is null)
                {
                    (result.ErrorCode, result.ErrorMessage) = (ErrorCodes.UnknownTopicOrPartition, $"Topic '{resource.ResourceName}' does not exist");
                    continue;
                }
                foreach (var d in TopicConfigs.All)
                {
                    if (!Wanted(d.Name))
                        continue;
                    bool set = topic.Configs.TryGetValue(d.Name, out var v);
                    // As Kafka's ConfigHelper.createTopicConfigEntry: the topic's own value, then the synonyms of its
                    // first broker synonym (e.g. log.retention.ms), each level in turn.
                    var brokerNames = DynamicBrokerConfigs.SynonymsOfTopicConfig(d.Name);
                    var synonyms = brokerNames.Length > 0 && BrokerConfigs is { } dyn ? dyn.Synonyms(brokerNames[0], brokerNames, perBroker: true) : [];
                    sbyte source = set ? SourceTopicConfig : synonyms.Count > 0 ? synonyms[0].Source : SourceDefault;
                    var entry = new DescribeConfigsResponse.DescribeConfigsResourceResult
                    {
                        Name = d.Name,
                        Value = set ? v : TopicConfigs.Effective(topic.Configs, d.Name, _logs.TopicDefaults),
                        ReadOnly = false,
                        IsDefault = source == SourceDefault,
                        ConfigSource = source,
                        IsSensitive = false,
                        ConfigType = ConfigTypeOf(d.Kind),
                        Documentation = d.Note,
                    };
                    if (request.IncludeSynonyms)
                    {
                        if (set)
                            entry.Synonyms.Add(new DescribeConfigsResponse.DescribeConfigsSynonym { Name = d.Name, Value = v, Source = SourceTopicConfig });
                        foreach (var (name, value, from) in synonyms)
                            entry.Synonyms.Add(new DescribeConfigsResponse.DescribeConfigsSynonym { Name = name, Value = value, Source = from });
                    }
                    result.Configs.Add(entry);
                }
            }
            else if (resource.ResourceType == ResourceBroker)
            {
                if (resource.ResourceName.Length > 0 && resource.ResourceName != _config.NodeId.ToString(System.Globalization.CultureInfo.InvariantCulture))
                {
                    (result.ErrorCode, result.ErrorMessage) = (ErrorCodes.InvalidRequest, $"This is broker {_config.NodeId}, not '{resource.ResourceName}'");
                    continue;
                }
                DescribeBroker(result, perBroker: resource.ResourceName.Length > 0, Wanted, request.IncludeSynonyms);
            }
            else
            {
                (result.ErrorCode, result.ErrorMessage) = (ErrorCodes.InvalidRequest, $"Resource type {resource.ResourceType} is not supported: KIOU describes topics (2) and brokers (4)");
            }
        }
        return Done(response);
    }

    /// <summary>The dynamic broker configs (Controller/DynamicBrokerConfigs.cs); null in handlers built without them.</summary>
    public DynamicBrokerConfigs? BrokerConfigs { get; init; }

    /// <summary>
    /// As Kafka's ConfigHelper.createBrokerConfigEntry: this broker (<paramref name="perBroker"/>) lists its static
    /// settings (read-only) and every dynamic config with its source; the default broker lists only the dynamic
    /// cluster defaults. The source is that of the first synonym from the config itself on.
    /// </summary>
    void DescribeBroker(DescribeConfigsResponse.DescribeConfigsResult result, bool perBroker, Func<string, bool> wanted, bool includeSynonyms)
    {
        if (perBroker)
        {
            foreach (var (name, value, type) in BrokerConfigEntries())
            {
                if (!wanted(name) || DynamicBrokerConfigs.Find(name) is not null)
                    continue;
                var entry = new DescribeConfigsResponse.DescribeConfigsResourceResult { Name = name, Value = value, ReadOnly = true, ConfigSource = SourceStaticBroker, ConfigType = type };
                if (includeSynonyms)
                    entry.Synonyms.Add(new DescribeConfigsResponse.DescribeConfigsSynonym { Name = name, Value = value, Source = SourceStaticBroker });
                result.Configs.Add(entry);
            }
        }
        if (BrokerConfigs is not { } dyn)
            return;
        var defaults = dyn.Level(perBroker: false);
        foreach (var d in DynamicBrokerConfigs.All)
        {
            if (!wanted(d.Name) || (!perBroker && !defaults.ContainsKey(d.Name)))
                continue;
            var synonyms = dyn.Synonyms(d.Name, DynamicBrokerConfigs.BrokerSynonyms(d.Name), perBroker);
            sbyte source = synonyms.Count > 0 ? synonyms[0].Source : SourceDefault;
            var entry = new DescribeConfigsResponse.DescribeConfigsResourceResult
            {
                Name = d.Name,
                Value = perBroker ? dyn.Effective(d.Name) ?? d.Default : defaults[d.Name],
                ReadOnly = false,
                IsDefault = source == SourceDefault,
                ConfigSource = source,
                IsSensitive = false,
                ConfigType = BrokerConfigTypeOf(d.Kind),
            };
            if (includeSynonyms)
            {
                foreach (var (name, value, from) in synonyms)
                    entry.Synonyms.Add(new DescribeConfigsResponse.DescribeConfigsSynonym { Name = name, Value = value, Source = from });
            }
            result.Configs.Add(entry);
        }
    }

    static sbyte BrokerConfigTypeOf(DynamicBrokerConfigs.Kind kind) => kind switch
    {
        DynamicBrokerConfigs.Kind.Bool => 1,
        DynamicBrokerConfigs.Kind.String => 2,
        DynamicBrokerConfigs.Kind.Int => 3,
        DynamicBrokerConfigs.Kind.Long => 5,
        DynamicBrokerConfigs.Kind.Double => 6,
        DynamicBrokerConfigs.Kind.List => 7,
        _ => 0,
    };

    IEnumerable<(string Name, string Value, sbyte Type)> BrokerConfigEntries()
    {
        string I(long v) => v.ToString(System.Globalization.CultureInfo.InvariantCulture);
        yield return ("broker.id", I(_config.NodeId), 3);
        yield return ("node.id", I(_config.NodeId), 3);
        yield return ("log.dirs", _config.DataDir, 2);
        var listeners = _config.EffectiveListeners;
        yield return ("listeners", $"{string.Join(",", listeners)},CONTROLLER://{_config.ControllerHost}:{_config.ControllerPort}", 7);
        yield return ("advertised.listeners", string.Join(",", listeners.Select(l => $"{l.Name}://{l.EffectiveAdvertisedHost}:{l.EffectiveAdvertisedPort}")), 7);
        yield return ("listener.security.protocol.map", string.Join(",", listeners.Select(l => $"{l.Name}:{Kiou.Broker.Security.BrokerListener.ProtocolName(l.Protocol)}").Append("CONTROLLER:PLAINTEXT")), 2);
        yield return ("num.partitions", I(_config.DefaultPartitions), 3);
        yield return ("default.replication.factor", "1", 3);
        yield return ("auto.create.topics.enable", _config.AutoCreateTopics ? "true" : "false", 1);
        yield return ("delete.topic.enable", "true", 1);
        yield return ("message.max.bytes", I(_config.MessageMaxBytes), 3);
        yield return ("socket.request.max.bytes", I(_config.MaxRequestBytes), 3);
        yield return ("fetch.max.bytes", I(_config.FetchMaxBytes), 3);
        yield return ("log.retention.check.interval.ms", I(_config.RetentionCheckIntervalMs), 5);
        yield return ("log.cleaner.enable", _config.Cleaner.Enable ? "true" : "false", 1);
        yield return ("log.cleaner.threads", "1", 3);
        yield return ("log.cleaner.dedupe.buffer.size", I(_config.Cleaner.DedupeBufferBytes), 5);
        yield return ("log.cleaner.io.max.bytes.per.second", I(_config.Cleaner.IoMaxBytesPerSecond), 6);
        yield return ("log.cleaner.io.buffer.size", I(_config.Cleaner.IoBufferBytes), 3);
        yield return ("log.cleaner.backoff.ms", I(_config.Cleaner.BackoffMs), 5);
    }

    static sbyte ConfigTypeOf(TopicConfigs.Kind kind) => kind switch
    {
        TopicConfigs.Kind.Bool => 1,
        TopicConfigs.Kind.String => 2,
        TopicConfigs.Kind.Int => 3,
        TopicConfigs.Kind.Long => 5,
        TopicConfigs.Kind.Double => 6,
        _ => 0,
    };

    ValueTask<IKafkaMessage?> AlterConfigs(RequestContext ctx, AlterConfigsRequest request)
    {
        var response = new AlterConfigsResponse();
        foreach (var resource in request.Resources)
        {
            var changes = new Dictionary<string, string?>(StringComparer.Ordinal);
            foreach (var c in resource.Configs)
                changes[c.Name] = c.Value;
            var (code, message) = AlterResource(ctx, resource.ResourceType, resource.ResourceName, changes, incremental: false, request.ValidateOnly);
            response.Responses.Add(new AlterConfigsResponse.AlterConfigsResourceResponse
            {
                ErrorCode = code,
                ErrorMessage = message,
                ResourceType = resource.ResourceType,
                ResourceName = resource.ResourceName,
            });
        }
        return Done(response);
    }

    ValueTask<IKafkaMessage?> IncrementalAlterConfigs(RequestContext ctx, IncrementalAlterConfigsRequest request)
    {
        var response = new IncrementalAlterConfigsResponse();
        foreach (var resource in request.Resources)
        {
            var changes = new Dictionary<string, string?>(StringComparer.Ordinal);
            (short, string?) outcome = (ErrorCodes.None, null);
            var current = resource.ResourceType == ResourceTopic ? _controller.Find(resource.ResourceName) : null;
            foreach (var c in resource.Configs)
            {
                switch (c.ConfigOperation)
                {
                    case 0: // SET
                        changes[c.Name] = c.Value;
                        break;
                    case 1: // DELETE: back to the default
                        changes[c.Name] = null;
                        break;
                    case 2 or 3 when (c.Name == "cleanup.policy" && current is not null) || (c.Name == "log.cleanup.policy" && resource.ResourceType == ResourceBroker && BrokerConfigs is not null):
                        string was = current is not null
                            ? TopicConfigs.Effective(current.Configs, c.Name, _logs.TopicDefaults)
                            : BrokerConfigs!.Level(resource.ResourceName.Length > 0).GetValueOrDefault(c.Name) ?? BrokerConfigs.Effective(c.Name) ?? "delete";
                        var items = was.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
                        foreach (var item in (c.Value ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries))
                        {
                            if (c.ConfigOperation == 2 && !items.Contains(item))
                                items.Add(item);
                            else if (c.ConfigOperation == 3)
                                items.Remove(item);
                        }
                        changes[c.Name] = string.Join(',', items);
                        break;
                    default:
                        outcome = (ErrorCodes.InvalidConfig, $"Operation {c.ConfigOperation} is not valid for config {c.Name}");
                        break;
                }
            }
            if (outcome.Item1 == ErrorCodes.None)
                outcome = AlterResource(ctx, resource.ResourceType, resource.ResourceName, changes, incremental: true, request.ValidateOnly);
            response.Responses.Add(new IncrementalAlterConfigsResponse.AlterConfigsResourceResponse
            {
                ErrorCode = outcome.Item1,
                ErrorMessage = outcome.Item2,
                ResourceType = resource.ResourceType,
                ResourceName = resource.ResourceName,
            });
        }
        return Done(response);
    }

    /// <summary>
    /// AlterConfigs (replaces the level's dynamic configs) and IncrementalAlterConfigs (SET/DELETE; null value = back
    /// to the level below) on this broker (its id) or the cluster default (empty name). As Kafka's
    /// ConfigAdminManager.validateBrokerConfigChange, every refusal is INVALID_REQUEST with Kafka's ConfigException text.
    /// </summary>
    (short, string?) AlterBroker(RequestContext ctx, string name, Dictionary<string, string?> changes, bool incremental, bool validateOnly)
    {
        if (BrokerConfigs is not { } dyn)
            return (ErrorCodes.InvalidRequest, "Broker settings are read-only at run time: set the KIOU_* environment variables and restart");
        bool perBroker = name.Length > 0;
        if (perBroker && name != _config.NodeId.ToString(System.Globalization.CultureInfo.InvariantCulture))
            return (ErrorCodes.InvalidRequest, $"This is broker {_config.NodeId}, not '{name}'");
        string? refused;
        try
        {
            refused = dyn.Alter(perBroker, values =>
            {
                var readOnly = changes.Keys.Where(k => DynamicBrokerConfigs.Find(k) is null).ToList();
                if (readOnly.Count > 0)
                    return $"Cannot update these configs dynamically: Set({string.Join(", ", readOnly)})";
                if (!incremental)
                    values.Clear();
                foreach (var (k, v) in changes)
                {
                    if (v is null)
                        values.Remove(k);
                    else
                        values[k] = v;
                }
                return null;
            }, validateOnly, _logs.ApplyTopicDefaults);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            var failed = Failed(ctx, "AlterConfigs", e);
            return (failed.ErrorCode, $"{failed.Message}; the dynamic broker configs are unchanged ({dyn.FilePath})");
        }
        string level = perBroker ? $"broker {name}" : "the cluster default";
        if (refused is not null)
        {
            _log.Info($"{ctx.Client}: dynamic config change for {level} refused: {refused}");
            return (ErrorCodes.InvalidRequest, refused);
        }
        if (!validateOnly)
        {
            _log.Info($"{ctx.Client}: dynamic configs of {level} changed: " +
                string.Join(", ", changes.Select(kv => kv.Value is null ? $"{kv.Key} removed" : $"{kv.Key}={kv.Value}")) + $" (kept in {dyn.FilePath})");
        }
        return (ErrorCodes.None, null);
    }

    (short, string?) AlterResource(RequestContext ctx, sbyte type, string name, Dictionary<string, string?> changes, bool incremental, bool validateOnly)
    {
        // Kafka: ALTER_CONFIGS on the topic, or on the cluster for a broker.
        if (type == ResourceBroker && !AllowedOnCluster(ctx, AclOperation.AlterConfigs))
            return (ErrorCodes.ClusterAuthorizationFailed, "Cluster authorization failed.");
        if (type == ResourceTopic && !Allowed(ctx, AclOperation.AlterConfigs, ResourceType.Topic, name))
            return (ErrorCodes.TopicAuthorizationFailed, "Topic authorization failed.");
        if (type == ResourceBroker)
            return AlterBroker(ctx, name, changes, incremental, validateOnly);
        if (type != ResourceTopic)
            return (ErrorCodes.InvalidRequest, $"Resource type {type} is not supported");
        AdminResult r;
        try
        {
            r = _controller.AlterConfigs(name, changes, incremental, validateOnly);
        }
        catch (Exception e)
        {
            r = Failed(ctx, "AlterConfigs", e);
        }
        if (r.ErrorCode != ErrorCodes.None)
            _log.Info($"{ctx.Client}: config change for topic {name} refused: {r.Message}");
        return (r.ErrorCode, r.Message);
    }
}
