using Kiou.Protocol.Records;
using Kiou.Storage.Tests.Support;
using Kiou.Testing;
using Kiou.Storage.Producers;

namespace Kiou.Storage.Tests;

/// <summary>
/// The producer state in the append path of a <see cref="PartitionLog"/>: duplicates appended once, refusals with
/// Kafka's codes, the state rebuilt after a failed write (it took the batch at reservation), and across a reopen.
/// </summary>
public sealed class ProducerWiringTests : IDisposable
{
    private const int EIO = -5;
    private readonly LogFixture _f = new();

    public void Dispose() => _f.Dispose();

    private static byte[] Idempotent(int count, long producerId, short epoch, int baseSequence)
    {
        var records = Enumerable.Range(0, count).Select(i => new TestRecord(i, null, [(byte)i])).ToList();
        return BatchBuilder.Build(records, producerId: producerId, producerEpoch: epoch, baseSequence: baseSequence);
    }

    [Fact]
    public async Task A_failed_write_rebuilds_the_state_so_its_retry_is_appended_and_then_recognised()
    {
        await using PartitionLog log = _f.Open();
        Assert.Equal(0, (await log.AppendAsync(Idempotent(2, 7, 0, 0), false)).BaseOffset);

        _f.Device.WriteFault = _ => EIO;
        await Assert.ThrowsAsync<StorageException>(async () => await log.AppendAsync(Idempotent(2, 7, 0, 2), false));
        _f.Device.WriteFault = null;

        // Without the rebuild the retry would pass for a duplicate of offsets that were truncated away.
        var retry = log.AppendAsync(Idempotent(2, 7, 0, 2), false).AsTask();
        Assert.Same(retry, await Task.WhenAny(retry, Task.Delay(10_000)));
        Assert.Equal(2, (await retry).BaseOffset);
        Assert.Equal(4, log.HighWatermark);

        var duplicate = await log.AppendAsync(Idempotent(2, 7, 0, 2), false);
        Assert.Equal(2, duplicate.BaseOffset);
        Assert.Equal(4, log.HighWatermark);

        var gap = await Assert.ThrowsAsync<ProducerStateException>(async () => await log.AppendAsync(Idempotent(1, 7, 0, 9), false));
        Assert.Equal(45, gap.ErrorCode);
        Assert.Equal(4, (await log.AppendAsync(Idempotent(1, 7, 1, 0), false)).BaseOffset); // a new epoch starts at 0
        var fenced = await Assert.ThrowsAsync<ProducerStateException>(async () => await log.AppendAsync(Idempotent(1, 7, 0, 4), false));
        Assert.Equal(47, fenced.ErrorCode);
        Assert.Equal(5, log.HighWatermark);
        log.CheckInvariants();
    }

    [Fact]
    public async Task Plain_batches_pass_untouched_and_the_state_survives_a_reopen_with_snapshots_at_roll()
    {
        var config = new LogConfig { SegmentBytes = 600 };
        long next = 0;
        await using (PartitionLog log = _f.Open(config))
        {
            for (int i = 0; i < 20; i++)
            {
                Assert.Equal(next, (await log.AppendAsync(Idempotent(3, 11, 0, i * 3), false)).BaseOffset);
                next += 3;
                Assert.Equal(next, (await log.AppendAsync(BatchBuilder.Simple(2), false)).BaseOffset);
                next += 2;
            }

            // The roll snapshots are written in the background once their segments are durable.
            await log.WhenRollSnapshotsWrittenAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }

        Assert.NotEmpty(Directory.GetFiles(_f.PartitionDir, "*.snapshot"));
        await using (PartitionLog log = _f.Open(config))
        {
            // The last batch is still a duplicate after the reopen, and the sequence continues.
            Assert.Equal(next - 5, (await log.AppendAsync(Idempotent(3, 11, 0, 57), false)).BaseOffset);
            Assert.Equal(next, log.HighWatermark);
            Assert.Equal(next, (await log.AppendAsync(Idempotent(1, 11, 0, 60), false)).BaseOffset);
        }

        // Without the two close snapshots (deleted), a roll snapshot and the log after it give the same state.
        foreach (string s in Directory.GetFiles(_f.PartitionDir, "*.snapshot").Order().TakeLast(2))
            File.Delete(s);
        await using (PartitionLog log = _f.Open(config))
        {
            Assert.Equal(next, (await log.AppendAsync(Idempotent(1, 11, 0, 60), false)).BaseOffset);
            Assert.Equal(next + 1, log.HighWatermark);
            var gap = await Assert.ThrowsAsync<ProducerStateException>(async () => await log.AppendAsync(Idempotent(1, 11, 0, 70), false));
            Assert.Equal(45, gap.ErrorCode);
        }
    }

