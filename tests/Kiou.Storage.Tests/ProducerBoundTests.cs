using Kiou.Protocol.Records;
using Kiou.Storage.Producers;
using Kiou.Storage.Tests.Support;
using Kiou.Testing;

namespace Kiou.Storage.Tests;

/// <summary>
/// The bound on producer ids per partition (KIOU_MAX_PRODUCERS_PER_PARTITION, docs/design/producer-state.md): a
/// client creating producer ids in a loop cannot grow a partition's state past it; the least recently used producer
/// makes room, never one with an open transaction, and the state rebuilt at open respects the bound too.
/// </summary>
public sealed class ProducerBoundTests : IDisposable
{
    private const short Epoch = 0;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "kiou-producer-bound-tests", Guid.NewGuid().ToString("N"));
    private readonly List<string> _warnings = new();
    private readonly ManualTimeProvider _time = new();
    private long _offset;

    public ProducerBoundTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private ProducerStateManager NewManager(int maxProducers) =>
        new(_dir, "t-0", _ => { }, _warnings.Add, maxProducers: maxProducers, time: _time);

    private ProducerBatch Batch(long producerId, int sequence, bool transactional = false) =>
        new(producerId, Epoch, sequence, 0, _time.NowMs, transactional);

    /// <summary>Checks a client batch and appends it at the next offset when allowed.</summary>
    private ProducerCheckOutcome Append(ProducerStateManager state, long producerId, int sequence, bool transactional = false)
    {
        ProducerBatch b = Batch(producerId, sequence, transactional);
        ProducerCheck check = state.Check(b);
        if (check.Outcome == ProducerCheckOutcome.Append)
        {
            state.Apply(b, _offset++);
        }

        state.CheckInvariants();
        return check.Outcome;
    }

    [Fact]
    public void The_map_never_exceeds_the_bound_while_many_producers_each_send_one_batch()
    {
        // The hostile client: InitProducerId in a loop, one batch with each id.
        const int max = 8;
        ProducerStateManager state = NewManager(max);
        for (long pid = 1; pid <= 2000; pid++)
        {
            Assert.Equal(ProducerCheckOutcome.Append, Append(state, pid, 0));
            Assert.InRange(state.ProducerCount, 1, max);
        }

        // The most recent ones are the ones kept.
        for (long pid = 2000 - max + 1; pid <= 2000; pid++)
        {
            Assert.True(state.TryGetProducer(pid, out _), $"producer {pid} should be kept");
        }
    }

    [Fact]
    public void The_least_recently_used_producer_is_evicted_and_a_recently_used_one_keeps_its_duplicate_window()
    {
        ProducerStateManager state = NewManager(3);
        Append(state, 1, 0);
        Append(state, 2, 0);
        Append(state, 3, 0);

        // Producer 1 sends again (an older timestamp changes nothing: use counts, not the client's clock); 2 is now the least recent.
        _time.Advance(-1000);
        Assert.Equal(ProducerCheckOutcome.Append, Append(state, 1, 1));
        _time.Advance(1000);
        Assert.Equal(ProducerCheckOutcome.Append, Append(state, 4, 0));

        Assert.Equal(3, state.ProducerCount);
        Assert.False(state.TryGetProducer(2, out _), "producer 2, the least recently used, should be evicted");
        Assert.True(state.TryGetProducer(1, out _));
        Assert.True(state.TryGetProducer(3, out _));
        Assert.True(state.TryGetProducer(4, out _));

        // Producer 1's retry of its last batch is still recognised.
        Assert.Equal(ProducerCheckOutcome.Duplicate, state.Check(Batch(1, 1)).Outcome);
        Assert.Equal(ProducerCheckOutcome.OutOfOrderSequence, state.Check(Batch(1, 5)).Outcome);

        // The next new producer evicts 3, then 1 unless it is used again.
        Assert.Equal(ProducerCheckOutcome.Append, Append(state, 1, 2));
        Assert.Equal(ProducerCheckOutcome.Append, Append(state, 5, 0));
        Assert.False(state.TryGetProducer(3, out _));
        Assert.True(state.TryGetProducer(1, out _));
    }

    [Fact]
    public void An_evicted_producer_is_unknown_again_and_follows_the_unknown_producer_rules()
    {
        ProducerStateManager state = NewManager(2);
        Append(state, 1, 0);
        Append(state, 1, 1);
        Append(state, 2, 0);
        Append(state, 3, 0); // evicts 1
        Assert.False(state.TryGetProducer(1, out _));

        // Unknown to the partition, as after expiry: Kafka's ProducerAppendInfo.checkSequence (KIP-360) accepts any
        // sequence and epoch, so its retry is no longer recognised as a duplicate: that is what the bound costs.
        Assert.Equal(ProducerCheckOutcome.Append, state.Check(Batch(1, 1)).Outcome);
        Assert.Equal(ProducerCheckOutcome.Append, state.Check(Batch(1, 2)).Outcome);
        Assert.Equal(ProducerCheckOutcome.Append, Append(state, 1, 0));
        Assert.True(state.TryGetProducer(1, out ProducerStateEntry? back));
        Assert.Equal(0, back!.LastSequence);
        Assert.Equal(2, state.ProducerCount);

        // From then on the usual rules hold again.
        Assert.Equal(ProducerCheckOutcome.Duplicate, state.Check(Batch(1, 0)).Outcome);
        Assert.Equal(ProducerCheckOutcome.OutOfOrderSequence, state.Check(Batch(1, 3)).Outcome);
    }

    [Fact]
    public void A_producer_with_an_open_transaction_is_never_evicted()
    {
        ProducerStateManager state = NewManager(2);
        Append(state, 1, 0, transactional: true);
        for (long pid = 2; pid < 50; pid++)
        {
            Append(state, pid, 0);
            Assert.Equal(2, state.ProducerCount);
            Assert.True(state.TryGetProducer(1, out ProducerStateEntry? open), $"the open transaction was evicted by producer {pid}");
            Assert.Equal(0, open!.CurrentTxnFirstOffset);
        }

        Assert.True(state.TryGetProducer(49, out _));
    }

    [Fact]
    public void Evictions_are_logged_at_most_once_a_minute_with_the_count_the_limit_and_the_setting()
    {
        ProducerStateManager state = NewManager(4);
        for (long pid = 1; pid <= 4; pid++)
        {
            Append(state, pid, 0);
        }

        Assert.Empty(_warnings);
        Append(state, 5, 0);
        string first = Assert.Single(_warnings);
        Assert.Contains("t-0", first);
        Assert.Contains("1 producer id", first);
        Assert.Contains("4", first);
        Assert.Contains("KIOU_MAX_PRODUCERS_PER_PARTITION", first);

        for (long pid = 6; pid <= 30; pid++)
        {
            Append(state, pid, 0);
            _time.Advance(1000);
        }

        Assert.Single(_warnings);
        _time.Advance(60_000);
        Append(state, 31, 0);
        Assert.Equal(2, _warnings.Count);
        Assert.Contains("26 producer ids", _warnings[1]);
    }

    [Fact]
    public void A_snapshot_written_with_a_higher_bound_loads_keeping_the_most_recent_within_the_bound()
    {
        ProducerStateManager big = NewManager(100);
        for (long pid = 1; pid <= 20; pid++)
        {
            Append(big, pid, 0);
            _time.Advance(10);
        }

        // Producer 3 is the most recent by its last batch.
        Append(big, 3, 1);
        big.UpdateMapEndOffset(_offset);
        Assert.NotNull(big.TakeSnapshot());

        // As at open: reload, replay the log after the snapshot, then the end of the rebuild.
        ProducerStateManager small = NewManager(5);
        small.TruncateAndReload(0, _offset, _time.NowMs);
        Assert.Equal(5, small.ProducerCount);
        foreach (long pid in new long[] { 3, 17, 18, 19, 20 })
        {
            Assert.True(small.TryGetProducer(pid, out _), $"producer {pid} should be kept");
        }

        Assert.Equal(ProducerCheckOutcome.Duplicate, small.Check(Batch(3, 1)).Outcome);

        // Replaying the log after the snapshot respects the bound too, least recently used first.
        for (long pid = 100; pid < 110; pid++)
        {
            small.Replay(Batch(pid, 0), _offset++);
            Assert.Equal(5, small.ProducerCount);
        }

        small.UpdateMapEndOffset(_offset);
        string warning = Assert.Single(_warnings);
        Assert.Contains("25 producer ids", warning);
        Assert.Contains("KIOU_MAX_PRODUCERS_PER_PARTITION", warning);
        small.CheckInvariants();
        Assert.True(small.TryGetProducer(109, out _));
        Assert.False(small.TryGetProducer(3, out _));
    }
}

