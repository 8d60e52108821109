using Kiou.IoUring.Interop;

namespace Kiou.IoUring;

/// <summary>One harvested completion: the caller's user data, the kernel's result and CQE flags.</summary>
/// <remarks><see cref="Result"/> is what the syscall would have returned: bytes transferred, 0, or -errno.</remarks>
public readonly record struct Completion(ulong UserData, int Result, uint Flags);

/// <summary>The io_uring opcodes this binding can queue; values are the kernel's <c>IORING_OP_*</c>.</summary>
public enum RingOpcode : byte
{
    Nop = IoUringConstants.IORING_OP_NOP,
    Readv = IoUringConstants.IORING_OP_READV,
    Writev = IoUringConstants.IORING_OP_WRITEV,
    Fsync = IoUringConstants.IORING_OP_FSYNC,
    AsyncCancel = IoUringConstants.IORING_OP_ASYNC_CANCEL,
    Read = IoUringConstants.IORING_OP_READ,
    Write = IoUringConstants.IORING_OP_WRITE,
}

/// <summary>Setup parameters for a <see cref="Ring"/>.</summary>
public sealed class RingOptions
{
    /// <summary>SQ entries (rounded up to a power of two by the kernel, 1..32768). The CQ gets twice as many.</summary>
    public int Entries { get; init; } = 256;

    /// <summary>
    /// Sets IOSQE_ASYNC on reads and writes: skip the inline non-blocking attempt and go straight to an
    /// io-wq worker. Off by default; see docs/design/io_uring.md for when it pays.
    /// </summary>
    public bool ForceAsync { get; init; }

    /// <summary>
    /// IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN (6.1+): only the creating thread may submit,
    /// and completion work runs when that thread enters the kernel to wait. Falls back silently when the
    /// kernel rejects the flags.
    /// </summary>
    public bool SingleIssuer { get; init; }
}

/// <summary>A syscall on an open ring failed with an errno that is not part of normal operation.</summary>
public class RingException : IOException
{
    public RingException(string message, int errno)
        : base(message) => Errno = errno;

    /// <summary>The positive errno value.</summary>
    public int Errno { get; }
}

/// <summary>
/// io_uring_setup was refused. The message names the likely cause (no io_uring in the kernel, the
/// kernel.io_uring_disabled sysctl or a seccomp profile, the memlock limit).
/// </summary>
public sealed class RingSetupException : RingException
{
    public RingSetupException(string message, int errno)
        : base(message, errno)
    {
    }
}

/// <summary>The opcodes a kernel supports, from IORING_REGISTER_PROBE.</summary>
public sealed class RingProbe
{
    private readonly bool[] _supported;

    internal RingProbe(bool[] supported, int lastOpcode)
    {
        _supported = supported;
        LastOpcode = lastOpcode;
    }

    /// <summary>The highest opcode number the kernel knows (not necessarily supported).</summary>
    public int LastOpcode { get; }

    public bool IsSupported(RingOpcode opcode) => _supported[(byte)opcode];

    public bool IsSupported(byte opcode) => _supported[opcode];
}
