using System.Runtime.InteropServices;

namespace Kiou.IoUring.Interop;

// Kernel structs from include/uapi/linux/io_uring.h, spelled as there. Layouts are pinned by
// InteropLayoutTests (sizes and field positions taken from the C header with offsetof).
// Unions are expressed with explicit layout; only the members this binding uses are named.

#pragma warning disable IDE1006, CS8981 // uapi spelling (all lower case), not .NET naming

/// <summary>struct io_sqring_offsets: positions inside the SQ ring mapping, filled by io_uring_setup.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct io_sqring_offsets
{
    public uint head;
    public uint tail;
    public uint ring_mask;
    public uint ring_entries;
    public uint flags;
    public uint dropped;
    public uint array;
    public uint resv1;
    public ulong user_addr; // resv2 in older headers
}

/// <summary>struct io_cqring_offsets: positions inside the CQ ring mapping, filled by io_uring_setup.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct io_cqring_offsets
{
    public uint head;
    public uint tail;
    public uint ring_mask;
    public uint ring_entries;
    public uint overflow;
    public uint cqes;
    public uint flags;
    public uint resv1;
    public ulong user_addr; // resv2 in older headers
}

/// <summary>struct io_uring_params: in/out argument of io_uring_setup (120 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct io_uring_params
{
    public uint sq_entries;
    public uint cq_entries;
    public uint flags;
    public uint sq_thread_cpu;
    public uint sq_thread_idle;
    public uint features;
    public uint wq_fd;
    public fixed uint resv[3];
    public io_sqring_offsets sq_off;
    public io_cqring_offsets cq_off;
}

/// <summary>struct io_uring_sqe: one submission queue entry (64 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 64)]
internal struct io_uring_sqe
{
    [FieldOffset(0)] public byte opcode;
    [FieldOffset(1)] public byte flags;        // IOSQE_*
    [FieldOffset(2)] public ushort ioprio;
    [FieldOffset(4)] public int fd;
    [FieldOffset(8)] public ulong off;         // union { off; addr2; cmd_op }
    [FieldOffset(16)] public ulong addr;       // union { addr; splice_off_in }
    [FieldOffset(24)] public uint len;
    [FieldOffset(28)] public uint rw_flags;    // union { rw_flags; fsync_flags; ...; cancel_flags }
    [FieldOffset(32)] public ulong user_data;
    [FieldOffset(40)] public ushort buf_index; // union { buf_index; buf_group } (packed)
    [FieldOffset(42)] public ushort personality;
    [FieldOffset(44)] public int splice_fd_in; // union { splice_fd_in; file_index; addr_len }
    [FieldOffset(48)] public ulong addr3;
    [FieldOffset(56)] public ulong __pad2;
}

/// <summary>struct io_uring_cqe: one completion queue entry (16 bytes; no IORING_SETUP_CQE32).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct io_uring_cqe
{
    public ulong user_data;
    public int res;
    public uint flags;
}

/// <summary>struct io_uring_probe_op: one entry of io_uring_probe.ops[].</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct io_uring_probe_op
{
    public byte op;
    public byte resv;
    public ushort flags; // IO_URING_OP_SUPPORTED
    public uint resv2;
}

/// <summary>struct io_uring_probe: header of the IORING_REGISTER_PROBE buffer; ops[] follows it.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct io_uring_probe
{
    public byte last_op;
    public byte ops_len;
    public ushort resv;
    public fixed uint resv2[3];
    // struct io_uring_probe_op ops[]; (flexible array, starts at byte 16)
}

/// <summary>struct iovec from include/uapi/linux/uio.h (16 bytes on 64-bit).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct iovec
{
    public void* iov_base;
    public nuint iov_len;
}

#pragma warning restore IDE1006, CS8981
