using System.Buffers;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Kiou.IoUring.Interop;
using static Kiou.IoUring.Interop.IoUringConstants;

namespace Kiou.IoUring;

/// <summary>
/// One io_uring instance: the mmap'd SQ ring, CQ ring and SQE array, plus a preallocated table of
/// completion slots.
/// </summary>
/// <remarks>
/// Owning thread: not thread-safe. One thread queues, submits and drains (see <see cref="RingWorker"/> for the
/// multi-producer front end).
/// Lifecycle: constructor sets up the ring (throws <see cref="RingSetupException"/> naming the cause); Dispose
/// cancels and reaps whatever is still in flight, then unmaps and closes.
/// Guarantees:
/// - <c>sqe.user_data</c> is a slot number into <see cref="_slots"/>, never a pointer or GCHandle. The slot holds
///   the caller's user data and the pins of the buffers the kernel may touch; the pins are released only when
///   the CQE has been drained.
/// - In-flight operations are bounded by <see cref="Capacity"/> = CQ entries, so the CQ ring cannot overflow.
/// - <see cref="Drain"/> only copies CQEs out; no user code runs while the CQ is being harvested.
/// Memory ordering: the kernel reads the SQ tail and writes the SQ head; it writes the CQ tail and reads the
/// CQ head. Loads of kernel-written indexes are acquire (<see cref="Volatile.Read(ref uint)"/>), stores of
/// ours are release (<see cref="Volatile.Write(ref uint, uint)"/>): SQE contents are visible before the tail
/// that publishes them, and CQE contents are read after the tail that announced them, before the head that
/// returns them.
/// </remarks>
public sealed unsafe class Ring : IDisposable
{
    // 32768: IORING_MAX_ENTRIES in io_uring/io_uring.h.
    private const int EntriesMax = 32768;

    // 16: a writev takes at most this many buffers; the iovec arrays are preallocated per slot.
    public const int WritevBuffersMax = 16;

    // Reserved user_data values outside the slot range: internal operations whose CQEs Drain swallows.
    private const ulong CancelUserData = ulong.MaxValue;

    private readonly int _fd;
    private readonly uint _features;
    private readonly bool _forceAsync;

    private readonly void* _sqRing;
    private readonly nuint _sqRingSize;
    private readonly void* _cqRing;
    private readonly nuint _cqRingSize; // 0 when the CQ ring shares the SQ ring's mapping (IORING_FEAT_SINGLE_MMAP)
    private readonly io_uring_sqe* _sqes;
    private readonly nuint _sqesSize;

    private readonly uint* _sqHead;   // written by the kernel
    private readonly uint* _sqTail;   // written by us
    private readonly uint* _sqArray;
    private readonly uint _sqMask;
    private readonly uint _sqEntries;
    private readonly uint* _cqHead;   // written by us
    private readonly uint* _cqTail;   // written by the kernel
    private readonly io_uring_cqe* _cqes;
    private readonly uint _cqMask;
    private readonly uint _cqEntries;

    // Next SQE index to fill. Entries in [kernel head, _sqeTail) are queued but not yet consumed by the kernel.
    private uint _sqeTail;

    private readonly Slot[] _slots;
    private readonly int[] _freeSlots;
    private int _freeSlotCount;
    private iovec* _iovecs; // Capacity * WritevBuffersMax, allocated on the first writev
    private bool _cancelInFlight;
    private bool _disposed;

    private struct Slot
    {
        public ulong UserData;
        public MemoryHandle Pin;
        public MemoryHandle[]? Pins; // writev only
        public int PinCount;
        public bool InUse;
    }

    public Ring()
        : this(new RingOptions())
    {
    }

    /// <exception cref="RingSetupException">io_uring_setup was refused; the message names the likely cause.</exception>
    public Ring(RingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Entries, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.Entries, EntriesMax);
        _forceAsync = options.ForceAsync;

