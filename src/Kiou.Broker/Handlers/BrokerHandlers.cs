using Kiou.Broker.Controller;
using Kiou.Broker.Hosting;
using Kiou.Broker.Logs;
using Kiou.Broker.Network;
using Kiou.Protocol;
using Kiou.Protocol.Messages;

namespace Kiou.Broker.Handlers;

/// <summary>
/// The request handlers of the broker and the controller, one file per API family. Each registration below is the
/// single source of the versions KIOU advertises (shared/kafka-protocol/README.md §8.2 explains each range).
/// </summary>
public sealed partial class BrokerHandlers
{
    readonly BrokerConfig _config;
    readonly ClusterController _controller;
    readonly LogManager _logs;
    readonly RequestRouter _router;
    readonly TimeProvider _time;
    readonly Log _log;
    readonly FetchPurgatory _fetchPurgatory;

    /// <summary>The only leader epoch on a single node: stamped in batches, reported in Metadata, checked in Fetch.</summary>
    public const int LeaderEpoch = 0;

    public BrokerHandlers(BrokerConfig config, ClusterController controller, LogManager logs, RequestRouter router, TimeProvider time, Log log)
    {
        _config = config;
        _controller = controller;
        _logs = logs;
        _router = router;
        _time = time;
        _log = log;
        _fetchPurgatory = new FetchPurgatory(time);
    }

    public void RegisterAll()
    {
        // Produce v0-2 and Fetch v0-3 use the legacy message formats, converted on the way in and out
        // (docs/design/message-formats.md), as Kafka 3.x does.
        Add<ProduceRequest>(ProduceRequest.ApiKey, 0, 11, Produce);
        Add<FetchRequest>(FetchRequest.ApiKey, 0, 17, Fetch);
        Add<ListOffsetsRequest>(ListOffsetsRequest.ApiKey, 0, 10, ListOffsets);
        Add<MetadataRequest>(MetadataRequest.ApiKey, 0, 12, Metadata);
        Add<ApiVersionsRequest>(ApiVersionsRequest.ApiKey, 0, 4, ApiVersions);
        Add<CreateTopicsRequest>(CreateTopicsRequest.ApiKey, 0, 7, CreateTopics);
        Add<DeleteTopicsRequest>(DeleteTopicsRequest.ApiKey, 0, 6, DeleteTopics);
        Add<DeleteRecordsRequest>(DeleteRecordsRequest.ApiKey, 0, 2, DeleteRecords);
        Add<OffsetForLeaderEpochRequest>(OffsetForLeaderEpochRequest.ApiKey, 0, 4, OffsetForLeaderEpoch);
        Add<DescribeConfigsRequest>(DescribeConfigsRequest.ApiKey, 0, 4, DescribeConfigs);
        Add<AlterConfigsRequest>(AlterConfigsRequest.ApiKey, 0, 2, AlterConfigs);
        Add<CreatePartitionsRequest>(CreatePartitionsRequest.ApiKey, 0, 3, CreatePartitions);
        Add<IncrementalAlterConfigsRequest>(IncrementalAlterConfigsRequest.ApiKey, 0, 1, IncrementalAlterConfigs);
        Add<DescribeClusterRequest>(DescribeClusterRequest.ApiKey, 0, 1, DescribeCluster);
        Add<SaslHandshakeRequest>(SaslHandshakeRequest.ApiKey, 0, 1, SaslHandshake, advertised: false);
        Add<DescribeLogDirsRequest>(DescribeLogDirsRequest.ApiKey, 0, 4, DescribeLogDirs);
        Add<ElectLeadersRequest>(ElectLeadersRequest.ApiKey, 0, 2, ElectLeaders);
        Add<DescribeTopicPartitionsRequest>(DescribeTopicPartitionsRequest.ApiKey, 0, 0, DescribeTopicPartitions);
        RegisterSaslApis();
        RegisterGroupApis();
        RegisterIdempotenceApis();
        RegisterTransactionApis();
        RegisterAclApis();
    }

    /// <summary>The group coordinator's APIs (Handlers/Groups*.cs), when built in.</summary>
    partial void RegisterGroupApis();

    void Add<TRequest>(short apiKey, short min, short max, Func<RequestContext, TRequest, ValueTask<IKafkaMessage?>> handle, short minServed = -1,
        bool advertised = true)
        where TRequest : class, IKafkaMessage, new()
    {
        _router.Register(new ApiHandler
        {
            ApiKey = apiKey,
            MinVersion = min,
            MaxVersion = max,
            MinServedVersion = minServed,
            Advertised = advertised,
            CreateRequest = static () => new TRequest(),
            Handle = (ctx, request) => handle(ctx, (TRequest)request),
        });
    }

    static ValueTask<IKafkaMessage?> Done(IKafkaMessage response) => ValueTask.FromResult<IKafkaMessage?>(response);

    long NowMs => _time.GetUtcNow().ToUnixTimeMilliseconds();

    ValueTask<IKafkaMessage?> ApiVersions(RequestContext ctx, ApiVersionsRequest request) =>
        Done(new ApiVersionsResponse { ErrorCode = ErrorCodes.None, ApiKeys = WithSaslApis(ctx, _router.AdvertisedVersions()) });

    /// <summary>
    /// SASL is not served: a client configured for it gets the handshake's own refusal (no mechanism enabled) and the
    /// connection closes, so it reports that SASL is not enabled instead of timing out. Not advertised in ApiVersions:
    /// a client that reads them sees no SASL at all.
    /// </summary>
    ValueTask<IKafkaMessage?> SaslHandshake(RequestContext ctx, SaslHandshakeRequest request)
    {
        if (ctx.Sasl is { } sasl)
            return sasl.Handshake(ctx, request);
        ctx.CloseConnection = true;
        ctx.CloseReason = $"SASL handshake for mechanism '{request.Mechanism}' refused: this broker serves no SASL "
            + "(plaintext only); closing the connection. Configure the client with security.protocol=PLAINTEXT";
        return Done(new SaslHandshakeResponse { ErrorCode = ErrorCodes.UnsupportedSaslMechanism, Mechanisms = [] });
    }

    /// <summary>Epoch check of Fetch v9+, ListOffsets v4+ and OffsetForLeaderEpoch v2+: -1 skips it.</summary>
    static short CheckLeaderEpoch(int currentLeaderEpoch) => currentLeaderEpoch switch
    {
        < 0 => ErrorCodes.None,
        LeaderEpoch => ErrorCodes.None,
        > LeaderEpoch => ErrorCodes.UnknownLeaderEpoch,
    };
}
