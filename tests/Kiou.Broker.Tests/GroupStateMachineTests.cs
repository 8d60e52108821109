using Kiou.Broker.Groups;
using Kiou.Broker.Hosting;
using Kiou.Storage.Tests.Support;
using Kiou.Protocol.Messages;

namespace Kiou.Broker.Tests;

/// <summary>
/// The group state machine on a fake clock: every timeout path (initial delay, rebalance timeout, session timeout,
/// pending member, pending sync, static member rejoin, offset expiry) and the error codes Kafka gives bad requests.
/// Timers fire only when the test advances the clock and runs them.
/// </summary>
public sealed class GroupStateMachineTests : IAsyncLifetime
{
    const int Session = 10000;
    const int Rebalance = 30000;
    const int InitialDelay = 3000;
    readonly ManualTimeProvider _clock = new();
    readonly string _dir = Path.Combine(Path.GetTempPath(), "kiou-groups-" + Guid.NewGuid().ToString("N"));
    readonly StringWriter _logText = new();
    GroupCoordinator _c = null!;
    OffsetsHost? _host;

    /// <summary>A coordinator over the same __consumer_offsets partitions: a new one replays them, as after a restart.</summary>
    GroupCoordinator NewCoordinator(GroupSettings? settings = null, Func<Task>? beforeLoad = null)
    {
        var log = new Log(TextWriter.Synchronized(_logText), Log.Level.Debug);
        _host ??= OffsetsHost.Open(_dir, log, _clock);
        var c = _host.NewCoordinator(settings ?? new GroupSettings { InitialRebalanceDelayMs = InitialDelay }, _clock, log,
            (topic, partition) => topic != "missing" && partition is >= 0 and < 8);
        c.StartLoading(beforeLoad);
        return c;
    }

    public async Task InitializeAsync()
    {
        _c = NewCoordinator();
        await _c.Loading;
    }

