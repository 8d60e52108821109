using Confluent.Kafka;
using Confluent.Kafka.Admin;

namespace Kiou.Broker.Tests;

/// <summary>
/// SIGKILL while offsets are being committed: every acknowledged commit must be there after the restart (the broker
/// answers OffsetCommit only once it is fdatasynced), and the replay copes with whatever the kill tore.
/// </summary>
public sealed class GroupCrashTests
{
    [Fact]
    public async Task Acknowledged_commits_survive_SIGKILL()
    {
        string dataDir = Path.Combine(Path.GetTempPath(), "kiou-groupcrash-" + Guid.NewGuid().ToString("N"));
        int port = BrokerProcess.FreePort();
        const string topic = "crash-offsets";
        try
        {
            using (var first = BrokerProcess.Start(dataDir, null, port))
                await Clients.CreateTopicAsync(first.Bootstrap, topic, 4);
            long acked = -1;
            for (int round = 0; round < 3; round++)
            {
                using var broker = BrokerProcess.Start(dataDir, null, port);
                await GroupSupport.WaitUntil(() => broker.Output.Contains("group coordinator: loaded"), "the offsets log is replayed");
                Assert.True(round == 0 || broker.Output.Contains("committed offsets"), broker.Output);
                using var admin = Clients.Admin(broker.Bootstrap);
                if (acked >= 0)
                {
                    var after = await admin.ListConsumerGroupOffsetsAsync([new ConsumerGroupTopicPartitions("crash-group", null)]);
                    var found = after.Single().Partitions.Select(p => p.Offset.Value).ToList();
                    // The last acknowledged commit, or the one in flight when the broker died: one commit request is
                    // written as one unit, so every partition has the same offset.
                    Assert.Equal(4, found.Count);
                    Assert.All(found, f => Assert.Equal(found[0], f));
                    Assert.InRange(found[0], acked, acked + 1);
                    acked = found[0];
                }
                using var stop = new CancellationTokenSource();
                var committing = Task.Run(async () =>
                {
                    long next = acked + 1;
                    while (!stop.IsCancellationRequested)
                    {
                        try
                        {
                            await admin.AlterConsumerGroupOffsetsAsync([
                                new ConsumerGroupTopicPartitionOffsets("crash-group",
                                    [.. Enumerable.Range(0, 4).Select(p => new TopicPartitionOffset(topic, p, next))]),
                            ]);
                            Volatile.Write(ref acked, next++);
                        }
                        catch (KafkaException)
                        {
                            return; // the broker is gone
                        }
                    }
                });
                long roundStart = acked;
                await GroupSupport.WaitUntil(() => Volatile.Read(ref acked) > roundStart + 20, "some commits are acknowledged");
                broker.Kill();
                stop.Cancel();
                await committing;
            }
            using var last = BrokerProcess.Start(dataDir, null, port);
            await GroupSupport.WaitUntil(() => last.Output.Contains("group coordinator: loaded"), "the offsets log is replayed");
            using var check = Clients.Admin(last.Bootstrap);
            var final = await check.ListConsumerGroupOffsetsAsync([new ConsumerGroupTopicPartitions("crash-group", null)]);
            Assert.Equal(4, final.Single().Partitions.Count);
            Assert.All(final.Single().Partitions, p => Assert.InRange(p.Offset.Value, acked, acked + 1));
            Assert.All(final.Single().Partitions, p => Assert.Equal(final.Single().Partitions[0].Offset, p.Offset));
        }
        finally
        {
            try
            {
                Directory.Delete(dataDir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }
}
