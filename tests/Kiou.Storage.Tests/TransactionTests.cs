using System.Buffers.Binary;
using Kiou.Protocol.Records;
using Kiou.Storage.Devices;
using Kiou.Storage.Producers;
using Kiou.Storage.Tests.Support;
using Kiou.Testing;

namespace Kiou.Storage.Tests;

/// <summary>
/// The partition side of transactions: transactional batches and COMMIT/ABORT markers in the producer state, the last
/// stable offset, the per-segment aborted-transaction index (.txnindex) and its rebuild, and read_committed reads.
/// </summary>
public sealed class TransactionTests : IDisposable
{
    private const int EIO = -5;
    private readonly LogFixture _f = new();

    public void Dispose() => _f.Dispose();

    internal static byte[] Txn(int count, long producerId, short epoch, int baseSequence, int valueBytes = 8)
    {
        var records = Enumerable.Range(0, count).Select(i => new TestRecord(i, null, new byte[valueBytes])).ToList();
        return BatchBuilder.Build(records, attributes: 0x10, producerId: producerId, producerEpoch: epoch, baseSequence: baseSequence);
    }

    /// <summary>Kafka's EndTransactionMarker in a control batch, as the coordinator writes it.</summary>
    internal static byte[] Marker(long producerId, short epoch, bool commit, int coordinatorEpoch = 0)
    {
        byte[] key = new byte[4];
        BinaryPrimitives.WriteInt16BigEndian(key.AsSpan(2), commit ? EndTransactionMarker.Commit : EndTransactionMarker.Abort);
        byte[] value = new byte[6];
        BinaryPrimitives.WriteInt32BigEndian(value.AsSpan(2), coordinatorEpoch);
        return BatchBuilder.Build([new TestRecord(0, key, value)], attributes: EndTransactionMarker.BatchAttributes, producerId: producerId, producerEpoch: epoch, baseSequence: -1);
    }

    private static async Task<long> Coordinator(PartitionLog log, byte[] marker) =>
        (await log.AppendAsync(marker, waitDurable: true, AppendOrigin.Coordinator)).BaseOffset;

    [Fact]
    public async Task An_open_transaction_holds_the_last_stable_offset_until_its_marker_is_published()
    {
        await using PartitionLog log = _f.Open();
        await log.AppendAsync(BatchBuilder.Simple(2), false); // 0..1
        Assert.Equal(2, log.LastStableOffset);

        Assert.Equal(2, (await log.AppendAsync(Txn(3, 7, 0, 0), false)).BaseOffset); // 2..4
        await log.AppendAsync(BatchBuilder.Simple(1), false); // 5
        Assert.Equal(6, log.HighWatermark);
        Assert.Equal(2, log.LastStableOffset);
        Assert.Equal(1, log.OngoingTransactionCount);

        Assert.Equal(6, (await log.AppendAsync(Txn(2, 7, 0, 3), false)).BaseOffset); // 6..7, same transaction
        Assert.Equal(2, log.LastStableOffset);

        Assert.Equal(8, await Coordinator(log, Marker(7, 0, commit: true)));
        Assert.Equal(9, log.HighWatermark);
        Assert.Equal(9, log.LastStableOffset);
        Assert.Equal(0, log.OngoingTransactionCount);
        Assert.Null(log.CollectAbortedTransactions(0, 9)); // a commit is not indexed

        // The producer's sequence goes on after the marker; its next transaction starts at its first batch.
        Assert.Equal(9, (await log.AppendAsync(Txn(1, 7, 0, 5), false)).BaseOffset);
        Assert.Equal(9, log.LastStableOffset);
        log.CheckInvariants();
    }

