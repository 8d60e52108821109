using System.Buffers.Binary;
using System.Collections.Concurrent;
using Kiou.Broker.Hosting;
using Kiou.Broker.Transactions;
using Kiou.Protocol.Records;
using Kiou.Storage.Tests.Support;

namespace Kiou.Broker.Tests;

/// <summary>
/// Issue 14: the transaction coordinator's state machine (Kafka's TransactionCoordinator / TransactionMetadata) over
/// an in-memory store, and the bytes of __transaction_state and of transaction markers against Kafka's layouts,
/// built by hand.
/// </summary>
public sealed class TransactionCoordinatorTests
{
    const short ConcurrentTransactions = 51;
    const short InvalidProducerIdMapping = 49;
    const short ProducerFenced = 90;
    const short InvalidTxnState = 48;
    const short InvalidProducerEpoch = 47;
    const short InvalidTransactionTimeout = 50;
    const short CoordinatorNotAvailable = 15;

    sealed class MemoryStore : ITransactionStore
    {
        public readonly ConcurrentQueue<(string Id, byte[] Batch)> States = new();
        public readonly ConcurrentQueue<(TopicPartition Partition, byte[] Batch)> Markers = new();
        public TaskCompletionSource? Gate;
        public bool FailNext;
        long _nextPid = 1000;

        public async Task AppendStateAsync(string transactionalId, byte[] batch)
        {
            if (Gate is { } gate)
                await gate.Task;
            if (FailNext)
            {
                FailNext = false;
                throw new IOException("injected write failure");
            }
            States.Enqueue((transactionalId, batch));
        }

        public Task<short> WriteMarkerAsync(TopicPartition partition, byte[] batch)
        {
            Markers.Enqueue((partition, batch));
            return Task.FromResult((short)0);
        }

        public bool PartitionExists(TopicPartition partition) => true;

        public long AllocateProducerId() => Interlocked.Increment(ref _nextPid);

        /// <summary>The replay of what was written: latest record per id.</summary>
        public Dictionary<string, TxnSnapshot> Replay()
        {
            var states = new Dictionary<string, TxnSnapshot>();
            foreach (var (_, batch) in States)
            {
                var cursor = RecordCursor.ForBatch(batch);
                Assert.True(cursor.MoveNext());
                string id = TransactionLog.ReadKey(cursor.Key)!;
                states[id] = TransactionLog.ReadValue(cursor.Value)!;
            }
            return states;
        }
    }

    readonly ManualTimeProvider _clock = new();
    readonly StringWriter _logText = new();
    readonly MemoryStore _store = new();

    TransactionCoordinator NewCoordinator(MemoryStore? store = null, IEnumerable<KeyValuePair<string, TxnSnapshot>>? load = null)
    {
        var c = new TransactionCoordinator(new TransactionSettings { MaxTimeoutMs = 60_000 }, store ?? _store, _clock,
            new Log(TextWriter.Synchronized(_logText), Log.Level.Debug));
        c.Load(load ?? [], driveTimers: false);
        return c;
    }

    static TopicPartition Tp(string t, int p) => new(t, p);

    TxnSnapshot LastWritten(string id)
    {
        var (writtenId, batch) = _store.States.Last();
        Assert.Equal(id, writtenId);
        var cursor = RecordCursor.ForBatch(batch);
        Assert.True(cursor.MoveNext());
        return TransactionLog.ReadValue(cursor.Value)!;
    }

