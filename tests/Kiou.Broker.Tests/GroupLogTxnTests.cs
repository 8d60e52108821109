using Kiou.Broker.Groups;
using Kiou.Broker.Hosting;

namespace Kiou.Broker.Tests;

/// <summary>
/// Issue 14: transactional offsets in the group log: a pending offset (TxnOffsetCommit) is replayed as pending, a
/// COMMIT marker record turns it into a committed offset, an ABORT drops it, and compaction keeps what is pending.
/// </summary>
public sealed class GroupLogTxnTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "kiou-group-txn-" + Guid.NewGuid().ToString("N"));
    readonly Log _log = new(TextWriter.Null);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    static CommittedOffset At(long offset) => new(offset, -1, "m", 1, -1);

    [Fact]
    public async Task Pending_offsets_replay_and_their_markers_commit_or_drop_them()
    {
        using (var log = new GroupLog(_dir, _log))
        {
            Assert.Empty(log.Open());
            log.StartWriter();
            await log.Append(GroupLog.Kind.OffsetCommit, "g", "t", 0, GroupLog.OffsetCommit("g", "t", 0, At(5)));
            await log.Append(GroupLog.Kind.TxnOffsetCommit, "g", "t", 0, GroupLog.TxnOffsetCommit("g", 7, "t", 0, At(10)));
            await log.Append(GroupLog.Kind.TxnOffsetCommit, "g", "t", 1, GroupLog.TxnOffsetCommit("g", 8, "t", 1, At(20)));
        }
        using (var log = new GroupLog(_dir, _log))
        {
            var live = log.Open()["g"];
            Assert.True(GroupLog.TryReadOffset(live.Offsets[("t", 0)], out _, out _, out var committed));
            Assert.Equal(5, committed.Offset);
            Assert.True(GroupLog.TryReadTxnOffset(live.Pending[7][("t", 0)], out long pid, out string topic, out int partition, out var pending));
            Assert.Equal((7L, "t", 0, 10L), (pid, topic, partition, pending.Offset));
            Assert.Single(live.Pending[8]);
            log.StartWriter();
            await log.Append(GroupLog.Kind.TxnMarker, "g", null, 0, GroupLog.TxnMarker("g", 7, commit: true));
            await log.Append(GroupLog.Kind.TxnMarker, "g", null, 0, GroupLog.TxnMarker("g", 8, commit: false));
        }
        using (var log = new GroupLog(_dir, _log))
        {
            var live = log.Open()["g"];
            Assert.Empty(live.Pending);
            Assert.True(GroupLog.TryReadOffset(live.Offsets[("t", 0)], out _, out _, out var committed));
            Assert.Equal(10, committed.Offset);
            Assert.Equal("m", committed.Metadata);
            Assert.False(live.Offsets.ContainsKey(("t", 1))); // aborted
        }
    }

    [Fact]
    public async Task Compaction_keeps_pending_offsets()
    {
        using (var log = new GroupLog(_dir, _log) { CompactMinBytes = 1024 })
        {
            log.Open();
            log.StartWriter();
            await log.Append(GroupLog.Kind.TxnOffsetCommit, "g", "t", 3, GroupLog.TxnOffsetCommit("g", 9, "t", 3, At(33)));
            for (int i = 0; i < 100; i++)
                await log.Append(GroupLog.Kind.OffsetCommit, "g", "t", 0, GroupLog.OffsetCommit("g", "t", 0, At(i)));
            Assert.True(log.Compactions > 0);
        }
        using (var log = new GroupLog(_dir, _log))
        {
            var live = log.Open()["g"];
            Assert.True(GroupLog.TryReadTxnOffset(live.Pending[9][("t", 3)], out _, out _, out _, out var pending));
            Assert.Equal(33, pending.Offset);
        }
    }
}