    [Fact]
    public async Task An_abort_is_indexed_with_Kafkas_last_stable_offset_and_collected_for_overlapping_ranges()
    {
        await using PartitionLog log = _f.Open();
        await log.AppendAsync(Txn(2, 7, 0, 0), false); // 0..1 producer 7
        await log.AppendAsync(Txn(2, 8, 0, 0), false); // 2..3 producer 8
        Assert.Equal(0, log.LastStableOffset);

        Assert.Equal(4, await Coordinator(log, Marker(7, 0, commit: false)));
        // Producer 8's transaction is still open: the entry's last stable offset is its first offset.
        Assert.Equal(2, log.LastStableOffset);
        var indexes = log.TxnIndexes();
        Assert.Equal([new AbortedTxn(7, 0, 4, 2)], indexes.Single().Aborted);

        Assert.Equal(5, await Coordinator(log, Marker(8, 0, commit: false)));
        Assert.Equal(6, log.LastStableOffset);
        Assert.Equal([new AbortedTxn(7, 0, 4, 2), new AbortedTxn(8, 2, 5, 6)], log.TxnIndexes().Single().Aborted);

        Assert.Equal([new AbortedTxn(7, 0, 4, 2), new AbortedTxn(8, 2, 5, 6)], log.CollectAbortedTransactions(0, 6));
        Assert.Equal([new AbortedTxn(8, 2, 5, 6)], log.CollectAbortedTransactions(5, 6)); // 7's marker is below 5
        Assert.Equal([new AbortedTxn(7, 0, 4, 2)], log.CollectAbortedTransactions(0, 1)); // 8's starts at 2
        Assert.Null(log.CollectAbortedTransactions(6, 10));
    }

    [Fact]
    public async Task Markers_are_checked_as_Kafka_checks_them()
    {
        await using PartitionLog log = _f.Open();

        // A client may not write control batches (LogValidator), with or without a transaction.
        var client = await Assert.ThrowsAsync<ProducerStateException>(async () => await log.AppendAsync(Marker(7, 0, commit: true), false));
        Assert.Equal(87, client.ErrorCode);

        await log.AppendAsync(Txn(1, 7, 1, 0), false);

        // A non-transactional batch while the transaction is open.
        var mixed = await Assert.ThrowsAsync<ProducerStateException>(async () => await log.AppendAsync(
            BatchBuilder.Build([new TestRecord(0, null, [1])], producerId: 7, producerEpoch: 1, baseSequence: 1), false));
        Assert.Equal(48, mixed.ErrorCode);

        // A marker of an older producer epoch (fenced producer), then an older coordinator epoch (zombie coordinator).
        var fenced = await Assert.ThrowsAsync<ProducerStateException>(async () => await Coordinator(log, Marker(7, 0, commit: true, coordinatorEpoch: 5)));
        Assert.Equal(47, fenced.ErrorCode);
        Assert.Equal(1, await Coordinator(log, Marker(7, 1, commit: false, coordinatorEpoch: 5)));
        await log.AppendAsync(Txn(1, 7, 1, 1), false);
        var zombie = await Assert.ThrowsAsync<ProducerStateException>(async () => await Coordinator(log, Marker(7, 1, commit: true, coordinatorEpoch: 4)));
        Assert.Equal(52, zombie.ErrorCode);
        Assert.Equal(2, log.LastStableOffset);

        // A marker for a producer without an open transaction here is accepted and indexes nothing.
        Assert.Equal(3, await Coordinator(log, Marker(7, 1, commit: true, coordinatorEpoch: 5)));
        Assert.Equal(4, await Coordinator(log, Marker(99, 0, commit: false)));
        Assert.Equal(5, log.LastStableOffset);
        Assert.Single(log.TxnIndexes().Single().Aborted);

        // A control batch that is not a marker, even from the coordinator.
        byte[] notMarker = BatchBuilder.Build([new TestRecord(0, [0, 0, 0, 9], [0, 0, 0, 0, 0, 0])], attributes: 0x30, producerId: 7, producerEpoch: 1, baseSequence: -1);
        Assert.Equal(87, (await Assert.ThrowsAsync<ProducerStateException>(async () => await Coordinator(log, notMarker))).ErrorCode);
        log.CheckInvariants();
    }