    [Fact]
    public async Task Init_add_commit_writes_each_state_then_markers_then_CompleteCommit()
    {
        await using var c = NewCoordinator();
        var init = await c.InitProducerIdAsync("t1", 30_000, -1, -1);
        Assert.Equal(0, init.Error);
        Assert.Equal(0, init.ProducerEpoch);
        Assert.Equal(TxnState.Empty, LastWritten("t1").State);

        Assert.Equal(0, await c.AddPartitionsAsync("t1", init.ProducerId, 0, [Tp("a", 0), Tp("a", 1)]));
        var ongoing = LastWritten("t1");
        Assert.Equal(TxnState.Ongoing, ongoing.State);
        Assert.Equal(_clock.NowMs, ongoing.StartTimestampMs);
        int written = _store.States.Count;
        // Already in the transaction: answered without a write.
        Assert.Equal(0, await c.AddPartitionsAsync("t1", init.ProducerId, 0, [Tp("a", 1)]));
        Assert.Equal(written, _store.States.Count);
        Assert.Equal(0, await c.AddPartitionsAsync("t1", init.ProducerId, 0, [Tp("b", 3)]));
        Assert.Equal(new[] { Tp("a", 0), Tp("a", 1), Tp("b", 3) }, LastWritten("t1").Partitions);

        Assert.Equal(InvalidProducerIdMapping, await c.AddPartitionsAsync("t1", init.ProducerId + 1, 0, [Tp("a", 0)]));
        Assert.Equal(ProducerFenced, await c.AddPartitionsAsync("t1", init.ProducerId, 1, [Tp("a", 0)]));
        Assert.Equal(InvalidProducerIdMapping, await c.AddPartitionsAsync("nobody", 1, 0, [Tp("a", 0)]));

        Assert.Equal(0, await c.EndTxnAsync("t1", init.ProducerId, 0, commit: true));
        await c.WhenIdleAsync();
        var states = _store.States.Select(s => s.Batch).Select(b =>
        {
            var cur = RecordCursor.ForBatch(b);
            cur.MoveNext();
            return TransactionLog.ReadValue(cur.Value)!.State;
        }).ToList();
        Assert.Equal(new[] { TxnState.Empty, TxnState.Ongoing, TxnState.Ongoing, TxnState.PrepareCommit, TxnState.CompleteCommit }, states);
        Assert.Empty(LastWritten("t1").Partitions);
        var markers = _store.Markers.OrderBy(m => m.Partition).ToList();
        Assert.Equal(new[] { Tp("a", 0), Tp("a", 1), Tp("b", 3) }, markers.Select(m => m.Partition));
        foreach (var (_, batch) in markers)
        {
            Assert.True(TransactionLog.ReadMarker(batch));
            Assert.Equal(init.ProducerId, RecordBatch.ProducerId(batch));
            Assert.Equal(0, RecordBatch.ProducerEpoch(batch));
        }

        // A retried commit is answered NONE; an abort now is INVALID_TXN_STATE, as in Kafka.
        Assert.Equal(0, await c.EndTxnAsync("t1", init.ProducerId, 0, commit: true));
        Assert.Equal(InvalidTxnState, await c.EndTxnAsync("t1", init.ProducerId, 0, commit: false));
        // Next transaction, then abort.
        Assert.Equal(0, await c.AddPartitionsAsync("t1", init.ProducerId, 0, [Tp("a", 0)]));
        Assert.Equal(0, await c.EndTxnAsync("t1", init.ProducerId, 0, commit: false));
        await c.WhenIdleAsync();
        Assert.Equal(TxnState.CompleteAbort, LastWritten("t1").State);
        Assert.False(TransactionLog.ReadMarker(_store.Markers.Last().Batch));
        Assert.Equal(InvalidTxnState, await c.EndTxnAsync("t1", init.ProducerId, 0, commit: true));
    }

    [Fact]
    public async Task A_new_producer_aborts_the_open_transaction_under_a_bumped_epoch_and_fences_the_old_one()
    {
        await using var c = NewCoordinator();
        var first = await c.InitProducerIdAsync("t", 30_000, -1, -1);
        Assert.Equal(0, await c.AddPartitionsAsync("t", first.ProducerId, first.ProducerEpoch, [Tp("x", 0)]));

        // The second producer: CONCURRENT_TRANSACTIONS while the open transaction is aborted at epoch 1.
        var second = await c.InitProducerIdAsync("t", 30_000, -1, -1);
        Assert.Equal(ConcurrentTransactions, second.Error);
        await c.WhenIdleAsync();
        var (partition, marker) = Assert.Single(_store.Markers);
        Assert.Equal(Tp("x", 0), partition);
        Assert.False(TransactionLog.ReadMarker(marker));
        Assert.Equal(1, RecordBatch.ProducerEpoch(marker));
        Assert.Equal(TxnState.CompleteAbort, LastWritten("t").State);

        var retry = await c.InitProducerIdAsync("t", 30_000, -1, -1);
        Assert.Equal(0, retry.Error);
        Assert.Equal(first.ProducerId, retry.ProducerId);
        Assert.Equal(2, retry.ProducerEpoch);

        // The old producer is fenced everywhere.
        Assert.Equal(ProducerFenced, await c.AddPartitionsAsync("t", first.ProducerId, 0, [Tp("x", 0)]));
        Assert.Equal(ProducerFenced, await c.EndTxnAsync("t", first.ProducerId, 0, commit: true));
        // KIP-360: the old producer's InitProducerId with its id and stale epoch is fenced too.
        Assert.Equal(ProducerFenced, (await c.InitProducerIdAsync("t", 30_000, first.ProducerId, 0)).Error);
        // The current one bumping itself with its own epoch works; a retry of that with the old epoch returns the same.
        var bumped = await c.InitProducerIdAsync("t", 30_000, retry.ProducerId, 2);
        Assert.Equal((short)0, bumped.Error);
        Assert.Equal(3, bumped.ProducerEpoch);
        var again = await c.InitProducerIdAsync("t", 30_000, retry.ProducerId, 2);
        Assert.Equal(3, again.ProducerEpoch);
        Assert.Equal(InvalidProducerEpoch, (await c.InitProducerIdAsync("t", 30_000, 424242, 0)).Error);
    }

