namespace Kiou.IoUring.Tests;

/// <summary>The request-frame pool keeps at most its cap for reuse and unmaps the rest.</summary>
public class NativeFramePoolTests
{
    [Fact]
    public void A_returned_buffer_is_reused_and_keeps_its_bytes_writable()
    {
        using var pool = new NativeFramePool(4 << 20);
        var a = pool.Rent(1_000_000);
        Assert.True(a.Capacity >= 1_000_000);
        Assert.Equal(0, a.Capacity % NativeFramePool.Granularity);
        a.GetSpan().Fill(0xAB);
        Assert.Equal(a.Capacity, pool.RentedBytes);
        pool.Return(a);
        Assert.Equal(0, pool.RentedBytes);
        Assert.Equal(a.Capacity, pool.RetainedBytes);

        var b = pool.Rent(900_000);
        Assert.Same(a, b);
        Assert.Equal(1, pool.MappedCount);
        Assert.Equal(0xAB, b.GetSpan()[999_999]);
        pool.Return(b);
    }

    [Fact]
    public void Buffers_beyond_the_cap_are_unmapped_on_return()
    {
        using var pool = new NativeFramePool(3 << 20);
        var rented = Enumerable.Range(0, 8).Select(_ => pool.Rent(1 << 20)).ToList();
        Assert.Equal(8L << 20, pool.RentedBytes);
        foreach (var b in rented)
            pool.Return(b);
        Assert.Equal(0, pool.RentedBytes);
        Assert.Equal(3L << 20, pool.RetainedBytes);
        Assert.Throws<ObjectDisposedException>(() => rented[0].GetSpan()); // the least recently returned are unmapped
        Assert.Equal(1 << 20, rented[^1].GetSpan().Length); // the newest kept
    }

    [Fact]
    public void Kept_buffers_follow_the_sizes_in_use_instead_of_mapping_every_frame()
    {
        // Small frames first (as many small produce requests), then larger ones: the kept small buffers must make room,
        // or every larger frame is mapped and unmapped again (page faults on every request).
        using var pool = new NativeFramePool(4 << 20);
        var small = Enumerable.Range(0, 32).Select(_ => pool.Rent(128 << 10)).ToList();
        foreach (var b in small)
            pool.Return(b);
        Assert.Equal(4L << 20, pool.RetainedBytes);
        long mapped = pool.MappedCount;
        for (int i = 0; i < 20; i++)
        {
            var large = pool.Rent(1 << 20);
            large.GetSpan()[^1] = 1;
            pool.Return(large);
        }

        Assert.Equal(mapped + 1, pool.MappedCount);
        Assert.True(pool.RetainedBytes <= 4L << 20);
    }

    [Fact]
    public void A_small_frame_does_not_take_a_far_larger_kept_buffer()
    {
        using var pool = new NativeFramePool(64 << 20);
        var large = pool.Rent(16 << 20);
        pool.Return(large);
        var small = pool.Rent(100_000);
        Assert.NotSame(large, small);
        Assert.True(small.Capacity < 1 << 20);
        pool.Return(small);
    }

    [Fact]
    public void A_buffer_returned_twice_or_to_another_pool_is_refused()
    {
        using var pool = new NativeFramePool(1 << 20);
        using var other = new NativeFramePool(1 << 20);
        var b = pool.Rent(70_000);
        Assert.Throws<ArgumentException>(() => other.Return(b));
        pool.Return(b);
        Assert.Throws<InvalidOperationException>(() => pool.Return(b));
    }

    [Fact]
    public void After_dispose_returned_buffers_are_unmapped()
    {
        var pool = new NativeFramePool(8 << 20);
        var kept = pool.Rent(1 << 20);
        var held = pool.Rent(1 << 20);
        pool.Return(kept);
        pool.Dispose();
        Assert.Equal(0, pool.RetainedBytes);
        Assert.Throws<ObjectDisposedException>(() => kept.GetSpan());
        held.GetSpan()[0] = 1; // still rented: usable until it comes back
        pool.Return(held);
        Assert.Equal(0, pool.RetainedBytes);
        Assert.Throws<ObjectDisposedException>(() => held.GetSpan());
    }
}