    [Fact]
    public async Task A_close_racing_the_roll_snapshot_writes_leaves_its_own_snapshot_newest_and_the_state_exact()
    {
        // Segments of 600 bytes roll every few batches; each roll's snapshot is written in the background once its
        // segment is durable, and the close (without waiting for them) takes its own. Whatever the interleaving, the
        // newest snapshot is the close's, nothing newer exists, and the reopened state continues the producer exactly.
        var config = new LogConfig { SegmentBytes = 600 };
        var rng = new Random(13);
        long next = 0;
        int sequence = 0;
        for (int cycle = 0; cycle < 25; cycle++)
        {
            PartitionLog log = _f.Open(config);
            if (cycle > 0)
            {
                // The last batch of the previous cycle is still a duplicate: answered with its offset.
                Assert.Equal(next - 3, (await log.AppendAsync(Idempotent(3, 21, 0, sequence - 3), false)).BaseOffset);
                Assert.Equal(next, log.HighWatermark);
            }

            // Every other cycle holds the flushes, so the roll snapshots wait for durability until the close has
            // begun, and then all become durable at once with the close's own flush.
            bool hold = cycle % 2 == 1;
            _f.Device.HoldFlushes = hold;
            for (int i = 0; i < 12; i++)
            {
                Assert.Equal(next, (await log.AppendAsync(Idempotent(3, 21, 0, sequence), false)).BaseOffset);
                next += 3;
                sequence += 3;
            }

            Task close = log.DisposeAsync().AsTask();
            await Task.Delay(rng.Next(3));
            if (hold)
            {
                _f.Device.ReleaseAllFlushes();
            }

            await close.WaitAsync(TimeSpan.FromSeconds(10));
            string[] atClose = Directory.GetFiles(_f.PartitionDir, "*.snapshot").Order().ToArray();
            var offsets = atClose.Select(f => ProducerSnapshot.TryParseFileName(Path.GetFileName(f), out long o) ? o : -1).ToList();
            Assert.DoesNotContain(-1L, offsets);
            Assert.Equal(next, offsets.Max());

            // Nothing is written for a closed log: no roll snapshot lands after the close returned.
            await Task.Delay(20);
            Assert.Equal(atClose, Directory.GetFiles(_f.PartitionDir, "*.snapshot").Order().ToArray());
        }

        await using PartitionLog last = _f.Open(config);
        var gap = await Assert.ThrowsAsync<ProducerStateException>(async () => await last.AppendAsync(Idempotent(1, 21, 0, sequence + 1), false));
        Assert.Equal(45, gap.ErrorCode);
        Assert.Equal(next, (await last.AppendAsync(Idempotent(1, 21, 0, sequence), false)).BaseOffset);
        last.CheckInvariants();
    }

    [Fact]
    public async Task A_roll_snapshot_that_became_durable_as_the_log_closed_is_not_written_after_the_close()
    {
        // The window the gate closes: a roll snapshot's segment is durable, and before its write starts the log
        // closes (taking its own snapshot). The roll write must then not land in a closed log's directory.
        var config = new LogConfig { SegmentBytes = 600 };
        PartitionLog log = _f.Open(config);
        using var reached = new ManualResetEventSlim();
        using var proceed = new ManualResetEventSlim();
        int paused = 0;
        log.OnRollSnapshotDurable = () =>
        {
            if (Interlocked.Exchange(ref paused, 1) == 0)
            {
                reached.Set();
                proceed.Wait(TimeSpan.FromSeconds(10));
            }
        };
        long next = 0;
        for (int i = 0; i < 12; i++)
        {
            Assert.Equal(next, (await log.AppendAsync(Idempotent(3, 31, 0, i * 3), false)).BaseOffset);
            next += 3;
        }

        await log.FlushAsync();
        Assert.True(reached.Wait(TimeSpan.FromSeconds(10)), "no roll snapshot became durable");
        await log.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        string[] atClose = Directory.GetFiles(_f.PartitionDir, "*.snapshot").Order().ToArray();
        Assert.Equal(ProducerSnapshot.FileName(next), Path.GetFileName(atClose[^1]));

        proceed.Set();
        await log.WhenRollSnapshotsWrittenAsync().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(atClose, Directory.GetFiles(_f.PartitionDir, "*.snapshot").Order().ToArray());
    }

    [Fact]
    public async Task Retention_deleting_every_batch_of_an_idle_producer_keeps_its_state_across_a_reopen()
    {
        // Kafka since KIP-360: the state of a producer outlives the segments that held its batches; only expiry
        // removes it. Otherwise an idle producer's next batch would be UNKNOWN_PRODUCER_ID after retention.
        var config = new LogConfig { SegmentBytes = 600, RetentionBytes = 1200 };
        long next = 0;
        long lastOfIdle;
        await using (PartitionLog log = _f.Open(config))
        {
            for (int i = 0; i < 4; i++)
            {
                Assert.Equal(next, (await log.AppendAsync(Idempotent(3, 41, 0, i * 3), false)).BaseOffset);
                next += 3;
            }

            lastOfIdle = next - 3;
            for (int i = 0; i < 40; i++)
            {
                Assert.Equal(next, (await log.AppendAsync(BatchBuilder.Simple(2), false)).BaseOffset);
                next += 2;
            }

            await log.FlushAsync();
            await log.WhenRollSnapshotsWrittenAsync().WaitAsync(TimeSpan.FromSeconds(10));
            log.EnforceRetention(_f.Time.NowMs);
            Assert.True(log.LogStartOffset > lastOfIdle + 2, $"log start {log.LogStartOffset}: the idle producer's batches must all be gone");

            // Its retry is still recognised (the original offsets), and its sequence continues.
            Assert.Equal(lastOfIdle, (await log.AppendAsync(Idempotent(3, 41, 0, 9), false)).BaseOffset);
            Assert.Equal(next, (await log.AppendAsync(Idempotent(1, 41, 0, 12), false)).BaseOffset);
            next += 1;
        }

        await using (PartitionLog log = _f.Open(config))
        {
            Assert.Equal(next, (await log.AppendAsync(Idempotent(1, 41, 0, 13), false)).BaseOffset);
            next += 1;
        }

        // Without the close snapshot: a roll snapshot at or after the log start, and the log after it, still know it.
        File.Delete(Directory.GetFiles(_f.PartitionDir, "*.snapshot").Order().Last());
        await using (PartitionLog log = _f.Open(config))
        {
            var gap = await Assert.ThrowsAsync<ProducerStateException>(async () => await log.AppendAsync(Idempotent(1, 41, 0, 20), false));
            Assert.Equal(45, gap.ErrorCode);
            Assert.Equal(next, (await log.AppendAsync(Idempotent(1, 41, 0, 14), false)).BaseOffset);
        }
    }
}
