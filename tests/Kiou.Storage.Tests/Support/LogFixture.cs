using System.Collections.Concurrent;
using Kiou.Protocol.Records;
using Kiou.Storage.Devices;
using Kiou.Testing;

namespace Kiou.Storage.Tests.Support;

/// <summary>A temporary data directory, a clock, a device and captured log lines for one test.</summary>
public sealed class LogFixture : IDisposable
{
    public const string Topic = "demo";

    public LogFixture()
        : this(direct: false)
    {
    }

    /// <param name="direct">Logs stage appends and write pages through O_DIRECT descriptors (<see cref="DirectTail"/>).</param>
    /// <param name="directMinRoundBytes">Rounds below this go buffered; 0: every round through O_DIRECT.</param>
    public LogFixture(bool direct, int directMinRoundBytes = DirectTail.DirectMinRoundBytes)
    {
        DataDir = Path.Combine(Path.GetTempPath(), "kiou-storage-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(DataDir);
        Sync = new SyncLogDevice();
        Device = new FaultyLogDevice(Sync) { DirectWrites = direct, DirectMinRoundBytes = directMinRoundBytes };
    }

    public string DataDir { get; }

    public SyncLogDevice Sync { get; }

    public FaultyLogDevice Device { get; }

    public ManualTimeProvider Time { get; } = new();

    public ConcurrentQueue<string> Lines { get; } = new();

    /// <summary>The lines logged through the warn callback (also in <see cref="Lines"/>).</summary>
    public ConcurrentQueue<string> Warnings { get; } = new();

    public string PartitionDir => Path.Combine(DataDir, Topic + "-0");

    /// <summary>The descriptor and read caches logs open with; null: each log its own, with the default read cache.</summary>
    public SegmentFileCache? Files { get; set; }

    public PartitionLog Open(LogConfig? config = null) =>
        PartitionLog.Open(DataDir, Topic, 0, config ?? new LogConfig(), Device, Time, Lines.Enqueue, Warn, Files);

    private void Warn(string line)
    {
        Lines.Enqueue(line);
        Warnings.Enqueue(line);
    }

    public string SegmentPath(long baseOffset, string extension = ".log") =>
        Path.Combine(PartitionDir, baseOffset.ToString("D20") + extension);

    public void Dispose()
    {
        Device.Dispose();
        try
        {
            Directory.Delete(DataDir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>Appends <paramref name="batches"/> batches of <paramref name="recordsPerBatch"/> records; returns the batches as stored.</summary>
    public static async Task<List<byte[]>> AppendMany(PartitionLog log, int batches, int recordsPerBatch = 1, int valueBytes = 8, long baseTimestamp = BatchBuilder.DefaultBaseTimestamp)
    {
        var stored = new List<byte[]>();
        for (int i = 0; i < batches; i++)
        {
            byte[] batch = BatchBuilder.Simple(recordsPerBatch, baseTimestamp + i * 10, valueBytes);
            await log.AppendAsync(batch, waitDurable: false);
            stored.Add(batch);
        }

        return stored;
    }

    /// <summary>Reads everything from <paramref name="from"/> to the high watermark, batch by batch.</summary>
    public static List<byte[]> ReadAll(PartitionLog log, long from)
    {
        var batches = new List<byte[]>();
        long offset = from;
        while (offset < log.HighWatermark)
        {
            using ReadResult r = log.Read(offset, 1 << 20, minOneBatch: true);
            Assert.Equal(ReadError.None, r.Error);
            Assert.True(r.Records.Length > 0, $"no data at offset {offset} below HW {log.HighWatermark}");
            ReadOnlySpan<byte> span = r.Records.Span;
            while (span.Length > 0)
            {
                Assert.True(RecordBatch.TryReadHeader(span, out BatchHeader h));
                Assert.True(RecordBatch.IsCrcValid(span[..h.TotalSize]));
                batches.Add(span[..h.TotalSize].ToArray());
                offset = h.NextOffset;
                span = span[h.TotalSize..];
            }
        }

        return batches;
    }
}
