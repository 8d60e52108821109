using System.Diagnostics;
using System.Globalization;
using System.Text;
using Kiou.IoUring;
using Kiou.Storage.Devices;
using Microsoft.Win32.SafeHandles;

namespace Kiou.IoBench;

// Sequential appends to one file, measured per cell for --seconds: MB/s and CPU seconds per GB written.
// Usage: dotnet run -c Release --project bench/Kiou.IoBench -- [--seconds N (per cell and round, 0.5)] [--rounds R (3)]
//        [--dir PATH] [--sizes 16,64,256,1024] [--fsync-bytes N] [--only TEXT] [--out FILE]
// Modes (see docs/design/io_uring.md for the reading of the results):
//   pwrite         RandomAccess.Write (pwrite(2)), one at a time; fsync = RandomAccess.FlushToDisk (fsync(2))
//   pwrite-direct  the same on an O_DIRECT file
//   uring          IORING_OP_WRITE, buffered, QD writes in flight on a Ring driven by this thread
//   uring-async    the same with IOSQE_ASYNC (straight to io-wq)
//   uring-direct   IORING_OP_WRITE on an O_DIRECT file
//   device         UringLogDevice (RingWorker thread, eventfd wake) with QD writes outstanding from this thread
// batch B (ring modes): wait until B completions are in, then refill every free slot with one io_uring_enter;
// B = 1 with QD > 1 additionally enters once per SQE (no batching at all). device: the RingWorker batches on
// its own (everything queued since its last enter goes in one).
// fsync: none, or an fdatasync once per --fsync-bytes (default 1 MiB) of completed writes; with io_uring it
// overlaps the writes that follow (at most one in flight), with pwrite it blocks.
internal static class Program
{
    private const long WriteTag = 1;
    private const long FsyncTag = 2;

    private static int Main(string[] args)
    {
        var options = BenchOptions.Parse(args);
        Directory.CreateDirectory(options.Directory);
        List<Cell> cells = Cell.Matrix(options);
        Console.Error.WriteLine($"{cells.Count} cells x {options.Seconds:0.##} s in {options.Directory}; load average {File.ReadAllText("/proc/loadavg").Trim()}");

        foreach (Cell warmup in Cell.Warmups())
        {
            Run(warmup with { }, options, 0.2); // JIT, first file creation, io-wq start-up
        }

        // Rounds run the whole matrix again rather than repeating a cell back to back, so that a burst of load
        // from elsewhere on the machine hits different cells in different rounds; the median round is reported.
        var rounds = cells.ConvertAll(_ => new List<Result>());
        var total = Stopwatch.StartNew();
        for (int round = 0; round < options.Rounds; round++)
        {
            for (int i = 0; i < cells.Count; i++)
            {
                Result result = Run(cells[i], options, options.Seconds);
                rounds[i].Add(result);
                Console.Error.WriteLine($"round {round + 1} " + result.ToRow());
            }
        }
        List<Result> results = rounds.ConvertAll(r => r.OrderBy(x => x.MegabytesPerSecond).ElementAt(r.Count / 2));
        string report = Render(results, options, total.Elapsed);
        Console.WriteLine(report);
        if (options.OutputFile is not null)
        {
            File.WriteAllText(options.OutputFile, report);
        }
        return 0;
    }

