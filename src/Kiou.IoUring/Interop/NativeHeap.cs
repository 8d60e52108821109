using System.Runtime.InteropServices;

namespace Kiou.IoUring.Interop;

#pragma warning disable IDE1006 // libc spelling, not .NET naming

/// <summary>
/// Gives free native heap memory back to the kernel: glibc returns freed blocks below its mmap threshold (such as the
/// 64 KiB page-aligned chunks of the write-behind and the read cache) to the heap, not to the system, so a process that
/// freed them keeps them resident until <c>malloc_trim</c> releases the whole free pages among them.
/// </summary>
public static partial class NativeHeap
{
    private static bool s_unavailable;

    /// <summary>malloc_trim(0): true if memory went back to the system; false otherwise or where libc has no such call (musl).</summary>
    public static bool Trim()
    {
        if (s_unavailable)
        {
            return false;
        }

        try
        {
            return malloc_trim(0) != 0;
        }
        catch (EntryPointNotFoundException)
        {
            s_unavailable = true;
            return false;
        }
    }

    [LibraryImport("libc")]
    private static partial int malloc_trim(nuint pad);
}
