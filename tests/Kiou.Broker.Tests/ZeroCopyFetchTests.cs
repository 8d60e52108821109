using System.Diagnostics;
using System.Text;
using Confluent.Kafka;

namespace Kiou.Broker.Tests;

/// <summary>
/// Fetch with KIOU_FETCH_ZERO_COPY=true (record data sent from the segment files with sendfile) and false (read into
/// memory, then sent): librdkafka (Confluent.Kafka, CRC checks on) and kcat must get byte-for-byte the same records,
/// across segment rolls, and while retention deletes segments under fetches in flight.
/// </summary>
public sealed class ZeroCopyFetchTests
{
    /// <summary>Record i: its index, then filler derived from it, 300 to 2,300 bytes, printable (kcat prints it as is).</summary>
    static string ValueOf(int i)
    {
        var sb = new StringBuilder($"{i:D8}:");
        int length = 300 + (i * 7919 % 2000);
        for (int k = 0; k < length; k++)
            sb.Append((char)('a' + ((i + k * 31) % 26)));
        return sb.ToString();
    }

    static async Task ProduceAsync(string bootstrap, string topic, int from, int count)
    {
        using var producer = Clients.Producer(bootstrap, Acks.Leader, configure: c => c.BatchSize = 64 * 1024);
        var pending = new List<Task<DeliveryResult<byte[]?, byte[]?>>>(count);
        for (int i = from; i < from + count; i++)
            pending.Add(producer.ProduceAsync(new TopicPartition(topic, 0), new Message<byte[]?, byte[]?> { Value = Encoding.ASCII.GetBytes(ValueOf(i)) }));
        await Task.WhenAll(pending);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Confluent_and_kcat_read_identical_bytes_across_segment_rolls(bool zeroCopy)
    {
        await using var broker = TestBroker.Start(c => c with { FetchZeroCopy = zeroCopy });
        const string topic = "zc-rolls";
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1, new() { ["segment.bytes"] = "262144" });
        const int count = 4000; // about 5 MB: about 20 segments
        await ProduceAsync(broker.Bootstrap, topic, 0, count);
        int segments = Directory.GetFiles(Path.Combine(broker.DataDir, topic + "-0"), "*.log").Length;
        Assert.True(segments >= 10, $"{segments} segments");

        var got = Clients.ReadAll(broker.Bootstrap, topic, 1);
        Assert.Equal(count, got.Count);
        for (int i = 0; i < count; i++)
        {
            Assert.Equal(i, got[i].Offset.Value);
            Assert.Equal(ValueOf(i), Encoding.ASCII.GetString(got[i].Message.Value!));
        }

        // kcat, with small fetches (many responses cut inside segments) and with large ones (whole segments).
        foreach (string fetch in new[] { "-X fetch.max.bytes=70000 -X max.partition.fetch.bytes=70000 -X message.max.bytes=65536", "-X fetch.max.bytes=52428800" })
        {
            var (exit, stdout, stderr) = Kcat($"-b {broker.Bootstrap} -C -t {topic} -p 0 -o beginning -e -q -f %o:%s\\n {fetch}");
            Assert.True(exit == 0, stderr);
            var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(count, lines.Length);
            for (int i = 0; i < count; i++)
                Assert.Equal($"{i}:{ValueOf(i)}", lines[i]);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Fetches_stay_correct_while_retention_deletes_segments(bool zeroCopy)
    {
        await using var broker = TestBroker.Start(c => c with { FetchZeroCopy = zeroCopy, RetentionCheckIntervalMs = 50 });
        const string topic = "zc-retention";
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1, new() { ["segment.bytes"] = "131072", ["retention.bytes"] = "393216" });
        const int rounds = 20, perRound = 400;

        using var consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
        {
            BootstrapServers = broker.Bootstrap,
            GroupId = "zc-retention",
            EnableAutoCommit = false,
            AutoOffsetReset = AutoOffsetReset.Earliest, // fell behind retention: continue from the new log start
            CheckCrcs = true,
            FetchMaxBytes = 300_000,
            MaxPartitionFetchBytes = 300_000,
            MessageMaxBytes = 200_000,
        }).Build();
        consumer.Assign(new TopicPartitionOffset(topic, 0, Offset.Beginning));
        long received = 0, last = -1;
        var consumed = Task.Run(() =>
        {
            var deadline = Stopwatch.StartNew();
            while (last < rounds * perRound - 1 && deadline.Elapsed < TimeSpan.FromSeconds(90))
            {
                var r = consumer.Consume(TimeSpan.FromMilliseconds(200));
                if (r is null || r.IsPartitionEOF)
                    continue;
                Assert.True(r.Offset.Value > last, $"offset {r.Offset.Value} after {last}");
                Assert.Equal(ValueOf((int)r.Offset.Value), Encoding.ASCII.GetString(r.Message.Value!));
                last = r.Offset.Value;
                received++;
            }
        });
        for (int round = 0; round < rounds; round++)
            await ProduceAsync(broker.Bootstrap, topic, round * perRound, perRound);
        await consumed.WaitAsync(TimeSpan.FromSeconds(120));
        Assert.Equal(rounds * perRound - 1, last);
        Assert.True(received > 0);

        // Retention really ran underneath: the log start moved and the first segment file is gone.
        var low = consumer.QueryWatermarkOffsets(new TopicPartition(topic, 0), TimeSpan.FromSeconds(10)).Low.Value;
        Assert.True(low > 0, "retention deleted nothing");
        Assert.False(File.Exists(Path.Combine(broker.DataDir, topic + "-0", "00000000000000000000.log")));
        consumer.Close();
    }

    static (int ExitCode, string Stdout, string Stderr) Kcat(string args, int timeoutMs = 60000)
    {
        var psi = new ProcessStartInfo("kcat", args) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("kcat did not start");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutMs))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"kcat {args} did not finish in {timeoutMs} ms: {stderr.Result}");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