    [Fact]
    public async Task Read_committed_reads_stop_at_the_last_stable_offset_on_both_read_paths()
    {
        await using PartitionLog log = _f.Open(new LogConfig { IndexIntervalBytes = 100 });
        for (int i = 0; i < 5; i++)
        {
            await log.AppendAsync(BatchBuilder.Simple(2, valueBytes: 40), false); // 0..9
        }

        await log.AppendAsync(Txn(2, 7, 0, 0, valueBytes: 40), false); // 10..11
        for (int i = 0; i < 5; i++)
        {
            await log.AppendAsync(BatchBuilder.Simple(2, valueBytes: 40), false); // 12..21
        }

        Assert.Equal(10, log.LastStableOffset);
        foreach (bool zeroCopy in new[] { false, true })
        {
            using ReadResult r = log.Read(0, 1 << 20, true, zeroCopy, maxOffset: log.LastStableOffset);
            Assert.Equal(10, NextOffsetAfter(r));
            using ReadResult fromMiddle = log.Read(4, 1 << 20, true, zeroCopy, maxOffset: log.LastStableOffset);
            Assert.Equal(10, NextOffsetAfter(fromMiddle));
            using ReadResult atBound = log.Read(10, 1 << 20, true, zeroCopy, maxOffset: log.LastStableOffset);
            Assert.Equal(ReadError.None, atBound.Error);
            Assert.Equal(0, atBound.Records.Length);
            using ReadResult all = log.Read(0, 1 << 20, true, zeroCopy);
            Assert.Equal(22, NextOffsetAfter(all));
        }

        Assert.Equal(0, log.BytesAvailable(10, maxOffset: 10));
        Assert.True(log.BytesAvailable(4, maxOffset: 10) > 0);

        await Coordinator(log, Marker(7, 0, commit: true));
        using ReadResult after = log.Read(0, 1 << 20, true, false, maxOffset: log.LastStableOffset);
        Assert.Equal(23, NextOffsetAfter(after));
    }

    private static long NextOffsetAfter(ReadResult r)
    {
        Assert.Equal(ReadError.None, r.Error);
        ReadOnlySpan<byte> span = r.FileRecords is { } file ? file.Memory.Span : r.Records.Span;
        long next = -1;
        while (RecordBatch.TryReadHeader(span, out BatchHeader h) && h.TotalSize <= span.Length)
        {
            next = h.NextOffset;
            span = span[h.TotalSize..];
        }

        Assert.Equal(0, span.Length);
        return next;
    }

    [Fact]
    public async Task A_failed_marker_write_reopens_the_transaction_and_drops_its_index_entry()
    {
        await using PartitionLog log = _f.Open();
        await log.AppendAsync(Txn(2, 7, 0, 0), false); // 0..1
        _f.Device.WriteFault = _ => EIO;
        await Assert.ThrowsAsync<StorageException>(async () => await Coordinator(log, Marker(7, 0, commit: false)));
        _f.Device.WriteFault = null;
        Assert.Equal(0, log.LastStableOffset);

        // The next append resumes (truncates, rebuilds): the abort is gone with its bytes, the transaction is open.
        await log.AppendAsync(BatchBuilder.Simple(1), false); // 2
        Assert.Empty(log.TxnIndexes().Single().Aborted);
        Assert.Equal(1, log.OngoingTransactionCount);
        Assert.Equal(0, log.LastStableOffset);

        Assert.Equal(3, await Coordinator(log, Marker(7, 0, commit: false)));
        Assert.Equal([new AbortedTxn(7, 0, 3, 4)], log.TxnIndexes().Single().Aborted);
        Assert.Equal(4, log.LastStableOffset);
        log.CheckInvariants();
    }