    private static Result Run(Cell cell, BenchOptions options, double seconds)
    {
        string path = Path.Combine(options.Directory, $"iobench-{Environment.ProcessId}.log");
        File.Delete(path);
        bool direct = cell.Mode is Mode.PwriteDirect or Mode.UringDirect;
        using var buffer = new AlignedBuffer(cell.Size);
        new Random(42).NextBytes(buffer.GetSpan()); // fixed seed: same bytes every run
        try
        {
            using SafeFileHandle file = direct
                ? DirectFile.OpenReadWrite(path, truncate: true)
                : File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite);
            CpuSample before = CpuSample.Take();
            long start = Stopwatch.GetTimestamp();
            long end = start + (long)(seconds * Stopwatch.Frequency);
            Counters counters = cell.Mode switch
            {
                Mode.Pwrite or Mode.PwriteDirect => RunPwrite(cell, file, buffer.Memory, end),
                Mode.Uring or Mode.UringAsync or Mode.UringDirect => RunRing(cell, file, buffer.Memory, end),
                Mode.Device => RunDevice(cell, file, buffer.Memory, end),
                _ => throw new UnreachableException(),
            };
            double elapsed = Stopwatch.GetElapsedTime(start, counters.FinishedAt).TotalSeconds;
            return new Result(cell, counters, elapsed, before, counters.After);
        }
        finally
        {
            File.Delete(path); // unlinking drops the dirty pages: the next cell starts without a writeback backlog
        }
    }

    private static Counters RunPwrite(Cell cell, SafeFileHandle file, ReadOnlyMemory<byte> data, long end)
    {
        var c = new Counters();
        long position = 0;
        long sinceFsync = 0;
        ReadOnlySpan<byte> span = data.Span;
        while (Stopwatch.GetTimestamp() < end)
        {
            RandomAccess.Write(file, span, position);
            position += span.Length;
            c.Bytes += span.Length;
            c.Writes++;
            sinceFsync += span.Length;
            if (cell.FsyncBytes > 0 && sinceFsync >= cell.FsyncBytes)
            {
                RandomAccess.FlushToDisk(file);
                c.Fsyncs++;
                sinceFsync = 0;
            }
        }
        c.Enters = c.Writes + c.Fsyncs; // one syscall each
        c.Sqes = c.Enters;
        c.Finish();
        return c;
    }

    private static Counters RunRing(Cell cell, SafeFileHandle file, ReadOnlyMemory<byte> data, long end)
    {
        var c = new Counters();
        int fd = (int)file.DangerousGetHandle();
        using var ring = new Ring(new RingOptions { Entries = 64, ForceAsync = cell.Mode == Mode.UringAsync });
        Span<Completion> completions = stackalloc Completion[64];
        long position = 0;
        int writesInFlight = 0;
        bool fsyncInFlight = false;
        bool fsyncDue = false;
        long sinceFsync = 0;
        while (true)
        {
            if (Stopwatch.GetTimestamp() < end)
            {
                while (writesInFlight < cell.QueueDepth)
                {
                    Check(ring.TryQueueWrite(fd, data, position, WriteTag));
                    position += data.Length;
                    writesInFlight++;
                    c.Sqes++;
                    if (cell.Batch == 1)
                    {
                        ring.Submit();
                        c.Enters++;
                    }
                }
            }
            if (fsyncDue && !fsyncInFlight)
            {
                Check(ring.TryQueueFsync(fd, dataSync: true, FsyncTag));
                fsyncInFlight = true;
                fsyncDue = false;
                c.Sqes++;
            }
            if (writesInFlight == 0 && !fsyncInFlight)
            {
                c.Finish(); // before the ring closes: its io-wq threads still exist to be counted
                return c;
            }
            // Batched: sleep until a batch of completions is in, then refill all of them with one enter.
            int inFlight = writesInFlight + (fsyncInFlight ? 1 : 0);
            ring.SubmitAndWait(Math.Min(inFlight, cell.Batch));
            c.Enters++;
            int count = ring.Drain(completions);
            for (int i = 0; i < count; i++)
            {
                Completion completion = completions[i];
                if (completion.UserData == WriteTag)
                {
                    if (completion.Result != data.Length)
                    {
                        throw new IOException($"write completed with {completion.Result}");
                    }
                    writesInFlight--;
                    c.Writes++;
                    c.Bytes += data.Length;
                    sinceFsync += data.Length;
                    if (cell.FsyncBytes > 0 && sinceFsync >= cell.FsyncBytes)
                    {
                        fsyncDue = true; // covers every write completed so far
                        sinceFsync = 0;
                    }
                }
                else
                {
                    if (completion.Result != 0)
                    {
                        throw new IOException($"fdatasync completed with {completion.Result}");
                    }
                    fsyncInFlight = false;
                    c.Fsyncs++;
                }
            }
        }
    }

    private static Counters RunDevice(Cell cell, SafeFileHandle file, ReadOnlyMemory<byte> data, long end)
    {
        var worker = new RingWorker();
        var callback = new DeviceCallback(cell.QueueDepth, data.Length);
        var c = new Counters();
        using (var device = new UringLogDevice(worker))
        {
            long position = 0;
            long flushedAt = 0;
            while (Stopwatch.GetTimestamp() < end)
            {
                callback.Slots.Wait();
                device.Write(file, position, data, callback, 0);
                position += data.Length;
                long completed = Volatile.Read(ref callback.Bytes);
                if (cell.FsyncBytes > 0 && completed - flushedAt >= cell.FsyncBytes && Interlocked.CompareExchange(ref callback.FlushInFlight, 1, 0) == 0)
                {
                    device.Flush(file, callback, 0); // covers the writes completed so far
                    flushedAt = completed;
                }
            }
            // Wait for every write and flush, then sample while the worker and its io-wq threads still exist.
            for (int i = 0; i < cell.QueueDepth; i++)
            {
                callback.Slots.Wait();
            }
            var spinner = new SpinWait();
            while (Volatile.Read(ref callback.FlushInFlight) != 0)
            {
                spinner.SpinOnce();
            }
            c.Finish();
        }
        if (callback.Error != 0)
        {
            throw new IOException($"device completed with {callback.Error}");
        }
        c.Bytes = callback.Bytes;
        c.Writes = callback.Writes;
        c.Fsyncs = callback.Fsyncs;
        c.Enters = worker.EnterCount;
        c.Sqes = worker.SqeCount;
        return c;
    }

    private sealed class DeviceCallback(int queueDepth, int size) : ILogDeviceCallback
    {
        public readonly SemaphoreSlim Slots = new(queueDepth);
        public long Bytes;
        public long Writes;
        public long Fsyncs;
        public int FlushInFlight;
        public int Error;

        public void OnWriteDone(long token, int result)
        {
            if (result != size)
            {
                Error = result;
            }
            Writes++; // one callback thread: no interlocking needed
            Volatile.Write(ref Bytes, Bytes + size);
            Slots.Release();
        }

        public void OnFlushDone(long token, int result)
        {
            if (result != 0)
            {
                Error = result;
            }
            Fsyncs++;
            Volatile.Write(ref FlushInFlight, 0);
        }
    }

    private static void Check(bool queued)
    {
        if (!queued)
        {
            throw new InvalidOperationException("ring full: the bench keeps fewer operations in flight than the ring holds");
        }
    }

    private static string Render(List<Result> results, BenchOptions options, TimeSpan elapsed)
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Sequential appends, {options.Seconds:0.##} s per cell, median of {options.Rounds} rounds (by MB/s), {options.Directory}, fsync = fdatasync per {options.FsyncBytes >> 10} KiB written; total {elapsed.TotalSeconds:0} s; load average after: {File.ReadAllText("/proc/loadavg").Trim()}");
        sb.AppendLine();
        sb.AppendLine("| mode | size | QD | batch | fsync | MB/s | SQEs/enter | CPU s/GB (process) | of it io-wq | CPU s/GB (whole machine) | iou-wrk threads |");
        sb.AppendLine("|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|");
        foreach (Result r in results)
        {
            sb.AppendLine(r.ToRow());
        }
        return sb.ToString();
    }
}

