using Kiou.Broker.Controller;
using Kiou.Broker.Groups;
using Kiou.Broker.Hosting;
using Kiou.Broker.Logs;
using Kiou.Storage.Devices;

namespace Kiou.Broker.Tests;

/// <summary>
/// The partition logs and controller a <see cref="GroupCoordinator"/> keeps __consumer_offsets in, without a broker:
/// unit tests create coordinators over it (a new coordinator replays the topic, as after a restart) and dispose it last.
/// </summary>
public sealed class OffsetsHost : IAsyncDisposable
{
    OffsetsHost(string dataDir, LogManager logs, ClusterController controller, Log log, TimeProvider time, int partitions)
    {
        DataDir = dataDir;
        Logs = logs;
        Controller = controller;
        Store = new OffsetsStore(controller, logs, partitions, log, time);
    }

    public string DataDir { get; }
    public LogManager Logs { get; }
    public ClusterController Controller { get; }
    public OffsetsStore Store { get; }

    public static OffsetsHost Open(string dataDir, Log log, TimeProvider time, int partitions = GroupSettings.DefaultOffsetsTopicPartitions)
    {
        var config = new BrokerConfig { DataDir = dataDir };
        var logs = new LogManager(config, new SyncLogDevice(), time, log);
        var controller = new ClusterController(config, new MetadataStore(dataDir), logs, log);
        controller.Start();
        return new OffsetsHost(dataDir, logs, controller, log, time, partitions);
    }

    public GroupCoordinator NewCoordinator(GroupSettings settings, TimeProvider time, Log log, Func<string, int, bool> partitionExists, bool driveTimers = false) =>
        new(settings, Store, DataDir, time, log, partitionExists, driveTimers);

    public async ValueTask DisposeAsync() => await Logs.DisposeAsync();
}
