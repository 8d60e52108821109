using Kiou.Broker.Groups;
using Kiou.Broker.Hosting;
using Kiou.Broker.Transactions;
using Kiou.Protocol.Messages;
using Kiou.Storage;
using Kiou.Storage.Tests.Support;

namespace Kiou.Broker.Tests;

/// <summary>
/// __consumer_offsets read back by the group coordinator, without a broker: transactional offsets pending until their
/// marker in the partition (Kafka's loader rules), records that do not decode skipped with a WARN naming partition and
/// offset, and the one-time migration of the old groups.log.
/// </summary>
public sealed class OffsetsTopicTests : IAsyncLifetime
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "kiou-offsets-topic-" + Guid.NewGuid().ToString("N"));
    readonly StringWriter _logText = new();
    readonly ManualTimeProvider _clock = new();
    Log _log = null!;
    OffsetsHost _host = null!;

    public Task InitializeAsync()
    {
        _log = new Log(TextWriter.Synchronized(_logText), Log.Level.Debug);
        _host = OffsetsHost.Open(_dir, _log, _clock);
        return _host.Store.EnsureTopicAsync();
    }

    public async Task DisposeAsync()
    {
        await _host.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    static CommittedOffset At(long offset) => new(offset, -1, "m", 1, -1);

    static List<(byte[] Key, byte[]? Value)> Commit(string group, string topic, int partition, long offset) =>
        [(OffsetsTopic.OffsetKey(group, topic, partition), OffsetsTopic.OffsetValue(At(offset)))];

    PartitionLog PartitionOf(string group) => _host.Logs.Get(OffsetsTopic.TopicName, _host.Store.PartitionFor(group))!;

    async Task Marker(string group, long producerId, bool commit) =>
        await PartitionOf(group).AppendAsync(TransactionLog.MarkerBatch(producerId, 0, commit, 0, 1), waitDurable: true, AppendOrigin.Coordinator);

    async Task<GroupCoordinator> LoadedCoordinator()
    {
        var c = _host.NewCoordinator(new GroupSettings(), _clock, _log, (_, _) => true);
        c.StartLoading();
        await c.Loading;
        Assert.True(c.IsLoaded, _logText.ToString());
        return c;
    }

    static long? Committed(GroupCoordinator c, string group, string topic, int partition) =>
        c.FetchOffsets(group, [(topic, [partition])]).Topics.Single().Partitions.Single().Offset?.Offset;

    [Fact]
    public async Task Pending_offsets_replay_and_their_markers_commit_or_drop_them()
    {
        var store = _host.Store;
        await store.Append("g", Commit("g", "t", 0, 5));
        await store.Append("g", Commit("g", "t", 0, 10), producerId: 7, producerEpoch: 0);
        await store.Append("g", Commit("g", "t", 1, 20), producerId: 8, producerEpoch: 0);
        var g = store.Replay()["g"];
        Assert.Equal(5, g.Offsets[("t", 0)].Offset.Offset);
        Assert.Equal(10, g.Pending[7][("t", 0)].Offset.Offset);
        Assert.Single(g.Pending[8]);
        await using (var c = await LoadedCoordinator())
        {
            Assert.True(c.HasPendingTxnOffset("g", "t", 0));
            Assert.Equal(5, Committed(c, "g", "t", 0));
        }

        await Marker("g", 7, commit: true);
        await Marker("g", 8, commit: false);
        g = store.Replay()["g"];
        Assert.Empty(g.Pending);
        Assert.Equal(10, g.Offsets[("t", 0)].Offset.Offset);
        Assert.Equal("m", g.Offsets[("t", 0)].Offset.Metadata);
        Assert.False(g.Offsets.ContainsKey(("t", 1))); // aborted
    }

    [Fact]
    public async Task A_plain_commit_written_after_a_transactional_one_wins_when_the_transaction_commits()
    {
        var store = _host.Store;
        await store.Append("g", Commit("g", "t", 0, 10), producerId: 7, producerEpoch: 0);
        await store.Append("g", Commit("g", "t", 0, 30));
        await Marker("g", 7, commit: true);
        Assert.Equal(30, store.Replay()["g"].Offsets[("t", 0)].Offset.Offset);

        // Live, the same rule: the coordinator compares where the two records are in the log, not when the marker came.
        await using var c = await LoadedCoordinator();
        await store.Append("g", Commit("g", "t", 1, 40), producerId: 9, producerEpoch: 0);
        var response = await c.TxnCommitOffsets(new TxnOffsetCommitRequest
        {
            GroupId = "g",
            TransactionalId = "tx",
            ProducerId = 11,
            ProducerEpoch = 0,
            Topics = [new() { Name = "t", Partitions = [new() { PartitionIndex = 1, CommittedOffset = 50 }] }],
        }, 3);
        Assert.Equal(ErrorCodes.None, response.Topics.Single().Partitions.Single().ErrorCode);
        var plain = await c.CommitOffsets(new OffsetCommitRequest
        {
            GroupId = "g",
            GenerationIdOrMemberEpoch = -1,
            Topics = [new() { Name = "t", Partitions = [new() { PartitionIndex = 1, CommittedOffset = 60 }] }],
        }, 8);
        Assert.Equal(ErrorCodes.None, plain.Topics.Single().Partitions.Single().ErrorCode);
        await Marker("g", 11, commit: true);
        c.CompleteTxn(11, _host.Store.PartitionFor("g"), commit: true);
        Assert.Equal(60, Committed(c, "g", "t", 1));
        Assert.Equal(60, store.Replay()["g"].Offsets[("t", 1)].Offset.Offset);
    }

    [Fact]
    public async Task Transactional_offset_commits_of_one_producer_are_all_kept_and_an_older_epoch_is_fenced()
    {
        await using var c = await LoadedCoordinator();
        async Task<short> TxnCommit(short epoch, int partition, long offset) => (await c.TxnCommitOffsets(new TxnOffsetCommitRequest
        {
            GroupId = "g",
            TransactionalId = "tx",
            ProducerId = 21,
            ProducerEpoch = epoch,
            Topics = [new() { Name = "t", Partitions = [new() { PartitionIndex = partition, CommittedOffset = offset }] }],
        }, 3)).Topics.Single().Partitions.Single().ErrorCode;

        // Kafka writes each with base sequence 0: the partition checks no sequences for the coordinator's batches, so
        // the second is appended, not taken for a retry of the first.
        Assert.Equal(ErrorCodes.None, await TxnCommit(1, 0, 10));
        Assert.Equal(ErrorCodes.None, await TxnCommit(1, 1, 11));
        var pending = _host.Store.Replay()["g"].Pending[21];
        Assert.Equal([10L, 11L], pending.OrderBy(p => p.Key.Partition).Select(p => p.Value.Offset.Offset));
        Assert.Equal(ErrorCodes.InvalidProducerEpoch, await TxnCommit(0, 2, 12));
        Assert.False(c.HasPendingTxnOffset("g", "t", 2));
    }

    [Fact]
    public async Task Records_that_do_not_decode_are_skipped_with_a_warning_naming_partition_and_offset()
    {
        var store = _host.Store;
        await store.Append("g", Commit("g", "t", 0, 5));
        var partition = PartitionOf("g");
        long bad = partition.LogEndOffset;
        // A key of a known version that does not parse, and an offset value that does not parse.
        await store.Append("g", [([0, 1, 0xff], [0, 3]), (OffsetsTopic.OffsetKey("g", "t", 1), [0, 3, 1])]);
        // A key version of Kafka's newer records (KIP-848) is not ours: ignored without a warning.
        await store.Append("g", [([0, 5, 0, 0], [0, 0])]);
        await store.Append("g", Commit("g", "t", 2, 7));

        await using var c = await LoadedCoordinator();
        Assert.Equal(5, Committed(c, "g", "t", 0));
        Assert.Null(Committed(c, "g", "t", 1));
        Assert.Equal(7, Committed(c, "g", "t", 2));
        Assert.Contains($"WARN  partition {OffsetsTopic.TopicName}-{partition.Partition}: 2 record(s) of committed offsets or group state did not parse and were skipped, the first at offset {bad}",
            _logText.ToString());
    }

    [Fact]
    public async Task A_damaged_batch_on_disk_costs_its_records_only_and_start_up_goes_on()
    {
        await _host.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
        _host = OffsetsHost.Open(_dir, _log, _clock, partitions: 1);
        await _host.Store.EnsureTopicAsync();
        for (int g = 0; g < 10; g++)
            await _host.Store.Append("g" + g, Commit("g" + g, "t", 0, 100 + g));
        string segment = Directory.GetFiles(Path.Combine(_dir, OffsetsTopic.TopicName + "-0"), "*.log").Single();
        await _host.DisposeAsync();

        // Flip a byte inside the fourth batch's value (every batch here has the same size).
        byte[] bytes = File.ReadAllBytes(segment);
        int batchBytes = bytes.Length / 10;
        bytes[(3 * batchBytes) + batchBytes - 3] ^= 0x5a;
        File.WriteAllBytes(segment, bytes);

        _host = OffsetsHost.Open(_dir, _log, _clock, partitions: 1);
        await using var c = await LoadedCoordinator();
        for (int g = 0; g < 10; g++)
            Assert.Equal(g == 3 ? null : 100 + g, Committed(c, "g" + g, "t", 0));
        Assert.Contains($"WARN  partition {OffsetsTopic.TopicName}-0: offsets 3..3 of committed offsets or group state are damaged (CRC) and were skipped", _logText.ToString());
        Assert.Equal(bytes.Length, new FileInfo(segment).Length);
    }

    [Fact]
    public async Task The_old_groups_log_is_migrated_once_and_kept_aside()
    {
        var snapshot = new GroupSnapshot("old", "consumer", 3, null, null, 1000, []);
        using (var old = new OldGroupLogWriter(_dir))
        {
            old.GroupMetadata(snapshot);
            old.OffsetCommit("old", "t", 0, At(42));
            old.OffsetCommit("old", "t", 1, At(7));
            old.OffsetCommit("old", "t", 2, At(9));
            old.OffsetTombstone("old", "t", 2);
            old.OffsetCommit("gone", "t", 0, At(1));
            old.GroupTombstone("gone");
            old.TxnOffsetCommit("old", 99, "t", 3, At(77));
            old.TxnOffsetCommit("old", 98, "t", 0, At(1000));
            old.TxnMarker("old", 98, commit: false);
        }
        string path = Path.Combine(_dir, "__consumer_offsets", "groups.log");
        byte[] bytes = File.ReadAllBytes(path);

        await using (var c = await LoadedCoordinator())
        {
            Assert.Equal(42, Committed(c, "old", "t", 0));
            Assert.Equal(7, Committed(c, "old", "t", 1));
            Assert.Null(Committed(c, "old", "t", 2));
            Assert.Null(Committed(c, "gone", "t", 0));
            Assert.True(c.HasPendingTxnOffset("old", "t", 3)); // its transaction's marker completes it
            Assert.Equal("Empty", c.Describe("old").GroupState);
            Assert.Equal("consumer", c.Describe("old").ProtocolType);
        }
        Assert.False(File.Exists(path));
        Assert.Equal(bytes, File.ReadAllBytes(path + ".migrated"));
        Assert.Contains("migrated 1 groups, 2 committed offsets and 1 pending transactional offsets from the old offsets log", _logText.ToString());
        Assert.Contains($"the old file is kept as {path}.migrated and can be removed", _logText.ToString());

        // The marker of the pending transaction, as the transaction coordinator writes it, completes the migrated offsets.
        await Marker("old", 99, commit: true);
        await using (var c = await LoadedCoordinator())
            Assert.Equal(77, Committed(c, "old", "t", 3));

        // A crash between the writes and the rename: the file is still there and is migrated again to the same state.
        File.Copy(path + ".migrated", path);
        await using (var c = await LoadedCoordinator())
        {
            Assert.Equal(42, Committed(c, "old", "t", 0));
            Assert.Equal(7, Committed(c, "old", "t", 1));
        }
        Assert.False(File.Exists(path));

        // The next start finds no file and migrates nothing.
        int migrations = CountOf(_logText.ToString(), "from the old offsets log");
        await using (var c = await LoadedCoordinator())
            Assert.Equal(42, Committed(c, "old", "t", 0));
        Assert.Equal(migrations, CountOf(_logText.ToString(), "from the old offsets log"));
    }

    [Fact]
    public async Task An_old_groups_log_with_a_damaged_record_migrates_the_rest_and_a_foreign_file_is_left_alone()
    {
        using (var old = new OldGroupLogWriter(_dir))
        {
            for (int i = 0; i < 3; i++)
                old.OffsetCommit("g" + i, "t", 0, At(100 + i));
        }
        string path = Path.Combine(_dir, "__consumer_offsets", "groups.log");
        byte[] bytes = File.ReadAllBytes(path);
        int recordBytes = (bytes.Length - 8) / 3;
        bytes[8 + recordBytes + recordBytes - 2] ^= 0x5a; // the second record's payload
        File.WriteAllBytes(path, bytes);
        await using (var c = await LoadedCoordinator())
        {
            Assert.Equal(100, Committed(c, "g0", "t", 0));
            Assert.Null(Committed(c, "g1", "t", 0));
            Assert.Equal(102, Committed(c, "g2", "t", 0));
        }
        Assert.Contains("fails its CRC check and is skipped", _logText.ToString());
        Assert.Equal(bytes, File.ReadAllBytes(path + ".migrated"));

        File.WriteAllBytes(path, "NOTKIOU!garbage"u8.ToArray());
        await using (var c = await LoadedCoordinator())
            Assert.Equal(100, Committed(c, "g0", "t", 0));
        Assert.Contains("is not a KIOU group offsets log (bad header): not migrated", _logText.ToString());
        Assert.True(File.Exists(path));
    }

    static int CountOf(string text, string what)
    {
        int count = 0;
        for (int i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + 1, StringComparison.Ordinal))
            count++;
        return count;
    }
}