    /// <summary>Two producers, transactions across several segments, some aborted; producer 8's last one left open.</summary>
    private static async Task WriteAcrossSegments(PartitionLog log)
    {
        int seq7 = 0;
        int seq8 = 0;
        for (int round = 0; round < 6; round++)
        {
            await log.AppendAsync(Txn(2, 7, 0, seq7, valueBytes: 60), false);
            seq7 += 2;
            await log.AppendAsync(Txn(2, 8, 0, seq8, valueBytes: 60), false);
            seq8 += 2;
            await log.AppendAsync(BatchBuilder.Simple(1, valueBytes: 60), false);
            await log.AppendAsync(Txn(1, 7, 0, seq7, valueBytes: 60), false);
            seq7++;
            await Coordinator(log, Marker(7, 0, commit: round % 2 == 0));
            await Coordinator(log, Marker(8, 0, commit: round % 3 == 0));
        }

        // Left open: producer 8's last transaction.
        await log.AppendAsync(Txn(1, 8, 0, seq8, valueBytes: 60), false);
    }

    [Theory]
    [InlineData("clean")]
    [InlineData("unclean")]
    [InlineData("unclean, no snapshot")]
    [InlineData("txnindex damaged")]
    [InlineData("txnindex deleted with the index")]
    public async Task The_transaction_state_and_the_aborted_index_survive_a_reopen(string how)
    {
        var config = new LogConfig { SegmentBytes = 1200 };
        IReadOnlyList<(long BaseOffset, AbortedTxn[] Aborted)> before;
        long lso;
        long hw;
        await using (PartitionLog log = _f.Open(config))
        {
            await WriteAcrossSegments(log);
            await log.WhenRollSnapshotsWrittenAsync().WaitAsync(TimeSpan.FromSeconds(10));
            before = log.TxnIndexes();
            lso = log.LastStableOffset;
            hw = log.HighWatermark;
            Assert.True(before.Count >= 3, $"{before.Count} segments");
            Assert.True(before.Sum(s => s.Aborted.Length) >= 4);
            Assert.True(lso < hw);
            await log.WhenBackgroundIdleAsync();
        }

        var sealedWithAborts = before.Take(before.Count - 1).Where(s => s.Aborted.Length > 0).Select(s => s.BaseOffset).ToList();
        Assert.NotEmpty(sealedWithAborts);
        foreach (long b in sealedWithAborts)
        {
            Assert.Equal(before.Single(s => s.BaseOffset == b).Aborted.Length * TransactionIndex.EntrySize, new FileInfo(_f.SegmentPath(b, ".txnindex")).Length);
        }

        long damaged = sealedWithAborts[0];
        byte[] original = File.ReadAllBytes(_f.SegmentPath(damaged, ".txnindex"));
        byte[] logBytes = File.ReadAllBytes(_f.SegmentPath(damaged));
        switch (how)
        {
            case "unclean":
                File.Delete(Path.Combine(_f.PartitionDir, ".kiou-clean-shutdown"));
                foreach (string s in Directory.GetFiles(_f.PartitionDir, "*.snapshot").Order().TakeLast(1))
                {
                    File.Delete(s); // the close snapshot: the replay starts at the last roll
                }

                break;
            case "unclean, no snapshot":
                File.Delete(Path.Combine(_f.PartitionDir, ".kiou-clean-shutdown"));
                File.Delete(Path.Combine(_f.PartitionDir, ".kiou-recovery-point"));
                foreach (string s in Directory.GetFiles(_f.PartitionDir, "*.snapshot"))
                {
                    File.Delete(s);
                }

                File.Delete(_f.SegmentPath(damaged, ".index")); // rescanned: its .txnindex is rebuilt, not trusted
                File.WriteAllBytes(_f.SegmentPath(damaged, ".txnindex"), new byte[TransactionIndex.EntrySize]);
                break;
            case "txnindex damaged":
                File.WriteAllBytes(_f.SegmentPath(damaged, ".txnindex"), original.AsSpan(0, original.Length - 3).ToArray());
                break;
            case "txnindex deleted with the index":
                File.Delete(_f.SegmentPath(damaged, ".txnindex"));
                File.Delete(_f.SegmentPath(damaged, ".index"));
                break;
        }

        await using (PartitionLog log = _f.Open(config))
        {
            Assert.Equal(hw, log.HighWatermark);
            Assert.Equal(lso, log.LastStableOffset);

            // Which rebuild ran: none after a clean stop, the producer-state replay for the unflushed tail, the walk
            // from the log start for a segment below the replay's start.
            bool walked = _f.Lines.Any(l => l.Contains("rebuilding the aborted-transaction indexes from offset", StringComparison.Ordinal));
            Assert.Equal(how is not ("clean" or "unclean"), walked);
            Assert.Equal(1, log.OngoingTransactionCount);
            var after = log.TxnIndexes();
            Assert.Equal(before.Select(s => s.BaseOffset), after.Select(s => s.BaseOffset));
            for (int i = 0; i < before.Count; i++)
            {
                Assert.Equal(before[i].Aborted, after[i].Aborted);
            }

            Assert.Equal(original, File.ReadAllBytes(_f.SegmentPath(damaged, ".txnindex")));
            Assert.Equal(logBytes, File.ReadAllBytes(_f.SegmentPath(damaged))); // the log is never touched
            log.CheckInvariants();

            // The open transaction still closes, and the LSO reaches the end.
            await Coordinator(log, Marker(8, 0, commit: false));
            Assert.Equal(log.HighWatermark, log.LastStableOffset);
        }

        if (how == "clean")
        {
            Assert.Empty(_f.Warnings);
        }
    }

