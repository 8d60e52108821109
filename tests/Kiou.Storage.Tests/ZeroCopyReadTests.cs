using System.Net;
using System.Net.Sockets;
using Kiou.IoUring.Interop;
using Kiou.Storage.Tests.Support;

namespace Kiou.Storage.Tests;

/// <summary>
/// Zero-copy reads (<see cref="PartitionLog.Read"/> with zeroCopy: a <see cref="FileRecords"/> region for sendfile):
/// the same whole batches as the copying read, never past the completed tail, and still readable after retention
/// has deleted the segment underneath.
/// </summary>
public sealed class ZeroCopyReadTests : IDisposable
{
    private readonly LogFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Fact]
    public async Task Region_HoldsTheSameBatchesAsTheCopyingRead()
    {
        // Small segments and index entries every 300 bytes, batches of varying size: cuts land everywhere.
        await using PartitionLog log = _f.Open(new LogConfig { SegmentBytes = 20_000, IndexIntervalBytes = 300 });
        for (int i = 0; i < 120; i++)
        {
            await LogFixture.AppendMany(log, 1, recordsPerBatch: 1 + (i % 5), valueBytes: 10 + (i * 37 % 400));
        }

        Assert.True(log.SegmentCount >= 3, $"{log.SegmentCount} segments");
        long hw = log.HighWatermark;
        int compared = 0;
        for (long offset = 0; offset < hw; offset += 7)
        {
            foreach (int maxBytes in new[] { 1, 200, 1000, 4096, 9999, 1 << 20 })
            {
                foreach (bool minOne in new[] { true, false })
                {
                    using ReadResult copy = log.Read(offset, maxBytes, minOne);
                    using ReadResult region = log.Read(offset, maxBytes, minOne, zeroCopy: true);
                    Assert.Equal(copy.HighWatermark, region.HighWatermark);
                    Assert.Equal(copy.Records.Length, region.Records.Length);
                    if (copy.Records.Length == 0)
                    {
                        continue;
                    }

                    Assert.NotNull(region.FileRecords);
                    Assert.Null(copy.FileRecords);
                    // The offsets the region spans, known without reading it (metrics count records out from them).
                    var (first, next) = OffsetsOf(copy.Records.Span);
                    Assert.Equal(first, region.FileRecords!.BaseOffset);
                    Assert.Equal(next, region.FileRecords.EndOffset);
                    Assert.False(region.FileRecords.WasCopied);
                    Assert.True(copy.Records.Span.SequenceEqual(region.Records.Span), $"offset {offset}, maxBytes {maxBytes}");
                    compared++;
                }
            }
        }

        Assert.True(compared > 100);
        log.CheckInvariants();
    }

    static (long First, long Next) OffsetsOf(ReadOnlySpan<byte> batches)
    {
        long first = -1, next = -1;
        while (batches.Length >= Kiou.Protocol.Records.RecordBatch.HeaderSize
            && Kiou.Protocol.Records.RecordBatch.TryReadHeader(batches, out var h) && h.TotalSize <= batches.Length)
        {
            if (first < 0)
                first = h.BaseOffset;
            next = h.NextOffset;
            batches = batches[h.TotalSize..];
        }
        return (first, next);
    }

    [Fact]
    public async Task Region_OutlivesRetentionDeletingItsSegment_AndSendsWithSendfile()
    {
        var config = new LogConfig { SegmentBytes = 4000, RetentionBytes = 4000 };
        await using PartitionLog log = _f.Open(config);
        await LogFixture.AppendMany(log, 60, recordsPerBatch: 2, valueBytes: 100);
        await log.FlushAsync();
        Assert.True(log.SegmentCount >= 3);
        string firstSegment = _f.SegmentPath(0);

        using ReadResult copy = log.Read(0, 1 << 20, minOneBatch: true);
        byte[] expected = copy.Records.ToArray();
        using ReadResult region = log.Read(0, 1 << 20, minOneBatch: true, zeroCopy: true);
        Assert.Equal(expected.Length, region.Records.Length);
        Assert.False(region.FileRecords!.WasCopied, "a zero-copy read read the bytes");

        log.EnforceRetention(_f.Time.NowMs);
        Assert.True(log.LogStartOffset > 0, "retention deleted nothing");
        // Deleted at once, or by the index writer if it was still writing that segment's index files.
        await TailsTests.WaitUntil(() => !File.Exists(firstSegment));

        // The region keeps the unlinked file open: sendfile still sends exactly the batches it was cut at.
        FileRecords file = region.FileRecords!;
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var sender = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await sender.ConnectAsync(listener.LocalEndPoint!);
        using Socket receiver = await listener.AcceptAsync();
        long sent = 0;
        while (sent < file.Length)
        {
            long n = SendFile.Send(sender.SafeHandle, file.File, file.Position + sent, (int)(file.Length - sent));
            if (n == SendFile.WouldBlock)
            {
                await SendFile.WaitWritableAsync(sender.SafeHandle, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));
                continue;
            }

            Assert.True(n > 0, $"sendfile returned {n}");
            sent += n;
        }

        sender.Shutdown(SocketShutdown.Send);
        var got = new MemoryStream();
        var buffer = new byte[65536];
        int r;
        while ((r = await receiver.ReceiveAsync(buffer)) > 0)
        {
            got.Write(buffer, 0, r);
        }

        Assert.Equal(expected, got.ToArray());
        Assert.False(file.WasCopied, "sendfile needed the bytes in memory");
        Assert.Equal(expected, region.Records.ToArray()); // the copying fallback reads the same bytes
    }

    [Fact]
    public async Task Region_NeverPassesTheCompletedTail()
    {
        await using PartitionLog log = _f.Open();
        await LogFixture.AppendMany(log, 10, valueBytes: 50);
        using ReadResult region = log.Read(3, int.MaxValue, minOneBatch: true, zeroCopy: true);
        using ReadResult copy = log.Read(3, int.MaxValue, minOneBatch: true);
        Assert.Equal(copy.Records.Length, region.Records.Length);
        Assert.Equal(new FileInfo(_f.SegmentPath(0)).Length, region.FileRecords!.Position + region.FileRecords.Length);
        using ReadResult atEnd = log.Read(log.HighWatermark, 1 << 20, minOneBatch: true, zeroCopy: true);
        Assert.Equal(0, atEnd.Records.Length);
        Assert.Null(atEnd.FileRecords);
    }
}