    [Fact]
    public async Task Timeouts_and_epoch_exhaustion_follow_Kafka()
    {
        await using var c = NewCoordinator();
        Assert.Equal(InvalidTransactionTimeout, (await c.InitProducerIdAsync("t", 60_001, -1, -1)).Error);
        Assert.Equal(InvalidTransactionTimeout, (await c.InitProducerIdAsync("t", 0, -1, -1)).Error);
        var init = await c.InitProducerIdAsync("t", 10_000, -1, -1);
        Assert.Equal(0, await c.AddPartitionsAsync("t", init.ProducerId, 0, [Tp("x", 1)]));
        _clock.Advance(10_000);
        Assert.Equal(0, c.AbortTimedOutTransactions()); // not longer than its timeout yet
        _clock.Advance(1);
        Assert.Equal(1, c.AbortTimedOutTransactions());
        await c.WhenIdleAsync();
        var aborted = LastWritten("t");
        Assert.Equal(TxnState.CompleteAbort, aborted.State);
        Assert.Equal(1, aborted.ProducerEpoch);
        Assert.Equal(1, RecordBatch.ProducerEpoch(Assert.Single(_store.Markers).Batch));
        // The producer that timed out is fenced; its commit fails.
        Assert.Equal(ProducerFenced, await c.EndTxnAsync("t", init.ProducerId, 0, commit: true));

        // An exhausted epoch rotates the producer id (prepareProducerIdRotation).
        var store = new MemoryStore();
        var near = new TxnSnapshot(7, -1, short.MaxValue - 1, -1, 10_000, TxnState.CompleteCommit, [], -1, _clock.NowMs);
        await using var c2 = NewCoordinator(store, [new("e", near)]);
        var rotated = await c2.InitProducerIdAsync("e", 10_000, -1, -1);
        Assert.Equal(0, rotated.Error);
        Assert.NotEqual(7, rotated.ProducerId);
        Assert.Equal(0, rotated.ProducerEpoch);
    }

    [Fact]
    public async Task A_state_change_is_answered_only_once_durable_and_a_failed_write_changes_nothing()
    {
        await using var c = NewCoordinator();
        var init = await c.InitProducerIdAsync("t", 10_000, -1, -1);
        _store.Gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var add = c.AddPartitionsAsync("t", init.ProducerId, 0, [Tp("x", 0)]);
        await Task.Delay(50);
        Assert.False(add.IsCompleted);
        Assert.Equal(TxnState.Empty, c.Find("t")!.Current.State);
        // Meanwhile any other change is CONCURRENT_TRANSACTIONS.
        Assert.Equal(ConcurrentTransactions, await c.EndTxnAsync("t", init.ProducerId, 0, commit: true));
        Assert.Equal(ConcurrentTransactions, (await c.InitProducerIdAsync("t", 10_000, -1, -1)).Error);
        _store.Gate.SetResult();
        Assert.Equal(0, await add);
        Assert.Equal(TxnState.Ongoing, c.Find("t")!.Current.State);
        _store.Gate = null;

        _store.FailNext = true;
        Assert.Equal(CoordinatorNotAvailable, await c.EndTxnAsync("t", init.ProducerId, 0, commit: true));
        Assert.Equal(TxnState.Ongoing, c.Find("t")!.Current.State);
        Assert.Empty(_store.Markers);
        Assert.Equal(0, await c.EndTxnAsync("t", init.ProducerId, 0, commit: true));
        await c.WhenIdleAsync();
        Assert.Single(_store.Markers);
    }

