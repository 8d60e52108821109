using System.Runtime.InteropServices;
using Kiou.Broker.Hosting;

var log = Log.Stderr(Environment.GetEnvironmentVariable("KIOU_LOG_LEVEL"));
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

log.Info($"KIOU started: broker listener {broker.BrokerEndPoint}, controller listener {broker.ControllerEndPoint}, " +
    (broker.Http is { } http ? $"HTTP listener {http.LocalEndPoint} (/metrics, /healthz, /readyz), " : "HTTP listener off, ") +
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
