using Kiou.Broker.Hosting;

namespace Kiou.Broker.Tests;

/// <summary>
/// An in-process broker on free ports with its own temporary data dir. <see cref="RestartAsync"/> stops it cleanly
/// and starts a new one on the same data dir (ports change: build clients after a restart).
/// KIOU_IO in the test environment picks the I/O mode (the CI runs the suite with uring and with sync), and
/// KIOU_FETCH_ZERO_COPY=false the copying fetch path (sync run).
/// </summary>
public sealed class TestBroker : IAsyncDisposable
{
    public string DataDir { get; }
    public KiouBroker Broker { get; private set; }
    public StringWriter LogText { get; } = new();
    readonly Func<BrokerConfig, BrokerConfig> _configure;

    TestBroker(string dataDir, Func<BrokerConfig, BrokerConfig> configure)
    {
        DataDir = dataDir;
        _configure = configure;
        Broker = StartBroker();
    }

    public static TestBroker Start(Func<BrokerConfig, BrokerConfig>? configure = null, string? dataDir = null)
    {
        dataDir ??= Path.Combine(Path.GetTempPath(), "kiou-test-" + Guid.NewGuid().ToString("N"));
        return new TestBroker(dataDir, configure ?? (c => c));
    }

    public static string IoModeFromEnvironment => Environment.GetEnvironmentVariable("KIOU_IO") switch
    {
        "sync" => "sync",
        "uring" => "uring",
        _ => "auto",
    };

    KiouBroker StartBroker()
    {
        var config = _configure(new BrokerConfig
        {
            Port = 0,
            ControllerPort = 0,
            DataDir = DataDir,
            IoMode = IoModeFromEnvironment,
            FetchZeroCopy = Environment.GetEnvironmentVariable("KIOU_FETCH_ZERO_COPY") != "false",
        });
        var log = new Log(TextWriter.Synchronized(LogText), Log.Level.Debug);
        return KiouBroker.Start(config, log);
    }

    public string Bootstrap => Broker.BootstrapServers;
    public string ControllerBootstrap => $"{Broker.ControllerEndPoint.Address}:{Broker.ControllerEndPoint.Port}";

    public async Task StopAsync() => await Broker.DisposeAsync();

    public async Task RestartAsync()
    {
        await Broker.DisposeAsync();
        Broker = StartBroker();
    }

    /// <summary>Starts again after <see cref="StopAsync"/> (for tests that change files while it is down).</summary>
    public void StartAgain() => Broker = StartBroker();

    public async ValueTask DisposeAsync()
    {
        await Broker.DisposeAsync();
        try
        {
            Directory.Delete(DataDir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