    [Fact]
    public async Task Replayed_prepared_transactions_complete_and_ongoing_ones_keep_their_start()
    {
        var prepared = new TxnSnapshot(5, -1, 3, -1, 10_000, TxnState.PrepareCommit, [Tp("a", 0), Tp("b", 1)], _clock.NowMs - 5, _clock.NowMs);
        var ongoing = new TxnSnapshot(6, -1, 0, -1, 10_000, TxnState.Ongoing, [Tp("a", 2)], _clock.NowMs, _clock.NowMs);
        // Through the bytes, as a restart reads them.
        var replayStore = new MemoryStore();
        await replayStore.AppendStateAsync("p", TransactionLog.StateBatch("p", prepared with { State = TxnState.Ongoing }, 1));
        await replayStore.AppendStateAsync("p", TransactionLog.StateBatch("p", prepared, 2));
        await replayStore.AppendStateAsync("o", TransactionLog.StateBatch("o", ongoing, 3));
        var replayed = replayStore.Replay();

        await using var c = NewCoordinator(load: replayed);
        await c.WhenIdleAsync();
        Assert.Equal(2, _store.Markers.Count);
        Assert.All(_store.Markers, m => Assert.True(TransactionLog.ReadMarker(m.Batch)));
        Assert.All(_store.Markers, m => Assert.Equal(3, RecordBatch.ProducerEpoch(m.Batch)));
        Assert.Equal(TxnState.CompleteCommit, c.Find("p")!.Current.State);
        Assert.Equal(TxnState.Ongoing, c.Find("o")!.Current.State);
        _clock.Advance(10_001);
        Assert.Equal(1, c.AbortTimedOutTransactions());
        await c.WhenIdleAsync();
        Assert.Equal(TxnState.CompleteAbort, c.Find("o")!.Current.State);
        Assert.Equal(1, c.Find("o")!.Current.ProducerEpoch);
    }

    // ---- Bytes, against Kafka's layouts ----------------------------------------------------------------------

    [Fact]
    public void Partition_of_a_transactional_id_is_Kafkas_abs_of_Java_hashCode()
    {
        // Java: "hello".hashCode() == 99162322; "polygenelubricants".hashCode() == Integer.MIN_VALUE (Utils.abs -> 0).
        Assert.Equal(99162322 % 50, TransactionLog.PartitionFor("hello", 50));
        Assert.Equal(0, TransactionLog.PartitionFor("polygenelubricants", 50));
        Assert.True(JavaHash("my-txn") < 0);
        Assert.Equal(-JavaHash("my-txn") % 50, TransactionLog.PartitionFor("my-txn", 50));
        Assert.Equal(0, TransactionLog.PartitionFor("", 50));
    }

    static int JavaHash(string s)
    {
        int h = 0;
        foreach (char ch in s)
            h = unchecked(h * 31 + ch);
        return h;
    }