        io_uring_params p = default;
        uint requestedFlags = options.SingleIssuer ? IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN : 0;
        p.flags = requestedFlags;
        int fd = LibC.io_uring_setup((uint)options.Entries, &p);
        if (fd < 0 && requestedFlags != 0 && Marshal.GetLastPInvokeError() == Errno.EINVAL)
        {
            // Kernel older than 6.1: run without the optional flags.
            p = default;
            fd = LibC.io_uring_setup((uint)options.Entries, &p);
        }
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new RingSetupException(DescribeSetupFailure(errno, options.Entries), errno);
        }
        _fd = fd;
        SetupFlags = p.flags;
        _features = p.features;

        try
        {
            _sqRingSize = p.sq_off.array + p.sq_entries * sizeof(uint);
            nuint cqRingSize = p.cq_off.cqes + p.cq_entries * (uint)sizeof(io_uring_cqe);
            bool singleMmap = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
            if (singleMmap)
            {
                // 5.4+: one mapping serves both rings; it must be large enough for either.
                _sqRingSize = Math.Max(_sqRingSize, cqRingSize);
            }
            _sqRing = Map(_sqRingSize, IORING_OFF_SQ_RING);
            if (singleMmap)
            {
                _cqRing = _sqRing;
                _cqRingSize = 0;
            }
            else
            {
                _cqRing = Map(cqRingSize, IORING_OFF_CQ_RING);
                _cqRingSize = cqRingSize;
            }
            _sqesSize = p.sq_entries * (uint)sizeof(io_uring_sqe);
            _sqes = (io_uring_sqe*)Map(_sqesSize, IORING_OFF_SQES);
        }
        catch
        {
            Unmap();
            LibC.close(_fd);
            throw;
        }

        byte* sq = (byte*)_sqRing;
        _sqHead = (uint*)(sq + p.sq_off.head);
        _sqTail = (uint*)(sq + p.sq_off.tail);
        _sqArray = (uint*)(sq + p.sq_off.array);
        _sqMask = *(uint*)(sq + p.sq_off.ring_mask);
        _sqEntries = *(uint*)(sq + p.sq_off.ring_entries);
        byte* cq = (byte*)_cqRing;
        _cqHead = (uint*)(cq + p.cq_off.head);
        _cqTail = (uint*)(cq + p.cq_off.tail);
        _cqes = (io_uring_cqe*)(cq + p.cq_off.cqes);
        _cqMask = *(uint*)(cq + p.cq_off.ring_mask);
        _cqEntries = *(uint*)(cq + p.cq_off.ring_entries);
        Debug.Assert(_sqEntries == p.sq_entries, "ring_entries disagrees with params");
        Debug.Assert(_cqEntries == p.cq_entries, "cq ring_entries disagrees with params");
        Debug.Assert(_cqEntries >= _sqEntries, "kernel makes the CQ at least as large as the SQ");
        _sqeTail = *_sqTail;

        int capacity = (int)_cqEntries;
        _slots = new Slot[capacity];
        _freeSlots = new int[capacity];
        for (int i = 0; i < capacity; i++)
        {
            _freeSlots[i] = capacity - 1 - i; // pop order 0, 1, 2, ...
        }
        _freeSlotCount = capacity;
    }

    /// <summary>SQ size: how many operations one io_uring_enter can take.</summary>
    public int SqEntries => (int)_sqEntries;

    /// <summary>How many operations may be in flight (queued, submitted or completed but not drained).</summary>
    public int Capacity => _slots.Length;

    /// <summary>Operations queued and not yet drained.</summary>
    public int InFlight => _slots.Length - _freeSlotCount;

    /// <summary>SQEs filled but not yet consumed by the kernel.</summary>
    public int Unsubmitted => (int)(_sqeTail - Volatile.Read(ref *_sqHead));

    /// <summary>CQEs waiting to be drained.</summary>
    public int CompletionsReady => (int)(Volatile.Read(ref *_cqTail) - *_cqHead);

    /// <summary>The IORING_SETUP_* flags the ring runs with.</summary>
    public uint SetupFlags { get; }

    /// <summary>The IORING_FEAT_* bits the kernel reported.</summary>
    public uint Features => _features;

    /// <summary>Queues a write of all of <paramref name="buffer"/> at <paramref name="filePosition"/>.</summary>
    /// <returns>false when the SQ is full (call <see cref="Submit"/>, then retry) or every slot is in flight
    /// (wait for and drain completions first).</returns>
    /// <remarks>The buffer is pinned until this operation's CQE is drained. The kernel may write fewer bytes
    /// than asked; the completion's result says how many.</remarks>
    public bool TryQueueWrite(int fd, ReadOnlyMemory<byte> buffer, long filePosition, ulong userData)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(filePosition);
        if (!TryReserve(out int slot, out io_uring_sqe* sqe))
        {
            return false;
        }
        MemoryHandle pin = buffer.Pin();
        _slots[slot].Pin = pin;
        PrepareReadWrite(sqe, IORING_OP_WRITE, fd, (ulong)pin.Pointer, (uint)buffer.Length, filePosition, slot);
        Commit(slot, userData);
        return true;
    }

    /// <summary>Queues a write of all <paramref name="buffers"/>, back to back, at <paramref name="filePosition"/>.</summary>
    /// <returns>false when the SQ is full or every slot is in flight, as <see cref="TryQueueWrite(int, ReadOnlyMemory{byte}, long, ulong)"/>.</returns>
    public bool TryQueueWritev(int fd, ReadOnlySpan<ReadOnlyMemory<byte>> buffers, long filePosition, ulong userData)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(filePosition);
        ArgumentOutOfRangeException.ThrowIfZero(buffers.Length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(buffers.Length, WritevBuffersMax);
        if (!TryReserve(out int slot, out io_uring_sqe* sqe))
        {
            return false;
        }
        if (_iovecs == null)
        {
            _iovecs = (iovec*)NativeMemory.Alloc((nuint)(_slots.Length * WritevBuffersMax), (nuint)sizeof(iovec));
        }
        ref Slot s = ref _slots[slot];
        s.Pins ??= new MemoryHandle[WritevBuffersMax];
        iovec* iov = _iovecs + (slot * WritevBuffersMax);
        for (int i = 0; i < buffers.Length; i++)
        {
            MemoryHandle pin = buffers[i].Pin();
            s.Pins[i] = pin;
            iov[i].iov_base = pin.Pointer;
            iov[i].iov_len = (nuint)buffers[i].Length;
        }
        s.PinCount = buffers.Length;
        // The iovec array itself stays in place until the CQE is drained, so IORING_FEAT_SUBMIT_STABLE
        // (5.5+) is not needed for correctness.
        PrepareReadWrite(sqe, IORING_OP_WRITEV, fd, (ulong)iov, (uint)buffers.Length, filePosition, slot);
        Commit(slot, userData);
        return true;
    }

    /// <summary>Queues a read into <paramref name="buffer"/> from <paramref name="filePosition"/>.</summary>
    /// <returns>false when the SQ is full or every slot is in flight.</returns>
    public bool TryQueueRead(int fd, Memory<byte> buffer, long filePosition, ulong userData)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(filePosition);
        if (!TryReserve(out int slot, out io_uring_sqe* sqe))
        {
            return false;
        }
        MemoryHandle pin = buffer.Pin();
        _slots[slot].Pin = pin;
        PrepareReadWrite(sqe, IORING_OP_READ, fd, (ulong)pin.Pointer, (uint)buffer.Length, filePosition, slot);
        Commit(slot, userData);
        return true;
    }

    /// <summary>Queues a read into memory the caller keeps valid until the CQE is drained (e.g. native memory).</summary>
    internal bool TryQueueRead(int fd, byte* buffer, uint length, long filePosition, ulong userData)
    {
        if (!TryReserve(out int slot, out io_uring_sqe* sqe))
        {
            return false;
        }
        PrepareReadWrite(sqe, IORING_OP_READ, fd, (ulong)buffer, length, filePosition, slot);
        Commit(slot, userData);
        return true;
    }

    /// <summary>Queues an fsync (or fdatasync when <paramref name="dataSync"/>) of <paramref name="fd"/>.</summary>
    /// <remarks>Not ordered against other queued operations: it covers writes that completed before it was queued.</remarks>
    /// <returns>false when the SQ is full or every slot is in flight.</returns>
    public bool TryQueueFsync(int fd, bool dataSync, ulong userData)
    {
        if (!TryReserve(out int slot, out io_uring_sqe* sqe))
        {
            return false;
        }
        *sqe = default;
        sqe->opcode = IORING_OP_FSYNC;
        sqe->fd = fd;
        sqe->rw_flags = dataSync ? IORING_FSYNC_DATASYNC : 0;
        sqe->user_data = (ulong)slot;
        Commit(slot, userData);
        return true;
    }

    /// <summary>Queues a no-op; its completion result is 0.</summary>
    /// <returns>false when the SQ is full or every slot is in flight.</returns>
    public bool TryQueueNop(ulong userData)
    {
        if (!TryReserve(out int slot, out io_uring_sqe* sqe))
        {
            return false;
        }
        *sqe = default;
        sqe->opcode = IORING_OP_NOP;
        sqe->fd = -1;
        sqe->user_data = (ulong)slot;
        Commit(slot, userData);
        return true;
    }

    /// <summary>Hands every queued SQE to the kernel in one io_uring_enter, without waiting.</summary>
    /// <returns>How many SQEs the kernel consumed (0 when it is temporarily out of resources).</returns>
    public int Submit() => Enter(0);

    /// <summary>
    /// Hands every queued SQE to the kernel and sleeps until at least <paramref name="minComplete"/> CQEs are
    /// ready, in one io_uring_enter.
    /// </summary>
    /// <returns>How many SQEs the kernel consumed.</returns>
    public int SubmitAndWait(int minComplete)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(minComplete);
        // Waiting for more than can ever complete would sleep forever.
        ArgumentOutOfRangeException.ThrowIfGreaterThan(minComplete, InFlight + (_cancelInFlight ? 1 : 0));
        return Enter((uint)minComplete);
    }

    private int Enter(uint minComplete)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        // Release: the SQEs and array entries written by TryQueue* become visible before the new tail.
        Volatile.Write(ref *_sqTail, _sqeTail);
        int submittedTotal = 0;
        while (true)
        {
            uint toSubmit = (uint)Unsubmitted;
            if (toSubmit == 0 && (minComplete == 0 || CompletionsReady >= minComplete))
            {
                return submittedTotal;
            }
            // DEFER_TASKRUN rings only post completions when we ask for events, so always ask when waiting.
            uint flags = minComplete > 0 || (SetupFlags & IORING_SETUP_DEFER_TASKRUN) != 0 ? IORING_ENTER_GETEVENTS : 0;
            int ret = LibC.io_uring_enter(_fd, toSubmit, minComplete, flags);
            if (ret >= 0)
            {
                submittedTotal += ret;
                if (ret == 0 && toSubmit > 0 && minComplete == 0)
                {
                    return submittedTotal; // the kernel took nothing: do not spin
                }
                // Fewer than toSubmit: an SQE failed to prepare (its CQE says why) and the rest are still
                // queued; the loop submits them. Or the wait ended early: the loop checks the CQ again.
                continue;
            }
            int errno = Marshal.GetLastPInvokeError();
            switch (errno)
            {
                case Errno.EINTR:
                    // Signals are routine in .NET (the runtime uses them to suspend threads for GC).
                    continue;
                case Errno.EAGAIN:
                case Errno.EBUSY:
                    // Out of kernel resources or the CQ is backed up: the caller must drain completions.
                    return submittedTotal;
                default:
                    throw new RingException($"io_uring_enter failed: errno {errno}", errno);
            }
        }
    }

    /// <summary>
    /// Copies ready CQEs into <paramref name="completions"/> and returns their slots (unpinning their
    /// buffers). Runs no callbacks.
    /// </summary>
    /// <returns>How many completions were written.</returns>
    public int Drain(Span<Completion> completions)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        uint head = *_cqHead;
        // Acquire: CQE contents written before the tail are visible once we see the tail.
        uint tail = Volatile.Read(ref *_cqTail);
        int count = 0;
        while (head != tail && count < completions.Length)
        {
            io_uring_cqe cqe = _cqes[head & _cqMask];
            head++;
            if (cqe.user_data == CancelUserData)
            {
                _cancelInFlight = false;
                continue;
            }
            Debug.Assert(cqe.user_data < (ulong)_slots.Length, "user_data is not a slot");
            int slot = (int)cqe.user_data;
            completions[count++] = new Completion(_slots[slot].UserData, cqe.res, cqe.flags);
            Release(slot);
        }
        // Release: we are done reading these CQEs; the kernel may reuse their space.
        Volatile.Write(ref *_cqHead, head);
        return count;
    }

    /// <summary>Asks the kernel which opcodes it supports (IORING_REGISTER_PROBE, 5.6+).</summary>
    /// <exception cref="RingException">The kernel does not know IORING_REGISTER_PROBE (EINVAL before 5.6).</exception>
    public RingProbe Probe()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        nuint size = (nuint)(sizeof(io_uring_probe) + (ProbeOpsMax * sizeof(io_uring_probe_op)));
        byte* buffer = (byte*)NativeMemory.AllocZeroed(size);
        try
        {
            if (LibC.io_uring_register(_fd, IORING_REGISTER_PROBE, buffer, ProbeOpsMax) < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                throw new RingException($"IORING_REGISTER_PROBE failed: errno {errno} (EINVAL: kernel older than 5.6)", errno);
            }
            var probe = (io_uring_probe*)buffer;
            var ops = (io_uring_probe_op*)(buffer + sizeof(io_uring_probe));
            var supported = new bool[ProbeOpsMax];
            for (int i = 0; i < probe->ops_len; i++)
            {
                supported[ops[i].op] = (ops[i].flags & IO_URING_OP_SUPPORTED) != 0;
            }
            return new RingProbe(supported, probe->last_op);
        }
        finally
        {
            NativeMemory.Free(buffer);
        }
    }

    /// <summary>
    /// Cancels what is still in flight, waits for every CQE (so no buffer is released while the kernel may
    /// still touch it), then unmaps the rings and closes the ring fd.
    /// </summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        try
        {
            ReapAll();
        }
        finally
        {
            _disposed = true;
            Unmap();
            LibC.close(_fd);
            for (int i = 0; i < _slots.Length; i++)
            {
                if (_slots[i].InUse)
                {
                    // Only reachable if ReapAll threw: leak the pins rather than unpin memory the kernel may
                    // still write (reads). Closing the ring cancels the requests.
                    _slots[i] = default;
                }
            }
            if (_iovecs != null)
            {
                NativeMemory.Free(_iovecs);
                _iovecs = null;
            }
        }
    }

    private void ReapAll()
    {
        if (InFlight == 0)
        {
            return;
        }
        Submit();
        // IORING_ASYNC_CANCEL_ANY (5.19+): cancel every request, e.g. a read on an idle pipe that would
        // otherwise never complete. Regular-file I/O is not cancellable once started; we wait for it.
        io_uring_sqe* sqe = NextSqe();
        if (sqe != null)
        {
            *sqe = default;
            sqe->opcode = IORING_OP_ASYNC_CANCEL;
            sqe->fd = -1;
            sqe->rw_flags = IORING_ASYNC_CANCEL_ANY;
            sqe->user_data = CancelUserData;
            _sqeTail++;
            _cancelInFlight = true;
        }
        Span<Completion> sink = stackalloc Completion[64];
        while (InFlight > 0 || _cancelInFlight)
        {
            Enter(1);
            Drain(sink);
        }
    }

    private bool TryReserve(out int slot, out io_uring_sqe* sqe)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        sqe = null;
        slot = -1;
        if (_freeSlotCount == 0)
        {
            return false;
        }
        sqe = NextSqe();
        if (sqe == null)
        {
            return false;
        }
        slot = _freeSlots[--_freeSlotCount];
        Debug.Assert(!_slots[slot].InUse, "free slot in use");
        return true;
    }

    // The next free SQE, or null when the SQ is full. Does not advance the tail.
    private io_uring_sqe* NextSqe()
    {
        uint head = Volatile.Read(ref *_sqHead);
        if (_sqeTail - head >= _sqEntries)
        {
            return null;
        }
        uint index = _sqeTail & _sqMask;
        _sqArray[index] = index;
        return _sqes + index;
    }

    private void Commit(int slot, ulong userData)
    {
        ref Slot s = ref _slots[slot];
        s.UserData = userData;
        s.InUse = true;
        _sqeTail++;
        Debug.Assert(Unsubmitted <= (int)_sqEntries, "SQ overfilled");
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void PrepareReadWrite(io_uring_sqe* sqe, byte opcode, int fd, ulong address, uint length, long filePosition, int slot)
    {
        *sqe = default;
        sqe->opcode = opcode;
        sqe->flags = _forceAsync ? IOSQE_ASYNC : (byte)0;
        sqe->fd = fd;
        sqe->off = (ulong)filePosition;
        sqe->addr = address;
        sqe->len = length;
        sqe->user_data = (ulong)slot;
    }

    private void Release(int slot)
    {
        ref Slot s = ref _slots[slot];
        Debug.Assert(s.InUse, "completion for a free slot");
        s.Pin.Dispose();
        s.Pin = default;
        if (s.PinCount > 0)
        {
            for (int i = 0; i < s.PinCount; i++)
            {
                s.Pins![i].Dispose();
                s.Pins[i] = default;
            }
            s.PinCount = 0;
        }
        s.InUse = false;
        s.UserData = 0;
        _freeSlots[_freeSlotCount++] = slot;
        Debug.Assert(_freeSlotCount <= _slots.Length, "slot freed twice");
    }

    private void* Map(nuint size, long offset)
    {
        void* address = LibC.mmap(null, size, LibC.PROT_READ | LibC.PROT_WRITE, LibC.MAP_SHARED | LibC.MAP_POPULATE, _fd, offset);
        if (address == LibC.MAP_FAILED)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new RingSetupException(
                $"mmap of the io_uring rings failed: errno {errno}" + (errno == Errno.ENOMEM ? " (ENOMEM: out of memory or the memlock limit, ulimit -l)" : ""),
                errno);
        }
        return address;
    }

    private void Unmap()
    {
        if (_sqes != null)
        {
            LibC.munmap(_sqes, _sqesSize);
        }
        if (_cqRingSize != 0 && _cqRing != null)
        {
            LibC.munmap(_cqRing, _cqRingSize);
        }
        if (_sqRing != null)
        {
            LibC.munmap(_sqRing, _sqRingSize);
        }
    }

    /// <summary>One line naming the likely cause of an io_uring_setup failure.</summary>
    internal static string DescribeSetupFailure(int errno, int entries) => errno switch
    {
        Errno.ENOSYS => "io_uring_setup failed with ENOSYS: this kernel has no io_uring (built without CONFIG_IO_URING, or older than 5.1)",
        Errno.EPERM => "io_uring_setup failed with EPERM: " + DescribeEperm(),
        Errno.ENOMEM => $"io_uring_setup failed with ENOMEM: not enough locked memory for {entries} entries (RLIMIT_MEMLOCK, `ulimit -l`, charged on kernels before 5.12) or the system is out of memory",
        Errno.EINVAL => $"io_uring_setup failed with EINVAL: entries={entries} or a setup flag is not supported by this kernel",
        Errno.EMFILE or Errno.ENFILE => "io_uring_setup failed: too many open files (EMFILE/ENFILE)",
        _ => $"io_uring_setup failed: errno {errno}",
    };

    private static string DescribeEperm()
    {
        const string Seccomp = "a seccomp profile blocks io_uring_setup (Docker's default profile does: allow the io_uring_* syscalls in a custom profile)";
        return IoUringSupport.ReadDisabledSysctl() switch
        {
            null or "0" => Seccomp + "; kernel.io_uring_disabled is 0 or absent",
            "1" => "kernel.io_uring_disabled=1 lets only members of kernel.io_uring_group create rings, or " + Seccomp,
            string value => $"kernel.io_uring_disabled={value} (sysctl) turns io_uring off for every process",
        };
    }
}