internal enum Mode
{
    Pwrite,
    PwriteDirect,
    Uring,
    UringAsync,
    UringDirect,
    Device,
}

internal sealed record Cell(Mode Mode, int Size, int QueueDepth, int Batch, long FsyncBytes)
{
    public string ModeName => Mode switch
    {
        Mode.Pwrite => "pwrite",
        Mode.PwriteDirect => "pwrite-direct",
        Mode.Uring => "uring",
        Mode.UringAsync => "uring-async",
        Mode.UringDirect => "uring-direct",
        Mode.Device => "device",
        _ => throw new UnreachableException(),
    };

    public static List<Cell> Matrix(BenchOptions options)
    {
        var cells = new List<Cell>();
        foreach (long fsync in new[] { 0L, options.FsyncBytes })
        {
            foreach (int kib in options.SizesKib)
            {
                int size = kib << 10;
                cells.Add(new Cell(Mode.Pwrite, size, 1, 1, fsync));
                cells.Add(new Cell(Mode.PwriteDirect, size, 1, 1, fsync));
                cells.Add(new Cell(Mode.Uring, size, 1, 1, fsync));
                cells.Add(new Cell(Mode.Uring, size, 4, 2, fsync));
                cells.Add(new Cell(Mode.Uring, size, 16, 1, fsync));
                cells.Add(new Cell(Mode.Uring, size, 16, 8, fsync));
                cells.Add(new Cell(Mode.UringAsync, size, 16, 8, fsync));
                cells.Add(new Cell(Mode.UringDirect, size, 1, 1, fsync));
                cells.Add(new Cell(Mode.UringDirect, size, 4, 2, fsync));
                cells.Add(new Cell(Mode.UringDirect, size, 16, 8, fsync));
                cells.Add(new Cell(Mode.Device, size, 1, 1, fsync));
                cells.Add(new Cell(Mode.Device, size, 16, 1, fsync));
            }
        }
        return options.Only is null ? cells : cells.FindAll(c => c.ToString().Contains(options.Only, StringComparison.OrdinalIgnoreCase));
    }

