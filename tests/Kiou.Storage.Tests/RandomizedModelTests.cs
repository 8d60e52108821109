using System.Globalization;
using Kiou.Protocol.Records;
using Kiou.Storage.Tests.Support;
using Kiou.Testing;

namespace Kiou.Storage.Tests;

/// <summary>
/// Random append / read / timestamp lookup / clean restart / crash with a torn tail / retention runs, checked
/// after every step against a list of the batches that should be stored (redpanda's opfuzz, small). The seed is
/// in the test name; a failure message names the step.
/// </summary>
public sealed class RandomizedModelTests
{
    /// <summary>Seeds 1..6, or 1..N with KIOU_STORAGE_SEEDS=N for a longer run.</summary>
    public static IEnumerable<object[]> Seeds =>
        Enumerable.Range(1, int.TryParse(Environment.GetEnvironmentVariable("KIOU_STORAGE_SEEDS"), out int n) ? n : 6).SelectMany(s => new[] { new object[] { s, false }, new object[] { s, true } });

    [Theory]
    [MemberData(nameof(Seeds))]
    public async Task RandomRun_MatchesModel(int seed, bool direct)
    {
        using var f = new LogFixture(direct, directMinRoundBytes: 0); // every round through O_DIRECT
        var rng = new Random(seed);
        var config = new LogConfig
        {
            SegmentBytes = rng.Next(1200, 4000), // the largest batch generated is about 1120 bytes
            IndexIntervalBytes = rng.Next(0, 600),
            Flush = new FlushPolicy((FlushMode)rng.Next(3), long.MaxValue, rng.Next(2) == 0 ? long.MaxValue : rng.Next(1, 20)),
        };
        var model = new List<(long Base, byte[] Batch)>();
        long next = 0;
        long logStart = 0;
        long ts = BatchBuilder.DefaultBaseTimestamp;
        PartitionLog log = f.Open(config);
        try
        {
            for (int step = 0; step < 250; step++)
            {
                int op = rng.Next(100);
                string what = $"seed {seed} direct {direct} step {step} op {op}";
                if (op < 55)
                {
                    int count = rng.Next(1, 6);
                    var records = new TestRecord[count];
                    for (int r = 0; r < count; r++)
                    {
                        records[r] = new TestRecord(r == 0 ? 0 : rng.Next(-20, 40), null, new byte[rng.Next(0, 200)]);
                    }

                    byte[] batch = BatchBuilder.Build(records, ts);
                    ts += rng.Next(0, 50);
                    AppendResult result = await log.AppendAsync(batch, waitDurable: rng.Next(4) == 0);
                    Assert.True(next == result.BaseOffset, what);
                    model.Add((next, batch));
                    next += count;
                }
                else if (op < 75)
                {
                    long offset = rng.Next((int)logStart, (int)next + 2);
                    int maxBytes = rng.Next(0, 2000);
                    bool minOne = rng.Next(2) == 0;
                    using ReadResult r = log.Read(offset, maxBytes, minOne);
                    if (offset > next)
                    {
                        Assert.True(ReadError.OffsetOutOfRange == r.Error, what);
                        continue;
                    }

                    Assert.True(ReadError.None == r.Error, what);
                    CheckRead(model, offset, maxBytes, minOne, r.Records.Span, what);
                }
                else if (op < 82)
                {
                    long target = ts - rng.Next(-20, 2000);
                    var expected = (-1L, -1L);
                    foreach (var (b, batch) in model)
                    {
                        var cursor = RecordCursor.ForBatch(batch);
                        bool found = false;
                        while (cursor.MoveNext())
                        {
                            long t = RecordBatch.BaseTimestamp(batch) + cursor.TimestampDelta;
                            if (t >= target)
                            {
                                expected = (b + cursor.OffsetDelta, t);
                                found = true;
                                break;
                            }
                        }

                        if (found)
                        {
                            break;
                        }
                    }

                    Assert.True(expected == log.LookupByTimestamp(target), what);
                }
                else if (op < 88)
                {
                    await log.DisposeAsync();
                    log = f.Open(config);
                }
                else if (op < 94)
                {
                    // Crash: abandon the log (no close), then maybe tear the last segment's tail. Only bytes after
                    // the recovery point can be torn: below it the data was fdatasync'ed (docs/design/recovery.md).
                    IReadOnlyList<long> bases = log.SegmentBaseOffsets;
                    await log.FlushAsync();
                    await log.WhenBackgroundIdleAsync(); // a real crash stops these too; here they would race the reopen
                    string path = f.SegmentPath(bases[^1]);
                    long length = new FileInfo(path).Length;
                    string pointFile = Path.Combine(f.PartitionDir, ".kiou-recovery-point");
                    long recoveryPoint = File.Exists(pointFile) ? long.Parse(File.ReadAllText(pointFile).Split(' ')[0], CultureInfo.InvariantCulture) : 0;
                    long durableBytes = model.Where(m => m.Base >= bases[^1] && m.Base < recoveryPoint).Sum(m => (long)m.Batch.Length);
                    int cut = rng.Next(0, 3) == 0 ? 0 : rng.Next(1, (int)Math.Min(length, 300) + 1);
                    cut = (int)Math.Min(cut, length - durableBytes);
                    if (rng.Next(2) == 0 && length > 0)
                    {
                        using var fs = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
                        fs.SetLength(length - Math.Min(cut, length));
                        long keep = length - Math.Min(cut, length);
                        long position = 0;
                        int firstInSegment = model.FindIndex(m => m.Base >= bases[^1]);
                        int kept = firstInSegment < 0 ? model.Count : firstInSegment;
                        for (int i = kept; i < model.Count && position + model[i].Batch.Length <= keep; i++)
                        {
                            position += model[i].Batch.Length;
                            kept = i + 1;
                        }

                        model.RemoveRange(kept, model.Count - kept);
                        next = model.Count == 0 ? logStart : model[^1].Base + RecordBatch.LastOffsetDelta(model[^1].Batch) + 1;
                    }
                    else
                    {
                        await File.AppendAllBytesAsync(path, new byte[rng.Next(1, 100)]);
                    }

                    log = f.Open(config);
                }
                else
                {
                    await log.FlushAsync();
                    await log.WhenBackgroundIdleAsync();
                    log.Config = config with { RetentionBytes = rng.Next(0, 5000) };
                    log.EnforceRetention(f.Time.NowMs);
                    log.Config = config;
                    logStart = log.LogStartOffset;
                    model.RemoveAll(m => m.Base < logStart);
                    Assert.True(model.Count == 0 || model[0].Base == logStart, what);
                }

                Assert.True(next == log.HighWatermark, $"{what}: HW {log.HighWatermark}, model {next}");
                Assert.True(next == log.LogEndOffset, what);
                Assert.True(logStart == log.LogStartOffset, what);
                log.CheckInvariants();
            }

            Assert.Equal(model.Select(m => m.Batch).ToList(), LogFixture.ReadAll(log, logStart));
        }
        finally
        {
            await log.DisposeAsync();
        }
    }

    private static void CheckRead(List<(long Base, byte[] Batch)> model, long offset, int maxBytes, bool minOne, ReadOnlySpan<byte> records, string what)
    {
        int first = model.FindIndex(m => m.Base + RecordBatch.LastOffsetDelta(m.Batch) >= offset);
        if (first < 0)
        {
            Assert.True(records.Length == 0, what);
            return;
        }

        int i = first;
        int total = 0;
        while (records.Length > 0)
        {
            int size = RecordBatch.TotalSize(records);
            Assert.True(i < model.Count, what);
            Assert.True(records[..size].SequenceEqual(model[i].Batch), $"{what}: batch {i} differs");
            total += size;
            records = records[size..];
            i++;
        }

        if (total > maxBytes)
        {
            Assert.True(minOne && i == first + 1, $"{what}: {total} bytes > {maxBytes}");
        }

        if (minOne)
        {
            Assert.True(i > first, $"{what}: nothing returned");
        }
    }
}
