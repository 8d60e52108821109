using System.Buffers;
using System.Diagnostics;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using Kiou.IoUring.Interop;

namespace Kiou.IoUring;

/// <summary>Settings for a <see cref="RingWorker"/>.</summary>
public sealed class RingWorkerOptions
{
    /// <summary>SQ entries: the most SQEs one io_uring_enter carries. In-flight operations: twice this, minus one.</summary>
    public int Entries { get; init; } = 256;

    /// <summary>Bound of the queue between enqueuing threads and the worker (a power of two).</summary>
    public int QueueCapacity { get; init; } = 4096;

    /// <summary>See <see cref="RingOptions.ForceAsync"/>.</summary>
    public bool ForceAsync { get; init; }

    /// <summary>See <see cref="RingOptions.SingleIssuer"/>. The worker creates its ring on its own thread, so this fits.</summary>
    public bool SingleIssuer { get; init; } = true;

    public string ThreadName { get; init; } = "kiou-ring";

    /// <summary>
    /// Merge queued writes to the same file at adjacent positions into one IORING_OP_WRITEV (at most
    /// <see cref="Ring.WritevBuffersMax"/> buffers, <see cref="CoalesceBytesMax"/> bytes). On by default.
    /// </summary>
    public bool CoalesceWrites { get; init; } = true;

    /// <summary>
    /// The worker executes writes itself (pwritev on its own thread, merged as with <see cref="CoalesceWrites"/>)
    /// instead of queueing IORING_OP_WRITE; fsyncs and reads still go through the ring. For buffered files on
    /// filesystems that cannot do non-blocking buffered writes (ext4), where the kernel hands every
    /// IORING_OP_WRITE to an io-wq worker thread; see docs/design/io_uring.md. Completion order and callbacks are
    /// unchanged: the callbacks run on the worker after the write, never inside a harvest.
    /// </summary>
    public bool InlineWrites { get; init; }

    /// <summary>Upper bound of one merged write, in bytes.</summary>
    public int CoalesceBytesMax { get; init; } = 4 << 20;

    /// <summary>Test seam: when positive, each write SQE asks for at most this many bytes, so the kernel's result
    /// is short and the resubmission path runs.</summary>
    internal int WriteBytesMaxForTest { get; init; }
}

/// <summary>
/// The thread that owns a <see cref="Ring"/>: other threads enqueue operations, the worker batches them into
/// io_uring_enter calls, harvests completions and runs the callbacks.
/// </summary>
/// <remarks>
/// Owning thread: one dedicated background thread does every submission, every harvest and every callback.
/// Any thread may call <see cref="TryEnqueue"/> / <see cref="Enqueue"/>; callbacks may enqueue too (those go to
/// a worker-local queue and never wait).
/// Wake-up: the worker only ever sleeps inside io_uring_enter. It keeps one IORING_OP_READ armed on an eventfd;
/// an enqueuing thread writes the eventfd only when the worker has announced it is about to sleep
/// (<see cref="_sleeping"/>), so a busy worker costs producers no syscall. The announce/recheck pair uses full
/// fences on both sides (Dekker), so a wake-up cannot be lost.
/// Batching: each loop turn moves everything queued since the previous turn into SQEs and hands them to the
/// kernel in the same io_uring_enter that then waits (more than <see cref="RingWorkerOptions.Entries"/> queued:
/// one enter per full SQ).
/// Bounds: the shared queue holds <see cref="RingWorkerOptions.QueueCapacity"/> requests; in flight are at
/// most the ring's CQ size minus one (the armed eventfd read), so the CQ cannot overflow; the worker-local
/// queue is bounded by the same capacity and overflowing it throws (a callback fan-out bug).
/// Lifecycle: the constructor starts the thread and returns once the ring is set up (or throws
/// <see cref="RingSetupException"/>). Dispose refuses new requests, lets everything already enqueued complete
/// (callbacks run), closes the ring and joins the thread.
/// </remarks>
public sealed unsafe class RingWorker : IDisposable
{
    private const ulong WakeUserData = ulong.MaxValue;

