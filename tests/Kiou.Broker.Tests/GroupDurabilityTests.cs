using Kiou.Broker.Groups;
using Kiou.Broker.Hosting;
using Kiou.Protocol.Messages;
using Kiou.Storage.Tests.Support;

namespace Kiou.Broker.Tests;

/// <summary>
/// Group metadata is answered only once durable, as Kafka's storeGroup does: the leader's assignment reaches the
/// members after it is in the offsets log, and a write that fails gives an error and a new rebalance instead.
/// </summary>
public sealed class GroupDurabilityTests
{
    [TmpfsFact]
    public async Task A_sync_whose_assignment_cannot_be_stored_is_answered_with_an_error_and_the_group_rebalances()
    {
        string mount = Path.Combine(Path.GetTempPath(), "kiou-group-enospc-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(mount);
        Assert.True(FaultTests.Run("mount", $"-t tmpfs -o size=1m tmpfs {mount}"), "mount failed although the probe succeeded");
        var clock = new ManualTimeProvider();
        var logText = new StringWriter();
        GroupCoordinator? c = null;
        OffsetsHost? host = null;
        try
        {
            var log = new Log(TextWriter.Synchronized(logText), Log.Level.Debug);
            host = OffsetsHost.Open(Path.Combine(mount, "groups"), log, clock, partitions: 1);
            c = host.NewCoordinator(new GroupSettings { InitialRebalanceDelayMs = 0 }, clock, log, (_, _) => true);
            c.StartLoading(null);
            await c.Loading;

            var join = new JoinGroupRequest
            {
                GroupId = "g",
                SessionTimeoutMs = 10000,
                RebalanceTimeoutMs = 30000,
                ProtocolType = "consumer",
                // Metadata larger than a page, so the group's record needs pages the full file system does not have.
                Protocols = [new() { Name = "range", Metadata = new byte[16 * 1024] }],
            };
            var first = await c.JoinGroup(join, 5, "client", null);
            Assert.Equal(ErrorCodes.MemberIdRequired, first.ErrorCode);
            join.MemberId = first.MemberId;
            var joined = await c.JoinGroup(join, 5, "client", null);
            Assert.Equal(ErrorCodes.None, joined.ErrorCode);

            // Fill the file system: the assignment cannot be written.
            using (var filler = new FileStream(Path.Combine(mount, "filler"), FileMode.Create))
            {
                var block = new byte[64 * 1024];
                try
                {
                    while (true)
                        filler.Write(block);
                }
                catch (IOException)
                {
                }
            }

            var sync = await c.SyncGroup(new SyncGroupRequest
            {
                GroupId = "g",
                GenerationId = joined.GenerationId,
                MemberId = joined.MemberId,
                Assignments = [new() { MemberId = joined.MemberId, Assignment = [1, 2, 3] }],
            }, 5);
            Assert.True(sync.ErrorCode == ErrorCodes.CoordinatorNotAvailable, logText.ToString());
            Assert.Empty(sync.Assignment);
            var group = c.Find("g")!;
            lock (group)
                Assert.Equal(GroupState.PreparingRebalance, group.State);
        }
        finally
        {
            if (c is not null)
                await c.DisposeAsync();
            if (host is not null)
                await host.DisposeAsync();
            FaultTests.Run("umount", $"-l {mount}");
            Directory.Delete(mount, recursive: true);
        }
    }
}
