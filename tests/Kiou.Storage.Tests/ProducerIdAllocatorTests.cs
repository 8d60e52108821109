using Kiou.Storage.Producers;

namespace Kiou.Storage.Tests;

/// <summary>Producer ids are never handed out twice: not within a run, not across restarts, crashes or a damaged file.</summary>
public sealed class ProducerIdAllocatorTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "kiou-producer-tests", Guid.NewGuid().ToString("N"));
    private readonly List<string> _warnings = new();
    private long _now = 1_700_000_000_000;

    public void Dispose()
    {
        if (Directory.Exists(_dir))
        {
            Directory.Delete(_dir, recursive: true);
        }
    }

    private ProducerIdAllocator Open() => ProducerIdAllocator.Open(_dir, _now, _ => { }, _warnings.Add);

    private string FilePath => Path.Combine(_dir, ProducerIdAllocator.FileName);

    [Fact]
    public void FirstStart_StartsAtTheTimeFloor_AndReservesBeforeHandingOut()
    {
        ProducerIdAllocator a = Open();
        Assert.False(File.Exists(FilePath));
        long first = a.Allocate();
        Assert.Equal(_now * ProducerIdAllocator.FloorPerMs, first);
        Assert.True(File.Exists(FilePath));
        Assert.Equal(first + ProducerIdAllocator.BlockSize, a.ReservedEnd);
        Assert.Contains($" {first + ProducerIdAllocator.BlockSize} ", File.ReadAllText(FilePath));
        Assert.Empty(_warnings);
    }

    [Fact]
    public void Ids_AreUniqueAcrossBlocks_AndEachReopen()
    {
        var seen = new HashSet<long>();
        for (int run = 0; run < 4; run++)
        {
            ProducerIdAllocator a = Open();
            int count = run == 2 ? 2500 : 3; // one run crosses blocks
            for (int i = 0; i < count; i++)
            {
                long id = a.Allocate();
                Assert.True(seen.Add(id), $"id {id} handed out twice (run {run})");
                Assert.True(id < a.ReservedEnd);
            }

            _now -= 1000; // even with the clock going back, a valid file is continued
        }

        Assert.Empty(_warnings);
    }

    [Fact]
    public void CrashAfterReserving_SkipsTheRestOfTheBlock()
    {
        ProducerIdAllocator a = Open();
        long handedOut = a.Allocate();
        long reserved = a.ReservedEnd;

        // Crash: nothing more is written; the next start reads only the file.
        ProducerIdAllocator b = Open();
        Assert.Equal(reserved, b.NextId);
        long next = b.Allocate();
        Assert.True(next > handedOut);
        Assert.Equal(reserved, next);
    }

    [Fact]
    public void CrashDuringReservation_LeavesTheOldFileInForce()
    {
        ProducerIdAllocator a = Open();
        long first = a.Allocate();

        // A crash between writing the temporary file and renaming it leaves both; the temporary one is not read.
        File.WriteAllText(FilePath + ".tmp", "1 5 00000000\n");
        ProducerIdAllocator b = Open();
        Assert.True(b.Allocate() > first);
        Assert.Empty(_warnings);
    }

    [Theory]
    [InlineData("")]
    [InlineData("1 12345 00000000\n")] // wrong checksum
    [InlineData("garbage")]
    [InlineData("1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32\n")] // too large
    public void DamagedFile_IsSetAside_AndIdsContinueAboveEveryEarlierOne(string damage)
    {
        ProducerIdAllocator a = Open();
        long last = 0;
        for (int i = 0; i < 1500; i++)
        {
            last = a.Allocate();
        }

        File.WriteAllText(FilePath, damage);
        _now += 60_000; // a minute later
        ProducerIdAllocator b = Open();
        Assert.Contains(_warnings, w => w.Contains(FilePath) && w.Contains("damaged") && w.Contains(".damaged"));
        Assert.Equal(damage, File.ReadAllText(FilePath + ".damaged"));
        long next = b.Allocate();
        Assert.True(next > last, $"{next} must be above {last}");

        // The new file is valid again.
        Assert.True(Open().Allocate() > next);
    }
}
