using System.Runtime.InteropServices;

namespace Kiou.IoUring.Interop;

#pragma warning disable IDE1006 // libc spelling, not .NET naming

/// <summary>
/// The libc entry points this binding needs. glibc has no io_uring wrappers, so the three io_uring
/// syscalls go through <c>syscall(2)</c>; everything else is a plain libc function.
/// </summary>
/// <remarks>
/// <c>long syscall(long number, ...)</c> is variadic, and P/Invoke cannot express that. Declaring it with
/// a fixed arity of seven <c>long</c>s is still correct on the two ABIs we run on:
/// - x86-64 SysV: variadic integer/pointer arguments travel in the same registers (rdi, rsi, rdx, rcx,
///   r8, r9, then the stack) as fixed ones. The only extra rule is %al = number of vector registers used,
///   which a fixed-arity call leaves undefined; glibc's syscall.S never reads %al (it only shuffles
///   integer registers), so this is harmless.
/// - aarch64 Linux (AAPCS64): variadic arguments use x0..x7 exactly like fixed ones (only Apple's arm64
///   ABI puts them on the stack).
/// Unused trailing arguments are passed as 0; the kernel ignores arguments a syscall does not take.
/// The io_uring syscall numbers (425/426/427) come from the unified table added in 5.1 and are the same on
/// x86-64 and aarch64. <c>open</c> is variadic too (mode) and is declared the same way for the same reason.
/// </remarks>
internal static unsafe partial class LibC
{
    private const string Library = "libc";

    // Unified syscall numbers (include/uapi/asm-generic/unistd.h and arch/x86/entry/syscalls/syscall_64.tbl).
    public const long SYS_io_uring_setup = 425;
    public const long SYS_io_uring_enter = 426;
    public const long SYS_io_uring_register = 427;

    public const int PROT_READ = 0x1;
    public const int PROT_WRITE = 0x2;
    public const int MAP_SHARED = 0x01;
    public const int MAP_PRIVATE = 0x02;
    public const int MAP_ANONYMOUS = 0x20;
    public const int MAP_POPULATE = 0x8000;
    public static readonly void* MAP_FAILED = (void*)-1;

    public const int O_RDONLY = 0x0;
    public const int O_WRONLY = 0x1;
    public const int O_RDWR = 0x2;
    public const int O_CREAT = 0x40;
    public const int O_TRUNC = 0x200;
    public const int O_NONBLOCK = 0x800;
    public const int O_CLOEXEC = 0x80000;

    // O_DIRECT differs by architecture: 040000 (x86-64) vs 0200000 (aarch64, asm-generic/fcntl.h is
    // overridden in arch/arm64/include/uapi/asm/fcntl.h).
    public static int O_DIRECT => RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? 0x10000 : 0x4000;

    public const int EFD_CLOEXEC = O_CLOEXEC;

    [LibraryImport(Library, EntryPoint = "syscall", SetLastError = true)]
    private static partial long syscall(long number, long a1, long a2, long a3, long a4, long a5, long a6);

    /// <summary>Returns the ring fd, or -1 with errno set.</summary>
    public static int io_uring_setup(uint entries, io_uring_params* p) =>
        (int)syscall(SYS_io_uring_setup, entries, (long)p, 0, 0, 0, 0);

    /// <summary>Returns the number of SQEs consumed, or -1 with errno set.</summary>
    public static int io_uring_enter(int fd, uint toSubmit, uint minComplete, uint flags) =>
        (int)syscall(SYS_io_uring_enter, fd, toSubmit, minComplete, flags, 0 /* sigset_t* */, 0 /* sigsz */);

    public static int io_uring_register(int fd, uint opcode, void* arg, uint nrArgs) =>
        (int)syscall(SYS_io_uring_register, fd, opcode, (long)arg, nrArgs, 0, 0);

    [LibraryImport(Library, SetLastError = true)]
    public static partial void* mmap(void* addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport(Library, SetLastError = true)]
    public static partial int munmap(void* addr, nuint length);

    [LibraryImport(Library, SetLastError = true)]
    public static partial int eventfd(uint initval, int flags);

    [LibraryImport(Library, SetLastError = true)]
    public static partial nint write(int fd, void* buf, nuint count);

    [LibraryImport(Library, SetLastError = true)]
    public static partial nint pwritev(int fd, iovec* iov, int iovcnt, long offset);

    [LibraryImport(Library, SetLastError = true)]
    public static partial int close(int fd);

    [LibraryImport(Library, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int open(string pathname, int flags, uint mode);
}

#pragma warning restore IDE1006
