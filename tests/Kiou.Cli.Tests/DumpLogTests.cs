using System.Buffers.Binary;
using System.Text.RegularExpressions;
using Confluent.Kafka;

namespace Kiou.Cli.Tests;

/// <summary>
/// bin/dump-log.sh on segment, index and time index files written by a broker, then damaged by hand: Kafka's dump
/// format, --verify's problem lines and exit codes, and no stack trace whatever the bytes.
/// </summary>
public sealed class DumpLogTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "kiou-dumplog-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    static string[] Lines(string s) => s.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    static void Has(Run r, string expected) => Assert.True(r.Stdout.Contains(expected, StringComparison.Ordinal), $"expected: {expected}\n{r}");

    static void NoStackTrace(Run r)
    {
        Assert.DoesNotContain("   at ", r.Stderr);
        Assert.DoesNotContain("Exception", r.Stderr);
        Assert.DoesNotContain("   at ", r.Stdout);
    }

    /// <summary>A partition written by a broker (several segments with index entries, an lz4 batch), copied after a clean stop.</summary>
    async Task<string> WriteSegments()
    {
        var broker = TestBroker.Start();
        try
        {
            string b = broker.Bootstrap;
            var created = Tools.Script("topics", ["--bootstrap-server", b, "--create", "--topic", "d", "--config", "segment.bytes=400", "--config", "index.interval.bytes=150"]);
            Assert.True(created.ExitCode == 0, created.ToString());
            for (int i = 0; i < 12; i++)
                Check.Produce(b, "d", Enumerable.Range(0, 3).Select(j => ((string?)$"k{i}", $"v{i * 3 + j}")));
            using (var p = new ProducerBuilder<string, string>(new ProducerConfig { BootstrapServers = b, CompressionType = CompressionType.Lz4, LingerMs = 5 }).Build())
            {
                for (int j = 0; j < 4; j++)
                    p.Produce("d", new Message<string, string> { Key = "z", Value = $"compressed{j}" + new string('x', 200), Headers = new Headers { { "h1", [1] }, { "h2", [2] } } });
                Assert.Equal(0, p.Flush(TimeSpan.FromSeconds(30)));
            }
            await broker.Broker.DisposeAsync();
            string partition = Directory.GetDirectories(broker.DataDir, "d-0", SearchOption.AllDirectories).Single();
            Directory.CreateDirectory(_dir);
            foreach (var f in Directory.GetFiles(partition))
                File.Copy(f, Path.Combine(_dir, Path.GetFileName(f)));
        }
        finally
        {
            await broker.DisposeAsync();
        }
        return _dir;
    }

    string Seg(long baseOffset, string suffix) => Path.Combine(_dir, baseOffset.ToString("D20") + suffix);

    List<long> Bases() => Directory.GetFiles(_dir, "*.log").Select(f => long.Parse(Path.GetFileNameWithoutExtension(f))).Order().ToList();

    /// <summary>(position, baseOffset) of each batch of a segment, read here independently of the tool.</summary>
    static List<(int Position, long BaseOffset)> Batches(string log)
    {
        var bytes = File.ReadAllBytes(log);
        var list = new List<(int, long)>();
        for (int p = 0; p + 61 <= bytes.Length; p += BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(p + 8)) + 12)
            list.Add((p, BinaryPrimitives.ReadInt64BigEndian(bytes.AsSpan(p))));
        return list;
    }

    [Fact]
    public async Task Dumps_batches_records_and_index_entries_in_Kafkas_format_and_verifies_a_clean_log()
    {
        await WriteSegments();
        var bases = Bases();
        Assert.True(bases.Count >= 3, $"expected several segments, got {bases.Count}");
        Assert.True(File.Exists(Seg(0, ".index")) && new FileInfo(Seg(0, ".index")).Length > 0, "the first segment has index entries");

        var dump = Tools.Script("dump-log", ["--files", $"{Seg(0, ".log")},{Seg(0, ".index")},{Seg(0, ".timeindex")}", "--print-data-log"]);
        Assert.True(dump.ExitCode == 0, dump.ToString());
        var lines = Lines(dump.Stdout);
        Assert.Equal($"Dumping {Seg(0, ".log")}", lines[0]);
        Assert.Equal("Log starting offset: 0", lines[1]);
        Assert.Matches(@"^baseOffset: 0 lastOffset: 2 count: 3 baseSequence: 0 lastSequence: 2 producerId: \d+ producerEpoch: 0 partitionLeaderEpoch: \d+ " +
            @"isTransactional: false isControl: false deleteHorizonMs: OptionalLong.empty position: 0 CreateTime: \d{13} size: \d+ magic: 2 compresscodec: none crc: \d+ isvalid: true$", lines[2]);
        Assert.Matches(@"^\| offset: 0 CreateTime: \d{13} keySize: 2 valueSize: 2 sequence: 0 headerKeys: \[\] key: k0 payload: v0$", lines[3]);
        Assert.Matches(@"^\| offset: 2 CreateTime: \d{13} keySize: 2 valueSize: 2 sequence: 2 headerKeys: \[\] key: k0 payload: v2$", lines[5]);
        Assert.Matches(@"^baseOffset: 3 lastOffset: 5 count: 3 baseSequence: 0 lastSequence: 2 .* position: \d+ ", lines[6]);

        // Index entries: offset and position of batch starts, exactly as the segment holds them.
        var batches = Batches(Seg(0, ".log"));
        int indexAt = Array.IndexOf(lines, $"Dumping {Seg(0, ".index")}");
        var entries = lines.Skip(indexAt + 1).TakeWhile(l => l.StartsWith("offset: ")).ToList();
        Assert.NotEmpty(entries);
        foreach (var e in entries)
        {
            var m = Regex.Match(e, @"^offset: (\d+) position: (\d+)$");
            Assert.True(m.Success, e);
            Assert.Contains((int.Parse(m.Groups[2].Value), long.Parse(m.Groups[1].Value)), batches);
        }
        int timeAt = Array.IndexOf(lines, $"Dumping {Seg(0, ".timeindex")}");
        Assert.Matches(@"^timestamp: \d{13} offset: \d+$", lines[timeAt + 1]);

        // The lz4 batch: decompressed for the records, header keys listed.
        var all = string.Join(",", bases.Select(b => Seg(b, ".log")));
        var deep = Tools.Script("dump-log", ["--files", all, "--deep-iteration"]);
        Assert.True(deep.ExitCode == 0, deep.ToString());
        Has(deep, "compresscodec: lz4");
        Assert.Matches(@"\| offset: 39 CreateTime: \d{13} keySize: 1 valueSize: 211 sequence: -1 headerKeys: \[h1,h2\]\n", deep.Stdout);
        Assert.DoesNotContain("payload:", deep.Stdout);

        var files = string.Join(",", bases.SelectMany(b => new[] { Seg(b, ".log"), Seg(b, ".index"), Seg(b, ".timeindex") }).Where(File.Exists));
        var verify = Tools.Script("dump-log", ["--verify", "--files", files]);
        Assert.True(verify.ExitCode == 0, verify.ToString());
        Assert.All(Lines(verify.Stdout), l => Assert.EndsWith(": OK", l));
        Has(verify, $"{Seg(0, ".log")}: {batches.Count} batches, offsets 0..{batches[^1].BaseOffset + 2}, {new FileInfo(Seg(0, ".log")).Length} bytes: OK");
    }

    [Fact]
    public async Task Verify_reports_a_flipped_byte_a_torn_tail_a_huge_length_and_a_bad_index_entry_with_exit_1()
    {
        await WriteSegments();
        var bases = Bases();
        string first = Seg(0, ".log"), last = Seg(bases[^1], ".log");
        var batches = Batches(first);

        // A flipped byte inside the second batch's records: its CRC fails; the walk goes on to the next batch.
        var bytes = File.ReadAllBytes(first);
        bytes[batches[1].Position + 70] ^= 0x40;
        File.WriteAllBytes(first, bytes);
        var crc = Tools.Script("dump-log", ["--verify", "--files", first]);
        Assert.True(crc.ExitCode == 1, crc.ToString());
        Has(crc, $"{first}: position {batches[1].Position} offset {batches[1].BaseOffset}: CRC-32C mismatch");
        Assert.EndsWith($"{first}: {batches.Count} batches, offsets 0..{batches[^1].BaseOffset + 2}, {bytes.Length} bytes: 1 problem\n", crc.Stdout);
        NoStackTrace(crc);
        // The dump shows it too, Kafka's way, and exits 0: only --verify judges.
        var dump = Tools.Script("dump-log", ["--files", first]);
        Assert.True(dump.ExitCode == 0, dump.ToString());
        Assert.Matches($@"baseOffset: {batches[1].BaseOffset} .* isvalid: false\n", dump.Stdout);

        // A torn tail: the last segment cut inside its last batch.
        var lastBatches = Batches(last);
        long cut = new FileInfo(last).Length - 7;
        using (var f = new FileStream(last, FileMode.Open))
            f.SetLength(cut);
        var torn = Tools.Script("dump-log", ["--verify", "--files", last]);
        Assert.True(torn.ExitCode == 1, torn.ToString());
        Has(torn, $"{last}: position {lastBatches[^1].Position} offset {lastBatches[^1].BaseOffset}: truncated");
        NoStackTrace(torn);
        var tornDump = Tools.Script("dump-log", ["--files", last]);
        Has(tornDump, $"Found {cut - lastBatches[^1].Position} invalid bytes at the end of {Path.GetFileName(last)}");

        // A batch length of 2 GiB in the second segment: reported, nothing allocated for it.
        string second = Seg(bases[1], ".log");
        var secondBatches = Batches(second);
        bytes = File.ReadAllBytes(second);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(secondBatches[1].Position + 8), int.MaxValue - 12);
        File.WriteAllBytes(second, bytes);
        var huge = Tools.Script("dump-log", ["--verify", "--files", second, "--max-message-size", "1024"]);
        Assert.True(huge.ExitCode == 1, huge.ToString());
        Has(huge, $"{second}: position {secondBatches[1].Position} offset {secondBatches[1].BaseOffset}: truncated: the batch at offset {secondBatches[1].BaseOffset} declares 2147483647 bytes");
        NoStackTrace(huge);

        // An index entry moved inside a batch, and a torn index file.
        string index = Seg(bases[2], ".index");
        var entry = File.ReadAllBytes(index);
        Assert.True(entry.Length >= 8, "the third segment has index entries");
        int position = BinaryPrimitives.ReadInt32BigEndian(entry.AsSpan(4));
        BinaryPrimitives.WriteInt32BigEndian(entry.AsSpan(4), position + 1);
        File.WriteAllBytes(index, [.. entry, 1, 2, 3]);
        var bad = Tools.Script("dump-log", ["--verify", "--files", index]);
        Assert.True(bad.ExitCode == 1, bad.ToString());
        Has(bad, $"{index}: position 0 offset {bases[2] + BinaryPrimitives.ReadInt32BigEndian(entry)}: entry 0 points at position {position + 1}, which is not the start of a batch");
        Has(bad, $"{index}: position {entry.Length}: size {entry.Length + 3} is not a multiple of 8");
        var sanity = Tools.Script("dump-log", ["--index-sanity-check", "--files", Seg(bases[1], ".index")]);
        Assert.True(sanity.ExitCode == 0, sanity.ToString());
        Has(sanity, $"{Seg(bases[1], ".index")} passed sanity check.");

        // Garbage where a segment should be.
        string garbage = Path.Combine(_dir, "00000000000000000999.log");
        var random = new byte[10_000];
        new Random(16).NextBytes(random);
        random[16] = 7;
        File.WriteAllBytes(garbage, random);
        var junk = Tools.Script("dump-log", ["--verify", "--deep-iteration", "--files", garbage]);
        Assert.Equal(2, junk.ExitCode); // --verify prints no dump
        junk = Tools.Script("dump-log", ["--verify", "--files", garbage]);
        Assert.True(junk.ExitCode == 1, junk.ToString());
        Has(junk, $"{garbage}: position 0: bad header: magic 7 is not 2");
        NoStackTrace(junk);

        // Random damage of every kind, many files in one run: each gets its summary line, none an exception.
        var fuzz = Path.Combine(_dir, "fuzz");
        Directory.CreateDirectory(fuzz);
        var rng = new Random(1606);
        var good = File.ReadAllBytes(Seg(bases[1], ".log"));
        var names = new List<string>();
        for (int i = 0; i < 120; i++)
        {
            var b = good.ToArray();
            for (int m = rng.Next(1, 4); m > 0; m--)
            {
                int at = rng.Next(b.Length);
                switch (rng.Next(4))
                {
                    case 0:
                        b[at] = (byte)rng.Next(256);
                        break;
                    case 1:
                        b = b[..at];
                        break;
                    case 2 when at + 4 <= b.Length:
                        BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(at), rng.Next(2) == 0 ? rng.Next() : -rng.Next());
                        break;
                    default:
                        rng.NextBytes(b.AsSpan(at, Math.Min(8, b.Length - at)));
                        break;
                }
                if (b.Length == 0)
                    break;
            }
            string stem = Path.Combine(fuzz, (1000L + i).ToString("D20"));
            File.WriteAllBytes(stem + ".log", b);
            foreach (var (suffix, size) in new[] { (".index", 8), (".timeindex", 12), (".txnindex", 34) })
            {
                var e = new byte[rng.Next(0, 5) * size + rng.Next(0, 2)];
                rng.NextBytes(e);
                File.WriteAllBytes(stem + suffix, e);
            }
            names.AddRange([stem + ".log", stem + ".index", stem + ".timeindex", stem + ".txnindex"]);
        }
        var fuzzed = Tools.Script("dump-log", ["--verify", "--files", string.Join(",", names)]);
        Assert.True(fuzzed.ExitCode == 1, fuzzed.ToString());
        NoStackTrace(fuzzed);
        foreach (var name in names)
            Assert.Matches($@"(?m)^{Regex.Escape(name)}: [^\n]*: (OK|\d+ problems?)$", fuzzed.Stdout);
        var printed = Tools.Script("dump-log", ["--print-data-log", "--files", string.Join(",", names)]);
        Assert.True(printed.ExitCode == 0, printed.ToString());
        NoStackTrace(printed);
    }

    [Fact]
    public void Bad_usage_exits_2_with_the_usage_and_an_unreadable_file_exits_1_with_one_line()
    {
        Tools.Script("dump-log", ["--help"]); // a build, if any, says so on stderr
        var none = Tools.Script("dump-log", []);
        Assert.True(none.ExitCode == 2, none.ToString());
        Assert.StartsWith("dump-log: --files is required", none.Stderr);
        Assert.Contains("usage: bin/dump-log.sh", none.Stderr);
        Assert.Equal(2, Tools.Script("dump-log", ["--files", "a.log", "--max-message-size", "big"]).ExitCode);
        Assert.Equal(2, Tools.Script("dump-log", ["--files", "a.log", "--verify", "--print-data-log"]).ExitCode);

        var missing = Tools.Script("dump-log", ["--files", "/nonexistent/00000000000000000000.log"]);
        Assert.True(missing.ExitCode == 1, missing.ToString());
        Assert.Single(Lines(missing.Stderr));
        Assert.StartsWith("dump-log: cannot read /nonexistent/00000000000000000000.log: ", missing.Stderr);

        var help = Tools.Script("dump-log", ["--help"]);
        Assert.True(help.ExitCode == 0, help.ToString());
        Assert.StartsWith("usage: bin/dump-log.sh", help.Stdout);
    }
}
