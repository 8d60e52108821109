namespace Kiou.IoUring.Interop;

#pragma warning disable IDE1006 // uapi spelling, not .NET naming

/// <summary>Constants from include/uapi/linux/io_uring.h (values identical on x86-64 and aarch64).</summary>
internal static class IoUringConstants
{
    // enum io_uring_op (only the prefix up to what this binding may use; numbering is ABI).
    public const byte IORING_OP_NOP = 0;
    public const byte IORING_OP_READV = 1;
    public const byte IORING_OP_WRITEV = 2;
    public const byte IORING_OP_FSYNC = 3;
    public const byte IORING_OP_READ_FIXED = 4;
    public const byte IORING_OP_WRITE_FIXED = 5;
    public const byte IORING_OP_POLL_ADD = 6;
    public const byte IORING_OP_ASYNC_CANCEL = 14;
    public const byte IORING_OP_FALLOCATE = 17;
    public const byte IORING_OP_READ = 22;
    public const byte IORING_OP_WRITE = 23;

    // sqe->flags
    public const byte IOSQE_FIXED_FILE = 1 << 0;
    public const byte IOSQE_IO_DRAIN = 1 << 1;
    public const byte IOSQE_IO_LINK = 1 << 2;
    public const byte IOSQE_IO_HARDLINK = 1 << 3;
    public const byte IOSQE_ASYNC = 1 << 4;
    public const byte IOSQE_BUFFER_SELECT = 1 << 5;
    public const byte IOSQE_CQE_SKIP_SUCCESS = 1 << 6;

    // io_uring_setup() flags
    public const uint IORING_SETUP_IOPOLL = 1u << 0;
    public const uint IORING_SETUP_SQPOLL = 1u << 1;
    public const uint IORING_SETUP_CQSIZE = 1u << 3;
    public const uint IORING_SETUP_CLAMP = 1u << 4;
    public const uint IORING_SETUP_SUBMIT_ALL = 1u << 7;
    public const uint IORING_SETUP_COOP_TASKRUN = 1u << 8;
    public const uint IORING_SETUP_SINGLE_ISSUER = 1u << 12;
    public const uint IORING_SETUP_DEFER_TASKRUN = 1u << 13;

    // io_uring_params->features
    public const uint IORING_FEAT_SINGLE_MMAP = 1u << 0;
    public const uint IORING_FEAT_NODROP = 1u << 1;
    public const uint IORING_FEAT_SUBMIT_STABLE = 1u << 2;
    public const uint IORING_FEAT_FAST_POLL = 1u << 5;
    public const uint IORING_FEAT_NATIVE_WORKERS = 1u << 9;

    // sq_ring->flags
    public const uint IORING_SQ_NEED_WAKEUP = 1u << 0;
    public const uint IORING_SQ_CQ_OVERFLOW = 1u << 1;

    // io_uring_enter(2) flags
    public const uint IORING_ENTER_GETEVENTS = 1u << 0;

    // sqe->fsync_flags
    public const uint IORING_FSYNC_DATASYNC = 1u << 0;

    // sqe->cancel_flags
    public const uint IORING_ASYNC_CANCEL_ALL = 1u << 0;
    public const uint IORING_ASYNC_CANCEL_ANY = 1u << 2;

    // mmap offsets (magic values of the io_uring fd's mmap)
    public const long IORING_OFF_SQ_RING = 0;
    public const long IORING_OFF_CQ_RING = 0x8000000;
    public const long IORING_OFF_SQES = 0x10000000;

    // io_uring_register(2) opcodes
    public const uint IORING_REGISTER_PROBE = 8;

    // io_uring_probe_op->flags
    public const ushort IO_URING_OP_SUPPORTED = 1 << 0;

    // 256: opcodes are a __u8, so the probe never needs more entries than this.
    public const int ProbeOpsMax = 256;
}

/// <summary>errno values (asm-generic numbering, shared by x86-64 and aarch64).</summary>
internal static class Errno
{
    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int EINTR = 4;
    public const int EIO = 5;
    public const int EBADF = 9;
    public const int EAGAIN = 11;
    public const int ENOMEM = 12;
    public const int EFAULT = 14;
    public const int EBUSY = 16;
    public const int EEXIST = 17;
    public const int EINVAL = 22;
    public const int ENFILE = 23;
    public const int EMFILE = 24;
    public const int EFBIG = 27;
    public const int ENOSPC = 28;
    public const int ENOSYS = 38;
    public const int ECANCELED = 125;
}

#pragma warning restore IDE1006