    private readonly RingWorkerOptions _options;
    private readonly BoundedMpscQueue<RingRequest> _queue;
    private readonly Queue<RingRequest> _localQueue = new();
    private readonly Queue<int> _retry = new(); // ops holding a slot whose SQE is still to be queued
    private readonly ReadOnlyMemory<byte>[] _iovScratch = new ReadOnlyMemory<byte>[Ring.WritevBuffersMax];
    private readonly MemoryHandle[] _pinScratch = new MemoryHandle[Ring.WritevBuffersMax];
    private readonly List<Completion> _inlineDone = new(); // writes done by InlineWrites, their callbacks still to run
    private readonly Thread _thread;
    private readonly int _eventFd;
    private readonly byte* _wakeBuffer; // the armed eventfd read lands here (8 bytes)

    // Worker thread only.
    private Ring _ring = null!;
    private Op[] _ops = null!;
    private int[] _freeOps = null!;
    private int _freeOpCount;
    private bool _wakeArmed;
    private long _enterCount;
    private long _sqeCount;
    private long _cqeCount;
    private int _largestBatch;
    private long _coalescedWrites;
    private RingRequest _carry; // dequeued while looking for a write to merge, placed first in the next turn
    private bool _hasCarry;

    // Shared.
    private int _sleeping;        // 1: the worker may be about to sleep; a producer that swaps it to 0 writes the eventfd
    private int _closing;         // 1: Dispose began, producers refuse
    private int _producersActive; // producers between their _closing check and their enqueue's end
    private volatile bool _drainAndExit;
    private ExceptionDispatchInfo? _startFailure;

    private struct Op
    {
        public RingRequest Request;  // the only request, or the first of a merged write
        public RingRequest[]? Group; // merged write: Group[0..GroupCount) back to back from Request.FilePosition
        public int GroupCount;       // 1 unless merged
        public int Length;           // writes: bytes of all requests
        public int BytesDone;        // writes: bytes the kernel already reported, the next SQE starts after them
    }

    /// <exception cref="RingSetupException">io_uring setup was refused; the message names the likely cause.</exception>
    public RingWorker(RingWorkerOptions? options = null)
    {
        _options = options ?? new RingWorkerOptions();
        _queue = new BoundedMpscQueue<RingRequest>(_options.QueueCapacity);
        // Blocking on purpose: io_uring completes a read on an O_NONBLOCK file with -EAGAIN instead of
        // waiting for it to become readable. Our write(2) to it cannot block (the counter never nears 2^64).
        _eventFd = LibC.eventfd(0, LibC.EFD_CLOEXEC);
        if (_eventFd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new RingSetupException($"eventfd failed: errno {errno}", errno);
        }
        _wakeBuffer = (byte*)NativeMemory.AllocZeroed(sizeof(ulong));
        using var started = new ManualResetEventSlim();
        _thread = new Thread(() => Run(started))
        {
            IsBackground = true,
            Name = _options.ThreadName,
        };
        _thread.Start();
        started.Wait();
        if (_startFailure is not null)
        {
            _thread.Join();
            ReleaseNativeResources();
            _startFailure.Throw();
        }
    }

    /// <summary>Opcodes the kernel supports, or null on kernels without IORING_REGISTER_PROBE (before 5.6).</summary>
    public RingProbe? Probe { get; private set; }

    /// <summary>True on the worker thread, i.e. inside a completion callback.</summary>
    public bool IsWorkerThread => Thread.CurrentThread == _thread;

    /// <summary>io_uring_enter calls so far (diagnostics: SQEs per enter shows the batching).</summary>
    public long EnterCount => Volatile.Read(ref _enterCount);

    /// <summary>SQEs queued so far, including the eventfd reads and write resubmissions.</summary>
    public long SqeCount => Volatile.Read(ref _sqeCount);

    /// <summary>Completions (CQEs) handled so far, including the eventfd reads.</summary>
    public long CqeCount => Volatile.Read(ref _cqeCount);

    /// <summary>Operations the kernel holds now (submitted, not yet completed); approximate when read off the worker.</summary>
    public int InFlight => _ops is { } ops ? ops.Length - Volatile.Read(ref _freeOpCount) : 0;

    /// <summary>Requests waiting in the shared queue for the worker to turn them into SQEs (approximate).</summary>
    public int Queued => _queue.ApproximateCount;

    /// <summary>Writes that went to the kernel as part of a merged IORING_OP_WRITEV rather than on their own.</summary>
    public long CoalescedWrites => Volatile.Read(ref _coalescedWrites);

