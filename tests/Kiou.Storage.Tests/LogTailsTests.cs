namespace Kiou.Storage.Tests;

/// <summary>
/// <see cref="LogTails"/>: every move that would break logStart ≤ durable ≤ completed ≤ reserved throws (in Release
/// too), naming the partition and the values, and leaves the tails unchanged.
/// </summary>
public sealed class LogTailsTests
{
    // logStart 10, durable 20, completed 30, reserved 40.
    private static LogTails Tails()
    {
        var t = new LogTails("demo-3", 10, 10);
        t.Reserve(40);
        t.Complete(30);
        t.MakeDurable(20);
        t.AdvanceLogStart(10);
        return t;
    }

    private static void AssertRejected(Action<LogTails> move, string name)
    {
        LogTails t = Tails();
        var ex = Assert.Throws<InvalidOperationException>(() => move(t));
        Assert.Contains("demo-3", ex.Message);
        Assert.Contains(name, ex.Message);
        Assert.Contains("logStart=10, durable=20, completed=30, reserved=40", ex.Message);
    }

    [Fact]
    public void LegalMoves_KeepTheOrder()
    {
        LogTails t = Tails();
        Assert.Equal((10, 20, 30, 40), (t.LogStart, t.Durable, t.Completed, t.Reserved));
        t.Reserve(41);
        t.Complete(41);
        t.MakeDurable(41);
        t.AdvanceLogStart(41);
        t.Truncate(41);
        Assert.Equal((41, 41, 41, 41), (t.LogStart, t.Durable, t.Completed, t.Reserved));
        t.CheckInvariant();
    }

    [Fact]
    public void Open_RejectsAStartPastTheEnd() =>
        Assert.Contains("demo-0", Assert.Throws<InvalidOperationException>(() => new LogTails("demo-0", 5, 4)).Message);

    [Theory]
    [InlineData(40)]
    [InlineData(39)]
    public void Reserve_RejectsNotMovingForward(long end) => AssertRejected(t => t.Reserve(end), $"Reserve({end})");

    [Theory]
    [InlineData(30)] // not forward
    [InlineData(29)] // backwards
    [InlineData(41)] // past reserved
    public void Complete_RejectsOutOfRange(long end) => AssertRejected(t => t.Complete(end), $"Complete({end})");

    [Theory]
    [InlineData(19)] // backwards
    [InlineData(31)] // past completed
    public void MakeDurable_RejectsOutOfRange(long durable) => AssertRejected(t => t.MakeDurable(durable), $"MakeDurable({durable})");

    [Theory]
    [InlineData(29)] // below completed: would give back published offsets
    [InlineData(41)] // past reserved
    public void Truncate_RejectsOutOfRange(long reserved) => AssertRejected(t => t.Truncate(reserved), $"Truncate({reserved})");

    [Theory]
    [InlineData(9)] // backwards
    [InlineData(21)] // past durable
    public void AdvanceLogStart_RejectsOutOfRange(long start) => AssertRejected(t => t.AdvanceLogStart(start), $"AdvanceLogStart({start})");

    [Fact]
    public void RejectedMove_LeavesTheTailsAsTheyWere()
    {
        LogTails t = Tails();
        Assert.Throws<InvalidOperationException>(() => t.Complete(41));
        Assert.Throws<InvalidOperationException>(() => t.MakeDurable(31));
        Assert.Equal((10, 20, 30, 40), (t.LogStart, t.Durable, t.Completed, t.Reserved));
    }
}
