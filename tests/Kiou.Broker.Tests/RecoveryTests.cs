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
        if (damage != "garbage")
        {
            // As after kill -9: no clean-shutdown marker, and the recovery point from before the appends, so the
            // damage lies in the unflushed tail (after a clean stop it would be durable data: quarantined instead).
            File.Delete(Path.Combine(dir, ".kiou-clean-shutdown"));
            Kiou.Storage.Recovery.WriteRecoveryPoint(dir, 0);
        }

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
        if (damage != "garbage")
        {
            // The cut bytes are kept aside and the operator is told, at WARN.
            // (The clean stop's producer snapshot now lies beyond the log's end: it is set aside there too.)
            string aside = Assert.Single(Directory.GetFiles(Path.Combine(dir, "quarantine")), f => !f.EndsWith(".snapshot", StringComparison.Ordinal));
            Assert.Equal(length - (damage == "truncate" ? 30 : 0) - new FileInfo(log).Length, new FileInfo(aside).Length);
            Assert.Contains($"WARN  partition {topic}-0: truncated ", broker.LogText.ToString());
        }

        // New appends continue densely after the survivors.
        using (var producer = Clients.Producer(broker.Bootstrap, Acks.All))
        {
            var r = await producer.ProduceAsync(new TopicPartition(topic, 0), new Message<byte[]?, byte[]?> { Value = [7] });
            Assert.Equal(expectedSurvivors, r.Offset.Value);
        }
    }
}

/// <summary>
/// A damaged sealed segment (docs/design/recovery.md): the partition serves everything intact, a consumer at a damaged
/// offset gets CORRUPT_MESSAGE on that partition (surfaced by librdkafka and kafka-python), the connection stays open,
/// other partitions in the same fetch are served, and seeking past the damage reads on.
/// </summary>
public sealed class DamagedSegmentTests
{
    const int Records = 60;

    static byte[] Value(int i) => Enumerable.Repeat((byte)i, 100).ToArray();

    /// <summary>Base offsets and byte sizes of the batches of a segment file, walking the headers.</summary>
    static List<(long BaseOffset, int Size)> Batches(byte[] file)
    {
        var list = new List<(long, int)>();
        for (int p = 0; p + 12 <= file.Length;)
        {
            long baseOffset = System.Buffers.Binary.BinaryPrimitives.ReadInt64BigEndian(file.AsSpan(p));
            int size = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(file.AsSpan(p + 8)) + 12;
            list.Add((baseOffset, size));
            p += size;
        }
        return list;
    }

