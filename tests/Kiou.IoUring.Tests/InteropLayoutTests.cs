using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Kiou.IoUring.Interop;

namespace Kiou.IoUring.Tests;

// Sizes and field positions from include/uapi/linux/io_uring.h, printed with sizeof/offsetof by gcc on x86-64.
public class InteropLayoutTests
{
    private static int Offset<T>(string field) => (int)Marshal.OffsetOf<T>(field);

    [Fact]
    public void io_uring_sqe_is_64_bytes_with_uapi_field_positions()
    {
        Assert.Equal(64, Unsafe.SizeOf<io_uring_sqe>());
        Assert.Equal(0, Offset<io_uring_sqe>(nameof(io_uring_sqe.opcode)));
        Assert.Equal(1, Offset<io_uring_sqe>(nameof(io_uring_sqe.flags)));
        Assert.Equal(2, Offset<io_uring_sqe>(nameof(io_uring_sqe.ioprio)));
        Assert.Equal(4, Offset<io_uring_sqe>(nameof(io_uring_sqe.fd)));
        Assert.Equal(8, Offset<io_uring_sqe>(nameof(io_uring_sqe.off)));
        Assert.Equal(16, Offset<io_uring_sqe>(nameof(io_uring_sqe.addr)));
        Assert.Equal(24, Offset<io_uring_sqe>(nameof(io_uring_sqe.len)));
        Assert.Equal(28, Offset<io_uring_sqe>(nameof(io_uring_sqe.rw_flags)));
        Assert.Equal(32, Offset<io_uring_sqe>(nameof(io_uring_sqe.user_data)));
        Assert.Equal(40, Offset<io_uring_sqe>(nameof(io_uring_sqe.buf_index)));
        Assert.Equal(42, Offset<io_uring_sqe>(nameof(io_uring_sqe.personality)));
        Assert.Equal(44, Offset<io_uring_sqe>(nameof(io_uring_sqe.splice_fd_in)));
        Assert.Equal(48, Offset<io_uring_sqe>(nameof(io_uring_sqe.addr3)));
    }

    [Fact]
    public void io_uring_cqe_is_16_bytes()
    {
        Assert.Equal(16, Unsafe.SizeOf<io_uring_cqe>());
        Assert.Equal(0, Offset<io_uring_cqe>(nameof(io_uring_cqe.user_data)));
        Assert.Equal(8, Offset<io_uring_cqe>(nameof(io_uring_cqe.res)));
        Assert.Equal(12, Offset<io_uring_cqe>(nameof(io_uring_cqe.flags)));
    }

    [Fact]
    public void io_uring_params_is_120_bytes()
    {
        Assert.Equal(120, Unsafe.SizeOf<io_uring_params>());
        Assert.Equal(0, Offset<io_uring_params>(nameof(io_uring_params.sq_entries)));
        Assert.Equal(20, Offset<io_uring_params>(nameof(io_uring_params.features)));
        Assert.Equal(24, Offset<io_uring_params>(nameof(io_uring_params.wq_fd)));
        Assert.Equal(28, Offset<io_uring_params>(nameof(io_uring_params.resv)));
        Assert.Equal(40, Offset<io_uring_params>(nameof(io_uring_params.sq_off)));
        Assert.Equal(80, Offset<io_uring_params>(nameof(io_uring_params.cq_off)));
    }

    [Fact]
    public void ring_offsets_are_40_bytes()
    {
        Assert.Equal(40, Unsafe.SizeOf<io_sqring_offsets>());
        Assert.Equal(24, Offset<io_sqring_offsets>(nameof(io_sqring_offsets.array)));
        Assert.Equal(32, Offset<io_sqring_offsets>(nameof(io_sqring_offsets.user_addr)));
        Assert.Equal(40, Unsafe.SizeOf<io_cqring_offsets>());
        Assert.Equal(20, Offset<io_cqring_offsets>(nameof(io_cqring_offsets.cqes)));
        Assert.Equal(24, Offset<io_cqring_offsets>(nameof(io_cqring_offsets.flags)));
        Assert.Equal(32, Offset<io_cqring_offsets>(nameof(io_cqring_offsets.user_addr)));
    }

    [Fact]
    public void io_uring_probe_header_is_16_bytes_and_ops_are_8()
    {
        Assert.Equal(16, Unsafe.SizeOf<io_uring_probe>());
        Assert.Equal(8, Unsafe.SizeOf<io_uring_probe_op>());
        Assert.Equal(2, Offset<io_uring_probe_op>(nameof(io_uring_probe_op.flags)));
    }

    [Fact]
    public void iovec_is_16_bytes()
    {
        Assert.Equal(16, Unsafe.SizeOf<iovec>());
        Assert.Equal(8, Offset<iovec>(nameof(iovec.iov_len)));
    }

    [Fact]
    public void Opcode_numbers_match_the_uapi_enum()
    {
        Assert.Equal(2, IoUringConstants.IORING_OP_WRITEV);
        Assert.Equal(3, IoUringConstants.IORING_OP_FSYNC);
        Assert.Equal(22, IoUringConstants.IORING_OP_READ);
        Assert.Equal(23, IoUringConstants.IORING_OP_WRITE);
        Assert.Equal((byte)RingOpcode.Write, IoUringConstants.IORING_OP_WRITE);
    }
}
