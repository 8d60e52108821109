using System.Diagnostics;
using System.Globalization;
using System.Text;
using Confluent.Kafka;
using Kiou.Protocol.Records;

namespace Kiou.Broker.Tests;

/// <summary>
/// The kill -9 loop under the default flush mode (KIOU_FLUSH=roll: acks=all means "in the page cache", which a process
/// crash does not lose): start, produce numbered records with acks=all and idempotence off (the plain path; IdempotentClientTests has the idempotent loop), SIGKILL at a random
/// moment, again and again, cycling the io_uring write modes. Afterwards every acknowledged record is there exactly
/// as sent at its acknowledged offset (read with librdkafka, check.crcs=true), and every batch of every segment
/// file has a valid CRC. KIOU_CRASH_CYCLES sets the cycles (scripts/soak-crash.sh runs thousands);
/// KIOU_CRASH_REPORT names a file that gets the counts.
/// </summary>
public sealed class KillLoopTests
{
    private static readonly string[] WriteModes = ["direct", "ring", "inline"];

    [Fact]
    public async Task Acknowledged_records_survive_a_SIGKILL_loop_and_no_corrupt_batch_is_served()
    {
        int cycles = int.TryParse(Environment.GetEnvironmentVariable("KIOU_CRASH_CYCLES"), out int c) && c > 0 ? c : 50;
        int seed = Environment.TickCount;
        var rng = new Random(seed);
        string dataDir = Path.Combine(Path.GetTempPath(), "kiou-killloop-" + Guid.NewGuid().ToString("N"));
        const string topic = "killloop";
        const int partitions = 2;
        // Per partition, indexed by offset: (cycle << 32 | sequence) + 1 of the record acknowledged there, 0 if none.
        // Compact, so that a soak of thousands of cycles fits in memory.
        var acked = new Acked(partitions);
        int port = BrokerProcess.FreePort();
        var clock = Stopwatch.StartNew();
        try
        {
            using (var first = BrokerProcess.Start(dataDir, null, port))
            {
                // Small segments: kills land during rolls too.
                await Clients.CreateTopicAsync(first.Bootstrap, topic, partitions, new Dictionary<string, string> { ["segment.bytes"] = "262144" });
            }

            for (int cycle = 0; cycle < cycles; cycle++)
            {
                var env = new Dictionary<string, string> { ["KIOU_FLUSH"] = "roll", ["KIOU_URING_WRITES"] = WriteModes[cycle % WriteModes.Length] };
                using var broker = BrokerProcess.Start(dataDir, env, port);
                if (cycle % 10 == 9)
                {
                    CheckHighWatermarks(broker.Bootstrap, topic, partitions, acked, seed, cycle);
                }

                using var producer = Clients.Producer(broker.Bootstrap, Acks.All, cycle % 2 == 0 ? Confluent.Kafka.CompressionType.None : Confluent.Kafka.CompressionType.Lz4, p =>
                {
                    p.LingerMs = rng.Next(0, 3);
                    p.MessageTimeoutMs = 1500;
                    p.EnableIdempotence = false; // the plain path: librdkafka needs retries for idempotence
                    p.MessageSendMaxRetries = 0; // no retried duplicates: each acknowledged offset belongs to one record
                });
                using var stop = new CancellationTokenSource();
                int sequence = 0;
                int currentCycle = cycle;
                var producing = Task.Run(async () =>
                {
                    while (!stop.IsCancellationRequested)
                    {
                        long id = ((long)currentCycle << 32) | (uint)sequence++;
                        int partition = sequence % partitions;
                        producer.Produce(new TopicPartition(topic, partition), new Message<byte[]?, byte[]?> { Value = Encoding.UTF8.GetBytes(id.ToString(CultureInfo.InvariantCulture)) }, report =>
                        {
                            if (report.Error.Code == ErrorCode.NoError)
                            {
                                acked.Add(report.Partition.Value, report.Offset.Value, id);
                            }
                        });
                        if (sequence % 100 == 0)
                        {
                            await Task.Delay(1);
                        }
                    }
                });
                await Task.Delay(rng.Next(30, 400));
                broker.Kill();
                stop.Cancel();
                await producing;
                // Answers received before the kill are reported within moments; the rest fail (the broker is gone)
                // and are not counted. Not waiting for their timeouts keeps a cycle short.
                producer.Flush(TimeSpan.FromMilliseconds(200));
            }

            // An acknowledged offset handed out again means the record first acknowledged there was lost.
            Assert.True(acked.Duplicates == 0, $"{acked.Duplicates} acknowledged offsets were acknowledged again for another record (seed {seed})");
            Assert.True(acked.Count > cycles * 10, $"only {acked.Count} records were acknowledged in {cycles} cycles (seed {seed})");
            using var final = BrokerProcess.Start(dataDir, null, port);
            (long consumed, long lost) = ConsumeAndCompare(final.Bootstrap, topic, partitions, acked, seed);

            Assert.Equal(0, final.Terminate());
            (int files, int batches) = CheckSegmentFiles(dataDir, topic, partitions);
            string summary = $"kill -9 loop: {cycles} cycles in {clock.Elapsed.TotalSeconds:F0} s, {acked.Count} records acknowledged, {lost} lost, {consumed} consumed, "
                + $"{batches} batches in {files} segment files checked, 0 corrupt (seed {seed})";
            if (Environment.GetEnvironmentVariable("KIOU_CRASH_REPORT") is { Length: > 0 } reportPath)
            {
                await File.WriteAllTextAsync(reportPath, summary + Environment.NewLine);
            }

            Assert.True(lost == 0, $"{lost} acknowledged records lost or changed; {summary}");
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

    /// <summary>Cheap check between cycles: each partition's high watermark is past every acknowledged offset.</summary>
    private static void CheckHighWatermarks(string bootstrap, string topic, int partitions, Acked acked, int seed, int cycle)
    {
        using var consumer = Clients.Consumer(bootstrap);
        for (int p = 0; p < partitions; p++)
        {
            long maxAcked = acked.MaxOffset(p);
            WatermarkOffsets w = consumer.QueryWatermarkOffsets(new TopicPartition(topic, p), TimeSpan.FromSeconds(10));
            Assert.True(w.High.Value > maxAcked, $"partition {p}: high watermark {w.High.Value} after restart {cycle}, but offset {maxAcked} was acknowledged (seed {seed})");
        }
    }

    /// <summary>
    /// Consumes every partition from the beginning to its end with librdkafka (check.crcs=true), streaming: offsets
    /// dense, and each acknowledged offset holding the record acknowledged there. Returns (consumed, lost).
    /// </summary>
    private static (long Consumed, long Lost) ConsumeAndCompare(string bootstrap, string topic, int partitions, Acked acked, int seed)
    {
        using var consumer = Clients.Consumer(bootstrap);
        consumer.Assign(Enumerable.Range(0, partitions).Select(p => new TopicPartitionOffset(topic, p, Offset.Beginning)));
        var next = new long[partitions];
        var eof = new HashSet<int>();
        long consumed = 0;
        long matched = 0;
        var progress = Stopwatch.StartNew();
        while (eof.Count < partitions)
        {
            Assert.True(progress.Elapsed < TimeSpan.FromSeconds(60), $"no progress for 60 s after {consumed} records (seed {seed})");
            var r = consumer.Consume(TimeSpan.FromMilliseconds(500));
            if (r is null)
            {
                continue;
            }

            int p = r.Partition.Value;
            if (r.IsPartitionEOF)
            {
                eof.Add(p);
                continue;
            }

            progress.Restart();
            eof.Remove(p);
            Assert.True(r.Offset.Value == next[p], $"partition {p}: offset {r.Offset.Value} where {next[p]} was expected: a hole, or a batch skipped (seed {seed})");
            next[p]++;
            consumed++;
            long want = acked.Get(p, r.Offset.Value);
            if (want != 0 && long.TryParse(Encoding.UTF8.GetString(r.Message.Value!), NumberStyles.None, CultureInfo.InvariantCulture, out long id) && id + 1 == want)
            {
                matched++;
            }
        }

        consumer.Close();
        return (consumed, acked.Count - matched);
    }

    private sealed class Acked(int partitions)
    {
        private readonly List<long>[] _byOffset = Enumerable.Range(0, partitions).Select(_ => new List<long>()).ToArray();

        public long Count { get; private set; }

        public long Duplicates { get; private set; }

        public void Add(int partition, long offset, long id)
        {
            lock (this)
            {
                List<long> list = _byOffset[partition];
                while (list.Count <= offset)
                {
                    list.Add(0);
                }

                if (list[(int)offset] != 0)
                {
                    Duplicates++;
                    return;
                }

                list[(int)offset] = id + 1;
                Count++;
            }
        }

        public long Get(int partition, long offset)
        {
            lock (this)
            {
                List<long> list = _byOffset[partition];
                return offset < list.Count ? list[(int)offset] : 0;
            }
        }

        public long MaxOffset(int partition)
        {
            lock (this)
            {
                List<long> list = _byOffset[partition];
                for (int i = list.Count - 1; i >= 0; i--)
                {
                    if (list[i] != 0)
                    {
                        return i;
                    }
                }

                return -1;
            }
        }
    }

    /// <summary>Walks every segment file after a clean stop: whole batches back to back, dense offsets, valid CRCs.</summary>
    private static (int Files, int Batches) CheckSegmentFiles(string dataDir, string topic, int partitions)
    {
        int files = 0;
        int batches = 0;
        for (int p = 0; p < partitions; p++)
        {
            long expected = -1;
            foreach (string path in Directory.GetFiles(Path.Combine(dataDir, $"{topic}-{p}"), "*.log").Order(StringComparer.Ordinal))
            {
                byte[] bytes = File.ReadAllBytes(path);
                files++;
                int position = 0;
                while (position < bytes.Length)
                {
                    ReadOnlySpan<byte> at = bytes.AsSpan(position);
                    Assert.True(RecordBatch.TryReadHeader(at, out BatchHeader h), $"{path}: invalid batch header at position {position}");
                    Assert.True(h.TotalSize <= at.Length, $"{path}: batch at position {position} runs past the end of the file");
                    Assert.True(RecordBatch.IsCrcValid(at[..h.TotalSize]), $"{path}: batch at offset {h.BaseOffset} fails its CRC");
                    Assert.True(expected < 0 || h.BaseOffset == expected, $"{path}: batch at offset {h.BaseOffset}, {expected} expected");
                    expected = h.NextOffset;
                    position += h.TotalSize;
                    batches++;
                }
            }
        }

        return (files, batches);
    }
}
