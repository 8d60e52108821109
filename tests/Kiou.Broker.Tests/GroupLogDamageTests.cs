using System.Buffers.Binary;
using Kiou.Broker.Groups;
using Kiou.Broker.Hosting;
using Kiou.Protocol.Messages;
using Kiou.Storage.Tests.Support;

namespace Kiou.Broker.Tests;

/// <summary>
/// The group offsets log (<c>__consumer_offsets/groups.log</c>) damaged on disk: a flipped record costs that record
/// only, a cut file keeps everything before the cut and sets the rest aside, a broken header leaves the file alone and
/// makes group requests fail with an ERROR line. Nothing is thrown away without a copy and a WARN.
/// </summary>
public sealed class GroupLogDamageTests : IAsyncLifetime
{
    const int Groups = 10;
    readonly string _dir = Path.Combine(Path.GetTempPath(), "kiou-group-damage-" + Guid.NewGuid().ToString("N"));
    readonly StringWriter _logText = new();

    string LogDir => Path.Combine(_dir, "__consumer_offsets");
    string LogPath => Path.Combine(LogDir, "groups.log");

    GroupCoordinator NewCoordinator() =>
        new(new GroupSettings(), _dir, new ManualTimeProvider(), new Log(TextWriter.Synchronized(_logText), Log.Level.Debug),
            (_, _) => true, driveTimers: false);

    public async Task InitializeAsync()
    {
        var c = NewCoordinator();
        c.StartLoading(null);
        await c.Loading;
        for (int g = 0; g < Groups; g++)
        {
            var response = await c.CommitOffsets(new OffsetCommitRequest
            {
                GroupId = "g" + g,
                GenerationIdOrMemberEpoch = -1,
                Topics = [new() { Name = "t", Partitions = [new() { PartitionIndex = 0, CommittedOffset = 100 + g }] }],
            }, 8);
            Assert.Equal(ErrorCodes.None, response.Topics.Single().Partitions.Single().ErrorCode);
        }
        await c.DisposeAsync();
    }

    public Task DisposeAsync()
    {
        Directory.Delete(_dir, recursive: true);
        return Task.CompletedTask;
    }

    /// <summary>(position, size) of each record after the file header.</summary>
    List<(int Position, int Size)> Records()
    {
        byte[] bytes = File.ReadAllBytes(LogPath);
        var records = new List<(int, int)>();
        int position = 8;
        while (position + 8 <= bytes.Length)
        {
            int size = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(position));
            records.Add((position, 8 + size));
            position += 8 + size;
        }
        Assert.Equal(bytes.Length, position);
        return records;
    }

    async Task<long[]> CommittedAfterRestart()
    {
        var c = NewCoordinator();
        c.StartLoading(null);
        await c.Loading;
        try
        {
            var committed = new long[Groups];
            for (int g = 0; g < Groups; g++)
            {
                var (error, topics) = c.FetchOffsets("g" + g, [("t", [0])]);
                Assert.Equal(ErrorCodes.None, error);
                committed[g] = topics.Single().Partitions.Single().Offset?.Offset ?? -1;
            }
            return committed;
        }
        finally
        {
            await c.DisposeAsync();
        }
    }

    static long[] Expected(params int[] lost) =>
        Enumerable.Range(0, Groups).Select(g => lost.Contains(g) ? -1L : 100 + g).ToArray();

    [Fact]
    public async Task A_flipped_byte_in_one_record_loses_that_record_only()
    {
        var records = Records();
        Assert.Equal(Groups, records.Count);
        var (position, size) = records[3];
        using (var f = new FileStream(LogPath, FileMode.Open))
        {
            f.Position = position + size - 2;
            int b = f.ReadByte();
            f.Position = position + size - 2;
            f.WriteByte((byte)(b ^ 0x5a));
        }

        Assert.Equal(Expected(3), await CommittedAfterRestart());
        Assert.Contains($"WARN  group offsets log {LogPath}: the record of {size - 8} bytes at byte {position} fails its CRC check and is skipped", _logText.ToString());
    }

    [Fact]
    public async Task A_file_cut_in_the_middle_keeps_what_is_before_the_cut_and_sets_the_rest_aside()
    {
        var records = Records();
        byte[] whole = File.ReadAllBytes(LogPath);
        int at = records[6].Position;
        using (var f = new FileStream(LogPath, FileMode.Open))
            f.SetLength(at + 5); // inside record 6's header: records 6..9 are gone
        Assert.Equal(Expected(6, 7, 8, 9), await CommittedAfterRestart());

        // Damage in the middle with records behind it (a length that cannot be): the bytes from there are kept aside.
        byte[] damaged = (byte[])whole.Clone();
        damaged[at] = 0x7f;
        File.WriteAllBytes(LogPath, damaged);
        foreach (string old in Directory.GetFiles(LogDir, "groups.log.damaged-*"))
            File.Delete(old);
        Assert.Equal(Expected(6, 7, 8, 9), await CommittedAfterRestart());
        string aside = Assert.Single(Directory.GetFiles(LogDir, "groups.log.damaged-*-at-" + at));
        Assert.Equal(damaged[at..], File.ReadAllBytes(aside));
        Assert.Contains($"cut the {whole.Length - at} bytes from there, kept in {aside}", _logText.ToString());
        Assert.Equal(at, new FileInfo(LogPath).Length);
    }

    [Fact]
    public async Task A_broken_file_header_leaves_the_file_alone_and_group_requests_get_an_error()
    {
        byte[] before = File.ReadAllBytes(LogPath);
        using (var f = new FileStream(LogPath, FileMode.Open))
            f.WriteByte(0);
        var c = NewCoordinator();
        c.StartLoading(null);
        await c.Loading;
        Assert.Equal(ErrorCodes.CoordinatorNotAvailable, c.FetchOffsets("g0", [("t", [0])]).Error);
        Assert.Contains("is not a KIOU group offsets log (bad header); move it away", _logText.ToString());
        await c.DisposeAsync();
        Assert.Equal(before.Length, new FileInfo(LogPath).Length);
        Assert.Equal(before[1..], File.ReadAllBytes(LogPath)[1..]);
    }
}
