namespace Kiou.Protocol.Messages;

/// <summary>
/// A Fetch response points into pooled read buffers instead of copying records; those buffers are leased to the
/// response and go back to their pools when the connection has written it (<see cref="Dispose"/>).
/// </summary>
public sealed partial class FetchResponse : IDisposable
{
    List<IDisposable>? _leases;

    public void AddLease(IDisposable lease) => (_leases ??= []).Add(lease);

    public void Dispose()
    {
        if (_leases is null)
            return;
        foreach (var lease in _leases)
            lease.Dispose();
        _leases = null;
    }
}
