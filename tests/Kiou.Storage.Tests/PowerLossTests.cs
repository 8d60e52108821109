using Kiou.Protocol.Records;
using Kiou.Storage.Devices;
using Kiou.Storage.Tests.Support;
using Kiou.Testing;

namespace Kiou.Storage.Tests;

/// <summary>
/// Power loss, which kill -9 cannot show: random appends, rolls and flushes, then the power is cut at a random
/// moment (<see cref="PowerLossLogDevice"/>: writes not covered by a finished fdatasync are lost, kept in part, torn
/// or reordered), and the log is opened again. With Flush=Always every append answered as durable is there byte for
/// byte; with any flush mode everything a finished <see cref="PartitionLog.FlushAsync"/> covered is there, and what is
/// served is a dense prefix of what was appended, each batch exactly as appended, CRCs valid; appends go on.
/// </summary>
public sealed class PowerLossTests
{
    public static IEnumerable<object[]> Runs()
    {
        int seeds = int.TryParse(Environment.GetEnvironmentVariable("KIOU_STORAGE_SEEDS"), out int n) ? n : 2;
        for (int seed = 1; seed <= seeds; seed++)
        {
            foreach (FlushMode mode in new[] { FlushMode.Always, FlushMode.Roll, FlushMode.Interval })
            {
                yield return new object[] { seed, mode, false };
                yield return new object[] { seed, mode, true };
            }
        }
    }

    [Theory]
    [MemberData(nameof(Runs))]
    public async Task PowerCut_AtARandomMoment_KeepsWhatWasAnsweredDurable_AndServesAValidPrefix(int seed, FlushMode mode, bool direct)
    {
        string dataDir = Path.Combine(Path.GetTempPath(), "kiou-storage-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dataDir);
        var rng = new Random(seed * 1000 + (int)mode * 10 + (direct ? 1 : 0));
        var lines = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var time = new ManualTimeProvider();
        var config = new LogConfig
        {
            SegmentBytes = rng.Next(2_000, 9_000),
            IndexIntervalBytes = rng.Next(0, 600),
            Flush = new FlushPolicy(mode, mode == FlushMode.Interval ? 1 : long.MaxValue, long.MaxValue),
        };
        var expected = new Dictionary<long, byte[]>(); // base offset -> the batch as stored
        try
        {
            for (int cycle = 0; cycle < 3; cycle++)
            {
                using var device = new PowerLossLogDevice(new SyncLogDevice()) { DirectWrites = direct, DirectMinRoundBytes = rng.Next(2) == 0 ? 0 : 4096 };
                PartitionLog log = PartitionLog.Open(dataDir, "p", 0, config, device, time, lines.Enqueue);
                device.Baseline(Path.Combine(dataDir, "p-0"));
                long start = log.HighWatermark;
                CheckServed(log, expected, mustReach: 0, seed, cycle, null);

                var appends = new List<(Task<AppendResult> Task, byte[] Batch)>();
                var flushes = new List<(Task Task, long Covers)>();
                int ops = rng.Next(20, 200);
                for (int op = 0; op < ops; op++)
                {
                    int what = rng.Next(100);
                    if (what < 85)
                    {
                        byte[] batch = BatchBuilder.Simple(rng.Next(1, 6), 1_700_000_000_000 + op, rng.Next(1, 300)); // below segment.bytes: every append is stamped
                        appends.Add((log.AppendAsync(batch, waitDurable: mode == FlushMode.Always).AsTask(), batch));
                    }
                    else if (what < 95 && mode != FlushMode.Roll)
                    {
                        long covers = log.HighWatermark;
                        flushes.Add((log.FlushAsync(), covers));
                    }
                    else
                    {
                        await Task.Yield();
                        await Task.Delay(rng.Next(2)); // let the flusher thread run
                    }
                }

                if (rng.Next(3) == 0)
                {
                    await Task.Delay(rng.Next(5));
                }

                device.CutPower();

                // What was answered before the cut is what must survive.
                long mustReach = 0;
                foreach (var (task, batch) in appends)
                {
                    if (task.IsCompletedSuccessfully && mode == FlushMode.Always)
                    {
                        AppendResult result = await task;
                        mustReach = Math.Max(mustReach, result.BaseOffset + 1);
                    }
                }

                foreach (var (task, covers) in flushes)
                {
                    if (task.IsCompletedSuccessfully)
                    {
                        mustReach = Math.Max(mustReach, covers);
                    }
                }

                // Every append was stamped with its offset when it was made; answered or not, if it survives it
                // must be exactly as appended.
                foreach (var (_, batch) in appends)
                {
                    Assert.True(RecordBatch.TryReadHeader(batch, out BatchHeader h));
                    Assert.True(h.BaseOffset >= start);
                    expected[h.BaseOffset] = batch;
                }

                await device.WhenQuietAsync(TimeSpan.FromSeconds(10)); // the abandoned log starts no more background work
                await log.WhenBackgroundIdleAsync().WaitAsync(TimeSpan.FromSeconds(10));
                List<string> report = device.RestoreAfterPowerLoss(rng);

                // The log object is abandoned as a crashed process would be; a new one recovers the directory.
                using var after = new PowerLossLogDevice(new SyncLogDevice()) { DirectWrites = direct };
                PartitionLog reopened = PartitionLog.Open(dataDir, "p", 0, config, after, time, lines.Enqueue);
                try
                {
                    reopened.CheckInvariants();
                    try
                    {
                        CheckServed(reopened, expected, mustReach, seed, cycle, report);
                    }
                    catch (Exception e)
                    {
                        // What the model did to each file and what recovery logged explain most failures.
                        throw new Xunit.Sdk.XunitException(e.Message + "\nafter the power cut:\n" + string.Join("\n", report) + "\nrecovery logged:\n" + string.Join("\n", lines));
                    }

                    // Appends go on from the recovered end.
                    long next = reopened.HighWatermark;
                    for (int i = 0; i < 3; i++)
                    {
                        byte[] batch = BatchBuilder.Simple(2, 1_800_000_000_000 + i, 30);
                        AppendResult r = await reopened.AppendAsync(batch, waitDurable: true);
                        Assert.Equal(next, r.BaseOffset);
                        expected[r.BaseOffset] = batch;
                        next = r.BaseOffset + 2;
                    }

                    CheckServed(reopened, expected, next, seed, cycle, report);
                }
                finally
                {
                    await reopened.DisposeAsync();
                }

            }
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

    /// <summary>Everything served is a dense run of batches, each exactly as appended, reaching at least <paramref name="mustReach"/>.</summary>
    private static void CheckServed(PartitionLog log, Dictionary<long, byte[]> expected, long mustReach, int seed, int cycle, List<string>? report)
    {
        string context = $"seed {seed}, cycle {cycle}; " + (report is null ? "" : string.Join("; ", report));
        Assert.True(log.HighWatermark >= mustReach, $"acknowledged-durable data lost: the log ends at {log.HighWatermark}, {mustReach} was durable ({context})");
        long offset = log.LogStartOffset;
        foreach (byte[] batch in LogFixture.ReadAll(log, offset))
        {
            Assert.True(RecordBatch.TryReadHeader(batch, out BatchHeader h));
            Assert.Equal(offset, h.BaseOffset);
            Assert.True(expected.TryGetValue(h.BaseOffset, out byte[]? appended), $"batch at offset {h.BaseOffset} was never appended ({context})");
            Assert.True(batch.AsSpan().SequenceEqual(appended), $"batch at offset {h.BaseOffset} differs from what was appended ({context})");
            offset = h.NextOffset;
        }

        Assert.Equal(log.HighWatermark, offset);
    }
}
