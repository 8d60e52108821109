using System.Diagnostics;
using Kiou.Protocol.Messages;

namespace Kiou.Broker.Groups;

public enum GroupState { Empty, PreparingRebalance, CompletingRebalance, Stable, Dead }

/// <summary>
/// One classic consumer group: its state machine (Empty → PreparingRebalance → CompletingRebalance → Stable, Dead
/// once deleted), its members, and its committed offsets. Owner: whoever holds <c>lock (group)</c>; every method
/// here must be called under it (asserted). Parked JoinGroup / SyncGroup answers are completed under the lock
/// through TaskCompletionSources that run their continuations asynchronously, so no connection code runs under it.
/// Timers: the group has one entry in <see cref="GroupTimers"/> for its earliest deadline (pending member, session,
/// join phase, pending sync); <see cref="OnTimer"/> handles whichever are due and re-arms.
/// Kafka's behaviour is followed step by step (GroupCoordinator.scala / ClassicGroup.java); see
/// docs/design/groups.md.
/// </summary>
public sealed class Group
{
    readonly GroupCoordinator _owner;
    long _joinSequence;

    public Group(GroupCoordinator owner, string groupId, long nowMs)
    {
        _owner = owner;
        GroupId = groupId;
        StateSinceMs = nowMs;
    }

