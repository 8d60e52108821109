using Kiou.Storage.Producers;

namespace Kiou.Storage.Tests;

/// <summary>
/// The epoch and sequence rules of <see cref="ProducerStateManager"/>, ported from Kafka's ProducerStateManagerTest
/// (storage/src/test/java/org/apache/kafka/storage/internals/log) where a case applies, plus the duplicate window of
/// UnifiedLog.analyzeAndValidateProducerState.
/// </summary>
public sealed class ProducerStateTests : IDisposable
{
    private const long ProducerId = 1;
    private const short Epoch = 0;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "kiou-producer-tests", Guid.NewGuid().ToString("N"));
    private readonly List<string> _warnings = new();
    private readonly ProducerStateManager _state;
    private long _now = 1_700_000_000_000;

    public ProducerStateTests()
    {
        Directory.CreateDirectory(_dir);
        _state = NewManager();
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private ProducerStateManager NewManager() => new(_dir, "t-0", _ => { }, _warnings.Add);

    private ProducerBatch Batch(short epoch, int sequence, int records = 1, long producerId = ProducerId, bool transactional = false, long? timestamp = null) =>
        new(producerId, epoch, sequence, records - 1, timestamp ?? _now, transactional);

    /// <summary>Checks a client batch and appends it at <paramref name="offset"/> when allowed (Kafka's appendClientEntry).</summary>
    private ProducerCheck Append(short epoch, int sequence, long offset, int records = 1, long producerId = ProducerId, bool transactional = false)
    {
        ProducerBatch b = Batch(epoch, sequence, records, producerId, transactional);
        ProducerCheck check = _state.Check(b);
        if (check.Outcome == ProducerCheckOutcome.Append)
        {
            _state.Apply(b, offset);
        }

        _state.CheckInvariants();
        return check;
    }

    private ProducerStateEntry Entry(long producerId = ProducerId)
    {
        Assert.True(_state.TryGetProducer(producerId, out ProducerStateEntry? e), $"producer {producerId} should be known");
        return e!;
    }

    [Fact]
    public void BasicIdMapping_AsKafka()
    {
        Assert.Equal(ProducerCheckOutcome.Append, Append(Epoch, 0, 0).Outcome);
        Assert.Equal(ProducerCheckOutcome.Append, Append(Epoch, 1, 1).Outcome);

        // Kafka's ProducerAppendInfo alone says OUT_OF_ORDER here; UnifiedLog finds the duplicate first.
        ProducerCheck retry = Append(Epoch, 1, 2);
        Assert.Equal(ProducerCheckOutcome.Duplicate, retry.Outcome);
        Assert.Equal(0, retry.ErrorCode);
        Assert.Equal(1, retry.Duplicate.FirstOffset);

        ProducerCheck gap = Append(Epoch, 5, 2);
        Assert.Equal(ProducerCheckOutcome.OutOfOrderSequence, gap.Outcome);
        Assert.Equal(45, gap.ErrorCode);

        Assert.Equal(ProducerCheckOutcome.Append, Append(Epoch + 1, 0, 3).Outcome);
        ProducerCheck fenced = Append(Epoch, 0, 4);
        Assert.Equal(ProducerCheckOutcome.InvalidProducerEpoch, fenced.Outcome);
        Assert.Equal(47, fenced.ErrorCode);
        Assert.Equal(1, Entry().ProducerEpoch);
        Assert.Equal(0, Entry().LastSequence);
        Assert.Equal(3, Entry().LastDataOffset);
    }

    [Fact]
    public void Duplicate_AnswersWithOriginalOffsetsAndTimestamp_AndChangesNothing()
    {
        Append(Epoch, 0, 100, records: 10);
        _now += 5;
        long secondTimestamp = _now;
        Append(Epoch, 10, 110, records: 3);
        _now += 1000;

        ProducerCheck retry = _state.Check(Batch(Epoch, 10, records: 3));
        Assert.Equal(ProducerCheckOutcome.Duplicate, retry.Outcome);
        Assert.Equal(110, retry.Duplicate.FirstOffset);
        Assert.Equal(112, retry.Duplicate.LastOffset);
        Assert.Equal(secondTimestamp, retry.Duplicate.Timestamp);
        Assert.Equal(10, retry.Duplicate.FirstSequence);
        Assert.Equal(12, retry.Duplicate.LastSequence);

        // The same first sequence with another length is not the same batch: Kafka matches the exact range.
        Assert.Equal(ProducerCheckOutcome.OutOfOrderSequence, _state.Check(Batch(Epoch, 10, records: 2)).Outcome);
        Assert.Equal(12, Entry().LastSequence);
        Assert.Equal(2, Entry().BatchCount);
    }

    [Fact]
    public void DuplicateWindow_IsTheLastFiveBatches_TheSixthOldestRetryIsOutOfOrder()
    {
        for (int i = 0; i < 6; i++)
        {
            Assert.Equal(ProducerCheckOutcome.Append, Append(Epoch, i * 2, i * 10, records: 2).Outcome);
        }

        Assert.Equal(ProducerStateEntry.BatchesRetained, Entry().BatchCount);
        for (int i = 1; i < 6; i++)
        {
            ProducerCheck c = _state.Check(Batch(Epoch, i * 2, records: 2));
            Assert.Equal(ProducerCheckOutcome.Duplicate, c.Outcome);
            Assert.Equal(i * 10, c.Duplicate.FirstOffset);
        }

        Assert.Equal(ProducerCheckOutcome.OutOfOrderSequence, _state.Check(Batch(Epoch, 0, records: 2)).Outcome);
        Assert.Equal(ProducerCheckOutcome.Append, _state.Check(Batch(Epoch, 12, records: 2)).Outcome);
    }

    [Fact]
    public void SequenceWrapAround_AfterIntMaxValueComesZero()
    {
        // Kafka testProducerSequenceWrapAround.
        const short epoch = 15;
        _state.Replay(Batch(epoch, int.MaxValue), 735);
        Assert.Equal(ProducerCheckOutcome.Append, Append(epoch, 0, 735 + 500).Outcome);
        Assert.Equal(epoch, Entry().ProducerEpoch);
        Assert.Equal(int.MaxValue, Entry().FirstSequence);
        Assert.Equal(0, Entry().LastSequence);
    }

    [Fact]
    public void SequenceWrapAround_WithinOneBatch()
    {
        // Kafka testProducerSequenceWithWrapAroundBatchRecord: first sequence int.MaxValue - 10, 21 records.
        const short epoch = 15;
        ProducerBatch wrapping = Batch(epoch, int.MaxValue - 10, records: 21);
        Assert.Equal(9, wrapping.LastSequence);
        _state.Replay(wrapping, 2000);
        Assert.Equal(int.MaxValue - 10, Entry().FirstSequence);
        Assert.Equal(9, Entry().LastSequence);
        Assert.Equal(2000, Entry().FirstDataOffset);
        Assert.Equal(2020, Entry().LastDataOffset);

        ProducerCheck retry = _state.Check(wrapping);
        Assert.Equal(ProducerCheckOutcome.Duplicate, retry.Outcome);
        Assert.Equal(2000, retry.Duplicate.FirstOffset);
        Assert.Equal(ProducerCheckOutcome.Append, _state.Check(Batch(epoch, 10)).Outcome);
        Assert.Equal(ProducerCheckOutcome.OutOfOrderSequence, _state.Check(Batch(epoch, 0)).Outcome);
    }

    [Fact]
    public void SequenceWrapAround_OnlyToZero()
    {
        // Kafka testProducerSequenceInvalidWrapAround.
        const short epoch = 15;
        _state.Replay(Batch(epoch, int.MaxValue), 735);
        Assert.Equal(ProducerCheckOutcome.OutOfOrderSequence, Append(epoch, 1, 735 + 500).Outcome);
    }

    [Fact]
    public void Replay_IsNotValidated()
    {
        // Kafka testNoValidationOnFirstEntryWhenLoadingLog and testAcceptAppendWithSequenceGapsOnReplica.
        _state.Replay(Batch(5, 16), 735);
        Assert.Equal(5, Entry().ProducerEpoch);
        Assert.Equal(16, Entry().FirstSequence);
        Assert.Equal(16, Entry().LastSequence);
        Assert.Equal(735, Entry().LastDataOffset);
        Assert.Equal(736, _state.MapEndOffset);

        Assert.Equal(ProducerCheckOutcome.OutOfOrderSequence, _state.Check(Batch(5, 20)).Outcome);
        _state.Replay(Batch(5, 20), 736);
        Assert.Equal(20, Entry().LastSequence);
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(0, 17)]
    [InlineData(3, 12345)]
    [InlineData(0, int.MaxValue)]
    public void UnknownProducer_AcceptsAnySequence(short epoch, int sequence)
    {
        // ProducerAppendInfo.checkSequence: with no known epoch (state removed by retention, DeleteRecords or
        // expiry) any sequence is accepted; current Kafka never answers UNKNOWN_PRODUCER_ID.
        Assert.Equal(ProducerCheckOutcome.Append, Append(epoch, sequence, 40).Outcome);
        Assert.Equal(sequence, Entry().LastSequence);
        Assert.Equal(ProducerCheckOutcome.OutOfOrderSequence, _state.Check(Batch(epoch, ProducerSequence.Increment(sequence, 2))).Outcome);
    }

    [Fact]
    public void NewEpoch_MustStartAtSequenceZero_AndForgetsTheOldBatches()
    {
        // Kafka testOutOfSequenceAfterControlRecordEpochBump, through a data batch with a bumped epoch.
        Append(Epoch, 0, 0);
        Append(Epoch, 1, 1);
        Assert.Equal(ProducerCheckOutcome.OutOfOrderSequence, Append(Epoch + 1, 2, 2).Outcome);
        Assert.Equal(ProducerCheckOutcome.OutOfOrderSequence, Append(Epoch + 2, 2, 2).Outcome);
        Assert.Equal(ProducerCheckOutcome.Append, Append(Epoch + 1, 0, 2).Outcome);
        Assert.Equal(1, Entry().BatchCount);

        // A retry of the old epoch's batch is fenced, not a duplicate: findDuplicateBatch compares the epoch.
        Assert.Equal(ProducerCheckOutcome.InvalidProducerEpoch, _state.Check(Batch(Epoch, 1)).Outcome);
        Assert.Equal(ProducerCheckOutcome.Append, _state.Check(Batch(Epoch + 1, 1)).Outcome);
    }

    [Fact]
    public void KnownEpochWithoutBatches_AcceptsOnlySequenceZero()
    {
        // Kafka testAppendTxnMarkerWithNoProducerState: a producer whose only trace is a marker (a snapshot entry
        // with no last batch) is fenced by epoch and must restart its sequence at 0.
        const short epoch = 2;
        _state.LoadProducerEntry(new ProducerStateEntry(ProducerId, epoch, coordinatorEpoch: 0, lastTimestamp: _now));
        Assert.Equal(ProducerCheckOutcome.InvalidProducerEpoch, Append(0, 0, 4).Outcome);
        Assert.Equal(ProducerCheckOutcome.OutOfOrderSequence, Append(epoch, 17, 4).Outcome);
        Assert.Equal(ProducerCheckOutcome.Append, Append(epoch, 0, 4).Outcome);
        Assert.Equal(0, Entry().LastSequence);
    }

    [Fact]
    public void NegativeBaseSequence_WithProducerId_IsInvalidRecord()
    {
        ProducerCheck c = _state.Check(Batch(Epoch, -1));
        Assert.Equal(ProducerCheckOutcome.InvalidSequence, c.Outcome);
        Assert.Equal(87, c.ErrorCode);
        Assert.Equal(ProducerCheckOutcome.InvalidSequence, _state.Check(Batch(Epoch, int.MinValue)).Outcome);
    }

    [Fact]
    public void NonTransactionalBatch_DuringATransaction_IsInvalidTxnState()
    {
        // Kafka testNonTransactionalAppendWithOngoingTransaction.
        Append(Epoch, 0, 0, transactional: true);
        Assert.Equal(0, Entry().CurrentTxnFirstOffset);
        ProducerCheck c = Append(Epoch, 1, 1);
        Assert.Equal(ProducerCheckOutcome.InvalidTxnState, c.Outcome);
        Assert.Equal(48, c.ErrorCode);
    }

    [Fact]
    public void BatchWithoutProducerId_IsNotTracked()
    {
        var plain = new ProducerBatch(-1, -1, -1, 9, _now, false);
        Assert.False(plain.HasProducerId);
        Assert.Equal(ProducerCheckOutcome.Append, _state.Check(plain).Outcome);
        _state.Apply(plain, 0);
        Assert.Equal(0, _state.ProducerCount);
        Assert.Equal(ProducerCheckOutcome.Append, _state.Check(new ProducerBatch(-7, 0, 5, 0, _now, false)).Outcome);
    }

    [Fact]
    public void SteadyState_CheckAndApply_AllocateNothing()
    {
        for (long p = 0; p < 100; p++)
        {
            Append(Epoch, 0, p, producerId: p);
        }

        int sequence = 1;
        long offset = 100;
        void Round()
        {
            for (long p = 0; p < 100; p++)
            {
                var b = new ProducerBatch(p, Epoch, sequence, 0, 5, false);
                if (_state.Check(b).Outcome != ProducerCheckOutcome.Append)
                {
                    throw new InvalidOperationException($"producer {p} sequence {sequence} refused");
                }

                _state.Apply(b, offset++);
            }

            if (_state.Check(new ProducerBatch(3, Epoch, sequence, 0, 5, false)).Outcome != ProducerCheckOutcome.Duplicate)
            {
                throw new InvalidOperationException("retry not recognised");
            }

            sequence++;
        }

        Round();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 20; i++)
        {
            Round();
        }

        Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread());
    }

    [Fact]
    public void Expiry_RemovesIdleProducers_NeverOneWithAnOpenTransaction()
    {
        // Kafka testPidExpirationTimeout and testProducersWithOngoingTransactionsDontExpire.
        const long expiration = ProducerStateManager.DefaultProducerIdExpirationMs;
        long start = _now;
        Append(5, 0, 1);
        Append(5, 0, 2, producerId: 2, transactional: true);
        _now += 1000;
        Append(5, 0, 3, producerId: 3);

        Assert.Equal(0, _state.RemoveExpired(start + expiration - 1, expiration));
        Assert.Equal(1, _state.RemoveExpired(start + expiration, expiration));
        Assert.False(_state.TryGetProducer(ProducerId, out _));
        Assert.True(_state.TryGetProducer(2, out _));
        Assert.True(_state.TryGetProducer(3, out _));

        Assert.Equal(1, _state.RemoveExpired(start + (10 * expiration), expiration));
        Assert.True(_state.TryGetProducer(2, out _));

        // The expired producer continues with any sequence (Kafka: unknown producer).
        Assert.Equal(ProducerCheckOutcome.Append, Append(5, 1, 4).Outcome);
        Assert.Equal(1, Entry().LastSequence);
    }

    [Fact]
    public void SequenceHelpers_MatchKafka()
    {
        Assert.Equal(0, ProducerSequence.Increment(int.MaxValue, 1));
        Assert.Equal(9, ProducerSequence.Increment(int.MaxValue - 10, 20));
        Assert.Equal(int.MaxValue - 10, ProducerSequence.Decrement(9, 20));
        Assert.Equal(int.MaxValue, ProducerSequence.Decrement(0, 1));
        Assert.Equal(5, ProducerSequence.Decrement(10, 5));
        Assert.True(ProducerSequence.InSequence(-1, 0));
        Assert.True(ProducerSequence.InSequence(int.MaxValue, 0));
        Assert.False(ProducerSequence.InSequence(int.MaxValue, 1));
        Assert.False(ProducerSequence.InSequence(int.MaxValue - 1, int.MinValue));
    }
}
