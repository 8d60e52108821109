namespace Kiou.IoBench;

/// <summary>
/// CPU time from procfs, in clock ticks (USER_HZ = 100 on every Linux build we target; sysconf is not reachable
/// without P/Invoke, which stays in Kiou.IoUring).
/// </summary>
internal readonly record struct CpuSample(long ProcessTicks, long IoWorkerTicks, int IoWorkerThreads, long SystemBusyTicks)
{
    public const double TicksPerSecond = 100;

    public static CpuSample Take()
    {
        long ioWorkerTicks = 0;
        int ioWorkers = 0;
        foreach (string task in Directory.GetDirectories("/proc/self/task"))
        {
            string? comm = TryRead(Path.Combine(task, "comm"));
            if (comm is null || !comm.StartsWith("iou-wrk", StringComparison.Ordinal))
            {
                continue;
            }
            ioWorkers++;
            string? stat = TryRead(Path.Combine(task, "stat"));
            if (stat is not null)
            {
                ioWorkerTicks += UserPlusSystem(stat);
            }
        }
        return new CpuSample(UserPlusSystem(File.ReadAllText("/proc/self/stat")), ioWorkerTicks, ioWorkers, SystemBusy());
    }

    // Fields 14 (utime) and 15 (stime) of /proc/[pid]/stat; the comm field may hold spaces, so count from ')'.
    private static long UserPlusSystem(string stat)
    {
        string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return long.Parse(fields[11]) + long.Parse(fields[12]);
    }

    // All CPUs, from the first line of /proc/stat: user nice system idle iowait irq softirq steal ...
    private static long SystemBusy()
    {
        using var reader = new StreamReader("/proc/stat");
        string[] f = reader.ReadLine()!.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return long.Parse(f[1]) + long.Parse(f[2]) + long.Parse(f[3]) + long.Parse(f[6]) + long.Parse(f[7]) + long.Parse(f[8]);
    }

    private static string? TryRead(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (IOException)
        {
            return null; // the thread exited
        }
    }
}