    public string GroupId { get; }
    public GroupState State { get; private set; } = GroupState.Empty;
    /// <summary>When <see cref="State"/> last changed (Kafka's currentStateTimestamp): offsets of an Empty group expire from it.</summary>
    public long StateSinceMs { get; private set; }
    /// <summary>Null for a group only used to store offsets (Kafka's "simple" group).</summary>
    public string? ProtocolType { get; private set; }
    public string? ProtocolName { get; private set; }
    public int GenerationId { get; private set; }
    public string? LeaderId { get; private set; }
    public Dictionary<string, Member> Members { get; } = new(StringComparer.Ordinal);
    /// <summary>Members told MEMBER_ID_REQUIRED that have not rejoined yet: member id → deadline.</summary>
    public Dictionary<string, long> PendingMembers { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, string> StaticMembers { get; } = new(StringComparer.Ordinal);
    public Dictionary<(string Topic, int Partition), CommittedOffset> Offsets { get; } = [];
    /// <summary>TxnOffsetCommit offsets per producer id, durable and awaiting the transaction's marker (invisible to
    /// OffsetFetch; RequireStable gets UNSTABLE_OFFSET_COMMIT for their partitions).
    /// Each with the commit sequence of its record: on COMMIT it replaces the committed offset only if that is older.</summary>
    public Dictionary<long, Dictionary<(string Topic, int Partition), (CommittedOffset Offset, long Sequence)>> PendingTxnOffsets { get; } = [];

    public bool HasPendingTxnOffset(string topic, int partition)
    {
        foreach (var pending in PendingTxnOffsets.Values)
        {
            if (pending.ContainsKey((topic, partition)))
                return true;
        }
        return false;
    }
    /// <summary>Members that got their JoinGroup answer but have not sent SyncGroup yet.</summary>
    readonly HashSet<string> _pendingSync = new(StringComparer.Ordinal);

    bool _initialDelay;
    bool _newMemberAdded;
    int _initialDelayRemainingMs;
    long _joinDeadlineMs = long.MaxValue;
    long _syncDeadlineMs = long.MaxValue;
    /// <summary>Bumped whenever offsets are deleted, so a commit that became durable before a delete is not re-applied.</summary>
    public long OffsetDeleteSequence { get; set; }
    /// <summary>Offset commits written but not yet durable.</summary>
    public int CommitsInFlight { get; set; }
    /// <summary>
    /// Position of each commit in the offsets log, taken under this group's lock in the order the records are queued.
    /// Commits become durable together but their continuations run in any order; a commit is applied only if it is
    /// newer than the one already applied for that partition (Kafka compares the commit records' log offsets).
    /// </summary>
    public long LastCommitSequence { get; set; }
    public Dictionary<(string Topic, int Partition), long> AppliedCommitSequence { get; } = [];

    /// <summary>Forgets a committed offset (delete, expiry): the value and the sequence it was applied with.</summary>
    public bool RemoveOffset(string topic, int partition)
    {
        AppliedCommitSequence.Remove((topic, partition));
        return Offsets.Remove((topic, partition));
    }

    /// <summary>The due time of this group's live entry in <see cref="GroupTimers"/> (MaxValue: none). Guarded by the timers' lock.</summary>
    internal long QueuedDueMs { get; set; } = long.MaxValue;

    public bool IsLeader(string memberId) => LeaderId == memberId;

    public string StateName => State switch
    {
        GroupState.Empty => "Empty",
        GroupState.PreparingRebalance => "PreparingRebalance",
        GroupState.CompletingRebalance => "CompletingRebalance",
        GroupState.Stable => "Stable",
        _ => "Dead",
    };

    [Conditional("DEBUG")]
    void AssertOwned() => Debug.Assert(Monitor.IsEntered(this), $"group '{GroupId}' used without its lock");

    void SetState(GroupState state, long nowMs)
    {
        State = state;
        StateSinceMs = nowMs;
    }

    /// <summary>Kafka's supportsProtocols: an empty group takes any non-empty type and list; otherwise the type must
    /// match and at least one of the joiner's protocols must be supported by every current member.</summary>
    bool SupportsProtocols(string protocolType, List<(string Name, byte[] Metadata)> protocols, Member? self)
    {
        if (protocolType.Length == 0 || protocols.Count == 0)
            return false;
        int others = 0;
        foreach (var m in Members.Values)
        {
            if (m != self)
                others++;
        }
        if (others == 0)
            return true;
        if (protocolType != ProtocolType)
            return false;
        foreach (var (name, _) in protocols)
        {
            bool everyone = true;
            foreach (var m in Members.Values)
            {
                if (m != self && !m.SupportsProtocol(name))
                {
                    everyone = false;
                    break;
                }
            }
            if (everyone)
                return true;
        }
        return false;
    }

    /// <summary>Among the protocols every member supports, each member votes for its first; most votes win
    /// (ties: the candidate the earliest voter preferred).</summary>
    internal string SelectProtocol()
    {
        Debug.Assert(Members.Count > 0);
        var candidates = new List<string>();
        var first = FirstMember()!;
        foreach (var (name, _) in first.Protocols)
        {
            bool everyone = true;
            foreach (var m in Members.Values)
            {
                if (!m.SupportsProtocol(name))
                {
                    everyone = false;
                    break;
                }
            }
            if (everyone)
                candidates.Add(name);
        }
        Debug.Assert(candidates.Count > 0, "join checks keep a common protocol");
        var votes = new int[candidates.Count];
        foreach (var m in OrderedMembers())
        {
            foreach (var (name, _) in m.Protocols)
            {
                int i = candidates.IndexOf(name);
                if (i >= 0)
                {
                    votes[i]++;
                    break;
                }
            }
        }
        int best = 0;
        for (int i = 1; i < votes.Length; i++)
        {
            if (votes[i] > votes[best])
                best = i;
        }
        return candidates[best];
    }

    Member? FirstMember()
    {
        Member? first = null;
        foreach (var m in Members.Values)
        {
            if (first is null || m.JoinOrder < first.JoinOrder)
                first = m;
        }
        return first;
    }

    public List<Member> OrderedMembers()
    {
        var list = new List<Member>(Members.Values);
        list.Sort((a, b) => a.JoinOrder.CompareTo(b.JoinOrder));
        return list;
    }

    int RebalanceTimeoutMs()
    {
        int max = 0;
        foreach (var m in Members.Values)
            max = Math.Max(max, m.RebalanceTimeoutMs);
        return max;
    }

    void TouchSession(Member member, long nowMs)
    {
        member.SessionDeadlineMs = nowMs + member.SessionTimeoutMs;
        _owner.Timers.Schedule(this, member.SessionDeadlineMs);
    }

    /// <summary>A static member whose instance id is registered to another member id (Kafka's isStaticMemberFenced).</summary>
    public bool IsFenced(string? instanceId, string memberId) =>
        instanceId is not null && StaticMembers.TryGetValue(instanceId, out var registered) && registered != memberId;

    static JoinGroupResponse JoinError(short error, string memberId = "") => new()
    {
        ErrorCode = error,
        GenerationId = -1,
        MemberId = memberId,
        Leader = "",
        ProtocolName = null,
    };

    // ---------------------------------------------------------------------------------------------------------------
    // JoinGroup

    public Task<JoinGroupResponse> Join(JoinGroupRequest request, short version, string clientId, string clientHost, long nowMs)
    {
        AssertOwned();
        if (State == GroupState.Dead)
            return Task.FromResult(JoinError(ErrorCodes.CoordinatorNotAvailable, request.MemberId));
        var protocols = new List<(string, byte[])>(request.Protocols.Count);
        foreach (var p in request.Protocols)
            protocols.Add((p.Name, p.Metadata ?? []));
        int rebalanceTimeoutMs = version == 0 || request.RebalanceTimeoutMs <= 0 ? request.SessionTimeoutMs : request.RebalanceTimeoutMs;
        string? instanceId = version >= 5 ? request.GroupInstanceId : null;

        if (request.MemberId.Length == 0)
        {
            if (!SupportsProtocols(request.ProtocolType, protocols, null))
                return Task.FromResult(JoinError(ErrorCodes.InconsistentGroupProtocol));
            if (instanceId is not null)
            {
                string newId = instanceId + "-" + Guid.NewGuid().ToString();
                if (StaticMembers.TryGetValue(instanceId, out var oldId) && Members.ContainsKey(oldId))
                    return ReplaceStaticMember(instanceId, oldId, newId, clientId, clientHost, request, protocols, rebalanceTimeoutMs, version, nowMs);
                return AddMemberAndRebalance(newId, instanceId, clientId, clientHost, request, protocols, rebalanceTimeoutMs, version, nowMs);
            }
            string memberId = clientId + "-" + Guid.NewGuid().ToString();
            if (version >= 4)
            {
                // KIP-394: hand out the id first; the member must come back with it within its session timeout.
                long deadline = nowMs + request.SessionTimeoutMs;
                PendingMembers[memberId] = deadline;
                _owner.Timers.Schedule(this, deadline);
                return Task.FromResult(JoinError(ErrorCodes.MemberIdRequired, memberId));
            }
            return AddMemberAndRebalance(memberId, null, clientId, clientHost, request, protocols, rebalanceTimeoutMs, version, nowMs);
        }

        // A known (or pending) member id.
        if (PendingMembers.Remove(request.MemberId))
        {
            if (!SupportsProtocols(request.ProtocolType, protocols, null))
                return Task.FromResult(JoinError(ErrorCodes.InconsistentGroupProtocol, request.MemberId));
            return AddMemberAndRebalance(request.MemberId, instanceId, clientId, clientHost, request, protocols, rebalanceTimeoutMs, version, nowMs);
        }
        if (IsFenced(instanceId, request.MemberId))
            return Task.FromResult(JoinError(ErrorCodes.FencedInstanceId, request.MemberId));
        if (!Members.TryGetValue(request.MemberId, out var member))
            return Task.FromResult(JoinError(ErrorCodes.UnknownMemberId, request.MemberId));
        if (!SupportsProtocols(request.ProtocolType, protocols, member))
            return Task.FromResult(JoinError(ErrorCodes.InconsistentGroupProtocol, request.MemberId));
        member.ClientId = clientId;
        member.ClientHost = clientHost;
        switch (State)
        {
            case GroupState.PreparingRebalance:
                return UpdateMemberAndRebalance(member, request, protocols, rebalanceTimeoutMs, version, nowMs, "member rejoined");
            case GroupState.CompletingRebalance:
                if (member.SameProtocols(protocols))
                {
                    // The member missed the JoinGroup answer (e.g. a retry): answer again with this generation.
                    TouchSession(member, nowMs);
                    return Task.FromResult(JoinResponseFor(member, version));
                }
                return UpdateMemberAndRebalance(member, request, protocols, rebalanceTimeoutMs, version, nowMs, "member rejoined with new metadata");
            case GroupState.Stable:
                if (IsLeader(member.MemberId) || !member.SameProtocols(protocols))
                    return UpdateMemberAndRebalance(member, request, protocols, rebalanceTimeoutMs, version, nowMs,
                        IsLeader(member.MemberId) ? "leader rejoined" : "member rejoined with new metadata");
                TouchSession(member, nowMs);
                return Task.FromResult(new JoinGroupResponse
                {
                    ErrorCode = ErrorCodes.None,
                    GenerationId = GenerationId,
                    ProtocolType = ProtocolType,
                    ProtocolName = ProtocolName,
                    Leader = LeaderId ?? "",
                    MemberId = member.MemberId,
                });
            default:
                return Task.FromResult(JoinError(ErrorCodes.UnknownMemberId, request.MemberId));
        }
    }

    JoinGroupResponse JoinResponseFor(Member member, short version)
    {
        var response = new JoinGroupResponse
        {
            ErrorCode = ErrorCodes.None,
            GenerationId = GenerationId,
            ProtocolType = ProtocolType,
            ProtocolName = ProtocolName,
            Leader = LeaderId ?? "",
            MemberId = member.MemberId,
        };
        if (IsLeader(member.MemberId))
            AddMemberList(response, version);
        return response;
    }

    void AddMemberList(JoinGroupResponse response, short version)
    {
        foreach (var m in OrderedMembers())
        {
            response.Members.Add(new JoinGroupResponse.JoinGroupResponseMember
            {
                MemberId = m.MemberId,
                GroupInstanceId = version >= 5 ? m.InstanceId : null,
                Metadata = m.MetadataFor(ProtocolName) ?? [],
            });
        }
    }

    Task<JoinGroupResponse> AddMemberAndRebalance(string memberId, string? instanceId, string clientId, string clientHost,
        JoinGroupRequest request, List<(string, byte[])> protocols, int rebalanceTimeoutMs, short version, long nowMs)
    {
        var member = new Member
        {
            MemberId = memberId,
            InstanceId = instanceId,
            ClientId = clientId,
            ClientHost = clientHost,
            SessionTimeoutMs = request.SessionTimeoutMs,
            RebalanceTimeoutMs = rebalanceTimeoutMs,
            Protocols = protocols,
            JoinOrder = ++_joinSequence,
        };
        if (Members.Count == 0)
            ProtocolType = request.ProtocolType;
        Members[memberId] = member;
        if (instanceId is not null)
            StaticMembers[instanceId] = memberId;
        LeaderId ??= memberId;
        if (State == GroupState.PreparingRebalance && _initialDelay)
            _newMemberAdded = true;
        var tcs = Park(member, version);
        TouchSession(member, nowMs);
        MaybePrepareRebalance(nowMs, $"new member {memberId} joined");
        TryCompleteJoin(nowMs);
        return tcs.Task;
    }

    Task<JoinGroupResponse> UpdateMemberAndRebalance(Member member, JoinGroupRequest request, List<(string, byte[])> protocols,
        int rebalanceTimeoutMs, short version, long nowMs, string reason)
    {
        member.Protocols = protocols;
        member.SessionTimeoutMs = request.SessionTimeoutMs;
        member.RebalanceTimeoutMs = rebalanceTimeoutMs;
        var tcs = Park(member, version);
        TouchSession(member, nowMs);
        MaybePrepareRebalance(nowMs, reason + $" ({member.MemberId})");
        TryCompleteJoin(nowMs);
        return tcs.Task;
    }

    static TaskCompletionSource<JoinGroupResponse> Park(Member member, short version)
    {
        // A second JoinGroup from the same member replaces the first (the client gave up on it).
        member.PendingJoin?.TrySetResult(JoinError(ErrorCodes.RebalanceInProgress, member.MemberId));
        var tcs = new TaskCompletionSource<JoinGroupResponse>(TaskCreationOptions.RunContinuationsAsynchronously);
        member.PendingJoin = tcs;
        member.PendingJoinVersion = version;
        return tcs;
    }

    Task<JoinGroupResponse> ReplaceStaticMember(string instanceId, string oldId, string newId, string clientId, string clientHost,
        JoinGroupRequest request, List<(string, byte[])> protocols, int rebalanceTimeoutMs, short version, long nowMs)
    {
        var old = Members[oldId];
        string? previousLeader = LeaderId;
        // The old incarnation's parked requests are fenced.
        old.PendingJoin?.TrySetResult(JoinError(ErrorCodes.FencedInstanceId, oldId));
        old.PendingJoin = null;
        old.PendingSync?.TrySetResult(new SyncGroupResponse { ErrorCode = ErrorCodes.FencedInstanceId, Assignment = [] });
        old.PendingSync = null;
        Members.Remove(oldId);
        _pendingSync.Remove(oldId);
        var member = new Member
        {
            MemberId = newId,
            InstanceId = instanceId,
            ClientId = clientId,
            ClientHost = clientHost,
            SessionTimeoutMs = request.SessionTimeoutMs,
            RebalanceTimeoutMs = rebalanceTimeoutMs,
            Protocols = old.Protocols,
            Assignment = old.Assignment,
            JoinOrder = old.JoinOrder,
        };
        Members[newId] = member;
        StaticMembers[instanceId] = newId;
        bool wasLeader = LeaderId == oldId;
        if (wasLeader)
            LeaderId = newId;
        TouchSession(member, nowMs);
        _owner.Log.Info($"group '{GroupId}': static member '{instanceId}' rejoined; member id {oldId} replaced by {newId}");
        member.Protocols = protocols;
        switch (State)
        {
            case GroupState.Stable:
                if (SelectProtocol() == ProtocolName)
                {
                    // No rebalance: the member gets this generation back and SyncGroups for its old assignment.
                    Task stored = _owner.PersistGroup(this);
                    var response = new JoinGroupResponse
                    {
                        ErrorCode = ErrorCodes.None,
                        GenerationId = GenerationId,
                        ProtocolType = ProtocolType,
                        ProtocolName = ProtocolName,
                        MemberId = newId,
                        // v9+: the returning leader learns it is leader but must not assign (SkipAssignment). Older
                        // versions get the previous leader id so that the returning member acts as a follower.
                        Leader = wasLeader && version >= 9 ? newId : previousLeader ?? "",
                        SkipAssignment = wasLeader && version >= 9,
                    };
                    if (wasLeader && version >= 9)
                        AddMemberList(response, version);
                    return AnswerWhenStoredAsync(stored, response);
                }
                var parkedStable = Park(member, version);
                MaybePrepareRebalance(nowMs, $"static member '{instanceId}' rejoined with a change of protocol");
                return parkedStable.Task;
            case GroupState.CompletingRebalance:
                var parked = Park(member, version);
                MaybePrepareRebalance(nowMs, $"static member '{instanceId}' rejoined during CompletingRebalance");
                return parked.Task;
            default: // PreparingRebalance (Empty and Dead cannot hold members)
                var waiting = Park(member, version);
                TryCompleteJoin(nowMs);
                return waiting.Task;
        }
    }

    void MaybePrepareRebalance(long nowMs, string reason)
    {
        if (State is GroupState.Stable or GroupState.CompletingRebalance or GroupState.Empty)
            PrepareRebalance(nowMs, reason);
    }

    void PrepareRebalance(long nowMs, string reason)
    {
        if (State == GroupState.CompletingRebalance)
            ResetAndFailPendingSyncs();
        int rebalanceTimeoutMs = RebalanceTimeoutMs();
        int initialDelayMs = _owner.InitialRebalanceDelayMs;
        if (State == GroupState.Empty && initialDelayMs > 0)
        {
            int delay = Math.Min(initialDelayMs, rebalanceTimeoutMs);
            _initialDelay = true;
            _newMemberAdded = false;
            _initialDelayRemainingMs = Math.Max(rebalanceTimeoutMs - delay, 0);
            _joinDeadlineMs = nowMs + delay;
        }
        else
        {
            _initialDelay = false;
            _joinDeadlineMs = nowMs + rebalanceTimeoutMs;
        }
        _syncDeadlineMs = long.MaxValue;
        _pendingSync.Clear();
        SetState(GroupState.PreparingRebalance, nowMs);
        _owner.Timers.Schedule(this, _joinDeadlineMs);
        _owner.Log.Info($"group '{GroupId}': preparing to rebalance (generation {GenerationId}): {reason}");
    }

    void ResetAndFailPendingSyncs()
    {
        foreach (var m in Members.Values)
        {
            m.Assignment = [];
            m.PendingSync?.TrySetResult(new SyncGroupResponse { ErrorCode = ErrorCodes.RebalanceInProgress, Assignment = [] });
            m.PendingSync = null;
        }
    }

    void TryCompleteJoin(long nowMs)
    {
        if (State != GroupState.PreparingRebalance || _initialDelay)
            return;
        if (PendingMembers.Count > 0)
            return;
        foreach (var m in Members.Values)
        {
            if (!m.AwaitingJoin)
                return;
        }
        CompleteJoin(nowMs);
    }

    /// <summary>Kafka's onCompleteJoin: drop members that did not rejoin, bump the generation, answer every parked join.</summary>
    void CompleteJoin(long nowMs)
    {
        Debug.Assert(State == GroupState.PreparingRebalance);
        _initialDelay = false;
        _joinDeadlineMs = long.MaxValue;
        foreach (var m in new List<Member>(Members.Values))
        {
            if (!m.AwaitingJoin)
            {
                _owner.Log.Info($"group '{GroupId}': member {m.MemberId} did not rejoin within the rebalance timeout; removing it");
                RemoveMemberOnly(m);
            }
        }
        GenerationId++;
        if (LeaderId is null || !Members.ContainsKey(LeaderId))
            LeaderId = FirstMember()?.MemberId;
        if (Members.Count == 0)
        {
            ProtocolName = null;
            SetState(GroupState.Empty, nowMs);
            _ = _owner.PersistGroup(this);
            _owner.Log.Info($"group '{GroupId}': generation {GenerationId} has no members; the group is Empty");
            return;
        }
        ProtocolName = SelectProtocol();
        SetState(GroupState.CompletingRebalance, nowMs);
        _pendingSync.Clear();
        foreach (var m in OrderedMembers())
        {
            var tcs = m.PendingJoin!;
            short version = m.PendingJoinVersion;
            m.PendingJoin = null;
            _pendingSync.Add(m.MemberId);
            TouchSession(m, nowMs);
            tcs.TrySetResult(JoinResponseFor(m, version));
        }
        _syncDeadlineMs = nowMs + RebalanceTimeoutMs();
        _owner.Timers.Schedule(this, _syncDeadlineMs);
        _owner.Log.Info($"group '{GroupId}': generation {GenerationId} with {Members.Count} member(s), protocol {ProtocolName}, leader {LeaderId}");
    }

    /// <summary>Removes the member's records (not the state transition that may follow).</summary>
    void RemoveMemberOnly(Member m)
    {
        m.PendingJoin?.TrySetResult(JoinError(ErrorCodes.UnknownMemberId, m.MemberId));
        m.PendingJoin = null;
        m.PendingSync?.TrySetResult(new SyncGroupResponse { ErrorCode = ErrorCodes.UnknownMemberId, Assignment = [] });
        m.PendingSync = null;
        Members.Remove(m.MemberId);
        _pendingSync.Remove(m.MemberId);
        if (m.InstanceId is not null && StaticMembers.TryGetValue(m.InstanceId, out var id) && id == m.MemberId)
            StaticMembers.Remove(m.InstanceId);
        if (LeaderId == m.MemberId)
            LeaderId = FirstMember()?.MemberId;
    }

    void RemoveMemberAndUpdateGroup(Member m, long nowMs, string reason)
    {
        RemoveMemberOnly(m);
        switch (State)
        {
            case GroupState.Stable or GroupState.CompletingRebalance:
                PrepareRebalance(nowMs, reason);
                TryCompleteJoin(nowMs);
                break;
            case GroupState.PreparingRebalance:
                TryCompleteJoin(nowMs);
                break;
        }
    }

    // ---------------------------------------------------------------------------------------------------------------
    // SyncGroup, Heartbeat, LeaveGroup

    public Task<SyncGroupResponse> Sync(SyncGroupRequest request, short version, long nowMs)
    {
        AssertOwned();
        static Task<SyncGroupResponse> Error(short code) => Task.FromResult(new SyncGroupResponse { ErrorCode = code, Assignment = [] });
        string? instanceId = version >= 3 ? request.GroupInstanceId : null;
        if (State == GroupState.Dead)
            return Error(ErrorCodes.CoordinatorNotAvailable);
        if (IsFenced(instanceId, request.MemberId))
            return Error(ErrorCodes.FencedInstanceId);
        if (!Members.TryGetValue(request.MemberId, out var member))
            return Error(ErrorCodes.UnknownMemberId);
        if (request.GenerationId != GenerationId)
            return Error(ErrorCodes.IllegalGeneration);
        if (version >= 5 && ((request.ProtocolType is not null && request.ProtocolType != ProtocolType)
            || (request.ProtocolName is not null && request.ProtocolName != ProtocolName)))
            return Error(ErrorCodes.InconsistentGroupProtocol);
        switch (State)
        {
            case GroupState.Empty:
                return Error(ErrorCodes.UnknownMemberId);
            case GroupState.PreparingRebalance:
                return Error(ErrorCodes.RebalanceInProgress);
            case GroupState.CompletingRebalance:
                {
                    _pendingSync.Remove(member.MemberId);
                    TouchSession(member, nowMs);
                    member.PendingSync?.TrySetResult(new SyncGroupResponse { ErrorCode = ErrorCodes.RebalanceInProgress, Assignment = [] });
                    var tcs = new TaskCompletionSource<SyncGroupResponse>(TaskCreationOptions.RunContinuationsAsynchronously);
                    member.PendingSync = tcs;
                    if (IsLeader(member.MemberId))
                    {
                        foreach (var m in Members.Values)
                            m.Assignment = [];
                        foreach (var a in request.Assignments)
                        {
                            if (Members.TryGetValue(a.MemberId, out var target))
                                target.Assignment = a.Assignment ?? [];
                        }
                        // As Kafka's storeGroup: the group becomes Stable and the members get their assignments only
                        // once the assignment is durable in the offsets log.
                        _ = CompleteSyncWhenStoredAsync(_owner.PersistGroup(this, assigned: true), GenerationId, member.MemberId);
                    }
                    return tcs.Task;
                }
            default: // Stable
                _pendingSync.Remove(member.MemberId);
                TouchSession(member, nowMs);
                return Task.FromResult(SyncAnswer(member));
        }
    }

    async Task CompleteSyncWhenStoredAsync(Task stored, int generation, string leaderId)
    {
        short error = ErrorCodes.None;
        try
        {
            await stored.ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            error = ErrorCodes.CoordinatorNotAvailable;
        }
        lock (this)
        {
            // A rebalance, leave or expiry meanwhile has already answered the parked syncs.
            if (State != GroupState.CompletingRebalance || GenerationId != generation)
                return;
            long nowMs = _owner.NowMs;
            if (error != ErrorCodes.None)
            {
                foreach (var m in Members.Values)
                {
                    m.Assignment = [];
                    var parked = m.PendingSync;
                    m.PendingSync = null;
                    parked?.TrySetResult(new SyncGroupResponse { ErrorCode = error, Assignment = [] });
                }
                PrepareRebalance(nowMs, "the assignment of generation " + generation + " could not be stored in the offsets log");
                return;
            }
            SetState(GroupState.Stable, nowMs);
            foreach (var m in Members.Values)
            {
                var parked = m.PendingSync;
                m.PendingSync = null;
                parked?.TrySetResult(SyncAnswer(m));
            }
            _owner.Log.Info($"group '{GroupId}': generation {GenerationId} is Stable; assignments from leader {leaderId} sent to {Members.Count} member(s)");
        }
    }

    static async Task<JoinGroupResponse> AnswerWhenStoredAsync(Task stored, JoinGroupResponse response)
    {
        try
        {
            await stored.ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            return JoinError(ErrorCodes.CoordinatorNotAvailable, response.MemberId);
        }
        return response;
    }

    SyncGroupResponse SyncAnswer(Member m) => new()
    {
        ErrorCode = ErrorCodes.None,
        ProtocolType = ProtocolType,
        ProtocolName = ProtocolName,
        Assignment = m.Assignment,
    };

    public short Heartbeat(HeartbeatRequest request, short version, long nowMs)
    {
        AssertOwned();
        string? instanceId = version >= 3 ? request.GroupInstanceId : null;
        if (State == GroupState.Dead)
            return ErrorCodes.CoordinatorNotAvailable;
        if (State == GroupState.Empty)
            return ErrorCodes.UnknownMemberId;
        if (IsFenced(instanceId, request.MemberId))
            return ErrorCodes.FencedInstanceId;
        if (!Members.TryGetValue(request.MemberId, out var member))
            return ErrorCodes.UnknownMemberId;
        if (request.GenerationId != GenerationId)
            return ErrorCodes.IllegalGeneration;
        TouchSession(member, nowMs);
        return State == GroupState.PreparingRebalance ? ErrorCodes.RebalanceInProgress : ErrorCodes.None;
    }

    /// <summary>One leaving member (LeaveGroup v3+ batches them): its error code.</summary>
    public short Leave(string memberId, string? instanceId, string? reason, long nowMs)
    {
        AssertOwned();
        if (State == GroupState.Dead)
            return ErrorCodes.CoordinatorNotAvailable;
        Member? member;
        if (instanceId is not null)
        {
            if (!StaticMembers.TryGetValue(instanceId, out var registered))
                return ErrorCodes.UnknownMemberId;
            if (memberId.Length > 0 && registered != memberId)
                return ErrorCodes.FencedInstanceId;
            member = Members[registered];
        }
        else
        {
            if (PendingMembers.Remove(memberId))
            {
                TryCompleteJoin(nowMs);
                return ErrorCodes.None;
            }
            if (!Members.TryGetValue(memberId, out member))
                return ErrorCodes.UnknownMemberId;
        }
        _owner.Log.Info($"group '{GroupId}': member {member.MemberId} left the group{(reason is null ? "" : $" ({reason})")}");
        RemoveMemberAndUpdateGroup(member, nowMs, $"member {member.MemberId} left");
        return ErrorCodes.None;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Offsets

    /// <summary>Kafka's validateOffsetCommit for classic groups; NONE means the commit may be written.</summary>
    public short ValidateCommit(int generationId, string memberId, string? instanceId, long nowMs)
    {
        AssertOwned();
        if (State == GroupState.Dead)
            return ErrorCodes.CoordinatorNotAvailable;
        if (generationId < 0 && State == GroupState.Empty)
            return ErrorCodes.None; // the group only stores offsets (AdminClient, manual commits)
        if (IsFenced(instanceId, memberId))
            return ErrorCodes.FencedInstanceId;
        if (State == GroupState.CompletingRebalance)
            return ErrorCodes.RebalanceInProgress;
        if (!Members.TryGetValue(memberId, out var member))
            return ErrorCodes.UnknownMemberId;
        if (generationId != GenerationId)
            return ErrorCodes.IllegalGeneration;
        TouchSession(member, nowMs);
        return ErrorCodes.None;
    }

    /// <summary>Kafka's doTxnCommitOffsets checks: member and generation are enforced only when given.</summary>
    public short ValidateTxnCommit(int generationId, string memberId, string? instanceId)
    {
        AssertOwned();
        if (State == GroupState.Dead)
            return ErrorCodes.CoordinatorNotAvailable;
        if (instanceId is not null && IsFenced(instanceId, memberId))
            return ErrorCodes.FencedInstanceId;
        if (memberId.Length > 0 && !Members.ContainsKey(memberId))
            return ErrorCodes.UnknownMemberId;
        if (generationId >= 0 && generationId != GenerationId)
            return ErrorCodes.IllegalGeneration;
        return ErrorCodes.None;
    }

    /// <summary>Topics the members subscribe to, from their consumer-protocol subscriptions (for OffsetDelete).</summary>
    public bool IsSubscribedTo(string topic)
    {
        AssertOwned();
        if (ProtocolType != "consumer" || State == GroupState.Empty)
            return false;
        foreach (var m in Members.Values)
        {
            var metadata = m.MetadataFor(ProtocolName);
            if (metadata is null)
                continue;
            var subscription = ConsumerSubscription.Topics(metadata);
            if (subscription is null || subscription.Contains(topic))
                return true; // unreadable subscription: be safe and call it subscribed
        }
        return false;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Timers

    /// <summary>Handles every deadline due at <paramref name="nowMs"/> and re-arms for the next one.</summary>
    public void OnTimer(long nowMs)
    {
        AssertOwned();
        if (State == GroupState.Dead)
            return;
        List<string>? expiredPending = null;
        foreach (var (id, deadline) in PendingMembers)
        {
            if (deadline <= nowMs)
                (expiredPending ??= []).Add(id);
        }
        if (expiredPending is not null)
        {
            foreach (var id in expiredPending)
                PendingMembers.Remove(id);
            _owner.Log.Info($"group '{GroupId}': {expiredPending.Count} member(s) told MEMBER_ID_REQUIRED did not rejoin within the session timeout");
            TryCompleteJoin(nowMs);
        }
        foreach (var m in new List<Member>(Members.Values))
        {
            // Members parked in JoinGroup or SyncGroup are waiting on us, not the other way round (Kafka's shouldKeepAlive).
            if (m.SessionDeadlineMs <= nowMs && !m.AwaitingJoin && m.PendingSync is null && Members.ContainsKey(m.MemberId))
            {
                _owner.Log.Info($"group '{GroupId}': member {m.MemberId} (client '{m.ClientId}' at {m.ClientHost}) sent no heartbeat for {m.SessionTimeoutMs} ms (session timeout); removing it");
                RemoveMemberAndUpdateGroup(m, nowMs, $"member {m.MemberId} session timed out");
            }
        }
        if (State == GroupState.PreparingRebalance && _joinDeadlineMs <= nowMs)
        {
            if (_initialDelay && _newMemberAdded && _initialDelayRemainingMs > 0)
            {
                // Kafka's InitialDelayedJoin: each new joiner during the delay extends it, up to the rebalance timeout.
                int delay = Math.Min(_owner.InitialRebalanceDelayMs, _initialDelayRemainingMs);
                _initialDelayRemainingMs = Math.Max(_initialDelayRemainingMs - delay, 0);
                _newMemberAdded = false;
                _joinDeadlineMs = nowMs + delay;
            }
            else
            {
                CompleteJoin(nowMs);
            }
        }
        if (State is GroupState.CompletingRebalance or GroupState.Stable && _syncDeadlineMs <= nowMs)
        {
            _syncDeadlineMs = long.MaxValue;
            if (_pendingSync.Count > 0)
            {
                var missing = new List<string>(_pendingSync);
                _owner.Log.Info($"group '{GroupId}': {missing.Count} member(s) did not send SyncGroup within the rebalance timeout; removing them");
                foreach (var id in missing)
                {
                    if (Members.TryGetValue(id, out var m))
                        RemoveMemberOnly(m);
                }
                _pendingSync.Clear();
                if (State is GroupState.Stable or GroupState.CompletingRebalance)
                {
                    PrepareRebalance(nowMs, "members did not sync in time");
                    TryCompleteJoin(nowMs);
                }
            }
        }
        if (State == GroupState.Stable && _pendingSync.Count == 0)
            _syncDeadlineMs = long.MaxValue;
        _owner.Timers.Schedule(this, NextDeadlineMs());
    }

    public long NextDeadlineMs()
    {
        long next = long.MaxValue;
        foreach (var d in PendingMembers.Values)
            next = Math.Min(next, d);
        foreach (var m in Members.Values)
        {
            if (!m.AwaitingJoin && m.PendingSync is null)
                next = Math.Min(next, m.SessionDeadlineMs);
        }
        if (State == GroupState.PreparingRebalance)
            next = Math.Min(next, _joinDeadlineMs);
        if (_pendingSync.Count > 0)
            next = Math.Min(next, _syncDeadlineMs);
        return next;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Lifecycle

    /// <summary>DeleteGroups / offset expiry: the group is gone; parked requests learn it.</summary>
    public void MarkDead(long nowMs)
    {
        AssertOwned();
        foreach (var m in new List<Member>(Members.Values))
            RemoveMemberOnly(m);
        PendingMembers.Clear();
        Offsets.Clear();
        AppliedCommitSequence.Clear();
        OffsetDeleteSequence++;
        SetState(GroupState.Dead, nowMs);
    }

    /// <summary>Restores a group read from the offsets log at start-up: Stable with its members (each gets a fresh
    /// session timeout to come back, as Kafka does after loading), or Empty.</summary>
    internal void Restore(GroupSnapshot s, long nowMs)
    {
        AssertOwned();
        ProtocolType = s.ProtocolType;
        ProtocolName = s.ProtocolName;
        GenerationId = s.GenerationId;
        LeaderId = s.LeaderId;
        foreach (var sm in s.Members)
        {
            var m = new Member
            {
                MemberId = sm.MemberId,
                InstanceId = sm.InstanceId,
                ClientId = sm.ClientId,
                ClientHost = sm.ClientHost,
                SessionTimeoutMs = sm.SessionTimeoutMs,
                RebalanceTimeoutMs = sm.RebalanceTimeoutMs,
                Protocols = s.ProtocolName is null ? [] : [(s.ProtocolName, sm.Subscription)],
                Assignment = sm.Assignment,
                JoinOrder = ++_joinSequence,
            };
            Members[m.MemberId] = m;
            if (m.InstanceId is not null)
                StaticMembers[m.InstanceId] = m.MemberId;
            TouchSession(m, nowMs);
        }
        if (Members.Count > 0 && ProtocolName is not null)
        {
            SetState(GroupState.Stable, s.StateSinceMs);
        }
        else
        {
            Members.Clear();
            StaticMembers.Clear();
            SetState(GroupState.Empty, s.StateSinceMs);
        }
    }

    /// <param name="assigned">the leader's assignment is set and the group becomes Stable once this snapshot is durable</param>
    internal GroupSnapshot Snapshot(bool assigned = false)
    {
        AssertOwned();
        var members = new List<MemberSnapshot>();
        bool stable = assigned || State == GroupState.Stable;
        if (stable)
        {
            foreach (var m in OrderedMembers())
                members.Add(new MemberSnapshot(m.MemberId, m.InstanceId, m.ClientId, m.ClientHost, m.SessionTimeoutMs, m.RebalanceTimeoutMs,
                    m.MetadataFor(ProtocolName) ?? [], m.Assignment));
        }
        return new GroupSnapshot(GroupId, ProtocolType, GenerationId, stable ? ProtocolName : null,
            stable ? LeaderId : null, StateSinceMs, members);
    }

    /// <summary>Invariants for tests: states and member bookkeeping agree.</summary>
    internal void CheckInvariants()
    {
        AssertOwned();
        if (State is GroupState.Empty or GroupState.Dead && Members.Count != 0)
            throw new InvalidOperationException($"group '{GroupId}' is {StateName} with {Members.Count} members");
        if (State is GroupState.Stable or GroupState.CompletingRebalance && (LeaderId is null || !Members.ContainsKey(LeaderId)))
            throw new InvalidOperationException($"group '{GroupId}' is {StateName} without a leader among its members");
        foreach (var (instance, id) in StaticMembers)
        {
            if (!Members.TryGetValue(id, out var m) || m.InstanceId != instance)
                throw new InvalidOperationException($"group '{GroupId}': static instance '{instance}' maps to a missing member {id}");
        }
        if (State != GroupState.CompletingRebalance)
        {
            foreach (var m in Members.Values)
            {
                if (m.PendingSync is not null)
                    throw new InvalidOperationException($"group '{GroupId}': member {m.MemberId} parked in SyncGroup while {StateName}");
            }
        }
        if (State != GroupState.PreparingRebalance)
        {
            foreach (var m in Members.Values)
            {
                if (m.AwaitingJoin)
                    throw new InvalidOperationException($"group '{GroupId}': member {m.MemberId} parked in JoinGroup while {StateName}");
            }
        }
    }
}

public sealed record MemberSnapshot(string MemberId, string? InstanceId, string ClientId, string ClientHost, int SessionTimeoutMs,
    int RebalanceTimeoutMs, byte[] Subscription, byte[] Assignment);

public sealed record GroupSnapshot(string GroupId, string? ProtocolType, int GenerationId, string? ProtocolName, string? LeaderId,
    long StateSinceMs, List<MemberSnapshot> Members);