    [Fact]
    public async Task The_snapshot_keeps_the_open_transactions_first_offset_in_Kafkas_layout()
    {
        await using (PartitionLog log = _f.Open())
        {
            await log.AppendAsync(BatchBuilder.Simple(3), false); // 0..2
            await log.AppendAsync(Txn(2, 7, 0, 0), false); // 3..4
        }

        string snapshot = Directory.GetFiles(_f.PartitionDir, "*.snapshot").Single();
        byte[] bytes = File.ReadAllBytes(snapshot);
        // Header: version int16, crc uint32, count int32; entry: pid, epoch, last seq, last offset, delta, timestamp, coordinator epoch, txn first offset.
        Assert.Equal(1, BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(6)));
        Assert.Equal(7, BinaryPrimitives.ReadInt64BigEndian(bytes.AsSpan(10)));
        Assert.Equal(3, BinaryPrimitives.ReadInt64BigEndian(bytes.AsSpan(10 + 38)));

        await using (PartitionLog log = _f.Open())
        {
            Assert.Equal(3, log.LastStableOffset);
            Assert.DoesNotContain(_f.Lines, l => l.Contains("skips offsets", StringComparison.Ordinal));
        }
    }

    [Fact]
    public async Task Expiry_keeps_a_producer_with_an_open_transaction_and_retention_deletes_txnindex_files()
    {
        var config = new LogConfig { SegmentBytes = 600, ProducerIdExpirationMs = 1000, RetentionMs = 10_000 };
        await using PartitionLog log = _f.Open(config);
        await log.AppendAsync(Txn(1, 7, 0, 0), false);
        await Coordinator(log, Marker(7, 0, commit: false));
        await log.AppendAsync(Txn(1, 8, 0, 0), false);
        for (int i = 0; i < 20; i++)
        {
            await log.AppendAsync(BatchBuilder.Simple(1, baseTimestamp: _f.Time.NowMs), false);
        }

        await log.FlushAsync();
        await log.WhenBackgroundIdleAsync();
        long first = log.SegmentBaseOffsets[0];
        Assert.True(log.SegmentCount > 2);
        Assert.True(File.Exists(_f.SegmentPath(first, ".txnindex")));

        _f.Time.Advance(1_000_000);
        Assert.Equal(1, log.RemoveExpiredProducers(_f.Time.NowMs)); // 7 goes, 8 has its transaction open
        Assert.Equal(2, log.LastStableOffset);
        Assert.Equal(1, log.OngoingTransactionCount);

        log.EnforceRetention(_f.Time.NowMs);
        Assert.NotEqual(first, log.SegmentBaseOffsets[0]);
        Assert.False(File.Exists(_f.SegmentPath(first, ".txnindex")));
        Assert.False(File.Exists(_f.SegmentPath(first)));
    }

    [Fact]
    public void A_damaged_txnindex_file_does_not_parse()
    {
        var index = new TransactionIndex();
        index.Append(new AbortedTxn(7, 10, 12, 13));
        index.Append(new AbortedTxn(8, 11, 14, 15));
        byte[] bytes = index.Serialize();
        Assert.Equal(2 * TransactionIndex.EntrySize, bytes.Length);
        Assert.NotNull(TransactionIndex.Parse(bytes, 10, 15, out _));
        Assert.Null(TransactionIndex.Parse(bytes, 10, 14, out _)); // an entry past the segment's end
        Assert.Null(TransactionIndex.Parse(bytes.AsSpan(0, 40), 10, 15, out _));
        byte[] swapped = [.. bytes.AsSpan(34), .. bytes.AsSpan(0, 34)];
        Assert.Null(TransactionIndex.Parse(swapped, 10, 15, out _));
        bytes[1] = 1;
        Assert.Null(TransactionIndex.Parse(bytes, 10, 15, out string problem));
        Assert.Contains("version", problem, StringComparison.Ordinal);
    }
}