    /// <summary>The most SQEs one io_uring_enter has submitted.</summary>
    public int LargestBatch => Volatile.Read(ref _largestBatch);

    /// <summary>
    /// Queues <paramref name="request"/> for the worker. False when the shared queue is full (never on the
    /// worker thread, whose requests go to its local queue).
    /// </summary>
    /// <exception cref="ObjectDisposedException">The worker is shutting down, or the request's file handle is closed.</exception>
    public bool TryEnqueue(in RingRequest request)
    {
        if (request.Callback is null)
        {
            throw new ArgumentException("use RingRequest.Write, Fsync or Read to build a request", nameof(request));
        }
        if (IsWorkerThread)
        {
            EnqueueLocal(request);
            return true;
        }
        Interlocked.Increment(ref _producersActive);
        try
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _closing) != 0, this);
            bool added = false;
            request.File.DangerousAddRef(ref added); // released when the operation completes
            if (!_queue.TryEnqueue(request))
            {
                request.File.DangerousRelease();
                return false;
            }
            // Full fence: our publish above must be visible before we read _sleeping, pairing with the
            // worker's Interlocked.Exchange(ref _sleeping, 1) before it rechecks the queue.
            Interlocked.MemoryBarrier();
            if (Volatile.Read(ref _sleeping) != 0 && Interlocked.Exchange(ref _sleeping, 0) != 0)
            {
                SignalEventFd();
            }
            return true;
        }
        finally
        {
            Interlocked.Decrement(ref _producersActive);
        }
    }

    /// <summary>
    /// Queues <paramref name="request"/>, waiting (spinning, then yielding) while the shared queue is full.
    /// Never waits on the worker thread.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The worker is shutting down, or the request's file handle is closed.</exception>
    public void Enqueue(in RingRequest request)
    {
        var spinner = new SpinWait();
        while (!TryEnqueue(request))
        {
            spinner.SpinOnce();
        }
    }

    /// <summary>
    /// Refuses new requests, waits until everything already enqueued has completed and its callback has run,
    /// then closes the ring and ends the thread. Must not be called from a callback.
    /// </summary>
    public void Dispose()
    {
        if (IsWorkerThread)
        {
            throw new InvalidOperationException("RingWorker.Dispose called from its own worker thread (a completion callback)");
        }
        if (Interlocked.Exchange(ref _closing, 1) != 0)
        {
            _thread.Join(); // a concurrent or repeated Dispose: just wait for the first one
            return;
        }
        // After this, no producer is inside TryEnqueue and every later one sees _closing: the queue holds its
        // final contents, and nobody but us writes the eventfd any more.
        var spinner = new SpinWait();
        while (Volatile.Read(ref _producersActive) != 0)
        {
            spinner.SpinOnce();
        }
        _drainAndExit = true;
        SignalEventFd();
        _thread.Join();
        ReleaseNativeResources();
    }

    private void ReleaseNativeResources()
    {
        LibC.close(_eventFd);
        NativeMemory.Free(_wakeBuffer);
    }

    private void EnqueueLocal(in RingRequest request)
    {
        if (_localQueue.Count >= _options.QueueCapacity)
        {
            throw new InvalidOperationException($"completion callbacks enqueued more than {_options.QueueCapacity} operations without returning to the ring worker");
        }
        bool added = false;
        request.File.DangerousAddRef(ref added);
        _localQueue.Enqueue(request);
    }

    private void SignalEventFd()
    {
        ulong one = 1;
        nint written = LibC.write(_eventFd, &one, sizeof(ulong));
        // EAGAIN would mean the counter is at 2^64-2: impossible with one increment per sleep.
        Debug.Assert(written == sizeof(ulong), "eventfd write failed");
    }

    private void Run(ManualResetEventSlim started)
    {
        try
        {
            _ring = new Ring(new RingOptions
            {
                Entries = _options.Entries,
                ForceAsync = _options.ForceAsync,
                SingleIssuer = _options.SingleIssuer,
            });
            try
            {
                Probe = _ring.Probe();
            }
            catch (RingException)
            {
                Probe = null; // before 5.6; the device decides whether that is acceptable
            }
            int opCount = _ring.Capacity - 1; // one slot stays free for the armed eventfd read
            _ops = new Op[opCount];
            _freeOps = new int[opCount];
            for (int i = 0; i < opCount; i++)
            {
                _freeOps[i] = opCount - 1 - i;
            }
            _freeOpCount = opCount;
        }
        catch (Exception e)
        {
            _ring?.Dispose();
            _startFailure = ExceptionDispatchInfo.Capture(e);
            started.Set();
            return;
        }
        started.Set();
        try
        {
            Loop();
        }
        finally
        {
            _ring.Dispose();
        }
    }

    private void Loop()
    {
        var completions = new Completion[Math.Min(_ring.Capacity, 256)];
        ArmWake();
        while (true)
        {
            bool exiting = _drainAndExit;
            bool backlog = FillSqes();
            if (_inlineDone.Count > 0)
            {
                // InlineWrites: writes done on this thread; run their callbacks, pass any fsync queued meanwhile
                // to the kernel, take what has completed, and look at the queue again before any sleep.
                for (int i = 0; i < _inlineDone.Count; i++)
                {
                    Complete(_inlineDone[i], exiting);
                }
                _inlineDone.Clear();
                if (_ring.Unsubmitted > 0 || _ring.CompletionsReady > 0)
                {
                    Enter(0);
                }
                DrainAndComplete(completions, exiting);
                continue;
            }
            if (exiting && !backlog && _freeOpCount == _ops.Length)
            {
                if (!_wakeArmed)
                {
                    Debug.Assert(_ring.InFlight == 0, "ring not idle at exit");
                    return;
                }
                // Complete our own eventfd read so nothing is in flight when the ring closes.
                SignalEventFd();
            }

            if (_ring.CompletionsReady > 0)
            {
                Enter(0);
            }
            else if (backlog)
            {
                Enter(1); // everything is in flight; a completion will make room
            }
            else
            {
                // Announce the sleep, then look once more: a producer that enqueued before seeing the
                // announcement is caught by this check, one that enqueued after it writes the eventfd.
                Interlocked.Exchange(ref _sleeping, 1);
                if (!_queue.IsEmpty)
                {
                    Interlocked.Exchange(ref _sleeping, 0);
                    Enter(0);
                }
                else
                {
                    Enter(1);
                    Volatile.Write(ref _sleeping, 0);
                }
            }

            DrainAndComplete(completions, exiting);
        }
    }

    private void DrainAndComplete(Completion[] completions, bool exiting)
    {
        int count;
        while ((count = _ring.Drain(completions)) > 0)
        {
            // Drain has copied the CQEs out and released the ring slots; callbacks run only now.
            Volatile.Write(ref _cqeCount, _cqeCount + count);
            for (int i = 0; i < count; i++)
            {
                Complete(completions[i], exiting);
            }
        }
    }

    private void Enter(int minComplete)
    {
        int submitted = minComplete == 0 ? _ring.Submit() : _ring.SubmitAndWait(minComplete);
        Volatile.Write(ref _enterCount, _enterCount + 1);
        if (submitted > _largestBatch)
        {
            Volatile.Write(ref _largestBatch, submitted);
        }
    }

    // Moves requests into SQEs: resubmissions first, then callback-enqueued, then the shared queue. Writes to
    // the same file at adjacent positions that are queued together become one WRITEV (CoalesceWrites).
    // Returns true when requests remain that could not be placed (all op slots in flight, or the SQ is full
    // and the kernel is not taking entries).
    private bool FillSqes()
    {
        while (_retry.Count > 0)
        {
            if (!TryQueueSqe(_retry.Peek()))
            {
                return true;
            }
            _retry.Dequeue();
        }
        while (_freeOpCount > 0)
        {
            if (!TryTakeRequest(out RingRequest request))
            {
                return false;
            }
            int op = _freeOps[--_freeOpCount];
            ref Op o = ref _ops[op];
            o = new Op { Request = request, Group = o.Group, GroupCount = 1, Length = request.Buffer.Length };
            if (request.Operation == RingOperation.Write && _options.CoalesceWrites)
            {
                Coalesce(ref o);
            }
            if (!TryQueueSqe(op))
            {
                _retry.Enqueue(op);
                return true;
            }
        }
        return _hasCarry || _localQueue.Count > 0 || !_queue.IsEmpty;
    }

    private bool TryTakeRequest(out RingRequest request)
    {
        if (_hasCarry)
        {
            request = _carry;
            _carry = default;
            _hasCarry = false;
            return true;
        }
        if (_localQueue.Count > 0)
        {
            request = _localQueue.Dequeue();
            return true;
        }
        return _queue.TryDequeue(out request);
    }

    // Appends the following queued writes that continue o's range in the same file; the first that does not
    // is kept in _carry for the next op.
    private void Coalesce(ref Op o)
    {
        while (o.GroupCount < Ring.WritevBuffersMax && TryTakeRequest(out RingRequest next))
        {
            RingRequest last = o.GroupCount == 1 ? o.Request : o.Group![o.GroupCount - 1];
            if (next.Operation != RingOperation.Write
                || !ReferenceEquals(next.File, o.Request.File)
                || next.FilePosition != last.FilePosition + last.Buffer.Length
                || (long)o.Length + next.Buffer.Length > _options.CoalesceBytesMax)
            {
                _carry = next;
                _hasCarry = true;
                return;
            }
            if (o.GroupCount == 1)
            {
                o.Group ??= new RingRequest[Ring.WritevBuffersMax];
                o.Group[0] = o.Request;
            }
            o.Group![o.GroupCount++] = next;
            o.Length += next.Buffer.Length;
        }
    }

    private bool TryQueueSqe(int op)
    {
        if (QueueSqe(op))
        {
            return true;
        }
        // The SQ is full: hand it to the kernel and try once more.
        Debug.Assert(_ring.Unsubmitted == _ring.SqEntries, "ring refused an SQE with slots free and SQ space");
        Enter(0);
        return QueueSqe(op);
    }

    private bool QueueSqe(int op)
    {
        ref Op o = ref _ops[op];
        if (_options.InlineWrites && o.Request.Operation == RingOperation.Write && o.BytesDone == 0)
        {
            WriteInline(op, ref o);
            return true;
        }
        int fd = (int)o.Request.File.DangerousGetHandle();
        bool queued;
        switch (o.Request.Operation)
        {
            case RingOperation.Write when o.GroupCount == 1:
                ReadOnlyMemory<byte> rest = o.Request.Buffer.Slice(o.BytesDone);
                if (_options.WriteBytesMaxForTest > 0 && rest.Length > _options.WriteBytesMaxForTest)
                {
                    rest = rest[.._options.WriteBytesMaxForTest];
                }
                queued = _ring.TryQueueWrite(fd, rest, o.Request.FilePosition + o.BytesDone, (ulong)op);
                break;
            case RingOperation.Write:
                int count = RemainingBuffers(ref o);
                queued = _ring.TryQueueWritev(fd, _iovScratch.AsSpan(0, count), o.Request.FilePosition + o.BytesDone, (ulong)op);
                _iovScratch.AsSpan(0, count).Clear();
                if (queued && o.BytesDone == 0)
                {
                    Volatile.Write(ref _coalescedWrites, _coalescedWrites + o.GroupCount);
                }
                break;
            case RingOperation.Fsync:
                queued = _ring.TryQueueFsync(fd, o.Request.DataSync, (ulong)op);
                break;
            case RingOperation.Read:
                queued = _ring.TryQueueRead(fd, MemoryMarshal.AsMemory(o.Request.Buffer), o.Request.FilePosition, (ulong)op);
                break;
            default:
                throw new UnreachableException();
        }
        if (queued)
        {
            Volatile.Write(ref _sqeCount, _sqeCount + 1);
        }
        return queued;
    }

    // InlineWrites: one pwritev of the op's buffers on this thread. A short write is finished through the ring
    // (Complete sees fewer bytes than asked and resubmits the rest as an SQE).
    private void WriteInline(int op, ref Op o)
    {
        int count;
        if (o.GroupCount == 1)
        {
            ReadOnlyMemory<byte> buffer = o.Request.Buffer;
            if (_options.WriteBytesMaxForTest > 0 && buffer.Length > _options.WriteBytesMaxForTest)
            {
                buffer = buffer[.._options.WriteBytesMaxForTest];
            }
            _iovScratch[0] = buffer;
            count = 1;
        }
        else
        {
            count = RemainingBuffers(ref o);
        }
        iovec* iov = stackalloc iovec[Ring.WritevBuffersMax];
        for (int i = 0; i < count; i++)
        {
            _pinScratch[i] = _iovScratch[i].Pin();
            iov[i].iov_base = _pinScratch[i].Pointer;
            iov[i].iov_len = (nuint)_iovScratch[i].Length;
        }
        int fd = (int)o.Request.File.DangerousGetHandle();
        nint written;
        do
        {
            written = LibC.pwritev(fd, iov, count, o.Request.FilePosition);
        }
        while (written < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR);
        int result = written >= 0 ? (int)written : -Marshal.GetLastPInvokeError();
        for (int i = 0; i < count; i++)
        {
            _pinScratch[i].Dispose();
            _pinScratch[i] = default;
            _iovScratch[i] = default;
        }
        if (o.GroupCount > 1)
        {
            Volatile.Write(ref _coalescedWrites, _coalescedWrites + o.GroupCount);
        }
        _inlineDone.Add(new Completion((ulong)op, result, 0));
    }

    // The not yet written part of a merged write, as buffers in _iovScratch (capped by the test seam).
    private int RemainingBuffers(ref Op o)
    {
        int skip = o.BytesDone;
        int budget = _options.WriteBytesMaxForTest > 0 ? _options.WriteBytesMaxForTest : int.MaxValue;
        int count = 0;
        for (int i = 0; i < o.GroupCount && budget > 0; i++)
        {
            ReadOnlyMemory<byte> buffer = o.Group![i].Buffer;
            if (skip >= buffer.Length)
            {
                skip -= buffer.Length;
                continue;
            }
            buffer = buffer.Slice(skip);
            skip = 0;
            if (buffer.Length > budget)
            {
                buffer = buffer[..budget];
            }
            budget -= buffer.Length;
            _iovScratch[count++] = buffer;
        }
        Debug.Assert(count > 0, "a merged write with nothing left to write");
        return count;
    }

    private void ArmWake()
    {
        Debug.Assert(!_wakeArmed, "eventfd read armed twice");
        if (!_ring.TryQueueRead(_eventFd, _wakeBuffer, sizeof(ulong), 0, WakeUserData))
        {
            Enter(0);
            bool queued = _ring.TryQueueRead(_eventFd, _wakeBuffer, sizeof(ulong), 0, WakeUserData);
            Debug.Assert(queued, "no room for the eventfd read although one slot is reserved for it");
        }
        Volatile.Write(ref _sqeCount, _sqeCount + 1);
        _wakeArmed = true;
    }

    private void Complete(in Completion completion, bool exiting)
    {
        if (completion.UserData == WakeUserData)
        {
            _wakeArmed = false;
            if (completion.Result != sizeof(ulong))
            {
                throw new RingException($"eventfd read completed with {completion.Result}", -completion.Result);
            }
            if (!exiting)
            {
                ArmWake();
            }
            return;
        }

        int op = (int)completion.UserData;
        ref Op o = ref _ops[op];
        int result = completion.Result;
        if (o.Request.Operation == RingOperation.Write && result >= 0)
        {
            int remaining = o.Length - o.BytesDone;
            Debug.Assert(result <= remaining, "kernel wrote more than asked");
            if (result < remaining)
            {
                if (result > 0)
                {
                    // Short write (e.g. a signal, a file size limit reached mid-buffer): send the rest.
                    o.BytesDone += result;
                    _retry.Enqueue(op);
                    return;
                }
                result = -Errno.EIO; // no progress at all: report rather than loop forever
            }
            else
            {
                o.BytesDone = o.Length;
            }
        }

        RingRequest request = o.Request;
        int groupCount = o.GroupCount;
        RingRequest[]? group = o.Group;
        int bytesDone = o.BytesDone;
        o.Request = default;
        o.BytesDone = 0;
        _freeOps[_freeOpCount++] = op;
        if (groupCount == 1)
        {
            request.File.DangerousRelease();
            if (request.Operation == RingOperation.Write && result >= 0)
            {
                result = request.Buffer.Length;
            }
            request.Callback.OnRingCompletion(request.Operation, request.State, request.Token, result);
            return;
        }

        // A merged write: each request in file order gets its own length when all of its bytes were written,
        // else the error. The group array stays with the op slot; the next merge there overwrites it.
        int covered = 0;
        for (int i = 0; i < groupCount; i++)
        {
            RingRequest r = group![i];
            group[i] = default;
            covered += r.Buffer.Length;
            r.File.DangerousRelease();
            r.Callback.OnRingCompletion(RingOperation.Write, r.State, r.Token, covered <= bytesDone ? r.Buffer.Length : result);
        }
    }
}
