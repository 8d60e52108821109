namespace Kiou.Storage.Tests.Support;

/// <summary>A clock that moves only when a test says so (timers driven by it are fired by the test itself).</summary>
public sealed class ManualTimeProvider : TimeProvider
{
    private long _nowMs;

    public ManualTimeProvider(long startMs = 1_700_000_000_000) => _nowMs = startMs;

    public long NowMs => Interlocked.Read(ref _nowMs);

    public override DateTimeOffset GetUtcNow() => DateTimeOffset.FromUnixTimeMilliseconds(Interlocked.Read(ref _nowMs));

    public void Advance(long ms) => Interlocked.Add(ref _nowMs, ms);
}
