using System.Net;
using Kiou.Broker.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace Kiou.Broker.Http;

/// <summary>
/// The broker's HTTP listener (KIOU_HTTP_HOST:KIOU_HTTP_PORT): /metrics in Prometheus' text format, /healthz and
/// /readyz, and the web console (/ and /api/..., <see cref="ConsoleApi"/>). A minimal ASP.NET Core host on Kestrel
/// (docs/design/metrics.md says why this and OpenTelemetry's Prometheus exporter; docs/design/console.md).
/// </summary>
public sealed class BrokerHttpListener : IAsyncDisposable
{
    readonly WebApplication _app;
    readonly MeterProvider _provider;

    BrokerHttpListener(WebApplication app, MeterProvider provider, IPEndPoint endPoint, ConsoleApi console)
    {
        _app = app;
        _provider = provider;
        LocalEndPoint = endPoint;
        WebConsole = console;
    }

    public IPEndPoint LocalEndPoint { get; }

    /// <summary>The web console; it answers 503 until start-up attaches the broker's parts to it.</summary>
    public ConsoleApi WebConsole { get; }

    /// <summary>Binds and starts serving. <paramref name="notReady"/> returns null when ready, else why not.</summary>
    public static BrokerHttpListener Start(string host, int port, Func<string?> notReady, BrokerMetrics metrics)
    {
        var traffic = metrics.Traffic;
        var own = metrics.Meter;
        var console = new ConsoleApi(traffic, notReady);
        // The Kiou meter and .NET's own System.Runtime meter (process CPU time, working set, GC collections and heap).
        var provider = Sdk.CreateMeterProviderBuilder()
            .AddMeter(BrokerMetrics.MeterName, "System.Runtime")
            // Only this broker's instruments: brokers in one process (tests) each have a Meter named "Kiou", and the
            // SDK would keep the first of two same-named instruments and drop the other broker's.
            .AddView(instrument => instrument.Meter.Name == BrokerMetrics.MeterName && !ReferenceEquals(instrument.Meter, own)
                ? MetricStreamConfiguration.Drop
                : instrument.Name is "kiou.request.duration" or "kiou.fsync.duration"
                    ? new ExplicitBucketHistogramConfiguration { Boundaries = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] }
                    : null)
            .AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 0)
            .Build();
        WebApplication? app = null;
        try
        {
            var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(k =>
            {
                if (IPAddress.TryParse(host, out var ip))
                    k.Listen(ip, port);
                else
                    k.Listen(Dns.GetHostAddresses(host)[0], port);
            });
            app = builder.Build();
            app.MapPrometheusScrapingEndpoint("/metrics", provider, null, null);
            app.MapGet("/healthz", () => Results.Text("ok\n"));
            app.MapGet("/readyz", () => notReady() is { } why
                ? Results.Text($"not ready: {why}\n", statusCode: StatusCodes.Status503ServiceUnavailable)
                : Results.Text("ready\n"));
            console.Map(app);
            app.StartAsync().GetAwaiter().GetResult();
            var bound = app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
                .Features.Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()!.Addresses.First();
            var uri = new Uri(bound);
            return new BrokerHttpListener(app, provider, new IPEndPoint(IPAddress.Parse(uri.Host.Trim('[', ']')), uri.Port), console);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            provider.Dispose();
            (app as IAsyncDisposable)?.DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw new ConfigException($"cannot listen for HTTP on {host}:{port} ({e.Message}); set KIOU_HTTP_PORT to a free port, or -1 to turn the HTTP listener off");
        }
    }

    public async ValueTask DisposeAsync()
    {
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        await _app.StopAsync(stop.Token).ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        WebConsole.Dispose();
        _provider.Dispose();
    }
}
