using System.Collections.Concurrent;
using Confluent.Kafka;
using Kiou.Broker.Hosting;

namespace Kiou.Broker.Tests;

/// <summary>Group test helpers: a broker with short group timers, and a consumer running its poll loop on its own thread.</summary>
public static class GroupSupport
{
    /// <summary>Short timeouts so group tests are quick: sessions from 1 s, 200 ms initial rebalance delay.</summary>
    public static TestBroker StartBroker(string? dataDir = null, Func<BrokerConfig, BrokerConfig>? more = null) =>
        TestBroker.Start(c =>
        {
            c = c with
            {
                Groups = c.Groups with { MinSessionTimeoutMs = 1000, InitialRebalanceDelayMs = 200 },
            };
            return more is null ? c : more(c);
        }, dataDir);

    public static ConsumerConfig Config(string bootstrap, string group, PartitionAssignmentStrategy strategy = PartitionAssignmentStrategy.Range,
        int sessionTimeoutMs = 6000) => new()
        {
            BootstrapServers = bootstrap,
            GroupId = group,
            EnableAutoCommit = false,
            AutoOffsetReset = AutoOffsetReset.Earliest,
            PartitionAssignmentStrategy = strategy,
            SessionTimeoutMs = sessionTimeoutMs,
            HeartbeatIntervalMs = 300,
            MaxPollIntervalMs = 20000,
            SocketTimeoutMs = 10000,
            TopicMetadataRefreshIntervalMs = 1000,
        };

    public static async Task WaitUntil(Func<bool> condition, string what, int timeoutMs = 60000)
    {
        var deadline = DateTime.UtcNow.AddMilliseconds(timeoutMs);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException("timed out waiting until " + what);
            await Task.Delay(50);
        }
    }
}

/// <summary>
/// One Confluent.Kafka consumer in a group, polling on a dedicated thread. Tracks its assignment through the
/// rebalance callbacks (including which partitions were ever revoked) and every record it consumed.
/// </summary>
public sealed class RunningConsumer : IDisposable
{
    readonly IConsumer<string?, string?> _consumer;
    readonly Thread _thread;
    readonly CancellationTokenSource _stop = new();
    readonly object _gate = new();
    readonly HashSet<int> _assigned = [];
    volatile bool _closeOnStop = true;

    public string Name { get; }
    public ConcurrentQueue<ConsumeResult<string?, string?>> Records { get; } = new();
    public ConcurrentQueue<TopicPartition> Revoked { get; } = new();
    public int AssignmentChanges;
    public bool CommitEachRecord { get; init; }
    public Exception? Failure { get; private set; }

    public RunningConsumer(string name, ConsumerConfig config, string topic, bool commitEachRecord = false)
    {
        Name = name;
        CommitEachRecord = commitEachRecord;
        bool cooperative = config.PartitionAssignmentStrategy == PartitionAssignmentStrategy.CooperativeSticky;
        _consumer = new ConsumerBuilder<string?, string?>(config)
            .SetPartitionsAssignedHandler((c, parts) =>
            {
                lock (_gate)
                {
                    if (!cooperative)
                        _assigned.Clear();
                    foreach (var p in parts)
                        _assigned.Add(p.Partition.Value);
                    AssignmentChanges++;
                }
            })
            .SetPartitionsRevokedHandler((c, parts) =>
            {
                lock (_gate)
                {
                    foreach (var p in parts)
                    {
                        _assigned.Remove(p.Partition.Value);
                        Revoked.Enqueue(p.TopicPartition);
                    }
                    AssignmentChanges++;
                }
            })
            .SetPartitionsLostHandler((c, parts) =>
            {
                lock (_gate)
                {
                    foreach (var p in parts)
                        _assigned.Remove(p.Partition.Value);
                    AssignmentChanges++;
                }
            })
            .Build();
        _consumer.Subscribe(topic);
        _thread = new Thread(Run) { IsBackground = true, Name = "consumer " + name };
        _thread.Start();
    }

    public int[] Assignment
    {
        get
        {
            lock (_gate)
                return [.. _assigned.Order()];
        }
    }

    public string MemberId => _consumer.MemberId;

    void Run()
    {
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                var r = _consumer.Consume(TimeSpan.FromMilliseconds(100));
                if (r is null || r.IsPartitionEOF)
                    continue;
                Records.Enqueue(r);
                if (CommitEachRecord)
                    _consumer.Commit(r);
            }
        }
        catch (Exception e) when (e is KafkaException or OperationCanceledException)
        {
            if (!_stop.IsCancellationRequested)
                Failure = e;
        }
        if (_closeOnStop)
            _consumer.Close();
    }

    /// <summary>Commits the consumer's current positions synchronously (on the caller's thread; librdkafka allows it).</summary>
    public void CommitPositions(IEnumerable<TopicPartitionOffset> offsets) => _consumer.Commit(offsets);

    /// <summary>Stops polling and closes (LeaveGroup).</summary>
    public void Close()
    {
        _stop.Cancel();
        _thread.Join();
    }

    /// <summary>Stops polling without closing: the member stays in the group until the broker times it out.</summary>
    public void StopPollingWithoutClose()
    {
        _closeOnStop = false;
        _stop.Cancel();
        _thread.Join();
    }

    public void Dispose()
    {
        if (_thread.IsAlive)
            Close();
        try
        {
            _consumer.Dispose();
        }
        catch (KafkaException)
        {
        }
    }
}