    public async Task DisposeAsync()
    {
        await _c.DisposeAsync();
        if (_host is not null)
            await _host.DisposeAsync();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    void Advance(long ms)
    {
        _clock.Advance(ms);
        _c.RunTimers();
        CheckAll();
    }

    void CheckAll()
    {
        foreach (var id in new[] { "g", "g2" })
        {
            var g = _c.Find(id);
            if (g is null)
                continue;
            lock (g)
                g.CheckInvariants();
        }
    }

    static byte[] Subscription(params string[] topics)
    {
        using var w = new Kiou.Protocol.KafkaWriter();
        w.WriteInt16(1);
        new ConsumerProtocolSubscription { Topics = [.. topics] }.Write(w, 1);
        return w.WrittenSpan.ToArray();
    }

    Task<JoinGroupResponse> Join(string memberId = "", string? instance = null, string protocolType = "consumer", string[]? protocols = null,
        int session = Session, short version = 5, string group = "g", byte[]? metadata = null)
    {
        var request = new JoinGroupRequest
        {
            GroupId = group,
            SessionTimeoutMs = session,
            RebalanceTimeoutMs = Rebalance,
            MemberId = memberId,
            GroupInstanceId = instance,
            ProtocolType = protocolType,
        };
        foreach (var p in protocols ?? ["range"])
            request.Protocols.Add(new JoinGroupRequest.JoinGroupRequestProtocol { Name = p, Metadata = metadata ?? Subscription("t") });
        return _c.JoinGroup(request, version, "client", null);
    }

    /// <summary>A dynamic member through the MEMBER_ID_REQUIRED round trip: returns its parked join.</summary>
    async Task<(string MemberId, Task<JoinGroupResponse> Join)> JoinDynamic(string[]? protocols = null, string group = "g")
    {
        var first = await Join(protocols: protocols, group: group);
        Assert.Equal(ErrorCodes.MemberIdRequired, first.ErrorCode);
        Assert.NotEmpty(first.MemberId);
        return (first.MemberId, Join(first.MemberId, protocols: protocols, group: group));
    }

    Task<SyncGroupResponse> Sync(string memberId, int generation, string? instance = null, params (string Member, byte[] Assignment)[] assignments)
    {
        var request = new SyncGroupRequest { GroupId = "g", GenerationId = generation, MemberId = memberId, GroupInstanceId = instance };
        foreach (var (m, a) in assignments)
            request.Assignments.Add(new SyncGroupRequest.SyncGroupRequestAssignment { MemberId = m, Assignment = a });
        return _c.SyncGroup(request, 5);
    }

    short Heartbeat(string memberId, int generation, string? instance = null) =>
        _c.Heartbeat(new HeartbeatRequest { GroupId = "g", GenerationId = generation, MemberId = memberId, GroupInstanceId = instance }, 4);

    int Generation(string group = "g")
    {
        var g = _c.Find(group)!;
        lock (g)
            return g.GenerationId;
    }

    GroupState State(string group = "g")
    {
        var g = _c.Find(group)!;
        lock (g)
            return g.State;
    }

    /// <summary>Two dynamic members, Stable at generation 1 with assignments "A" and "B".</summary>
    async Task<(string Leader, string Follower)> StableGroupOfTwo()
    {
        var (a, joinA) = await JoinDynamic();
        var (b, joinB) = await JoinDynamic();
        Advance(InitialDelay);
        Assert.False(joinA.IsCompleted, "a joiner during the delay extends it");
        Advance(InitialDelay);
        var ra = await joinA;
        var rb = await joinB;
        Assert.Equal(1, ra.GenerationId);
        Assert.Equal(a, ra.Leader);
        Assert.Equal(2, ra.Members.Count);
        Assert.Empty(rb.Members);
        Assert.Equal("range", rb.ProtocolName);
        Assert.Equal(GroupState.CompletingRebalance, State());
        var syncB = Sync(b, 1);
        Assert.False(syncB.IsCompleted, "a follower waits for the leader's assignment");
        var syncA = await Sync(a, 1, null, (a, "A"u8.ToArray()), (b, "B"u8.ToArray()));
        Assert.Equal("A"u8.ToArray(), syncA.Assignment);
        Assert.Equal("B"u8.ToArray(), (await syncB).Assignment);
        Assert.Equal(GroupState.Stable, State());
        return (a, b);
    }

    [Fact]
    public async Task Member_id_round_trip_then_initial_delay_then_stable()
    {
        var (a, join) = await JoinDynamic();
        Assert.Equal(GroupState.PreparingRebalance, State());
        Advance(InitialDelay - 1);
        Assert.False(join.IsCompleted, "the initial rebalance delay batches joiners");
        Advance(1);
        var r = await join;
        Assert.Equal(ErrorCodes.None, r.ErrorCode);
        Assert.Equal(1, r.GenerationId);
        Assert.Equal(a, r.MemberId);
        Assert.Equal(a, r.Leader);
        Assert.Equal("consumer", r.ProtocolType);
        var sync = await Sync(a, 1, null, (a, [1, 2, 3]));
        Assert.Equal(new byte[] { 1, 2, 3 }, sync.Assignment);
        Assert.Equal(ErrorCodes.None, Heartbeat(a, 1));
    }

    [Fact]
    public async Task Initial_delay_is_extended_by_joiners_up_to_the_rebalance_timeout()
    {
        var (_, first) = await JoinDynamic();
        // A new joiner in every delay window: the join keeps waiting, but never past the rebalance timeout.
        long waited = 0;
        while (Generation() == 0)
        {
            await JoinDynamic();
            Advance(InitialDelay);
            waited += InitialDelay;
            Assert.True(waited <= Rebalance + InitialDelay, $"still waiting after {waited} ms: {_logText}");
        }
        Assert.InRange(waited, Rebalance - InitialDelay, Rebalance + InitialDelay);
        Assert.Equal(ErrorCodes.None, (await first).ErrorCode);
    }

    [Fact]
    public async Task Member_that_does_not_rejoin_within_the_rebalance_timeout_is_dropped()
    {
        var (a, b) = await StableGroupOfTwo();
        var (c, joinC) = await JoinDynamic();
        Assert.Equal(GroupState.PreparingRebalance, State());
        Assert.Equal(ErrorCodes.RebalanceInProgress, Heartbeat(a, 1));
        var joinA = Join(a);
        // b keeps its session alive with heartbeats but never rejoins.
        for (int t = 0; t < Rebalance - 2000; t += 2000)
        {
            Advance(2000);
            Assert.Equal(ErrorCodes.RebalanceInProgress, Heartbeat(b, 1));
            Assert.False(joinA.IsCompleted);
        }
        Advance(2000);
        var ra = await joinA;
        Assert.Equal(2, ra.GenerationId);
        Assert.Equal(new[] { a, c }.Order(), ra.Members.Select(m => m.MemberId).Order());
        Assert.Equal(2, (await joinC).GenerationId);
        Assert.Equal(ErrorCodes.UnknownMemberId, Heartbeat(b, 1));
    }

    [Fact]
    public async Task Session_timeout_expires_a_silent_member_and_rebalances()
    {
        var (a, b) = await StableGroupOfTwo();
        for (int t = 0; t < Session - 2000; t += 2000)
        {
            Advance(2000);
            Assert.Equal(ErrorCodes.None, Heartbeat(a, 1));
        }
        Advance(2000);
        Assert.Equal(ErrorCodes.RebalanceInProgress, Heartbeat(a, 1));
        var ra = await Join(a);
        Assert.Equal(2, ra.GenerationId);
        Assert.Single(ra.Members);
        Assert.Equal(ErrorCodes.UnknownMemberId, Heartbeat(b, 2));
        Assert.Contains("session timeout", _logText.ToString());
    }

    [Fact]
    public async Task Last_member_leaving_empties_the_group_and_a_new_generation_starts_from_empty()
    {
        var (a, b) = await StableGroupOfTwo();
        var leave = _c.LeaveGroup(new LeaveGroupRequest
        {
            GroupId = "g",
            Members = [new() { MemberId = a }, new() { MemberId = b }, new() { MemberId = "nobody" }],
        }, 3);
        Assert.Equal(ErrorCodes.None, leave.ErrorCode);
        Assert.Equal(new[] { ErrorCodes.None, ErrorCodes.None, ErrorCodes.UnknownMemberId }, leave.Members.Select(m => m.ErrorCode));
        Assert.Equal(GroupState.Empty, State());
        var single = _c.LeaveGroup(new LeaveGroupRequest { GroupId = "g", MemberId = a }, 1);
        Assert.Equal(ErrorCodes.UnknownMemberId, single.ErrorCode);
    }

    [Fact]
    public async Task Pending_member_that_never_returns_is_dropped_after_its_session_timeout()
    {
        var (a, b) = await StableGroupOfTwo();
        var first = await Join();
        Assert.Equal(ErrorCodes.MemberIdRequired, first.ErrorCode);
        // A leader rejoin starts a rebalance; it cannot finish while the pending member may still come.
        var joinA = Join(a);
        var joinB = Join(b);
        Advance(Session - 1);
        Assert.False(joinA.IsCompleted, "the join waits for the pending member");
        Advance(1);
        Assert.Equal(2, (await joinA).GenerationId);
        Assert.Equal(2, (await joinB).GenerationId);
        Assert.Equal(ErrorCodes.UnknownMemberId, (await Join(first.MemberId)).ErrorCode);
    }

    [Fact]
    public async Task Follower_that_never_syncs_is_dropped_after_the_rebalance_timeout()
    {
        var (a, b) = await StableGroupOfTwo();
        var joinA = Join(a);
        var joinB = Join(b);
        Assert.Equal(2, (await joinA).GenerationId);
        await joinB;
        await Sync(a, 2, null, (a, "A2"u8.ToArray()), (b, "B2"u8.ToArray()));
        Assert.Equal(GroupState.Stable, State());
        // b got its JoinGroup answer and heartbeats, but never sends SyncGroup.
        for (int t = 0; t < Rebalance - 2000; t += 2000)
        {
            Advance(2000);
            Assert.Equal(ErrorCodes.None, Heartbeat(a, 2));
            Assert.Equal(ErrorCodes.None, Heartbeat(b, 2));
        }
        Advance(2000);
        Assert.Equal(ErrorCodes.RebalanceInProgress, Heartbeat(a, 2));
        Assert.Contains("did not send SyncGroup", _logText.ToString());
    }

    [Fact]
    public async Task Static_member_restarting_within_its_session_timeout_gets_its_assignment_back_without_a_rebalance()
    {
        var joinA = Join(instance: "ia");
        var joinB = Join(instance: "ib");
        Advance(InitialDelay);
        Advance(InitialDelay);
        var ra = await joinA;
        var rb = await joinB;
        Assert.Equal(1, ra.GenerationId);
        string leader = ra.Leader;
        string a = ra.MemberId, b = rb.MemberId;
        Assert.StartsWith("ia-", a);
        await Task.WhenAll(Sync(b, 1, "ib"), Sync(a, 1, "ia", (a, "A"u8.ToArray()), (b, "B"u8.ToArray())));
        // b restarts: a new process, no member id, same instance id, within its session timeout.
        Advance(Session / 2);
        Assert.Equal(ErrorCodes.None, Heartbeat(a, 1, "ia"));
        var again = await Join(instance: "ib");
        Assert.Equal(ErrorCodes.None, again.ErrorCode);
        Assert.Equal(1, again.GenerationId);
        Assert.Equal(leader, again.Leader);
        Assert.NotEqual(b, again.MemberId);
        Assert.Empty(again.Members);
        Assert.Equal("B"u8.ToArray(), (await Sync(again.MemberId, 1, "ib")).Assignment);
        Assert.Equal(GroupState.Stable, State());
        Assert.Equal(ErrorCodes.None, Heartbeat(a, 1, "ia"));
        // The old incarnation is fenced everywhere.
        Assert.Equal(ErrorCodes.FencedInstanceId, Heartbeat(b, 1, "ib"));
        Assert.Equal(ErrorCodes.FencedInstanceId, (await Sync(b, 1, "ib")).ErrorCode);
        Assert.Equal(ErrorCodes.FencedInstanceId, (await Join(b, instance: "ib")).ErrorCode);
        var commit = await Commit(1, b, "ib");
        Assert.Equal(ErrorCodes.FencedInstanceId, commit.Topics[0].Partitions[0].ErrorCode);
    }

    [Fact]
    public async Task Static_leader_rejoining_with_v9_is_told_to_skip_assignment()
    {
        var joinA = Join(instance: "ia", version: 9);
        Advance(InitialDelay);
        var ra = await joinA;
        await Sync(ra.MemberId, 1, "ia", (ra.MemberId, "A"u8.ToArray()));
        var again = await Join(instance: "ia", version: 9);
        Assert.True(again.SkipAssignment);
        Assert.Equal(again.MemberId, again.Leader);
        Assert.Single(again.Members);
        Assert.Equal(1, again.GenerationId);
    }

    [Fact]
    public async Task Static_member_gone_longer_than_its_session_timeout_is_removed()
    {
        var joinA = Join(instance: "ia");
        var joinB = Join(instance: "ib");
        Advance(InitialDelay);
        Advance(InitialDelay);
        var ra = await joinA;
        var rb = await joinB;
        await Task.WhenAll(Sync(rb.MemberId, 1, "ib"), Sync(ra.MemberId, 1, "ia", (ra.MemberId, [1]), (rb.MemberId, [2])));
        for (int t = 0; t <= Session; t += 2000)
        {
            Advance(2000);
            Heartbeat(ra.MemberId, 1, "ia");
        }
        Assert.Equal(ErrorCodes.RebalanceInProgress, Heartbeat(ra.MemberId, 1, "ia"));
        var r = await Join(ra.MemberId, instance: "ia");
        Assert.Equal(2, r.GenerationId);
        Assert.Single(r.Members);
        var g = _c.Find("g")!;
        lock (g)
            Assert.False(g.StaticMembers.ContainsKey("ib"));
    }

    [Fact]
    public async Task Answers_that_depend_on_membership_expire_sessions_first_not_when_the_timer_fires()
    {
        var join = Join(instance: "ia");
        Advance(InitialDelay);
        var r = await join;
        await Sync(r.MemberId, 1, "ia", (r.MemberId, [1]));
        Assert.Equal(GroupState.Stable, State());

        // Past the session timeout, the timer not run yet: a static member that left without a LeaveGroup.
        _clock.Advance(Session + 1);
        var described = _c.Describe("g");
        Assert.Equal("Empty", described.GroupState);
        Assert.Empty(described.Members);
        Assert.Equal("Empty", Assert.Single(_c.ListGroups(null, null).Groups).GroupState);
        Assert.Equal(ErrorCodes.None, await _c.DeleteGroup("g"));
    }

    [Fact]
    public async Task Bad_requests_get_kafkas_error_codes()
    {
        var (a, b) = await StableGroupOfTwo();
        Assert.Equal(ErrorCodes.UnknownMemberId, Heartbeat("stranger", 1));
        Assert.Equal(ErrorCodes.IllegalGeneration, Heartbeat(a, 7));
        Assert.Equal(ErrorCodes.IllegalGeneration, (await Sync(a, 0)).ErrorCode);
        Assert.Equal(ErrorCodes.UnknownMemberId, (await Sync("stranger", 1)).ErrorCode);
        Assert.Equal(ErrorCodes.InconsistentGroupProtocol, (await Join(protocolType: "connect")).ErrorCode);
        Assert.Equal(ErrorCodes.InconsistentGroupProtocol, (await Join(protocols: ["roundrobin"])).ErrorCode);
        Assert.Equal(ErrorCodes.InvalidSessionTimeout, (await Join(session: 10)).ErrorCode);
        Assert.Equal(ErrorCodes.InvalidGroupId, (await Join(group: "")).ErrorCode);
        Assert.Equal(ErrorCodes.UnknownMemberId, (await Join("made-up", group: "g2")).ErrorCode);
        Assert.Equal(ErrorCodes.UnknownMemberId, (await Join("made-up")).ErrorCode);

        // Commits: wrong generation, unknown member, generation -1 on a group with members, unknown topic.
        Assert.Equal(ErrorCodes.IllegalGeneration, (await Commit(5, a)).Topics[0].Partitions[0].ErrorCode);
        Assert.Equal(ErrorCodes.UnknownMemberId, (await Commit(1, "stranger")).Topics[0].Partitions[0].ErrorCode);
        Assert.Equal(ErrorCodes.UnknownMemberId, (await Commit(-1, "")).Topics[0].Partitions[0].ErrorCode);
        Assert.Equal(ErrorCodes.UnknownTopicOrPartition, (await Commit(1, a, topic: "missing")).Topics[0].Partitions[0].ErrorCode);
        Assert.Equal(ErrorCodes.OffsetMetadataTooLarge, (await Commit(1, a, metadata: new string('m', 5000))).Topics[0].Partitions[0].ErrorCode);
        Assert.Equal(ErrorCodes.IllegalGeneration, (await Commit(3, "m", group: "nowhere", version: 8)).Topics[0].Partitions[0].ErrorCode);
        Assert.Equal(ErrorCodes.GroupIdNotFound, (await Commit(3, "m", group: "nowhere", version: 9)).Topics[0].Partitions[0].ErrorCode);

        // Rebalance phases: Sync during PreparingRebalance, commit during CompletingRebalance.
        var joinA = Join(a);
        Assert.Equal(ErrorCodes.RebalanceInProgress, (await Sync(b, 1)).ErrorCode);
        Assert.Equal(ErrorCodes.None, (await Commit(1, b)).Topics[0].Partitions[0].ErrorCode);
        var joinB = Join(b);
        await Task.WhenAll(joinA, joinB);
        Assert.Equal(GroupState.CompletingRebalance, State());
        Assert.Equal(ErrorCodes.None, Heartbeat(b, 2));
        Assert.Equal(ErrorCodes.RebalanceInProgress, (await Commit(2, b)).Topics[0].Partitions[0].ErrorCode);

        // Deleting a group with members; deleting offsets of a subscribed topic.
        Assert.Equal(ErrorCodes.NonEmptyGroup, await _c.DeleteGroup("g"));
        Assert.Equal(ErrorCodes.GroupIdNotFound, await _c.DeleteGroup("nowhere"));
        await Sync(a, 2, null, (a, [1]), (b, [2]));
        var del = await _c.DeleteOffsets(new OffsetDeleteRequest
        {
            GroupId = "g",
            Topics = [new() { Name = "t", Partitions = [new() { PartitionIndex = 0 }] }, new() { Name = "u", Partitions = [new() { PartitionIndex = 0 }] }],
        });
        Assert.Equal(ErrorCodes.None, del.ErrorCode);
        Assert.Equal(ErrorCodes.GroupSubscribedToTopic, del.Topics[0].Partitions[0].ErrorCode);
        Assert.Equal(ErrorCodes.None, del.Topics[1].Partitions[0].ErrorCode);
    }

    Task<OffsetCommitResponse> Commit(int generation, string member, string? instance = null, string topic = "t", int partition = 0, long offset = 42,
        string? metadata = "meta", string group = "g", short version = 8) =>
        _c.CommitOffsets(new OffsetCommitRequest
        {
            GroupId = group,
            GenerationIdOrMemberEpoch = generation,
            MemberId = member,
            GroupInstanceId = instance,
            Topics = [new() { Name = topic, Partitions = [new() { PartitionIndex = partition, CommittedOffset = offset, CommittedMetadata = metadata, CommittedLeaderEpoch = 0 }] }],
        }, version);

    CommittedOffset? Fetch(string group, string topic, int partition) =>
        _c.FetchOffsets(group, [(topic, [partition])]).Topics[0].Partitions[0].Offset;

    [Fact]
    public async Task Offsets_of_an_empty_group_expire_after_the_retention_and_the_group_goes()
    {
        var settings = new GroupSettings { InitialRebalanceDelayMs = InitialDelay, OffsetsRetentionMs = 60000 };
        await _c.DisposeAsync();
        _c = NewCoordinator(settings);
        await _c.Loading;
        // A consumer group with members keeps its offsets however old they are.
        var (a, _) = await StableGroupOfTwo();
        // A standalone commit (AdminClient style): generation -1, no member id.
        Assert.Equal(ErrorCodes.None, (await Commit(-1, "", group: "g2")).Topics[0].Partitions[0].ErrorCode);
        Assert.Equal(ErrorCodes.None, (await Commit(1, a)).Topics[0].Partitions[0].ErrorCode);
        _clock.Advance(59999);
        Assert.Equal(0, _c.ExpireOffsets(_clock.NowMs));
        _clock.Advance(1);
        Assert.Equal(1, _c.ExpireOffsets(_clock.NowMs));
        Assert.Null(_c.Find("g2"));
        Assert.Null(Fetch("g2", "t", 0));
        Assert.Equal(42, Fetch("g", "t", 0)!.Value.Offset);
        // Once g is empty, its offsets expire a retention period later.
        var g = _c.Find("g")!;
        lock (g)
        {
            foreach (var id in g.Members.Keys.ToList())
                g.Leave(id, null, null, _clock.NowMs);
            Assert.Equal(GroupState.Empty, g.State);
        }
        _clock.Advance(59999);
        Assert.Equal(0, _c.ExpireOffsets(_clock.NowMs));
        _clock.Advance(1);
        Assert.Equal(1, _c.ExpireOffsets(_clock.NowMs));
        Assert.Null(_c.Find("g"));

        // The expiry is durable: a new coordinator on the same log sees neither group.
        await _c.DisposeAsync();
        _c = NewCoordinator(settings);
        await _c.Loading;
        Assert.Equal(0, _c.GroupCount);
    }

    [Fact]
    public async Task Offsets_and_group_metadata_survive_a_restart_with_metadata_strings()
    {
        var (a, b) = await StableGroupOfTwo();
        Assert.Equal(ErrorCodes.None, (await Commit(1, a, partition: 3, offset: 1234, metadata: "αβγ metadata")).Topics[0].Partitions[0].ErrorCode);
        Assert.Equal(ErrorCodes.None, (await Commit(-1, "", group: "g2", metadata: null)).Topics[0].Partitions[0].ErrorCode);
        await _c.DisposeAsync();
        _c = NewCoordinator();
        await _c.Loading;
        var o = Fetch("g", "t", 3)!.Value;
        Assert.Equal(1234, o.Offset);
        Assert.Equal("αβγ metadata", o.Metadata);
        Assert.Equal(0, o.LeaderEpoch);
        Assert.Equal(42, Fetch("g2", "t", 0)!.Value.Offset);
        // The members were restored with their generation: they carry on without rejoining.
        Assert.Equal(GroupState.Stable, State());
        Assert.Equal(ErrorCodes.None, Heartbeat(a, 1));
        Assert.Equal("B"u8.ToArray(), (await Sync(b, 1)).Assignment);
    }

    [Fact]
    public async Task Requests_during_loading_get_coordinator_load_in_progress()
    {
        await _c.DisposeAsync();
        var gate = new TaskCompletionSource();
        _c = NewCoordinator(beforeLoad: () => gate.Task);
        Assert.Equal(ErrorCodes.CoordinatorLoadInProgress, (await Join()).ErrorCode);
        Assert.Equal(ErrorCodes.CoordinatorLoadInProgress, Heartbeat("m", 1));
        Assert.Equal(ErrorCodes.CoordinatorLoadInProgress, (await Commit(-1, "")).Topics[0].Partitions[0].ErrorCode);
        Assert.Equal(ErrorCodes.CoordinatorLoadInProgress, _c.FetchOffsets("g", null).Error);
        Assert.Equal(ErrorCodes.CoordinatorLoadInProgress, _c.ListGroups(null, null).ErrorCode);
        Assert.Equal(ErrorCodes.CoordinatorLoadInProgress, _c.Describe("g").ErrorCode);
        Assert.Equal(ErrorCodes.CoordinatorLoadInProgress, await _c.DeleteGroup("g"));
        gate.SetResult();
        await _c.Loading;
        Assert.Equal(ErrorCodes.MemberIdRequired, (await Join()).ErrorCode);
    }

    [Fact]
    public async Task Ten_thousand_idle_groups_hold_no_timers()
    {
        long before = GC.GetTotalMemory(forceFullCollection: true);
        var tasks = new List<Task<OffsetCommitResponse>>();
        for (int i = 0; i < 10000; i++)
            tasks.Add(Commit(-1, "", group: "idle-" + i, partition: i % 8, offset: i));
        foreach (var t in tasks)
            Assert.Equal(ErrorCodes.None, (await t).Topics[0].Partitions[0].ErrorCode);
        Assert.Equal(10000, _c.GroupCount);
        Assert.Equal(0, _c.Timers.QueuedCount);
        tasks.Clear();
        long perGroup = (GC.GetTotalMemory(forceFullCollection: true) - before) / 10000;
        Assert.True(perGroup < 4096, $"{perGroup} bytes per idle group (with one committed offset each)");
        Assert.Equal(long.MaxValue, _c.RunTimers());
    }
}
