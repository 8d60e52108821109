using Kiou.Protocol.Records;
using Kiou.Storage.Tests.Support;
using Kiou.Testing;

namespace Kiou.Storage.Tests;

/// <summary>
/// Random holds, out-of-order releases and injected write/flush errors: the high watermark never goes back,
/// never covers an unfinished write, and in the end the log holds exactly the appends that succeeded, densely.
/// </summary>
public sealed class RandomizedFaultTests
{
    public static IEnumerable<object[]> Seeds =>
        Enumerable.Range(1, int.TryParse(Environment.GetEnvironmentVariable("KIOU_STORAGE_SEEDS"), out int n) ? n : 6).SelectMany(s => new[] { new object[] { s, false }, new object[] { s, true } });

    private static byte[] UniqueBatch(int id, int count, int valueBytes)
    {
        var records = new TestRecord[count];
        for (int i = 0; i < count; i++)
        {
            var value = new byte[valueBytes];
            BitConverter.TryWriteBytes(value, id);
            value[^1] = (byte)i;
            records[i] = new TestRecord(i, null, value);
        }

        return BatchBuilder.Build(records);
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public async Task RandomFaults_SucceededAppendsAreTheLog(int seed, bool direct)
    {
        using var f = new LogFixture(direct, directMinRoundBytes: 0); // every round through O_DIRECT
        var rng = new Random(seed);
        var config = new LogConfig
        {
            SegmentBytes = rng.Next(1500, 5000),
            IndexIntervalBytes = rng.Next(0, 500),
            Flush = new FlushPolicy(rng.Next(2) == 0 ? FlushMode.Always : FlushMode.Roll, long.MaxValue, long.MaxValue),
        };
        int failNextWrite = 0;
        int failNextFlush = 0;
        f.Device.WriteFault = _ => Interlocked.Exchange(ref failNextWrite, 0) == 1 ? -28 : null;
        f.Device.FlushFault = _ => Interlocked.Exchange(ref failNextFlush, 0) == 1 ? -5 : null;
        var appends = new List<(Task<AppendResult> Task, byte[] Batch)>();
        PartitionLog log = f.Open(config);
        long lastHw = 0;
        try
        {
            for (int step = 0; step < 300; step++)
            {
                string what = $"seed {seed} direct {direct} step {step}";
                int op = rng.Next(100);
                if (op < 45)
                {
                    f.Device.HoldWrites = rng.Next(3) != 0;
                    byte[] batch = UniqueBatch(appends.Count, rng.Next(1, 4), rng.Next(4, 150));
                    appends.Add((log.AppendAsync(batch, waitDurable: rng.Next(3) == 0).AsTask(), batch));
                }
                else if (op < 75 && f.Device.HeldWriteCount > 0)
                {
                    f.Device.ReleaseWrite(rng.Next(f.Device.HeldWriteCount));
                }
                else if (op < 79)
                {
                    failNextWrite = 1;
                }
                else if (op < 81)
                {
                    failNextFlush = 1;
                }
                else if (op < 88)
                {
                    f.Device.ReleaseAllWrites(reverse: rng.Next(2) == 0);
                }
                else if (op < 92)
                {
                    try
                    {
                        await log.FlushAsync().WaitAsync(TimeSpan.FromSeconds(10));
                    }
                    catch (StorageException)
                    {
                    }
                }
                else
                {
                    long hw = log.HighWatermark;
                    List<byte[]> published = LogFixture.ReadAll(log, 0);
                    Assert.True(published.Sum(b => RecordBatch.LastOffsetDelta(b) + 1) >= hw, what);
                }

                long now = log.HighWatermark;
                Assert.True(now >= lastHw, $"{what}: HW went back from {lastHw} to {now}");
                lastHw = now;
                log.CheckInvariants();
            }

            f.Device.ReleaseAllWrites();
            failNextWrite = 0;
            failNextFlush = 0;
            await Task.WhenAll(appends.Select(a => a.Task.ContinueWith(_ => { }))).WaitAsync(TimeSpan.FromSeconds(30));
            // Succeeded appends are in the log at their offsets. Appends failed by a write error are not; those
            // failed only for durability (flush error) were published and stay. The log is dense.
            List<byte[]> log0 = LogFixture.ReadAll(log, 0);
            var byBase = new Dictionary<long, byte[]>();
            long expected = 0;
            foreach (byte[] stored in log0)
            {
                Assert.Equal(expected, RecordBatch.BaseOffset(stored));
                byBase[expected] = stored;
                expected += RecordBatch.LastOffsetDelta(stored) + 1;
            }

            Assert.Equal(expected, log.HighWatermark);
            int succeededCount = 0;
            foreach (var (task, batch) in appends)
            {
                if (task.IsCompletedSuccessfully)
                {
                    long b = (await task).BaseOffset;
                    Assert.True(byBase.TryGetValue(b, out byte[]? stored) && stored.AsSpan().SequenceEqual(batch), $"seed {seed}: acknowledged append at {b} missing");
                    succeededCount++;
                }
                else
                {
                    var ex = Assert.IsType<StorageException>(task.Exception!.InnerException);
                    bool durabilityOnly = ex.Message.Contains("fdatasync failed", StringComparison.Ordinal) || ex.Message.Contains("before the data became durable", StringComparison.Ordinal);
                    if (!durabilityOnly)
                    {
                        long b = RecordBatch.BaseOffset(batch);
                        Assert.False(byBase.TryGetValue(b, out byte[]? stored) && stored.AsSpan().SequenceEqual(batch), $"seed {seed}: failed append at {b} was stored: {ex.Message}");
                    }
                }
            }

            Assert.True(succeededCount > 0 || appends.Count == 0);
            log.CheckInvariants();
            lastHw = expected;
        }
        finally
        {
            f.Device.ReleaseAllWrites();
            f.Device.ReleaseAllFlushes();
            await log.DisposeAsync();
        }

        // And the same after a restart.
        await using PartitionLog reopened = f.Open(config);
        Assert.Equal(lastHw, reopened.HighWatermark);
        reopened.CheckInvariants();
    }
}
