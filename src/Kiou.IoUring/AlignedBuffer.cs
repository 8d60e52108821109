using System.Buffers;
using System.Runtime.InteropServices;

namespace Kiou.IoUring;

/// <summary>
/// Native memory aligned for O_DIRECT (the logical block size, 4096 covers every device we run on), exposed
/// as <see cref="Memory{T}"/>. Pinning is free: the memory never moves.
/// </summary>
/// <remarks>
/// Lifecycle: Dispose frees the memory; the owner must not dispose while an operation that uses it is in
/// flight (the same rule as for any buffer handed to a ring). Not thread-safe to dispose concurrently.
/// </remarks>
public sealed unsafe class AlignedBuffer : MemoryManager<byte>
{
    // 4096: the page size and the largest logical block size O_DIRECT asks for on common devices.
    public const int DefaultAlignment = 4096;

    private byte* _pointer;
    private readonly int _length;

    public AlignedBuffer(int length, int alignment = DefaultAlignment)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        if (alignment <= 0 || (alignment & (alignment - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(alignment), "alignment must be a power of two");
        }
        _length = length;
        _pointer = (byte*)NativeMemory.AlignedAlloc((nuint)length, (nuint)alignment);
        new Span<byte>(_pointer, length).Clear();
    }

    public int Length => _length;

    public override Span<byte> GetSpan()
    {
        ObjectDisposedException.ThrowIf(_pointer == null, this);
        return new Span<byte>(_pointer, _length);
    }

    public override MemoryHandle Pin(int elementIndex = 0)
    {
        ObjectDisposedException.ThrowIf(_pointer == null, this);
        ArgumentOutOfRangeException.ThrowIfNegative(elementIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(elementIndex, _length);
        return new MemoryHandle(_pointer + elementIndex);
    }

    public override void Unpin()
    {
        // Native memory never moves; nothing to undo.
    }

    protected override void Dispose(bool disposing)
    {
        if (_pointer != null)
        {
            NativeMemory.AlignedFree(_pointer);
            _pointer = null;
        }
    }
}
