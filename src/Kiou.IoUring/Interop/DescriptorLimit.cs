using System.Runtime.InteropServices;

namespace Kiou.IoUring.Interop;

/// <summary>
/// getrlimit/setrlimit(RLIMIT_NOFILE). Every open partition holds descriptors, so the broker raises its soft limit
/// to the hard one at start-up (as most servers do) and sizes its partition limit by the result.
/// </summary>
public static partial class DescriptorLimit
{
    private const int RLIMIT_NOFILE = 7; // the same on x86-64 and aarch64

    [StructLayout(LayoutKind.Sequential)]
    private struct Rlimit
    {
        public ulong rlim_cur;
        public ulong rlim_max;
    }

    /// <summary>
    /// Descriptors kept free below the limit: connections and new segment files stop short of it. The .NET runtime
    /// needs a descriptor for a moment to start a thread (a pipe) and aborts the whole process ("Out of memory.")
    /// when it cannot get one, which the thread pool may do at any time.
    /// </summary>
    public const int Headroom = 64;

    private static long s_soft;

    /// <summary>The soft limit, read once (and again after <see cref="RaiseSoftToHard"/>); -1 when unknown.</summary>
    public static long Soft
    {
        get
        {
            long soft = Volatile.Read(ref s_soft);
            if (soft == 0)
            {
                soft = getrlimit(RLIMIT_NOFILE, out Rlimit current) == 0 ? Clamp(current.rlim_cur) : -1;
                Volatile.Write(ref s_soft, soft);
            }

            return soft;
        }
    }

    /// <summary>
    /// True when <paramref name="handle"/>, just opened, took a descriptor within <see cref="Headroom"/> of the limit:
    /// the kernel gives the lowest free number, so every lower one is in use. The caller closes it and refuses.
    /// </summary>
    public static bool InHeadroom(SafeHandle handle)
    {
        long soft = Soft;
        return soft > 0 && (long)handle.DangerousGetHandle() >= soft - Headroom;
    }

    /// <summary>Raises the soft limit to the hard limit. Returns the soft limit before and after; -1 when it cannot be read.</summary>
    public static (long Before, long After) RaiseSoftToHard()
    {
        if (getrlimit(RLIMIT_NOFILE, out Rlimit current) != 0)
        {
            return (-1, -1);
        }

        long before = Clamp(current.rlim_cur);
        if (current.rlim_cur >= current.rlim_max)
        {
            Volatile.Write(ref s_soft, before);
            return (before, before);
        }

        var raised = new Rlimit { rlim_cur = current.rlim_max, rlim_max = current.rlim_max };
        long after = setrlimit(RLIMIT_NOFILE, in raised) == 0 ? Clamp(current.rlim_max) : before;
        Volatile.Write(ref s_soft, after);
        return (before, after);
    }

    private static long Clamp(ulong v) => v > long.MaxValue ? long.MaxValue : (long)v;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int getrlimit(int resource, out Rlimit rlim);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setrlimit(int resource, in Rlimit rlim);
}
