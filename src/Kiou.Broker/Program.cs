using System.Reflection;
using System.Runtime.InteropServices;
using Kiou.Broker.Hosting;

if (args.Length > 0)
{
    switch (args[0])
    {
        case "--help" or "-h" when args.Length == 1:
            Console.Out.Write(Settings.HelpText());
            return 0;
        case "--version" when args.Length == 1:
            Console.Out.WriteLine($"kiou {VersionOf(typeof(KiouBroker).Assembly)} on {RuntimeInformation.FrameworkDescription}");
            return 0;
        default:
            Console.Error.WriteLine($"kiou: unexpected argument '{string.Join(' ', args)}': settings are KIOU_* environment variables, see kiou --help");
            return 2;
    }
}

Log log;
try
{
    log = Log.Stderr(Environment.GetEnvironmentVariable("KIOU_LOG_LEVEL"), Environment.GetEnvironmentVariable("KIOU_LOG_FORMAT"));
}
catch (ConfigException e)
{
    Console.Error.WriteLine($"kiou: {e.Message}");
    return 1;
}
if (Settings.FindUnknown(Environment.GetEnvironmentVariables().Keys.Cast<object>().Select(k => k.ToString()!)) is { } unknown)
{
    log.Error(unknown);
    return 1;
}
BrokerConfig config;
KiouBroker broker;
try
{
    config = BrokerConfig.FromEnvironment(Environment.GetEnvironmentVariable);
    broker = KiouBroker.Start(config, log);
}
catch (ConfigException e)
{
    log.Error(e.Message);
    return 1;
}

log.Info($"KIOU started: " + (broker.Config.Listeners is null ? $"broker listener {broker.BrokerEndPoint}" : $"broker listeners {string.Join(", ", broker.Listeners)}") + $", controller listener {broker.ControllerEndPoint}, " +
    (broker.Http is { } http ? $"HTTP listener {http.LocalEndPoint} (console at /, /metrics, /healthz, /readyz), " : "HTTP listener off, ") +
    $"data dir {broker.Config.DataDir}, I/O {broker.IoMode}, flush {FlushName(broker.Config)}, cluster {broker.Controller.ClusterId}");

var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
void OnSignal(PosixSignalContext ctx)
{
    ctx.Cancel = true;
    stop.TrySetResult();
}
using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
await stop.Task;
log.Info("stopping: no new connections; finishing in-flight writes");
await broker.DisposeAsync();
return 0;

static string FlushName(BrokerConfig c) => c.Flush.Mode switch
{
    Kiou.Storage.FlushMode.Always => "always",
    Kiou.Storage.FlushMode.Interval => $"every {c.Flush.IntervalMs} ms",
    _ => "at segment roll",
};

// The informational version carries the build's source revision (the SDK appends +commit when it finds git).
static string VersionOf(Assembly a) =>
    a.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
    ?? a.GetName().Version?.ToString() ?? "unknown";
