using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace Kiou.IoUring.Interop;

#pragma warning disable IDE1006 // libc spelling, not .NET naming

/// <summary>
/// sendfile(2) from a file to a socket, and a wait for a non-blocking socket to become writable again: the zero-copy
/// consume path (docs/design/request-path.md). The surface is safe: callers pass handles, never fds; the marshaller
/// holds a reference on each handle for the duration of the call, so a handle closed by another thread cannot be
/// reused as a different file meanwhile.
/// </summary>
public static partial class SendFile
{
    private const int EAGAIN = 11;
    private const int EINTR = 4;

    /// <summary>Largest count one sendfile(2) call moves (Linux caps it at 0x7ffff000).</summary>
    public const int MaxChunk = 0x7ffff000;

    /// <summary>
    /// One sendfile(2) call: up to <paramref name="count"/> bytes of <paramref name="file"/> from
    /// <paramref name="fileOffset"/> to <paramref name="socket"/>. Returns the bytes sent (0: the file ends before
    /// <paramref name="fileOffset"/>), <see cref="WouldBlock"/> when the socket buffer is full, or -errno.
    /// </summary>
    public static long Send(SafeHandle socket, SafeHandle file, long fileOffset, int count)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ArgumentNullException.ThrowIfNull(file);
        ArgumentOutOfRangeException.ThrowIfNegative(fileOffset);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        long offset = fileOffset;
        while (true)
        {
            long n = sendfile(socket, file, ref offset, (nuint)Math.Min(count, MaxChunk));
            if (n >= 0)
            {
                return n;
            }

            int errno = Marshal.GetLastPInvokeError();
            if (errno == EINTR)
            {
                continue;
            }

            return errno == EAGAIN ? WouldBlock : -errno;
        }
    }

    /// <summary>Returned by <see cref="Send"/> when the (non-blocking) socket cannot take more bytes now.</summary>
    public const long WouldBlock = long.MinValue;

    /// <summary>Completes once <paramref name="socket"/> is writable (or has failed: the next send reports why).</summary>
    public static Task WaitWritableAsync(SafeHandle socket, CancellationToken ct) => WritableWaiter.Shared.WaitAsync(socket, ct);

    [LibraryImport("libc", SetLastError = true)]
    private static partial long sendfile(SafeHandle out_fd, SafeHandle in_fd, ref long offset, nuint count);
}

/// <summary>
/// One epoll instance and one thread that wait for sockets to become writable (EPOLLOUT, one-shot). Used only when
/// sendfile(2) meets a full socket buffer, so the thread sleeps in epoll_wait almost always.
/// </summary>
/// <remarks>
/// A registration is keyed by a sequence number (epoll's user data), never by fd, and removed (EPOLL_CTL_DEL) by
/// whoever takes it out of the table first: the epoll thread when the event arrives, or the cancellation callback.
/// The caller keeps the socket open until the wait has completed, so the fd cannot be reused meanwhile.
/// </remarks>
internal sealed partial class WritableWaiter
{
    private const int EPOLL_CTL_ADD = 1;
    private const int EPOLL_CTL_DEL = 2;
    private const uint EPOLLOUT = 0x004;
    private const uint EPOLLERR = 0x008;
    private const uint EPOLLHUP = 0x010;
    private const uint EPOLLONESHOT = 1u << 30;
    private const int EPOLL_CLOEXEC = 0x80000;
    private const int EINTR = 4;

    private static readonly Lazy<WritableWaiter> s_shared = new(() => new WritableWaiter());

    // struct epoll_event is packed on x86-64 (12 bytes, data at 4) and naturally aligned elsewhere (16, data at 8).
    private static readonly int EventSize = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 12 : 16;
    private static readonly int DataOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 4 : 8;

    private readonly int _epoll;
    private readonly ConcurrentDictionary<long, (TaskCompletionSource Done, SafeHandle Socket)> _waiting = new();
    private long _next;

    private WritableWaiter()
    {
        _epoll = epoll_create1(EPOLL_CLOEXEC);
        if (_epoll < 0)
        {
            throw new IOException($"epoll_create1 failed (errno {Marshal.GetLastPInvokeError()}); the zero-copy fetch path cannot wait for sockets (set KIOU_FETCH_ZERO_COPY=false)");
        }

        new Thread(Loop) { IsBackground = true, Name = "kiou-sendfile" }.Start();
    }

    public static WritableWaiter Shared => s_shared.Value;

    public async Task WaitAsync(SafeHandle socket, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        long id = Interlocked.Increment(ref _next);
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _waiting[id] = (done, socket);
        int rc = Control(EPOLL_CTL_ADD, socket, EPOLLOUT | EPOLLONESHOT, (ulong)id);
        if (rc != 0)
        {
            _waiting.TryRemove(id, out _);
            throw new IOException($"epoll_ctl(ADD) for a client socket failed (errno {-rc})");
        }

        using (ct.Register(() => Cancel(id)))
        {
            await done.Task.ConfigureAwait(false);
        }
    }

    private void Cancel(long id)
    {
        if (_waiting.TryRemove(id, out var w))
        {
            Control(EPOLL_CTL_DEL, w.Socket, 0, 0);
            w.Done.TrySetCanceled();
        }
    }

    private unsafe int Control(int op, SafeHandle socket, uint events, ulong data)
    {
        byte* ev = stackalloc byte[16];
        *(uint*)ev = events;
        *(ulong*)(ev + DataOffset) = data;
        bool added = false;
        try
        {
            socket.DangerousAddRef(ref added);
            int rc = epoll_ctl(_epoll, op, (int)socket.DangerousGetHandle(), ev);
            return rc == 0 ? 0 : -Marshal.GetLastPInvokeError();
        }
        catch (ObjectDisposedException)
        {
            return -9; // EBADF
        }
        finally
        {
            if (added)
            {
                socket.DangerousRelease();
            }
        }
    }

    private unsafe void Loop()
    {
        const int Max = 64;
        byte* events = (byte*)NativeMemory.Alloc((nuint)(Max * EventSize));
        while (true)
        {
            int n = epoll_wait(_epoll, events, Max, -1);
            if (n < 0)
            {
                if (Marshal.GetLastPInvokeError() == EINTR)
                {
                    continue;
                }

                Thread.Sleep(10); // cannot happen with a valid epoll fd; never spin
                continue;
            }

            for (int i = 0; i < n; i++)
            {
                byte* ev = events + (i * EventSize);
                long id = (long)*(ulong*)(ev + DataOffset);
                if (_waiting.TryRemove(id, out var w))
                {
                    Control(EPOLL_CTL_DEL, w.Socket, 0, 0);
                    w.Done.TrySetResult(); // EPOLLERR/EPOLLHUP too: the next sendfile reports the error
                }
            }
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int epoll_create1(int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int epoll_ctl(int epfd, int op, int fd, byte* ev);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int epoll_wait(int epfd, byte* events, int maxevents, int timeout);

    // EPOLLERR and EPOLLHUP are always reported; named here so the loop's comment has something to point at.
    internal const uint AlwaysReported = EPOLLERR | EPOLLHUP;
}