/// <summary>
/// Random transactional traffic of three producers against a model of Kafka's rules, with clean and unclean reopens
/// that delete or damage the derived files (snapshots, .index, .txnindex): the LSO and every aborted transaction, as
/// collected for any range, match the model throughout.
/// </summary>
public sealed class TransactionModelTests : IDisposable
{
    private readonly LogFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task Random_transactions_match_the_model_across_reopens(int seed)
    {
        var rng = new Random(seed);
        var config = new LogConfig { SegmentBytes = 700 };
        var open = new Dictionary<long, long>(); // producer -> first offset of its open transaction
        var sequence = new Dictionary<long, int> { [1] = 0, [2] = 0, [3] = 0 };
        var aborted = new List<AbortedTxn>();
        long end = 0;
        PartitionLog log = _f.Open(config);
        try
        {
            for (int step = 0; step < 250; step++)
            {
                int roll = rng.Next(100);
                long producer = rng.Next(1, 4);
                if (roll < 5)
                {
                    // A failed write (EIO) of a transactional batch or a marker: nothing of it stays, and the next append
                    // resumes with the state rebuilt (the state and the index took it at reservation).
                    byte[] batch = rng.Next(2) == 0 ? TransactionTests.Txn(1, producer, 0, sequence[producer]) : TransactionTests.Marker(producer, 0, commit: false);
                    _f.Device.WriteFault = _ => -5;
                    await Assert.ThrowsAsync<StorageException>(async () => await log.AppendAsync(batch, true, AppendOrigin.Coordinator));
                    _f.Device.WriteFault = null;
                }
                else if (roll < 25)
                {
                    int count = rng.Next(1, 4);
                    Assert.Equal(end, (await log.AppendAsync(BatchBuilder.Simple(count, valueBytes: 20), false)).BaseOffset);
                    end += count;
                }
                else if (roll < 65)
                {
                    int count = rng.Next(1, 3);
                    Assert.Equal(end, (await log.AppendAsync(TransactionTests.Txn(count, producer, 0, sequence[producer], valueBytes: 20), false)).BaseOffset);
                    sequence[producer] += count;
                    open.TryAdd(producer, end);
                    end += count;
                }
                else if (roll < 95)
                {
                    bool commit = rng.Next(2) == 0;
                    Assert.Equal(end, (await log.AppendAsync(TransactionTests.Marker(producer, 0, commit), true, AppendOrigin.Coordinator)).BaseOffset);
                    if (open.Remove(producer, out long first) && !commit)
                    {
                        long lastStable = open.Count > 0 ? open.Values.Min() : end + 1;
                        aborted.Add(new AbortedTxn(producer, first, end, lastStable));
                    }

                    end += 1;
                }
                else
                {
                    await log.WhenRollSnapshotsWrittenAsync().WaitAsync(TimeSpan.FromSeconds(10));
                    await log.WhenBackgroundIdleAsync();
                    await log.DisposeAsync();
                    Damage(rng);
                    log = _f.Open(config);
                }

                long lso = open.Count > 0 ? open.Values.Min() : end;
                Assert.Equal(end, log.HighWatermark);
                Assert.Equal(lso, log.LastStableOffset);
                Assert.Equal(aborted, log.TxnIndexes().SelectMany(s => s.Aborted));
                long from = rng.NextInt64(0, end + 1);
                long to = rng.NextInt64(from, end + 2);
                var expected = aborted.Where(t => t.LastOffset >= from && t.FirstOffset < to).ToList();
                Assert.Equal(expected, log.CollectAbortedTransactions(from, to) ?? []);
            }

            log.CheckInvariants();
        }
        finally
        {
            await log.DisposeAsync();
        }
    }

