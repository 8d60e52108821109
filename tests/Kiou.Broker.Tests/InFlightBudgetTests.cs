using Confluent.Kafka;
using Kiou.Broker.Network;

namespace Kiou.Broker.Tests;

/// <summary>
/// KIOU_MAX_INFLIGHT_BYTES_PER_CONNECTION and KIOU_QUEUED_MAX_REQUEST_BYTES: a read loop stops at a full budget and
/// goes on once answers free it; a single request larger than the budget still gets through, so a tiny budget slows
/// clients down but never wedges them.
/// </summary>
public sealed class InFlightBudgetTests
{
    [Fact]
    public async Task A_full_budget_waits_until_released_below_its_limit()
    {
        var budget = new InFlightBudget(100);
        Assert.False(budget.Add(60));
        Assert.True(budget.Add(60)); // 120: full
        ValueTask wait = budget.WaitForRoomAsync(CancellationToken.None);
        await Task.Delay(50);
        Assert.False(wait.IsCompleted);
        budget.Release(10); // 110: still full
        await Task.Delay(50);
        Assert.False(wait.IsCompleted);
        budget.Release(60); // 50
        await wait.AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(50, budget.Bytes);
    }

    /// <summary>
    /// A release racing a wait must always wake it: the budget is full, one thread releases while the other starts
    /// waiting, over and over. A lost wake-up shows as a wait that never completes.
    /// </summary>
    [Fact]
    public async Task A_release_racing_a_wait_is_never_lost()
    {
        var budget = new InFlightBudget(1);
        int go = 0, stop = 0;
        var releaser = new Thread(() =>
        {
            while (true)
            {
                int g;
                while ((g = Volatile.Read(ref go)) == 0)
                    if (Volatile.Read(ref stop) != 0)
                        return;
                Volatile.Write(ref go, 0);
                budget.Release(1);
            }
        }) { IsBackground = true };
        releaser.Start();
        var until = System.Diagnostics.Stopwatch.StartNew();
        long rounds = 0;
        try
        {
            while (until.Elapsed < TimeSpan.FromSeconds(3) && rounds < 5_000_000)
            {
                Assert.True(budget.Add(1)); // full
                Volatile.Write(ref go, 1);
                ValueTask wait = budget.WaitForRoomAsync(CancellationToken.None);
                if (!wait.IsCompleted)
                {
                    var woke = wait.AsTask();
                    await Task.WhenAny(woke, Task.Delay(TimeSpan.FromSeconds(2)));
                    Assert.True(woke.IsCompleted, $"a release was lost after {rounds} rounds: the wait never woke (bytes {budget.Bytes})");
                }
                while (Volatile.Read(ref go) != 0)
                    Thread.SpinWait(1); // the releaser has taken this round
                rounds++;
            }
        }
        finally
        {
            Volatile.Write(ref stop, 1);
            releaser.Join();
        }
        Assert.Equal(0, budget.Bytes);
        Assert.True(rounds > 10_000, $"only {rounds} rounds ran");
    }

    [Fact]
    public async Task Pipelined_produce_requests_larger_than_both_budgets_all_land()
    {
        string dataDir = Path.Combine(Path.GetTempPath(), "kiou-budget-" + Guid.NewGuid().ToString("N"));
        var env = new Dictionary<string, string>
        {
            ["KIOU_MAX_INFLIGHT_BYTES_PER_CONNECTION"] = "65536",
            ["KIOU_QUEUED_MAX_REQUEST_BYTES"] = "65536",
        };
        try
        {
            using var broker = BrokerProcess.Start(dataDir, env);
            await Clients.CreateTopicAsync(broker.Bootstrap, "budget", 2);
            const int producers = 3, perProducer = 120;
            var sent = new Dictionary<string, byte[]>();
            await Task.WhenAll(Enumerable.Range(0, producers).Select(p => Task.Run(async () =>
            {
                using var producer = Clients.Producer(broker.Bootstrap, Acks.Leader, configure: c =>
                {
                    c.BatchSize = 1 << 20; // requests of up to 1 MiB against a 64 KiB budget
                    c.LingerMs = 20;
                });
                var sends = new List<Task<DeliveryResult<byte[]?, byte[]?>>>();
                for (int i = 0; i < perProducer; i++)
                {
                    var value = new byte[50_000];
                    Random.Shared.NextBytes(value);
                    lock (sent)
                        sent[$"{p}-{i}"] = value;
                    sends.Add(producer.ProduceAsync(new TopicPartition("budget", i % 2),
                        new Message<byte[]?, byte[]?> { Key = System.Text.Encoding.UTF8.GetBytes($"{p}-{i}"), Value = value }));
                }
                await Task.WhenAll(sends);
            })));

            var read = Clients.ReadAll(broker.Bootstrap, "budget", 2);
            Assert.Equal(producers * perProducer, read.Count);
            foreach (var r in read)
                Assert.Equal(sent[System.Text.Encoding.UTF8.GetString(r.Message.Key!)], r.Message.Value);
            Assert.Equal(0, broker.Terminate());
        }
        finally
        {
            Directory.Delete(dataDir, recursive: true);
        }
    }
}