    [Fact]
    public void Key_and_value_bytes_are_Kafkas_version_0_layout()
    {
        byte[] key = TransactionLog.KeyBytes("tx");
        Assert.Equal(new byte[] { 0, 0, 0, 2, (byte)'t', (byte)'x' }, key);

        var state = new TxnSnapshot(0x0102030405060708, -1, 0x0A0B, -1, 60000, TxnState.Ongoing,
            [Tp("b", 2), Tp("a", 1), Tp("b", 0)], 1111, 2222);
        byte[] value = TransactionLog.ValueBytes(state);
        var expected = new List<byte>();
        void I16(short v) { var b = new byte[2]; BinaryPrimitives.WriteInt16BigEndian(b, v); expected.AddRange(b); }
        void I32(int v) { var b = new byte[4]; BinaryPrimitives.WriteInt32BigEndian(b, v); expected.AddRange(b); }
        void I64(long v) { var b = new byte[8]; BinaryPrimitives.WriteInt64BigEndian(b, v); expected.AddRange(b); }
        void Str(string v) { I16((short)v.Length); expected.AddRange(System.Text.Encoding.UTF8.GetBytes(v)); }
        I16(0); // value version
        I64(0x0102030405060708); // ProducerId
        I16(0x0A0B); // ProducerEpoch
        I32(60000); // TransactionTimeoutMs
        expected.Add(1); // TransactionStatus: Ongoing
        I32(2); // TransactionPartitions: topics a, b
        Str("a"); I32(1); I32(1);
        Str("b"); I32(2); I32(0); I32(2);
        I64(2222); // TransactionLastUpdateTimestampMs
        I64(1111); // TransactionStartTimestampMs
        Assert.Equal(expected.ToArray(), value);

        // Read back; an Empty state has null partitions (-1), as Kafka writes it.
        var read = TransactionLog.ReadValue(value)!;
        Assert.Equal(state with { Partitions = read.Partitions }, read);
        Assert.Equal(new[] { Tp("a", 1), Tp("b", 0), Tp("b", 2) }, read.Partitions);
        byte[] empty = TransactionLog.ValueBytes(state with { State = TxnState.Empty, Partitions = [] });
        Assert.Equal(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF }, empty.AsSpan(2 + 8 + 2 + 4 + 1, 4).ToArray());
        Assert.Equal(TxnState.Empty, TransactionLog.ReadValue(empty)!.State);
    }

    [Fact]
    public void A_version_1_value_with_tagged_fields_is_read()
    {
        var bytes = new List<byte> { 0, 1 }; // value version 1 (flexible)
        var b8 = new byte[8];
        BinaryPrimitives.WriteInt64BigEndian(b8, 42);
        bytes.AddRange(b8); // ProducerId
        bytes.AddRange([0, 5]); // ProducerEpoch
        bytes.AddRange([0, 0, 0x27, 0x10]); // timeout 10000
        bytes.Add(4); // CompleteCommit
        bytes.Add(1); // compact array: 0 topics (length + 1)
        BinaryPrimitives.WriteInt64BigEndian(b8, 7);
        bytes.AddRange(b8); // last update
        bytes.AddRange(b8); // start
        // Tagged fields: tag 0 PreviousProducerId = 41 (8 bytes), tag 2 ClientTransactionVersion = 2.
        bytes.Add(2);
        bytes.Add(0); bytes.Add(8);
        BinaryPrimitives.WriteInt64BigEndian(b8, 41);
        bytes.AddRange(b8);
        bytes.Add(2); bytes.Add(2); bytes.AddRange([0, 2]);
        var s = TransactionLog.ReadValue(bytes.ToArray())!;
        Assert.Equal(42, s.ProducerId);
        Assert.Equal(41, s.PreviousProducerId);
        Assert.Equal(5, s.ProducerEpoch);
        Assert.Equal(TxnState.CompleteCommit, s.State);
        Assert.Null(TransactionLog.ReadValue([0, 2, 0]));
        Assert.Null(TransactionLog.ReadValue([0, 0, 1]));
    }

    [Fact]
    public void A_marker_is_a_control_batch_with_Kafkas_EndTransactionMarker()
    {
        byte[] batch = TransactionLog.MarkerBatch(77, 3, commit: true, coordinatorEpoch: 9, timestampMs: 1234);
        Assert.True(RecordBatch.IsCrcValid(batch));
        Assert.Equal(RecordBatch.TotalSize(batch), batch.Length);
        Assert.Equal(0x30, RecordBatch.Attributes(batch)); // control | transactional, no compression
        Assert.Equal(77, RecordBatch.ProducerId(batch));
        Assert.Equal(3, RecordBatch.ProducerEpoch(batch));
        Assert.Equal(-1, RecordBatch.BaseSequence(batch));
        Assert.Equal(1, RecordBatch.RecordsCount(batch));
        Assert.Equal(0, RecordBatch.LastOffsetDelta(batch));
        Assert.Equal(1234, RecordBatch.BaseTimestamp(batch));
        var cursor = RecordCursor.ForBatch(batch);
        Assert.True(cursor.MoveNext());
        Assert.Equal(new byte[] { 0, 0, 0, 1 }, cursor.Key.ToArray()); // version 0, COMMIT
        Assert.Equal(new byte[] { 0, 0, 0, 0, 0, 9 }, cursor.Value.ToArray()); // version 0, coordinator epoch
        Assert.False(cursor.MoveNext());
        Assert.True(cursor.IsAtEnd);
        byte[] abort = TransactionLog.MarkerBatch(77, 3, commit: false, coordinatorEpoch: 0, timestampMs: 1234);
        var ac = RecordCursor.ForBatch(abort);
        Assert.True(ac.MoveNext());
        Assert.Equal(new byte[] { 0, 0, 0, 0 }, ac.Key.ToArray());
    }
}
