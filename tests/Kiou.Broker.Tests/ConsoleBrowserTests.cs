using System.Globalization;
using Confluent.Kafka;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Kiou.Broker.Tests;

/// <summary>
/// The web console in a real headless browser (Debian's chromium driven by Playwright, never a downloaded browser):
/// opened while a producer and a consumer group run, it must show what the clients did. Leaves a full-page
/// screenshot at artifacts/console.png under the repository root.
/// </summary>
public sealed class ConsoleBrowserTests
{
    const string Topic = "console-demo";
    const string Group = "console-group";
    const int Partitions = 3;
    const int PerPartition = 100;
    const int LagPerPartition = 10;
    /// <summary>A client id is any string a client sends: the page must show it as text, not run it.</summary>
    const string HostileClientId = "<img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script>";

    [ChromiumFact]
    public async Task Console_shows_the_topic_the_group_its_lag_the_live_produce_rate_and_the_settings()
    {
        string chromium = ChromiumFactAttribute.Executable
            ?? throw new InvalidOperationException("chromium is not installed (CI=true: the console's browser test must run): apt-get install -y chromium");
        string dir = Path.Combine(Path.GetTempPath(), "kiou-console-" + Guid.NewGuid().ToString("N"));
        try
        {
            int httpPort = BrokerProcess.FreePort();
            using var broker = BrokerProcess.Start(dir, new Dictionary<string, string> { ["KIOU_HTTP_PORT"] = httpPort.ToString(CultureInfo.InvariantCulture) });
            await Clients.CreateTopicAsync(broker.Bootstrap, Topic, Partitions);
            const int n = Partitions * PerPartition;
            using (var producer = Clients.Producer(broker.Bootstrap, Acks.All))
            {
                await Task.WhenAll(Enumerable.Range(0, n).Select(i => producer.ProduceAsync(new TopicPartition(Topic, i % Partitions),
                    new Message<byte[]?, byte[]?> { Key = BitConverter.GetBytes(i), Value = new byte[64] })));
            }

            // A consumer in a group reads everything, then commits LagPerPartition short of the end on each partition,
            // and stays in the group (librdkafka heartbeats in the background).
            using var consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
            {
                BootstrapServers = broker.Bootstrap,
                GroupId = Group,
                ClientId = HostileClientId,
                EnableAutoCommit = false,
                AutoOffsetReset = AutoOffsetReset.Earliest,
                SessionTimeoutMs = 30000,
            }).Build();
            consumer.Subscribe(Topic);
            int read = 0;
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (read < n)
            {
                Assert.True(DateTime.UtcNow < deadline, $"the consumer read {read} of {n} records in 60 s");
                if (consumer.Consume(TimeSpan.FromMilliseconds(200)) is { IsPartitionEOF: false, Message: not null })
                    read++;
            }
            consumer.Commit(Enumerable.Range(0, Partitions).Select(p => new TopicPartitionOffset(Topic, p, PerPartition - LagPerPartition)));

            using var playwright = await Playwright.CreateAsync();
            await using var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
            {
                ExecutablePath = chromium,
                Headless = true,
                Args = ["--no-sandbox"], // CI runs as root, where chromium's sandbox refuses to start
            });
            var page = await browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1400, Height = 900 } });
            var errors = new List<string>();
            page.PageError += (_, e) => errors.Add(e);
            page.Console += (_, m) =>
            {
                if (m.Type == "error")
                    errors.Add(m.Text);
            };
            await page.GotoAsync($"http://127.0.0.1:{httpPort}/");

            // Topics: the partition count and the end offsets, summed, equal to the records produced.
            var topic = page.Locator($"[data-testid=topic-row][data-topic='{Topic}']");
            await Expect(topic.GetByTestId("topic-partitions")).ToHaveTextAsync(Partitions.ToString(CultureInfo.InvariantCulture));
            await Expect(topic.GetByTestId("topic-end-offset")).ToHaveTextAsync(n.ToString("N0", CultureInfo.InvariantCulture));
            await Expect(topic.GetByTestId("partition-row")).ToHaveCountAsync(Partitions);
            await Expect(topic.GetByTestId("partition-end-offset").First).ToHaveTextAsync(PerPartition.ToString(CultureInfo.InvariantCulture));

            // The group: one member (its client id shown as the text it is), the topic's partitions assigned to it,
            // and a lag of the records between the commits and the ends.
            var group = page.Locator($"[data-testid=group][data-group='{Group}']");
            await Expect(group.GetByTestId("group-state")).ToHaveTextAsync("Stable");
            await Expect(group.GetByTestId("group-member-count")).ToHaveTextAsync("1 member");
            await Expect(group.GetByTestId("member-client-id")).ToHaveTextAsync(HostileClientId);
            await Expect(group.GetByTestId("member-assignment")).ToHaveTextAsync($"{Topic}: 0, 1, 2");
            await Expect(group.GetByTestId("offset-row")).ToHaveCountAsync(Partitions);
            foreach (var lag in await group.GetByTestId("offset-lag").AllInnerTextsAsync())
                Assert.Equal(LagPerPartition.ToString(CultureInfo.InvariantCulture), lag);
            await Expect(group.GetByTestId("group-lag")).ToHaveTextAsync((Partitions * LagPerPartition).ToString(CultureInfo.InvariantCulture));
            Assert.True(await page.EvaluateAsync<bool>("() => window.__pwned === undefined"), "a client id ran as script in the console");
            Assert.Equal(0, await page.Locator("main img, main script").CountAsync());

            // Settings: the broker's port in effect.
            await Expect(page.Locator("[data-testid=setting-row][data-name=KIOU_PORT]").GetByTestId("setting-value"))
                .ToHaveTextAsync(broker.Port.ToString(CultureInfo.InvariantCulture));

            // Rates: a producer that keeps producing shows a produce rate above zero.
            using var stop = new CancellationTokenSource();
            var producing = Task.Run(async () =>
            {
                using var live = Clients.Producer(broker.Bootstrap, Acks.Leader, configure: c => c.LingerMs = 0);
                while (!stop.IsCancellationRequested)
                {
                    live.Produce(new TopicPartition(Topic, 0), new Message<byte[]?, byte[]?> { Value = new byte[64] });
                    await Task.Delay(10);
                }
                live.Flush(TimeSpan.FromSeconds(10));
            });
            var rate = page.Locator($"[data-testid=rate-row][data-topic='{Topic}']").GetByTestId("rate-produced-records");
            double shown = 0;
            var until = DateTime.UtcNow.AddSeconds(15);
            while (shown <= 0 && DateTime.UtcNow < until)
            {
                await Task.Delay(250);
                if (await rate.CountAsync() == 1)
                    shown = double.Parse(await rate.InnerTextAsync(), NumberStyles.Number, CultureInfo.InvariantCulture);
            }
            Assert.True(shown > 0, "the console showed no produce rate while a producer ran");

            string png = ScreenshotPath();
            await page.ScreenshotAsync(new PageScreenshotOptions { Path = png, FullPage = true });
            stop.Cancel();
            await producing;
            var file = new FileInfo(png);
            Assert.True(file.Exists && file.Length > 1000, $"no screenshot at {png}");
            byte[] head = new byte[8];
            using (var s = file.OpenRead())
                s.ReadExactly(head);
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A }, head);
            Assert.True(errors.Count == 0, "the page reported errors: " + string.Join("; ", errors));
            consumer.Close();
        }
        finally
        {
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    /// <summary>artifacts/console.png under the repository root (the directory holding Kiou.sln), else next to the tests.</summary>
    static string ScreenshotPath()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "Kiou.sln")))
            d = d.Parent;
        string dir = Path.Combine(d?.FullName ?? AppContext.BaseDirectory, "artifacts");
        Directory.CreateDirectory(dir);
        return Path.Combine(dir, "console.png");
    }
}

/// <summary>
/// A fact that needs chromium (/usr/bin/chromium or on PATH). Without it the test is skipped, saying why, except in CI
/// (CI=true), where it runs and fails: CI must not pass without having tested the console in a browser.
/// </summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    public static string? Executable { get; } = Find();

    static string? Find()
    {
        if (File.Exists("/usr/bin/chromium"))
            return "/usr/bin/chromium";
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            foreach (string name in new[] { "chromium", "chromium-browser" })
            {
                if (File.Exists(Path.Combine(dir, name)))
                    return Path.Combine(dir, name);
            }
        }
        return null;
    }

    public ChromiumFactAttribute()
    {
        if (Executable is null && Environment.GetEnvironmentVariable("CI") != "true")
            Skip = "chromium is not installed (apt-get install -y chromium); CI installs it and runs this test";
    }
}
