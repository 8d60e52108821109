using Kiou.Storage.Producers;
using Kiou.Storage.Tests.Support;
using Kiou.Testing;

namespace Kiou.Storage.Tests;

/// <summary>
/// KIP-890's verification guard on the partition: a transactional batch that would start a transaction is appended
/// only with the producer's current guard, which a marker, a new epoch or expiry in between drops.
/// </summary>
public sealed class TransactionVerificationTests : IDisposable
{
    private const short InvalidTxnState = 48;
    private readonly LogFixture _f = new();

    public void Dispose() => _f.Dispose();

    private static byte[] Txn(int count, long producerId, short epoch, int baseSequence) => TransactionTests.Txn(count, producerId, epoch, baseSequence);

    private static async Task<short> RefusedWith(Task append) => (await Assert.ThrowsAsync<ProducerStateException>(() => append)).ErrorCode;

    [Fact]
    public async Task A_guard_taken_before_the_check_lets_the_batch_open_its_transaction()
    {
        await using PartitionLog log = _f.Open();
        VerificationGuard guard = log.StartTransactionVerification(7, 0);
        Assert.True(guard.NeedsCoordinator);
        Assert.Same(guard, log.StartTransactionVerification(7, 0)); // concurrent requests of the producer share it

        Assert.Equal(0, (await log.AppendAsync(Txn(2, 7, 0, 0), false, verification: guard)).BaseOffset);
        Assert.Equal(1, log.OngoingTransactionCount);
        Assert.Equal(0, log.LastStableOffset);

        // The open transaction needs no question; a second request holding the used guard goes on in it.
        Assert.Same(VerificationGuard.NotNeeded, log.StartTransactionVerification(7, 0));
        Assert.Equal(2, (await log.AppendAsync(Txn(1, 7, 0, 2), false, verification: guard)).BaseOffset);
        Assert.Equal(3, (await log.AppendAsync(Txn(1, 7, 0, 3), false, verification: VerificationGuard.NotNeeded)).BaseOffset);
        log.CheckInvariants();
    }

    [Fact]
    public async Task A_marker_between_the_check_and_the_append_refuses_the_batch()
    {
        await using PartitionLog log = _f.Open();
        await log.AppendAsync(Txn(2, 7, 0, 0), false); // 0..1, a transaction of producer 7
        VerificationGuard inTxn = log.StartTransactionVerification(7, 0);
        Assert.Same(VerificationGuard.NotNeeded, inTxn);
        VerificationGuard other = log.StartTransactionVerification(7, 0);
        await log.AppendAsync(TransactionTests.Marker(7, 0, commit: false), true, AppendOrigin.Coordinator); // 2
        Assert.Equal(3, log.LastStableOffset);

        // Checked while the transaction was open, appended after its abort: it would open a transaction nobody ends.
        Assert.Equal(InvalidTxnState, await RefusedWith(log.AppendAsync(Txn(1, 7, 0, 2), false, verification: other).AsTask()));

        // A guard taken before the marker is dropped by it too.
        VerificationGuard stale = log.StartTransactionVerification(7, 0);
        Assert.True(stale.NeedsCoordinator);
        await log.AppendAsync(TransactionTests.Marker(7, 0, commit: false), true, AppendOrigin.Coordinator); // 3
        Assert.Equal(InvalidTxnState, await RefusedWith(log.AppendAsync(Txn(1, 7, 0, 2), false, verification: stale).AsTask()));

        Assert.Equal(4, log.HighWatermark);
        Assert.Equal(4, log.LastStableOffset);
        Assert.Equal(0, log.OngoingTransactionCount);
        log.CheckInvariants();
    }

    [Fact]
    public async Task Without_a_guard_a_transaction_is_not_opened_and_other_batches_are_unaffected()
    {
        await using PartitionLog log = _f.Open();
        Assert.Equal(InvalidTxnState, await RefusedWith(log.AppendAsync(Txn(1, 7, 0, 0), false, verification: VerificationGuard.NotNeeded).AsTask()));

        // Another producer's guard, or one for an older epoch, is no guard for this batch.
        VerificationGuard eight = log.StartTransactionVerification(8, 0);
        Assert.Equal(InvalidTxnState, await RefusedWith(log.AppendAsync(Txn(1, 7, 0, 0), false, verification: eight).AsTask()));
        VerificationGuard old = log.StartTransactionVerification(7, 0);
        Assert.Equal(InvalidTxnState, await RefusedWith(log.AppendAsync(Txn(1, 7, 1, 0), false, verification: old).AsTask()));

        // A guard the coordinator refused is dropped, so it verifies nothing afterwards.
        log.AbandonTransactionVerification(old);
        Assert.Equal(InvalidTxnState, await RefusedWith(log.AppendAsync(Txn(1, 7, 0, 0), false, verification: old).AsTask()));
        Assert.Equal(0, log.HighWatermark);
        Assert.Equal(0, log.OngoingTransactionCount);

        // Non-transactional batches never need one; without a guard argument nothing is checked (markers, callers
        // that do not verify).
        Assert.Equal(0, (await log.AppendAsync(IdempotentBatch(9), false, verification: VerificationGuard.NotNeeded)).BaseOffset);
        Assert.Equal(1, (await log.AppendAsync(Txn(1, 7, 0, 0), false)).BaseOffset);
        log.CheckInvariants();
    }

    [Fact]
    public async Task An_epoch_bump_or_expiry_drops_the_guard()
    {
        await using PartitionLog log = _f.Open();
        VerificationGuard guard = log.StartTransactionVerification(7, 1);
        await log.AppendAsync(TransactionTests.Marker(7, 1, commit: false), true, AppendOrigin.Coordinator); // the coordinator bumped to epoch 1
        Assert.Equal(InvalidTxnState, await RefusedWith(log.AppendAsync(Txn(1, 7, 1, 0), false, verification: guard).AsTask()));

        VerificationGuard idle = log.StartTransactionVerification(7, 1);
        Assert.NotSame(guard, idle);
        _f.Time.Advance(log.Config.ProducerIdExpirationMs);
        log.RemoveExpiredProducers(_f.Time.NowMs);
        Assert.Equal(InvalidTxnState, await RefusedWith(log.AppendAsync(Txn(1, 7, 1, 0), false, verification: idle).AsTask()));
        Assert.Equal(1, log.HighWatermark);
    }

    private static byte[] IdempotentBatch(long producerId) =>
        BatchBuilder.Build([new TestRecord(0, null, new byte[8])], producerId: producerId, producerEpoch: 0, baseSequence: 0);
}
