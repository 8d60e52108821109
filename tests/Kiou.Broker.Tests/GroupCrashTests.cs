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
                    var after = await admin.ListConsumerGroupOffsetsAsync([new ConsumerGroupTopicPartitions("crash-group", [new TopicPartition(topic, 0)])]);
                    long found = after.Single().Partitions.Single().Offset.Value;
                    // The last acknowledged commit, or the one in flight when the broker died.
                    Assert.InRange(found, acked, acked + 1);
                    acked = found;
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
                await GroupSupport.WaitUntil(() => Volatile.Read(ref acked) > 20 * (round + 1), "some commits are acknowledged");
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
