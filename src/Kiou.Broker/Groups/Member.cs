using Kiou.Protocol.Messages;

namespace Kiou.Broker.Groups;

/// <summary>One member of a classic group. Owned by its <see cref="Group"/>: read and written under the group's lock.</summary>
public sealed class Member
{
    public required string MemberId { get; set; }
    public string? InstanceId { get; init; }
    public required string ClientId { get; set; }
    public required string ClientHost { get; set; }
    public int SessionTimeoutMs { get; set; }
    public int RebalanceTimeoutMs { get; set; }
    /// <summary>The member's assignors in its order of preference, with their subscription bytes (opaque here).</summary>
    public List<(string Name, byte[] Metadata)> Protocols { get; set; } = [];
    public byte[] Assignment { get; set; } = [];
    /// <summary>Order of first join; the first joiner becomes leader when the leader is gone.</summary>
    public long JoinOrder { get; init; }

    /// <summary>A parked JoinGroup (PreparingRebalance): answered when the join phase completes.</summary>
    public TaskCompletionSource<JoinGroupResponse>? PendingJoin { get; set; }
    public short PendingJoinVersion { get; set; }
    /// <summary>A parked SyncGroup (CompletingRebalance): answered when the leader's assignment arrives.</summary>
    public TaskCompletionSource<SyncGroupResponse>? PendingSync { get; set; }

    public long SessionDeadlineMs { get; set; }

    public bool AwaitingJoin => PendingJoin is not null;

    public byte[]? MetadataFor(string? protocol)
    {
        foreach (var (name, metadata) in Protocols)
        {
            if (name == protocol)
                return metadata;
        }
        return null;
    }

    public bool SupportsProtocol(string name)
    {
        foreach (var (n, _) in Protocols)
        {
            if (n == name)
                return true;
        }
        return false;
    }

    /// <summary>Same names with the same bytes in the same order (a rejoin that changes nothing).</summary>
    public bool SameProtocols(List<(string Name, byte[] Metadata)> other)
    {
        if (other.Count != Protocols.Count)
            return false;
        for (int i = 0; i < other.Count; i++)
        {
            if (other[i].Name != Protocols[i].Name || !other[i].Metadata.AsSpan().SequenceEqual(Protocols[i].Metadata))
                return false;
        }
        return true;
    }
}

/// <summary>A committed offset as Kafka stores it: the commit metadata string is kept exactly as sent.</summary>
public readonly record struct CommittedOffset(long Offset, int LeaderEpoch, string? Metadata, long CommitTimestampMs, long ExpireTimestampMs);
