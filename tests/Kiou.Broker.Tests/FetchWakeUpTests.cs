using System.Diagnostics;
using Kiou.Protocol.Messages;

namespace Kiou.Broker.Tests;

/// <summary>
/// A long-poll fetch cannot miss the append that lands between building its empty response and parking: the
/// append is published right then (a test seam holds the window open), and every fetch must answer with that
/// record at once, not after MaxWaitMs.
/// </summary>
public sealed class FetchWakeUpTests
{
    [Fact]
    public async Task An_append_published_while_a_fetch_parks_wakes_it()
    {
        const string topic = "wake";
        const int maxWaitMs = 8000;
        int armed = 0;
        Action? race = null;
        await using var broker = TestBroker.Start(c => c with
        {
            BeforeFetchParks = () =>
            {
                if (Interlocked.Exchange(ref armed, 0) == 1)
                    race?.Invoke();
            },
        });
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);
        var log = broker.Broker.Logs.Get(topic, 0)!;
        // The racing producer: the append is published (high watermark advanced) before the fetch goes on to park.
        race = () => log.AppendAsync(TestBatches.Uncompressed(1), waitDurable: false).AsTask().GetAwaiter().GetResult();

        using var wire = await SegmentFilesTests.Wire.ConnectAsync(broker.Broker.BrokerEndPoint);
        for (int round = 0; round < 20; round++)
        {
            long offset = log.HighWatermark;
            Volatile.Write(ref armed, 1);
            var clock = Stopwatch.StartNew();
            var response = await wire.SendAsync<FetchResponse>(1, 11, new FetchRequest
            {
                MaxWaitMs = maxWaitMs,
                MinBytes = 1,
                MaxBytes = 1 << 20,
                Topics = [new() { Topic = topic, Partitions = [new() { Partition = 0, FetchOffset = offset, PartitionMaxBytes = 1 << 20 }] }],
            });
            clock.Stop();
            FetchResponse.PartitionData data = response.Responses.Single().Partitions.Single();
            Assert.Equal(0, Volatile.Read(ref armed)); // the append raced this fetch
            Assert.True(clock.ElapsedMilliseconds < 2000, $"round {round}: the fetch answered after {clock.ElapsedMilliseconds} ms (MaxWaitMs {maxWaitMs}): the wake-up was lost");
            Assert.Equal(ErrorCodes.None, data.ErrorCode);
            Assert.Equal(offset + 1, data.HighWatermark);
            Assert.True(data.Records is { Length: > 0 }, $"round {round}: the fetch returned without the record");
        }
    }

    [Fact]
    public async Task Parked_fetches_answer_at_their_own_deadlines_or_at_an_append_to_any_of_their_partitions()
    {
        const string topic = "parked";
        await using var broker = TestBroker.Start();
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 2);

        // Idle partitions: each fetch answers empty at its own MaxWaitMs (one shared timer serves all of them).
        int[] waits = [900, 300, 600];
        var idle = waits.Select(async wait =>
        {
            using var wire = await SegmentFilesTests.Wire.ConnectAsync(broker.Broker.BrokerEndPoint);
            var clock = Stopwatch.StartNew();
            var response = await wire.SendAsync<FetchResponse>(1, 11, Request(topic, wait, 0, 0));
            Assert.All(response.Responses.Single().Partitions, p => Assert.True(p.Records is not { Length: > 0 }));
            return clock.ElapsedMilliseconds;
        }).ToArray();
        long[] took = await Task.WhenAll(idle);
        for (int i = 0; i < waits.Length; i++)
            Assert.True(took[i] >= waits[i] - 50 && took[i] < waits[i] + 1500, $"MaxWaitMs {waits[i]} answered after {took[i]} ms");

        // An append to the second partition wakes a fetch parked on both.
        using var wire2 = await SegmentFilesTests.Wire.ConnectAsync(broker.Broker.BrokerEndPoint);
        var clock2 = Stopwatch.StartNew();
        var fetch = wire2.SendAsync<FetchResponse>(1, 11, Request(topic, 8000, 0, 0));
        await Task.Delay(200);
        await broker.Broker.Logs.Get(topic, 1)!.AppendAsync(TestBatches.Uncompressed(1), waitDurable: false);
        var woken = await fetch;
        Assert.True(clock2.ElapsedMilliseconds < 3000, $"woken after {clock2.ElapsedMilliseconds} ms");
        Assert.True(woken.Responses.Single().Partitions.Single(p => p.PartitionIndex == 1).Records is { Length: > 0 });
    }

    static FetchRequest Request(string topic, int maxWaitMs, long offset0, long offset1) => new()
    {
        MaxWaitMs = maxWaitMs,
        MinBytes = 1,
        MaxBytes = 1 << 20,
        Topics = [new() { Topic = topic, Partitions = [
            new() { Partition = 0, FetchOffset = offset0, PartitionMaxBytes = 1 << 20 },
            new() { Partition = 1, FetchOffset = offset1, PartitionMaxBytes = 1 << 20 }] }],
    };
}
