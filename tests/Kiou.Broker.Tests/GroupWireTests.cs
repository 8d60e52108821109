using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Kiou.Protocol;
using Kiou.Protocol.Messages;

namespace Kiou.Broker.Tests;

/// <summary>
/// Group requests in shapes librdkafka never sends (batched FindCoordinator v4, multi-group OffsetFetch v8,
/// kafka-python's old versions), written on the wire with our codecs and checked against Kafka's documented answers.
/// </summary>
public sealed class GroupWireTests
{
    sealed class Wire(Socket socket) : IDisposable
    {
        int _correlation;

        public static async Task<Wire> ConnectAsync(IPEndPoint endPoint)
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await s.ConnectAsync(endPoint);
            return new Wire(s);
        }

        /// <summary>Writes every request into one buffer and sends it at once, so the broker reads them back to back.</summary>
        public async Task<List<int>> SendAllAsync(short apiKey, short version, IEnumerable<IKafkaMessage> requests)
        {
            var w = new KafkaWriter();
            var correlations = new List<int>();
            foreach (var request in requests)
            {
                int at = w.ReserveInt32();
                int start = w.Length;
                int correlation = ++_correlation;
                new RequestHeader { RequestApiKey = apiKey, RequestApiVersion = version, CorrelationId = correlation, ClientId = "wire-test" }
                    .Write(w, ApiMessageTypes.RequestHeaderVersion(apiKey, version));
                request.Write(w, version);
                w.PatchInt32(at, w.Length - start);
                correlations.Add(correlation);
            }
            await socket.SendAsync(w.WrittenMemory, SocketFlags.None);
            return correlations;
        }

        public async Task<int> SendOnlyAsync(short apiKey, short version, IKafkaMessage request)
        {
            var w = new KafkaWriter();
            int at = w.ReserveInt32();
            int correlation = ++_correlation;
            new RequestHeader { RequestApiKey = apiKey, RequestApiVersion = version, CorrelationId = correlation, ClientId = "wire-test" }
                .Write(w, ApiMessageTypes.RequestHeaderVersion(apiKey, version));
            request.Write(w, version);
            w.PatchInt32(at, w.Length - 4);
            await socket.SendAsync(w.WrittenMemory, SocketFlags.None);
            return correlation;
        }

        public async Task<TResponse> SendAsync<TResponse>(short apiKey, short version, IKafkaMessage request) where TResponse : IKafkaMessage, new()
        {
            int correlation = await SendOnlyAsync(apiKey, version, request);
            return await ReceiveAsync<TResponse>(apiKey, version, correlation);
        }

        /// <summary>Reads the next response, which must answer <paramref name="correlation"/> (responses come in request order).</summary>
        public async Task<TResponse> ReceiveAsync<TResponse>(short apiKey, short version, int correlation) where TResponse : IKafkaMessage, new()
        {
            var size = new byte[4];
            await ReadExactlyAsync(size);
            var body = new byte[BinaryPrimitives.ReadInt32BigEndian(size)];
            await ReadExactlyAsync(body);
            var reader = new KafkaReader(body);
            var header = new ResponseHeader();
            header.Read(ref reader, ApiMessageTypes.ResponseHeaderVersion(apiKey, version));
            Assert.Equal(correlation, header.CorrelationId);
            var response = new TResponse();
            response.Read(ref reader, version);
            Assert.False(reader.Failed, "the response parses");
            Assert.Equal(0, reader.Remaining);
            return response;
        }

