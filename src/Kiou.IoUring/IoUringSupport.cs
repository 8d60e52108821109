namespace Kiou.IoUring;

/// <summary>Checks that tell, before or after a failed setup, why io_uring cannot be used here.</summary>
public static class IoUringSupport
{
    private const string DisabledSysctlPath = "/proc/sys/kernel/io_uring_disabled";

    /// <summary>
    /// The value of kernel.io_uring_disabled (6.6+): "0" allowed, "1" only for kernel.io_uring_group,
    /// "2" disabled. Null when the kernel has no such sysctl.
    /// </summary>
    public static string? ReadDisabledSysctl()
    {
        try
        {
            return File.ReadAllText(DisabledSysctlPath).Trim();
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>
    /// True when a ring can be set up in this process; otherwise false and a one-line reason.
    /// Sets up and tears down a 2-entry ring.
    /// </summary>
    public static bool TryProbeSetup(out string? whyNot)
    {
        string? disabled = ReadDisabledSysctl();
        if (disabled is not null && disabled != "0")
        {
            whyNot = $"kernel.io_uring_disabled={disabled} (sysctl)";
            return false;
        }
        try
        {
            using var ring = new Ring(new RingOptions { Entries = 2 });
        }
        catch (RingSetupException e)
        {
            whyNot = e.Message;
            return false;
        }
        whyNot = null;
        return true;
    }
}
