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
            return (before, before);
        }

        var raised = new Rlimit { rlim_cur = current.rlim_max, rlim_max = current.rlim_max };
        return setrlimit(RLIMIT_NOFILE, in raised) == 0 ? (before, Clamp(current.rlim_max)) : (before, before);
    }

    private static long Clamp(ulong v) => v > long.MaxValue ? long.MaxValue : (long)v;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int getrlimit(int resource, out Rlimit rlim);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setrlimit(int resource, in Rlimit rlim);
}