        async Task ReadExactlyAsync(byte[] buffer)
        {
            int read = 0;
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            while (read < buffer.Length)
            {
                int n = await socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, cts.Token);
                if (n == 0)
                    throw new EndOfStreamException("the broker closed the connection");
                read += n;
            }
        }

        public void Dispose() => socket.Dispose();
    }

    [Fact]
    public async Task Find_coordinator_names_the_broker_listener_for_single_and_batched_keys_on_both_listeners()
    {
        await using var broker = GroupSupport.StartBroker();
        await broker.Broker.Groups.Loading; // raw requests do not retry COORDINATOR_LOAD_IN_PROGRESS as clients do
        int port = broker.Broker.BrokerEndPoint.Port;
        foreach (var endPoint in new[] { broker.Broker.BrokerEndPoint, broker.Broker.ControllerEndPoint })
        {
            using var wire = await Wire.ConnectAsync(endPoint);
            var v0 = await wire.SendAsync<FindCoordinatorResponse>(10, 0, new FindCoordinatorRequest { Key = "g" });
            Assert.Equal((ErrorCodes.None, 1, "127.0.0.1", port), (v0.ErrorCode, v0.NodeId, v0.Host, v0.Port));
            var v4 = await wire.SendAsync<FindCoordinatorResponse>(10, 4, new FindCoordinatorRequest { KeyType = 0, CoordinatorKeys = ["a", "b", "c"] });
            Assert.Equal(new[] { "a", "b", "c" }, v4.Coordinators.Select(c => c.Key));
            Assert.All(v4.Coordinators, c => Assert.Equal((ErrorCodes.None, 1, "127.0.0.1", port), (c.ErrorCode, c.NodeId, c.Host, c.Port)));
            var bad = await wire.SendAsync<FindCoordinatorResponse>(10, 4, new FindCoordinatorRequest { KeyType = 7, CoordinatorKeys = ["x"] });
            Assert.Equal(ErrorCodes.InvalidRequest, bad.Coordinators.Single().ErrorCode);
        }
    }

    [Fact]
    public async Task Pipelined_commits_take_effect_in_log_order_and_the_last_one_wins_before_and_after_a_restart()
    {
        // librdkafka's test 0030 sends asynchronous commits back to back; each must be applied in the order it was
        // written, so the last request's offset is what OffsetFetch returns, and the same after a restart.
        const int Commits = 50;
        const int Groups = 5;
        await using var broker = GroupSupport.StartBroker();
        await broker.Broker.Groups.Loading;
        await Clients.CreateTopicAsync(broker.Bootstrap, "pipelined", 1);
        using (var wire = await Wire.ConnectAsync(broker.Broker.BrokerEndPoint))
        {
            for (int g = 0; g < Groups; g++)
            {
                var correlations = await wire.SendAllAsync(8, 8, Enumerable.Range(1, Commits).Select(i => (IKafkaMessage)new OffsetCommitRequest
                {
                    GroupId = "pipelined-" + g,
                    GenerationIdOrMemberEpoch = -1,
                    Topics = [new() { Name = "pipelined", Partitions = [new() { PartitionIndex = 0, CommittedOffset = i }] }],
                }));
                foreach (int correlation in correlations)
                {
                    var commit = await wire.ReceiveAsync<OffsetCommitResponse>(8, 8, correlation);
                    Assert.Equal(ErrorCodes.None, commit.Topics.Single().Partitions.Single().ErrorCode);
                }
                Assert.Equal(Commits, await CommittedAsync(wire, "pipelined-" + g));
            }
        }
        await broker.RestartAsync();
        await broker.Broker.Groups.Loading;
        using (var wire = await Wire.ConnectAsync(broker.Broker.BrokerEndPoint))
        {
            for (int g = 0; g < Groups; g++)
                Assert.Equal(Commits, await CommittedAsync(wire, "pipelined-" + g));
        }

        static async Task<long> CommittedAsync(Wire wire, string group)
        {
            var fetch = await wire.SendAsync<OffsetFetchResponse>(9, 8, new OffsetFetchRequest
            {
                Groups = [new() { GroupId = group, Topics = [new() { Name = "pipelined", PartitionIndexes = [0] }] }],
            });
            return fetch.Groups.Single().Topics.Single().Partitions.Single().CommittedOffset;
        }
    }

    [Fact]
    public async Task Offset_fetch_v8_answers_several_groups_and_old_versions_still_work()
    {
        await using var broker = GroupSupport.StartBroker();
        await broker.Broker.Groups.Loading; // raw requests do not retry COORDINATOR_LOAD_IN_PROGRESS as clients do
        await Clients.CreateTopicAsync(broker.Bootstrap, "w", 3);
        using var wire = await Wire.ConnectAsync(broker.Broker.BrokerEndPoint);
        foreach (var (group, offset) in new[] { ("g1", 10L), ("g2", 20L) })
        {
            var commit = await wire.SendAsync<OffsetCommitResponse>(8, 8, new OffsetCommitRequest
            {
                GroupId = group,
                GenerationIdOrMemberEpoch = -1,
                Topics = [new() { Name = "w", Partitions = [new() { PartitionIndex = 1, CommittedOffset = offset, CommittedMetadata = "m-" + group }] }],
            });
            Assert.Equal(ErrorCodes.None, commit.Topics.Single().Partitions.Single().ErrorCode);
        }
        var fetch = await wire.SendAsync<OffsetFetchResponse>(9, 8, new OffsetFetchRequest
        {
            RequireStable = true,
            Groups =
            [
                new() { GroupId = "g1", Topics = [new() { Name = "w", PartitionIndexes = [0, 1] }] },
                new() { GroupId = "g2", Topics = null },
                new() { GroupId = "nobody", Topics = [new() { Name = "w", PartitionIndexes = [1] }] },
            ],
        });
        Assert.Equal(new[] { "g1", "g2", "nobody" }, fetch.Groups.Select(g => g.GroupId));
        Assert.All(fetch.Groups, g => Assert.Equal(ErrorCodes.None, g.ErrorCode));
        var g1 = fetch.Groups[0].Topics.Single().Partitions;
        Assert.Equal(new[] { (0, -1L, ""), (1, 10L, "m-g1") }, g1.Select(p => (p.PartitionIndex, p.CommittedOffset, p.Metadata!)));
        var g2 = fetch.Groups[1].Topics.Single();
        Assert.Equal(("w", 1, 20L), (g2.Name, g2.Partitions.Single().PartitionIndex, g2.Partitions.Single().CommittedOffset));
        Assert.Equal(-1, fetch.Groups[2].Topics.Single().Partitions.Single().CommittedOffset);

        // kafka-python 2.0.2 uses OffsetFetch v1 and OffsetCommit v2.
        var v1 = await wire.SendAsync<OffsetFetchResponse>(9, 1, new OffsetFetchRequest { GroupId = "g2", Topics = [new() { Name = "w", PartitionIndexes = [1] }] });
        Assert.Equal(20, v1.Topics.Single().Partitions.Single().CommittedOffset);

        // JoinGroup v4 from a dynamic member: MEMBER_ID_REQUIRED with the id to come back with.
        var join = await wire.SendAsync<JoinGroupResponse>(11, 4, new JoinGroupRequest
        {
            GroupId = "joiner",
            SessionTimeoutMs = 6000,
            RebalanceTimeoutMs = 6000,
            ProtocolType = "consumer",
            Protocols = [new() { Name = "range", Metadata = [0, 1, 0, 0, 0, 0, 0, 0, 0, 0] }],
        });
        Assert.Equal(ErrorCodes.MemberIdRequired, join.ErrorCode);
        Assert.StartsWith("wire-test-", join.MemberId);
        var heartbeat = await wire.SendAsync<HeartbeatResponse>(12, 3, new HeartbeatRequest { GroupId = "joiner", GenerationId = 0, MemberId = "nobody" });
        Assert.Equal(ErrorCodes.UnknownMemberId, heartbeat.ErrorCode);
    }

    [Fact]
    public async Task A_parked_join_does_not_hold_up_other_clients_or_shutdown()
    {
        await using var broker = GroupSupport.StartBroker(more: c => c with { Groups = c.Groups with { InitialRebalanceDelayMs = 120000 } });
        await broker.Broker.Groups.Loading;
        using var wire = await Wire.ConnectAsync(broker.Broker.BrokerEndPoint);
        // JoinGroup v3 adds the member at once; the two-minute initial delay parks the answer.
        await wire.SendOnlyAsync(11, 3, new JoinGroupRequest
        {
            GroupId = "parked",
            SessionTimeoutMs = 6000,
            RebalanceTimeoutMs = 120000,
            ProtocolType = "consumer",
            Protocols = [new() { Name = "range", Metadata = [0, 1, 0, 0, 0, 0, 0, 0, 0, 0] }],
        });
        await GroupSupport.WaitUntil(() => broker.Broker.Groups.Find("parked") is { } g && g.Members.Count == 1, "the join is parked");
        using (var other = await Wire.ConnectAsync(broker.Broker.BrokerEndPoint))
        {
            var described = await other.SendAsync<DescribeGroupsResponse>(15, 5, new DescribeGroupsRequest { Groups = ["parked"] });
            Assert.Equal("PreparingRebalance", described.Groups.Single().GroupState);
        }
        var stopping = broker.StopAsync();
        Assert.Same(stopping, await Task.WhenAny(stopping, Task.Delay(15000)));
        broker.StartAgain();
    }
}
