namespace Kiou.Storage.Tests;

public class OffsetIndexTests
{
    [Fact]
    public void Lookup_Empty_IsSegmentStart()
    {
        var index = new OffsetIndex();
        Assert.Equal((0, 0), index.Lookup(0));
        Assert.Equal((0, 0), index.Lookup(1000));
    }

    [Fact]
    public void Lookup_GreatestEntryAtOrBelowTarget()
    {
        var index = new OffsetIndex(2);
        index.Append(10, 4100);
        index.Append(25, 8300);
        index.Append(40, 12500);
        Assert.Equal((0, 0), index.Lookup(9));
        Assert.Equal((10, 4100), index.Lookup(10));
        Assert.Equal((10, 4100), index.Lookup(24));
        Assert.Equal((25, 8300), index.Lookup(25));
        Assert.Equal((25, 8300), index.Lookup(39));
        Assert.Equal((40, 12500), index.Lookup(40));
        Assert.Equal((40, 12500), index.Lookup(long.MaxValue));
    }

    [Fact]
    public void Append_RejectsOutOfOrder()
    {
        var index = new OffsetIndex();
        index.Append(10, 100);
        Assert.Throws<InvalidOperationException>(() => index.Append(10, 200));
        Assert.Throws<InvalidOperationException>(() => index.Append(11, 100));
        Assert.Throws<InvalidOperationException>(() => index.Append(9, 300));
    }

    [Fact]
    public void SerializeAndLoad_RoundTrip()
    {
        var index = new OffsetIndex();
        for (int i = 1; i <= 100; i++)
        {
            index.Append(i * 3, i * 4096);
        }

        byte[] bytes = index.Serialize();
        Assert.Equal(800, bytes.Length);
        Assert.Equal(new byte[] { 0, 0, 0, 3, 0, 0, 0x10, 0 }, bytes[..8]);
        Assert.True(OffsetIndex.TryLoad(bytes, 1000, 500000, out OffsetIndex loaded, out _));
        Assert.Equal(100, loaded.Count);
        for (int i = 0; i < 100; i++)
        {
            Assert.Equal(index[i], loaded[i]);
        }
    }

    [Fact]
    public void TryLoad_RejectsBadSizeOrderAndRange()
    {
        var index = new OffsetIndex();
        index.Append(5, 100);
        index.Append(9, 200);
        byte[] bytes = index.Serialize();
        Assert.False(OffsetIndex.TryLoad(bytes.AsSpan(0, 12), 100, 1000, out _, out string reason));
        Assert.Contains("multiple", reason);
        Assert.False(OffsetIndex.TryLoad(bytes, 9, 1000, out _, out _)); // offset beyond the segment
        Assert.False(OffsetIndex.TryLoad(bytes, 100, 200, out _, out _)); // position beyond the file
        byte[] swapped = [.. bytes[8..], .. bytes[..8]];
        Assert.False(OffsetIndex.TryLoad(swapped, 100, 1000, out _, out _));
    }
}

public class TimeIndexTests
{
    [Fact]
    public void MaybeAppend_OnlyWhenTimestampGrows()
    {
        var index = new TimeIndex();
        index.MaybeAppend(-1, 0);
        Assert.Equal(0, index.Count);
        index.MaybeAppend(100, 0);
        index.MaybeAppend(100, 5);
        index.MaybeAppend(90, 6);
        index.MaybeAppend(150, 7);
        Assert.Equal(2, index.Count);
        Assert.Equal((100L, 0), index[0]);
        Assert.Equal((150L, 7), index[1]);
        Assert.Equal(150, index.LastTimestamp);
    }

    [Fact]
    public void Lookup_GreatestEntryAtOrBelowTimestamp()
    {
        var index = new TimeIndex(1);
        index.MaybeAppend(100, 3);
        index.MaybeAppend(200, 10);
        index.MaybeAppend(300, 20);
        Assert.Equal(0, index.Lookup(50));
        Assert.Equal(3, index.Lookup(100));
        Assert.Equal(3, index.Lookup(199));
        Assert.Equal(10, index.Lookup(200));
        Assert.Equal(20, index.Lookup(1000));
    }

    [Fact]
    public void MaybeAppend_RejectsOffsetGoingBack()
    {
        var index = new TimeIndex();
        index.MaybeAppend(100, 10);
        Assert.Throws<InvalidOperationException>(() => index.MaybeAppend(200, 9));
    }

    [Fact]
    public void SerializeAndLoad_RoundTrip()
    {
        var index = new TimeIndex();
        for (int i = 0; i < 50; i++)
        {
            index.MaybeAppend(1_700_000_000_000 + i * 7, i * 2);
        }

        byte[] bytes = index.Serialize();
        Assert.Equal(600, bytes.Length);
        Assert.True(TimeIndex.TryLoad(bytes, 100, out TimeIndex loaded, out _));
        Assert.Equal(50, loaded.Count);
        Assert.Equal(index[49], loaded[49]);
        Assert.False(TimeIndex.TryLoad(bytes.AsSpan(0, 13), 100, out _, out _));
        Assert.False(TimeIndex.TryLoad(bytes, 98, out _, out _));
    }
}
