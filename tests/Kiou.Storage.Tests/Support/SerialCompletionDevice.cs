using Kiou.Storage.Devices;
using Microsoft.Win32.SafeHandles;

namespace Kiou.Storage.Tests.Support;

/// <summary>
/// Runs every write and flush of every log that shares it on one thread, in submission order, as the io_uring
/// device's ring thread does: a callback that blocks stalls the completions of all partitions behind it.
/// <see cref="Pause"/> queues work until <see cref="Resume"/>, so a test can line completions up.
/// </summary>
public sealed class SerialCompletionDevice : ILogDevice
{
    private readonly ILogDevice _inner;
    private readonly Queue<Action> _work = new();
    private readonly Thread _thread;
    private bool _paused;
    private bool _stopping;

    public SerialCompletionDevice(ILogDevice inner)
    {
        _inner = inner;
        _thread = new Thread(Run) { IsBackground = true, Name = "test-serial-completions" };
        _thread.Start();
    }

    public string Mode => "serial(" + _inner.Mode + ")";

    public bool DirectWrites { get; init; }

    public int DirectMinRoundBytes { get; init; } = DirectTail.DirectMinRoundBytes;

    public SafeFileHandle? TryOpenDirect(string path, out int errno) => _inner.TryOpenDirect(path, out errno);

    public void Write(SafeFileHandle file, long position, ReadOnlyMemory<byte> data, ILogDeviceCallback callback, long token) =>
        Post(() => _inner.Write(file, position, data, callback, token));

    public void Flush(SafeFileHandle file, ILogDeviceCallback callback, long token) =>
        Post(() => _inner.Flush(file, callback, token));

    public void Pause()
    {
        lock (_work)
        {
            _paused = true;
        }
    }

    public void Resume()
    {
        lock (_work)
        {
            _paused = false;
            Monitor.PulseAll(_work);
        }
    }

    public void Dispose()
    {
        lock (_work)
        {
            _stopping = true;
            _paused = false;
            Monitor.PulseAll(_work);
        }

        _thread.Join();
        _inner.Dispose();
    }

    private void Post(Action action)
    {
        lock (_work)
        {
            _work.Enqueue(action);
            Monitor.PulseAll(_work);
        }
    }

    private void Run()
    {
        while (true)
        {
            Action action;
            lock (_work)
            {
                while ((_paused || _work.Count == 0) && !_stopping)
                {
                    Monitor.Wait(_work);
                }

                if (_work.Count == 0)
                {
                    return;
                }

                action = _work.Dequeue();
            }

            action();
        }
    }
}