/// <summary>The bound through a <see cref="PartitionLog"/>: reopening with a smaller KIOU_MAX_PRODUCERS_PER_PARTITION.</summary>
public sealed class ProducerBoundReopenTests : IDisposable
{
    private readonly LogFixture _f = new();

    public void Dispose() => _f.Dispose();

    private static byte[] Idempotent(long producerId, int baseSequence) =>
        BatchBuilder.Build([new TestRecord(0, null, [1])], producerId: producerId, producerEpoch: 0, baseSequence: baseSequence);

    [Fact]
    public async Task A_reopen_with_a_smaller_bound_keeps_at_most_the_bound_and_the_most_recent_producers()
    {
        await using (PartitionLog log = _f.Open())
        {
            for (long pid = 1; pid <= 30; pid++)
            {
                await log.AppendAsync(Idempotent(pid, 0), false);
            }

            Assert.Equal(30, log.ActiveProducers().Count);
        }

        // The close snapshot holds 30; opened with a bound of 5 the state keeps the last five used.
        await using (PartitionLog log = _f.Open(new LogConfig { MaxProducersPerPartition = 5 }))
        {
            IReadOnlyList<ProducerStateEntry> producers = log.ActiveProducers();
            Assert.Equal(5, producers.Count);
            Assert.Equal([26L, 27, 28, 29, 30], producers.Select(p => p.ProducerId).Order());
            Assert.Contains(_f.Warnings, w => w.Contains("KIOU_MAX_PRODUCERS_PER_PARTITION") && w.Contains("25 producer ids"));

            // A kept producer's retry is a duplicate; a new producer keeps the count at the bound.
            Assert.Equal(29, (await log.AppendAsync(Idempotent(30, 0), false)).BaseOffset);
            Assert.Equal(30, (await log.AppendAsync(Idempotent(31, 0), false)).BaseOffset);
            Assert.Equal(5, log.ActiveProducers().Count);
        }
    }
}