    static async Task<List<long>> ProduceAndStop(TestBroker broker, string topic)
    {
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 2, new() { ["segment.bytes"] = "2000" });
        using (var producer = Clients.Producer(broker.Bootstrap, Acks.All, configure: c => c.LingerMs = 0))
        {
            for (int i = 0; i < Records; i++)
            {
                for (int p = 0; p < 2; p++)
                    await producer.ProduceAsync(new TopicPartition(topic, p), new Message<byte[]?, byte[]?> { Key = [(byte)i], Value = Value(i) });
            }
        }
        await broker.StopAsync();
        return Directory.GetFiles(Path.Combine(broker.DataDir, $"{topic}-0"), "*.log")
            .Select(f => long.Parse(Path.GetFileNameWithoutExtension(f), System.Globalization.CultureInfo.InvariantCulture)).Order().ToList();
    }

    static void AssertRecord(ConsumeResult<byte[]?, byte[]?> r)
    {
        int i = (int)r.Offset.Value;
        Assert.Equal(new[] { (byte)i }, r.Message.Key);
        Assert.Equal(Value(i), r.Message.Value);
    }

    [Theory]
    [InlineData("cut")]
    [InlineData("header")]
    public async Task A_consumer_at_damaged_offsets_gets_CORRUPT_MESSAGE_and_reads_on_after_seeking_past_them(string damage)
    {
        await using var broker = TestBroker.Start();
        const string topic = "damaged";
        List<long> bases = await ProduceAndStop(broker, topic);
        Assert.True(bases.Count >= 5, $"{bases.Count} segments");
        string dir = Path.Combine(broker.DataDir, $"{topic}-0");
        string victim = Path.Combine(dir, $"{bases[2]:D20}.log");
        byte[] original = File.ReadAllBytes(victim);
        var batches = Batches(original);
        long firstLost;
        if (damage == "cut")
        {
            // Half the file: recovery quarantines it and keeps the whole batches of the first half.
            int half = original.Length / 2;
            int kept = 0;
            int n = 0;
            while (kept + batches[n].Size <= half)
                kept += batches[n++].Size;
            firstLost = batches[n].BaseOffset;
            using var f = new FileStream(victim, FileMode.Open);
            f.SetLength(half);
        }
        else
        {
            // A flipped magic byte in the third batch; the index files are intact, so only reads meet it.
            int position = batches[0].Size + batches[1].Size + 16;
            firstLost = batches[2].BaseOffset;
            using var f = new FileStream(victim, FileMode.Open);
            f.Position = position;
            f.WriteByte(0x7F);
        }
        long next = bases[3];

        broker.StartAgain();
        using var consumer = Clients.Consumer(broker.Bootstrap);
        consumer.Assign([new TopicPartitionOffset(topic, 0, damage == "cut" ? 0 : firstLost), new TopicPartitionOffset(topic, 1, 0)]);
        var got = new List<ConsumeResult<byte[]?, byte[]?>>();
        ConsumeException? error = null;
        int otherPartition = 0;
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while ((error is null || otherPartition < Records) && DateTime.UtcNow < deadline)
        {
            try
            {
                var r = consumer.Consume(TimeSpan.FromMilliseconds(200));
                if (r is null || r.IsPartitionEOF)
                    continue;
                AssertRecord(r);
                if (r.Partition.Value == 1)
                    otherPartition++;
                else
                    got.Add(r);
            }
            catch (ConsumeException e)
            {
                error ??= e;
            }
        }
        Assert.NotNull(error);
        Assert.Equal(ErrorCode.InvalidMsg, error.Error.Code); // librdkafka's name for CORRUPT_MESSAGE (2)
        Assert.Equal(new TopicPartition(topic, 0), error.ConsumerRecord?.TopicPartition ?? new TopicPartition(topic, 0));
        Assert.Equal(Records, otherPartition); // the same fetches served the healthy partition in full
        if (damage == "cut")
            Assert.Equal(Enumerable.Range(0, (int)firstLost).Select(i => (long)i), got.Select(r => r.Offset.Value));
        else
            Assert.Empty(got);

        // Seek past the damage: everything after it is there.
        consumer.Seek(new TopicPartitionOffset(topic, 0, next));
        got.Clear();
        deadline = DateTime.UtcNow.AddSeconds(30);
        while (got.Count < Records - next && DateTime.UtcNow < deadline)
        {
            var r = consumer.Consume(TimeSpan.FromMilliseconds(200));
            if (r is null || r.IsPartitionEOF || r.Partition.Value != 0)
                continue;
            AssertRecord(r);
            got.Add(r);
        }
        Assert.Equal(Enumerable.Range((int)next, Records - (int)next).Select(i => (long)i), got.Select(r => r.Offset.Value));

        string log = broker.LogText.ToString();
        Assert.DoesNotContain("closing the connection", log);
        Assert.DoesNotContain(" ERROR ", log);
        Assert.Contains($"WARN  partition {topic}-0: a read at offset {firstLost} met damaged data and was answered with CORRUPT_MESSAGE", log);
        if (damage == "cut")
        {
            Assert.Contains($"WARN  partition {topic}-0: {bases[2]:D20}.log is damaged", log);
            Assert.Contains($"offsets {firstLost}..{next - 1} are lost", log);
            string aside = Assert.Single(Directory.GetFiles(Path.Combine(dir, "quarantine")));
            Assert.Equal(original.Length / 2, new FileInfo(aside).Length);
        }

        // kafka-python raises the error on poll at the damaged offset, and reads on after seeking past it.
        var run = ChildProcess.Run("/usr/bin/python3", [Path.Combine(CompatTests.CompatDir, "kafka_python_damaged.py"), broker.Bootstrap, topic,
            firstLost.ToString(System.Globalization.CultureInfo.InvariantCulture), next.ToString(System.Globalization.CultureInfo.InvariantCulture),
            Records.ToString(System.Globalization.CultureInfo.InvariantCulture)], timeoutMs: 60_000);
        Assert.True(run.ExitCode == 0, $"exit code {run.ExitCode}\nstdout:\n{run.Stdout}\nstderr:\n{run.Stderr}");
        Assert.Contains("ok: CorruptRecordException at offset " + firstLost, run.Stdout);
        Assert.Contains($"ok: read offsets {next}..{Records - 1} after seeking past the damage", run.Stdout);
    }

    [Fact]
    public async Task A_last_segment_emptied_after_a_clean_stop_is_reported_and_its_offsets_are_not_reused()
    {
        await using var broker = TestBroker.Start();
        const string topic = "emptied";
        List<long> bases = await ProduceAndStop(broker, topic);
        string dir = Path.Combine(broker.DataDir, $"{topic}-0");
        long active = bases[^1];
        Assert.True(active > 0 && active < Records);
        File.WriteAllBytes(Path.Combine(dir, $"{active:D20}.log"), []);

        broker.StartAgain();
        string log = broker.LogText.ToString();
        Assert.Contains($"WARN  partition {topic}-0: DATA LOST: offsets {active}..{Records - 1} were durable", log);
        Assert.Single(Directory.GetFiles(Path.Combine(dir, "quarantine")));

        using (var producer = Clients.Producer(broker.Bootstrap, Acks.All))
        {
            var r = await producer.ProduceAsync(new TopicPartition(topic, 0), new Message<byte[]?, byte[]?> { Key = [Records], Value = Value(Records) });
            Assert.Equal(Records, r.Offset.Value); // appends go on after the lost offsets
        }

        using var consumer = Clients.Consumer(broker.Bootstrap);
        consumer.Assign([new TopicPartitionOffset(topic, 0, active - 1)]);
        var first = consumer.Consume(TimeSpan.FromSeconds(10));
        Assert.Equal(active - 1, first.Offset.Value);
        AssertRecord(first);
        var e = Assert.Throws<ConsumeException>(() =>
        {
            for (int i = 0; i < 50; i++)
            {
                var r = consumer.Consume(TimeSpan.FromMilliseconds(200));
                Assert.True(r is null || r.IsPartitionEOF, $"record at offset {r?.Offset} inside the lost range");
            }
        });
        Assert.Equal(ErrorCode.InvalidMsg, e.Error.Code);
        consumer.Seek(new TopicPartitionOffset(topic, 0, Records));
        ConsumeResult<byte[]?, byte[]?>? after = null;
        for (int i = 0; i < 50 && (after is null || after.IsPartitionEOF); i++)
            after = consumer.Consume(TimeSpan.FromMilliseconds(200));
        Assert.NotNull(after);
        Assert.Equal(Records, after.Offset.Value);
        AssertRecord(after);
    }
}
