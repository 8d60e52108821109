using System.Buffers.Binary;
using Kiou.Protocol.Records;
using Kiou.Storage.Producers;
using Kiou.Testing;

namespace Kiou.Storage.Tests;

/// <summary>
/// Producer snapshots on disk (Kafka's layout), their damage, and rebuilding the state from a snapshot plus the log
/// after it, ported from Kafka's ProducerStateManagerTest where a case applies.
/// </summary>
public sealed class ProducerSnapshotTests : IDisposable
{
    private const long ProducerId = 1;
    private const short Epoch = 0;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "kiou-producer-tests", Guid.NewGuid().ToString("N"));
    private readonly List<string> _warnings = new();
    private readonly long _now = 1_700_000_000_000;

    public ProducerSnapshotTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private ProducerStateManager NewManager(int retained = ProducerStateManager.DefaultSnapshotsRetained) => new(_dir, "t-0", _ => { }, _warnings.Add, snapshotsRetained: retained);

    private void Append(ProducerStateManager state, long producerId, short epoch, int sequence, long offset, bool transactional = false, long? timestamp = null)
    {
        var b = new ProducerBatch(producerId, epoch, sequence, 0, timestamp ?? _now, transactional);
        Assert.Equal(ProducerCheckOutcome.Append, state.Check(b).Outcome);
        state.Apply(b, offset);
        state.UpdateMapEndOffset(offset + 1);
    }

    private string[] SnapshotFiles() => Directory.GetFiles(_dir, "*.snapshot").Select(Path.GetFileName).Order().ToArray()!;

    private static void AssertSameEntry(ProducerStateEntry expected, ProducerStateEntry actual)
    {
        Assert.Equal(expected.ProducerId, actual.ProducerId);
        Assert.Equal(expected.ProducerEpoch, actual.ProducerEpoch);
        Assert.Equal(expected.CoordinatorEpoch, actual.CoordinatorEpoch);
        Assert.Equal(expected.LastTimestamp, actual.LastTimestamp);
        Assert.Equal(expected.CurrentTxnFirstOffset, actual.CurrentTxnFirstOffset);
        Assert.Equal(expected.BatchCount, actual.BatchCount);
        for (int i = 0; i < expected.BatchCount; i++)
        {
            Assert.Equal(expected.Batch(i), actual.Batch(i));
        }
    }

    [Fact]
    public void ReadWrite_RoundTrip()
    {
        // Kafka testReadWriteSnapshot.
        var withBatch = new ProducerStateEntry(1, 2, 3, -1, 100);
        withBatch.AddBatch(2, 1, 2, 2, -1);
        var withoutBatch = new ProducerStateEntry(11, 12, 13, 123456, -1);
        byte[] bytes = ProducerSnapshot.Serialize(new[] { withBatch, withoutBatch });
        List<ProducerStateEntry>? read = ProducerSnapshot.Decode(bytes, 1000, out string problem);
        Assert.True(read is not null, problem);
        Assert.Equal(2, read.Count);
        AssertSameEntry(withBatch, read[0]);
        AssertSameEntry(withoutBatch, read[1]);
        Assert.Equal(-1, read[1].LastDataOffset);
        Assert.Equal(ProducerSequence.None, read[1].LastSequence);
    }

    [Fact]
    public void Layout_IsKafkas()
    {
        var e = new ProducerStateEntry(0x0102030405060708, 0x0A0B, -1, 0x1122334455667788, -1);
        e.AddBatch(0x0A0B, 0x0C0D0E0F, 0x2021222324252627, 0x31323334, 0x1122334455667788);
        byte[] bytes = ProducerSnapshot.Serialize(new[] { e });
        byte[] expectedEntries = Convert.FromHexString(
            "00000001" // count
            + "0102030405060708" // producer id
            + "0A0B" // epoch
            + "0C0D0E0F" // last sequence
            + "2021222324252627" // last offset
            + "31323334" // offset delta
            + "1122334455667788" // timestamp
            + "FFFFFFFF" // coordinator epoch
            + "FFFFFFFFFFFFFFFF"); // current transaction first offset
        Assert.Equal(2 + 4 + expectedEntries.Length, bytes.Length);
        Assert.Equal(1, BinaryPrimitives.ReadInt16BigEndian(bytes));
        Assert.Equal(Crc32C.Compute(expectedEntries), BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(2)));
        Assert.Equal(expectedEntries, bytes[6..]);
    }

    [Fact]
    public void FileName_Is20DigitOffset()
    {
        Assert.Equal("00000000000000001234.snapshot", ProducerSnapshot.FileName(1234));
        Assert.True(ProducerSnapshot.TryParseFileName("00000000000000001234.snapshot", out long offset));
        Assert.Equal(1234, offset);
        Assert.False(ProducerSnapshot.TryParseFileName("0000000000000000123.snapshot", out _));
        Assert.False(ProducerSnapshot.TryParseFileName("-0000000000000000123.snapshot", out _));
        Assert.False(ProducerSnapshot.TryParseFileName("00000000000000001234.snapshot.tmp", out _));
    }

    [Theory]
    [InlineData(1)] // version
    [InlineData(3)] // CRC
    [InlineData(8)] // count
    [InlineData(20)] // an entry
    public void Decode_RefusesAFlippedByte(int position)
    {
        var e = new ProducerStateEntry(7, 1, -1, _now, -1);
        e.AddBatch(1, 4, 9, 0, _now);
        byte[] bytes = ProducerSnapshot.Serialize(new[] { e });
        bytes[position] ^= 0x40;
        Assert.Null(ProducerSnapshot.Decode(bytes, 100, out string problem));
        Assert.NotEmpty(problem);
    }

    [Fact]
    public void Decode_RefusesEntriesThatDoNotFitTheLog()
    {
        var e = new ProducerStateEntry(7, 1, -1, _now, -1);
        e.AddBatch(1, 4, 99, 3, _now);
        byte[] bytes = ProducerSnapshot.Serialize(new[] { e });
        Assert.NotNull(ProducerSnapshot.Decode(bytes, 100, out _));
        Assert.Null(ProducerSnapshot.Decode(bytes, 99, out string problem));
        Assert.Contains("does not fit", problem);
    }

    [Fact]
    public void TakeSnapshot_WritesOneFileAtTheMapEnd_AndSkipsIfUnchanged()
    {
        // Kafka testTakeSnapshot and testSkipSnapshotIfOffsetUnchanged.
        ProducerStateManager state = NewManager();
        Append(state, ProducerId, Epoch, 0, 0);
        Assert.NotNull(state.TakeSnapshot());
        Assert.Equal(new[] { "00000000000000000001.snapshot" }, SnapshotFiles());
        Assert.Null(state.TakeSnapshot());
        Assert.Equal(new[] { "00000000000000000001.snapshot" }, SnapshotFiles());
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp"));
    }

    [Fact]
    public void PreparedSnapshot_HoldsTheStateWhenPrepared_AndCountsOnlyOnceWritten()
    {
        ProducerStateManager state = NewManager();
        Append(state, ProducerId, Epoch, 0, 0);
        PendingSnapshot? pending = state.PrepareSnapshot();
        Assert.NotNull(pending);
        Append(state, ProducerId, Epoch, 1, 1); // the writer goes on while the file is written elsewhere
        Assert.Throws<InvalidOperationException>(() => state.CompleteSnapshot(pending));
        Assert.Empty(state.SnapshotOffsets);

        pending.Write();
        state.CompleteSnapshot(pending);
        Assert.Equal(new long[] { 1 }, state.SnapshotOffsets);
        List<ProducerStateEntry>? read = ProducerSnapshot.Read(pending.Path, 1, out string problem);
        Assert.True(read is not null, problem);
        Assert.Equal(0, Assert.Single(read).LastSequence);
        Assert.Equal(2, state.PrepareSnapshot()?.Offset);
    }

    [Fact]
    public void TakeSnapshot_KeepsTheMostRecent()
    {
        ProducerStateManager state = NewManager(retained: 2);
        for (int i = 0; i < 4; i++)
        {
            Append(state, ProducerId, Epoch, i, i);
            state.TakeSnapshot();
        }

        Assert.Equal(new[] { "00000000000000000003.snapshot", "00000000000000000004.snapshot" }, SnapshotFiles());
        Assert.Equal(new long[] { 3, 4 }, state.SnapshotOffsets);
    }

    [Fact]
    public void Reload_FromSnapshot_ThenReplay()
    {
        ProducerStateManager state = NewManager();
        Append(state, ProducerId, Epoch, 0, 0);
        Append(state, 2, Epoch, 0, 1);
        state.TakeSnapshot();

        ProducerStateManager reloaded = NewManager();
        reloaded.TruncateAndReload(0, 2, _now);
        Assert.Equal(2, reloaded.MapEndOffset);
        Assert.Equal(2, reloaded.ProducerCount);
        Assert.True(reloaded.TryGetProducer(ProducerId, out ProducerStateEntry? e1));
        Assert.Equal(0, e1!.LastSequence);
        Assert.Equal(0, e1.LastDataOffset);
        Assert.True(reloaded.TryGetProducer(2, out ProducerStateEntry? e2));
        Assert.Equal(1, e2!.LastDataOffset);

        // The retry of the snapshot's last batch is still a duplicate; the next sequence appends.
        Assert.Equal(ProducerCheckOutcome.Duplicate, reloaded.Check(new ProducerBatch(ProducerId, Epoch, 0, 0, _now, false)).Outcome);
        Assert.Equal(ProducerCheckOutcome.Append, reloaded.Check(new ProducerBatch(ProducerId, Epoch, 1, 0, _now, false)).Outcome);
    }

    [Fact]
    public void Reload_DropsProducersExpiredAtLoad()
    {
        // Kafka testRemoveExpiredPidsOnReload.
        ProducerStateManager state = NewManager();
        Append(state, ProducerId, Epoch, 0, 0, timestamp: 0);
        Append(state, ProducerId, Epoch, 1, 1, timestamp: 1);
        Append(state, 2, Epoch, 0, 2, timestamp: 1, transactional: true);
        state.TakeSnapshot();

        ProducerStateManager reloaded = NewManager();
        reloaded.TruncateAndReload(0, 3, ProducerStateManager.DefaultProducerIdExpirationMs + 1);
        Assert.False(reloaded.TryGetProducer(ProducerId, out _));
        Assert.True(reloaded.TryGetProducer(2, out _)); // an open transaction never expires
        Assert.Equal(ProducerCheckOutcome.Append, reloaded.Check(new ProducerBatch(ProducerId, Epoch, 2, 0, _now, false)).Outcome);
    }

    [Fact]
    public void TruncateAndReload_DeletesSnapshotsAtOrBelowLogStart_SetsAsideThoseBeyondTheEnd()
    {
        // Kafka testTruncateAndReloadRemovesOutOfRangeSnapshots; KIOU keeps the ones beyond the end in quarantine.
        ProducerStateManager state = NewManager(retained: 10);
        for (int i = 0; i < 5; i++)
        {
            Append(state, ProducerId, Epoch, i, i);
            state.TakeSnapshot();
        }

        state.TruncateAndReload(1, 3, _now);
        Assert.Equal(2, state.OldestSnapshotOffset);
        Assert.Equal(3, state.LatestSnapshotOffset);
        Assert.Equal(new[] { "00000000000000000002.snapshot", "00000000000000000003.snapshot" }, SnapshotFiles());
        Assert.True(File.Exists(Path.Combine(_dir, "quarantine", "00000000000000000004.snapshot")));
        Assert.True(File.Exists(Path.Combine(_dir, "quarantine", "00000000000000000005.snapshot")));
        Assert.Contains(_warnings, w => w.Contains("00000000000000000005.snapshot") && w.Contains("now ends at offset 3"));
        Assert.Equal(3, state.MapEndOffset);
        Assert.True(state.TryGetProducer(ProducerId, out ProducerStateEntry? e));
        Assert.Equal(2, e!.LastSequence);
    }

    public static TheoryData<string> Damages => new() { "empty", "truncated", "garbage", "huge-count" };

    [Theory]
    [MemberData(nameof(Damages))]
    public void DamagedSnapshot_IsSetAside_AndTheOlderOneUsed(string damage)
    {
        // Kafka testLoadFromEmptySnapshotFile, testLoadFromTruncatedSnapshotFile, testLoadFromCorruptSnapshotFile;
        // Kafka deletes the file, KIOU moves it to quarantine/.
        ProducerStateManager state = NewManager();
        Append(state, ProducerId, Epoch, 0, 0);
        state.TakeSnapshot();
        Append(state, ProducerId, Epoch, 1, 1);
        state.TakeSnapshot();
        string latest = Path.Combine(_dir, ProducerSnapshot.FileName(2));
        byte[] bytes = File.ReadAllBytes(latest);
        switch (damage)
        {
            case "empty":
                bytes = [];
                break;
            case "truncated":
                bytes = bytes[..(bytes.Length / 2)];
                break;
            case "garbage":
                Array.Clear(bytes, 0, Math.Min(37, bytes.Length));
                break;
            default:
                BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(6), int.MaxValue);
                break;
        }

        File.WriteAllBytes(latest, bytes);

        ProducerStateManager reloaded = NewManager();
        reloaded.TruncateAndReload(0, 20, _now);
        Assert.False(File.Exists(latest));
        string aside = Path.Combine(_dir, "quarantine", ProducerSnapshot.FileName(2));
        Assert.Equal(bytes, File.ReadAllBytes(aside));
        Assert.Contains(_warnings, w => w.Contains(aside) && w.Contains($"{bytes.Length} bytes"));
        Assert.Equal(1, reloaded.MapEndOffset);
        Assert.True(reloaded.TryGetProducer(ProducerId, out ProducerStateEntry? e));
        Assert.Equal(0, e!.LastDataOffset);
    }

    [Fact]
    public void TruncateFullyAndStartAt_ForgetsEverything()
    {
        // Kafka testTruncateFullyAndStartAt.
        ProducerStateManager state = NewManager();
        Append(state, ProducerId, Epoch, 0, 0);
        Append(state, ProducerId, Epoch, 1, 1);
        state.TakeSnapshot();
        Append(state, ProducerId, Epoch, 2, 2);
        state.TakeSnapshot();
        Assert.Equal(2, SnapshotFiles().Length);

        state.TruncateFullyAndStartAt(0);
        Assert.Empty(SnapshotFiles());
        Assert.Equal(0, state.ProducerCount);
        Append(state, ProducerId, Epoch, 0, 0);
        state.TakeSnapshot();
        Assert.Equal(new[] { "00000000000000000001.snapshot" }, SnapshotFiles());
    }

    [Fact]
    public void DeleteSnapshotsBefore()
    {
        // Kafka testDeleteSnapshotsBefore.
        ProducerStateManager state = NewManager();
        Append(state, ProducerId, Epoch, 0, 0);
        Append(state, ProducerId, Epoch, 1, 1);
        state.TakeSnapshot();
        Append(state, ProducerId, Epoch, 2, 2);
        state.TakeSnapshot();
        state.DeleteSnapshotsBefore(3);
        Assert.Equal(new[] { "00000000000000000003.snapshot" }, SnapshotFiles());
        state.DeleteSnapshotsBefore(4);
        Assert.Empty(SnapshotFiles());
    }

    /// <summary>
    /// Random appends from a few producers (epoch bumps, wrapping sequences, plain batches between them) with snapshots
    /// at "rolls"; then the log is cut at a random offset, and a new manager loads the latest usable snapshot and
    /// replays the stored batch headers after it. Its state must equal the one built directly from the kept batches,
    /// except that the duplicate window holds only what the snapshot kept (its last batch) plus what was replayed.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    public void SnapshotPlusReplay_AfterTruncation_EqualsTheStateBuiltDirectly(int seed)
    {
        var random = new Random(seed);
        var log = new List<(long BaseOffset, byte[] Header)>();
        var producers = new Dictionary<long, (short Epoch, int Next)>();
        ProducerStateManager live = NewManager(retained: 4);
        long end = 0;
        for (int i = 0; i < 300; i++)
        {
            int records = random.Next(1, 6);
            long pid = random.Next(4) - 1; // -1: a plain batch
            short epoch = -1;
            int sequence = -1;
            if (pid >= 0)
            {
                (short e, int next) = producers.TryGetValue(pid, out var p) ? p : ((short)0, random.Next(2) == 0 ? 0 : int.MaxValue - 7);
                if (random.Next(40) == 0)
                {
                    e++;
                    next = 0;
                }

                epoch = e;
                sequence = next;
                producers[pid] = (e, ProducerSequence.Increment(next, records));
            }

            byte[] batch = BatchBuilder.Build(
                Enumerable.Range(0, records).Select(r => new TestRecord(r, null, [1])).ToList(),
                baseTimestamp: _now + i,
                baseOffset: end,
                producerId: pid,
                producerEpoch: epoch,
                baseSequence: sequence);
            var header = ProducerBatch.FromHeader(batch);
            Assert.Equal(ProducerCheckOutcome.Append, live.Check(header).Outcome);
            live.Apply(header, end);
            log.Add((end, batch[..RecordBatch.HeaderSize]));
            end += records;
            live.UpdateMapEndOffset(end);
            if (random.Next(25) == 0)
            {
                live.TakeSnapshot(); // a roll
            }
        }

        long cut = log[random.Next(log.Count)].BaseOffset;
        var direct = NewManagerWithoutFiles();
        foreach ((long b, byte[] h) in log.Where(x => x.BaseOffset < cut))
        {
            direct.Replay(ProducerBatch.FromHeader(h), b);
        }

        ProducerStateManager reloaded = NewManager(retained: 4);
        reloaded.TruncateAndReload(0, cut, _now);
        long snapshotEnd = reloaded.MapEndOffset;
        Assert.True(snapshotEnd <= cut);
        foreach ((long b, byte[] h) in log.Where(x => x.BaseOffset >= snapshotEnd && x.BaseOffset < cut))
        {
            reloaded.Replay(ProducerBatch.FromHeader(h), b);
        }

        reloaded.UpdateMapEndOffset(cut);
        reloaded.CheckInvariants();
        Assert.Equal(direct.ProducerCount, reloaded.ProducerCount);
        foreach ((long pid, ProducerStateEntry d) in direct.ActiveProducers)
        {
            Assert.True(reloaded.TryGetProducer(pid, out ProducerStateEntry? r));
            Assert.Equal(d.ProducerEpoch, r!.ProducerEpoch);
            Assert.Equal(d.LastSequence, r.LastSequence);
            Assert.Equal(d.LastDataOffset, r.LastDataOffset);
            Assert.Equal(d.LastOffsetDelta, r.LastOffsetDelta);
            Assert.Equal(d.LastTimestamp, r.LastTimestamp);
            Assert.InRange(r.BatchCount, 1, d.BatchCount);
            int fromSnapshot = 0;
            for (int i = 0; i < r.BatchCount; i++)
            {
                BatchMetadata kept = r.Batch(r.BatchCount - 1 - i);
                Assert.Equal(d.Batch(d.BatchCount - 1 - i), kept);
                fromSnapshot += kept.LastOffset < snapshotEnd ? 1 : 0;
            }

            Assert.True(fromSnapshot <= 1, "only the snapshot's last batch comes from before the snapshot");

            // Every batch replayed after the snapshot is in the window (up to five).
            int replayed = log.Count(x => x.BaseOffset >= snapshotEnd && x.BaseOffset < cut && ProducerBatch.FromHeader(x.Header).ProducerId == pid
                && ProducerBatch.FromHeader(x.Header).ProducerEpoch == d.ProducerEpoch);
            Assert.True(r.BatchCount >= Math.Min(replayed, ProducerStateEntry.BatchesRetained));

            // And both answer the producer's next batch, and a retry of its last one, the same way.
            var next = new ProducerBatch(pid, d.ProducerEpoch, ProducerSequence.Increment(d.LastSequence, 1), 0, _now, false);
            Assert.Equal(direct.Check(next).Outcome, reloaded.Check(next).Outcome);
            BatchMetadata last = d.Batch(d.BatchCount - 1);
            var retry = new ProducerBatch(pid, d.ProducerEpoch, last.FirstSequence, last.OffsetDelta, _now, false);
            Assert.Equal(ProducerCheckOutcome.Duplicate, reloaded.Check(retry).Outcome);
            Assert.Equal(last, reloaded.Check(retry).Duplicate);
        }
    }

    private ProducerStateManager NewManagerWithoutFiles()
    {
        string empty = Path.Combine(_dir, "direct");
        Directory.CreateDirectory(empty);
        return new ProducerStateManager(empty, "t-0-direct", _ => { }, _ => { });
    }
}
