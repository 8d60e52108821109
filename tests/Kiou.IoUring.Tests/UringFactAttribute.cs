using Kiou.IoUring;

namespace Kiou.IoUring.Tests;

/// <summary>
/// A fact that needs a working io_uring. xunit 2 has no dynamic skip, so the attribute decides at discovery:
/// when this process cannot set up a ring (seccomp, sysctl, old kernel), the test is skipped with the reason.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class UringFactAttribute : FactAttribute
{
    private static readonly Lazy<string?> SkipReason = new(() =>
        IoUringSupport.TryProbeSetup(out string? whyNot) ? null : "io_uring unavailable: " + whyNot);

    public UringFactAttribute()
    {
        if (SkipReason.Value is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>The theory counterpart of <see cref="UringFactAttribute"/>.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class UringTheoryAttribute : TheoryAttribute
{
    public UringTheoryAttribute()
    {
        var fact = new UringFactAttribute();
        if (fact.Skip is { } reason)
        {
            Skip = reason;
        }
    }
}