    /// <summary>A stop as after a crash or with damaged derived files; never deletes the last usable snapshot.</summary>
    private void Damage(Random rng)
    {
        string dir = _f.PartitionDir;
        if (rng.Next(2) == 0)
        {
            return; // a clean stop
        }

        File.Delete(Path.Combine(dir, ".kiou-clean-shutdown"));
        string[] snapshots = Directory.GetFiles(dir, "*.snapshot").Order().ToArray();
        if (snapshots.Length >= 2 && rng.Next(2) == 0)
        {
            File.Delete(snapshots[^1]);
        }

        string[] txnIndexes = Directory.GetFiles(dir, "*.txnindex");
        if (txnIndexes.Length > 0 && rng.Next(2) == 0)
        {
            File.WriteAllBytes(txnIndexes[rng.Next(txnIndexes.Length)], [1, 2, 3, 4, 5]);
        }

        string[] indexes = Directory.GetFiles(dir, "*.index").Order().ToArray();
        if (indexes.Length > 1 && rng.Next(2) == 0)
        {
            File.Delete(indexes[rng.Next(indexes.Length - 1)]);
        }
    }
}

/// <summary>
/// Power cuts amid transactional traffic (<see cref="PowerLossLogDevice"/>: unflushed writes lost, torn or reordered):
/// after recovery, the open transactions, the LSO and every segment's aborted transactions are exactly what the
/// surviving log implies, and markers answered as durable survived.
/// </summary>
public sealed class TransactionPowerLossTests
{
    [Theory]
    [InlineData(1, false)]
    [InlineData(2, true)]
    [InlineData(3, false)]
    public async Task After_a_power_cut_the_transaction_state_is_what_the_surviving_log_implies(int seed, bool direct)
    {
        string dataDir = Path.Combine(Path.GetTempPath(), "kiou-storage-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dataDir);
        var rng = new Random(seed);
        var time = new ManualTimeProvider();
        var config = new LogConfig { SegmentBytes = rng.Next(1_000, 3_000), Flush = new FlushPolicy(FlushMode.Roll, long.MaxValue, long.MaxValue) };
        var lines = new System.Collections.Concurrent.ConcurrentQueue<string>();
        try
        {
            for (int cycle = 0; cycle < 4; cycle++)
            {
                using var device = new PowerLossLogDevice(new SyncLogDevice()) { DirectWrites = direct };
                PartitionLog log = PartitionLog.Open(dataDir, "t", 0, config, device, time, lines.Enqueue);
                device.Baseline(Path.Combine(dataDir, "t-0"));

                // The producers' sequences go on from what survived (unknown producers may start anywhere).
                var sequence = new Dictionary<long, int>();
                foreach (ProducerStateEntry e in log.ActiveProducers())
                {
                    sequence[e.ProducerId] = e.LastSequence + 1;
                }

                long durableMarker = -1;
                var pending = new List<Task<AppendResult>>();
                for (int op = 0; op < rng.Next(20, 120); op++)
                {
                    long producer = rng.Next(1, 4);
                    int roll = rng.Next(100);
                    if (roll < 20)
                    {
                        pending.Add(log.AppendAsync(BatchBuilder.Simple(rng.Next(1, 4), valueBytes: 30), false).AsTask());
                    }
                    else if (roll < 70)
                    {
                        int count = rng.Next(1, 4);
                        int seq = sequence.GetValueOrDefault(producer);
                        pending.Add(log.AppendAsync(TransactionTests.Txn(count, producer, 0, seq, valueBytes: 30), false).AsTask());
                        sequence[producer] = seq + count;
                    }
                    else
                    {
                        // The coordinator waits for its markers to be durable.
                        AppendResult r = await log.AppendAsync(TransactionTests.Marker(producer, 0, commit: rng.Next(2) == 0), true, AppendOrigin.Coordinator);
                        durableMarker = r.BaseOffset;
                    }
                }

                await Task.WhenAll(pending);
                device.CutPower();
                await device.WhenQuietAsync(TimeSpan.FromSeconds(10)); // the abandoned log starts no more background work
                await log.WhenBackgroundIdleAsync().WaitAsync(TimeSpan.FromSeconds(10));
                device.RestoreAfterPowerLoss(rng);

                using var after = new PowerLossLogDevice(new SyncLogDevice()) { DirectWrites = direct };
                PartitionLog reopened = PartitionLog.Open(dataDir, "t", 0, config, after, time, lines.Enqueue);
                try
                {
                    Assert.True(reopened.HighWatermark > durableMarker, $"cycle {cycle}: the durable marker at {durableMarker} was lost (log ends at {reopened.HighWatermark})");
                    var (open, aborted) = Model(LogFixture.ReadAll(reopened, reopened.LogStartOffset));
                    Assert.Equal(open.Count, reopened.OngoingTransactionCount);
                    Assert.Equal(open.Count > 0 ? open.Values.Min() : reopened.HighWatermark, reopened.LastStableOffset);
                    Assert.Equal(aborted, reopened.TxnIndexes().SelectMany(s => s.Aborted));
                    reopened.CheckInvariants();
                }
                catch (Exception e)
                {
                    throw new Xunit.Sdk.XunitException($"seed {seed} cycle {cycle}: {e.Message}\n{string.Join("\n", lines)}");
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

    /// <summary>Kafka's rules over stored batches: open transactions and the aborted ones with their last stable offsets.</summary>
    private static (Dictionary<long, long> Open, List<AbortedTxn> Aborted) Model(List<byte[]> batches)
    {
        var open = new Dictionary<long, long>();
        var aborted = new List<AbortedTxn>();
        foreach (byte[] b in batches)
        {
            long producer = RecordBatch.ProducerId(b);
            long offset = RecordBatch.BaseOffset(b);
            if (!RecordBatch.IsTransactional(b))
            {
                continue;
            }

            if (!RecordBatch.IsControl(b))
            {
                open.TryAdd(producer, offset);
                continue;
            }

            Assert.True(EndTransactionMarker.TryRead(b, out short type, out _));
            if (open.Remove(producer, out long first) && type == EndTransactionMarker.Abort)
            {
                aborted.Add(new AbortedTxn(producer, first, offset, open.Count > 0 ? open.Values.Min() : offset + 1));
            }
        }

        return (open, aborted);
    }
}
