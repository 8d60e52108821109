using System.Runtime.InteropServices;

namespace Kiou.IoUring;

/// <summary>What a <see cref="RingWorker"/> operation was; passed back to <see cref="IRingCallback"/>.</summary>
public enum RingOperation : byte
{
    Write,
    Fsync,
    Read,
}

/// <summary>Receives <see cref="RingWorker"/> completions.</summary>
public interface IRingCallback
{
    /// <summary>
    /// Runs on the worker thread after the CQE was drained. Must not block; may enqueue further operations.
    /// An exception thrown here is a bug and ends the process (the worker thread does not catch it).
    /// </summary>
    /// <param name="operation">The operation that completed.</param>
    /// <param name="state">The state object given with the request.</param>
    /// <param name="token">The token given with the request.</param>
    /// <param name="result">Write: the whole buffer length or -errno (short writes are resubmitted). Read: bytes
    /// read (fewer at end of file) or -errno. Fsync: 0 or -errno.</param>
    void OnRingCompletion(RingOperation operation, object? state, long token, int result);
}

/// <summary>
/// One operation for <see cref="RingWorker.Enqueue"/>. A struct so that queueing allocates nothing; build it
/// with <see cref="Write"/>, <see cref="Fsync"/> or <see cref="Read"/>.
/// </summary>
/// <remarks>
/// The file handle is ref-counted (DangerousAddRef) from enqueue until completion, so its fd cannot be closed
/// and reused while the kernel works on it. Buffers must stay valid and unchanged until the callback runs.
/// </remarks>
public readonly struct RingRequest
{
    internal readonly SafeHandle File;
    internal readonly ReadOnlyMemory<byte> Buffer;
    internal readonly long FilePosition;
    internal readonly IRingCallback Callback;
    internal readonly object? State;
    internal readonly long Token;
    internal readonly RingOperation Operation;
    internal readonly bool DataSync;

    private RingRequest(RingOperation operation, SafeHandle file, ReadOnlyMemory<byte> buffer, long filePosition, bool dataSync, IRingCallback callback, object? state, long token)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(callback);
        ArgumentOutOfRangeException.ThrowIfNegative(filePosition);
        Operation = operation;
        File = file;
        Buffer = buffer;
        FilePosition = filePosition;
        DataSync = dataSync;
        Callback = callback;
        State = state;
        Token = token;
    }

    /// <summary>Write all of <paramref name="data"/> at <paramref name="filePosition"/>; short writes are resubmitted.</summary>
    public static RingRequest Write(SafeHandle file, ReadOnlyMemory<byte> data, long filePosition, IRingCallback callback, object? state, long token) =>
        new(RingOperation.Write, file, data, filePosition, dataSync: false, callback, state, token);

    /// <summary>fsync, or fdatasync when <paramref name="dataSync"/>. Covers writes whose callback ran before it was enqueued.</summary>
    public static RingRequest Fsync(SafeHandle file, bool dataSync, IRingCallback callback, object? state, long token) =>
        new(RingOperation.Fsync, file, ReadOnlyMemory<byte>.Empty, 0, dataSync, callback, state, token);

    /// <summary>One read into <paramref name="buffer"/> from <paramref name="filePosition"/> (may return fewer bytes).</summary>
    public static RingRequest Read(SafeHandle file, Memory<byte> buffer, long filePosition, IRingCallback callback, object? state, long token) =>
        new(RingOperation.Read, file, buffer, filePosition, dataSync: false, callback, state, token);
}
