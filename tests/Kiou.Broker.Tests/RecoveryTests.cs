using Confluent.Kafka;

namespace Kiou.Broker.Tests;

/// <summary>Unclean-stop damage on disk: the broker truncates to the last valid batch and serves everything before it.</summary>
public sealed class RecoveryTests
{
    [Theory]
    [InlineData("truncate")]
    [InlineData("corrupt")]
    [InlineData("garbage")]
    public async Task A_damaged_segment_tail_is_truncated_to_the_last_valid_batch(string damage)
    {
        await using var broker = TestBroker.Start();
        const string topic = "damaged";
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);
        using (var producer = Clients.Producer(broker.Bootstrap, Acks.All, configure: c => c.LingerMs = 0))
        {
            // One batch per record: produce and wait for each.
            for (int i = 0; i < 20; i++)
                await producer.ProduceAsync(new TopicPartition(topic, 0), new Message<byte[]?, byte[]?> { Key = [(byte)i], Value = new byte[100 + i] });
        }
        await broker.StopAsync();

        string dir = Path.Combine(broker.DataDir, $"{topic}-0");
        string log = Directory.GetFiles(dir, "*.log").OrderBy(f => f).Last();
        long length = new FileInfo(log).Length;
        int expectedSurvivors;
        using (var f = new FileStream(log, FileMode.Open, FileAccess.ReadWrite))
        {
            switch (damage)
            {
                case "truncate":
                    f.SetLength(length - 30); // tear the last batch
                    expectedSurvivors = 19;
                    break;
                case "corrupt":
                    f.Position = length - 10; // a byte inside the last batch's records: CRC fails
                    int b = f.ReadByte();
                    f.Position = length - 10;
                    f.WriteByte((byte)(b ^ 0x5A));
                    expectedSurvivors = 19;
                    break;
                default:
                    f.Position = length;
                    f.Write(new byte[] { 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 200, 1, 2, 3 }); // a half-written header
                    expectedSurvivors = 20;
                    break;
            }
        }
        foreach (var index in Directory.GetFiles(dir, "*.index"))
            File.Delete(index); // also force an index rebuild

        broker.StartAgain();
        var records = Clients.ReadAll(broker.Bootstrap, topic, 1);
        Assert.Equal(expectedSurvivors, records.Count);
        for (int i = 0; i < records.Count; i++)
        {
            Assert.Equal(i, records[i].Offset.Value);
            Assert.Equal(new[] { (byte)i }, records[i].Message.Key);
            Assert.Equal(100 + i, records[i].Message.Value!.Length);
        }
        Assert.Contains("truncated", broker.LogText.ToString());

        // New appends continue densely after the survivors.
        using (var producer = Clients.Producer(broker.Bootstrap, Acks.All))
        {
            var r = await producer.ProduceAsync(new TopicPartition(topic, 0), new Message<byte[]?, byte[]?> { Value = [7] });
            Assert.Equal(expectedSurvivors, r.Offset.Value);
        }
    }
}