    public static IEnumerable<Cell> Warmups() =>
        Enum.GetValues<Mode>().Select(m => new Cell(m, 64 << 10, 4, 2, 0));
}

internal sealed class Counters
{
    public long Bytes;
    public long Writes;
    public long Fsyncs;
    public long Enters;
    public long Sqes;
    public long FinishedAt;
    public CpuSample After;

    /// <summary>Stops the clock and samples CPU once the last operation has completed.</summary>
    public void Finish()
    {
        FinishedAt = Stopwatch.GetTimestamp();
        After = CpuSample.Take();
    }
}

internal sealed record Result(Cell Cell, Counters Counters, double Seconds, CpuSample Before, CpuSample After)
{
    public double MegabytesPerSecond => Counters.Bytes / 1e6 / Seconds;

    public string ToRow()
    {
        double gb = Counters.Bytes / 1e9;
        double processCpu = (After.ProcessTicks - Before.ProcessTicks) / CpuSample.TicksPerSecond;
        double ioWorkerCpu = (After.IoWorkerTicks - Before.IoWorkerTicks) / CpuSample.TicksPerSecond;
        double machineCpu = (After.SystemBusyTicks - Before.SystemBusyTicks) / CpuSample.TicksPerSecond;
        string fsync = Cell.FsyncBytes == 0 ? "none" : $"per {Cell.FsyncBytes >> 10} KiB ({Math.Max(1, Cell.FsyncBytes / Cell.Size)} writes)";
        string batch = Cell.Mode switch
        {
            Mode.Pwrite or Mode.PwriteDirect => "-",
            Mode.Device => "worker",
            _ => Cell.Batch.ToString(CultureInfo.InvariantCulture),
        };
        string sqesPerEnter = Counters.Enters == 0 ? "-" : (Counters.Sqes / (double)Counters.Enters).ToString("0.0", CultureInfo.InvariantCulture);
        return string.Create(CultureInfo.InvariantCulture,
            $"| {Cell.ModeName} | {Cell.Size >> 10} KiB | {Cell.QueueDepth} | {batch} | {fsync} | {MegabytesPerSecond:0} | {sqesPerEnter} | {processCpu / gb:0.000} | {ioWorkerCpu / gb:0.000} | {machineCpu / gb:0.000} | {After.IoWorkerThreads} |");
    }
}

internal sealed class BenchOptions
{
    public double Seconds { get; private set; } = 0.5;
    public int Rounds { get; private set; } = 3;
    public string Directory { get; private set; } = Path.Combine(Path.GetTempPath(), "kiou-iobench");
    public int[] SizesKib { get; private set; } = [16, 64, 256, 1024];
    public long FsyncBytes { get; private set; } = 1 << 20; // 1 MiB: one fdatasync per MiB appended
    public string? Only { get; private set; }
    public string? OutputFile { get; private set; }

    public static BenchOptions Parse(string[] args)
    {
        var o = new BenchOptions();
        for (int i = 0; i < args.Length; i++)
        {
            string value = i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--seconds": o.Seconds = double.Parse(value, CultureInfo.InvariantCulture); break;
                case "--dir": o.Directory = value; break;
                case "--rounds": o.Rounds = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "--sizes": o.SizesKib = value.Split(',').Select(int.Parse).ToArray(); break;
                case "--fsync-bytes": o.FsyncBytes = long.Parse(value, CultureInfo.InvariantCulture); break;
                case "--only": o.Only = value; break;
                case "--out": o.OutputFile = value; break;
                default: throw new ArgumentException($"unknown option {args[i]}");
            }
            i++;
        }
        return o;
    }
}
