using System.Diagnostics;
using Confluent.Kafka;
using Kiou.Storage.Devices;
using Microsoft.Win32.SafeHandles;

namespace Kiou.Broker.Tests;

/// <summary>
/// Writes that fail (a full disk): the produce requests they hit get KAFKA_STORAGE_ERROR, nothing acknowledged
/// before is lost or damaged, other partitions keep working, and writes resume once space is back.
/// </summary>
public sealed class FaultTests
{
    static IProducer<byte[]?, byte[]?> NoRetryProducer(string bootstrap) =>
        Clients.Producer(bootstrap, Acks.Leader, configure: c =>
        {
            c.EnableIdempotence = false; // the plain path: librdkafka needs retries for idempotence
            c.MessageSendMaxRetries = 0; // report KAFKA_STORAGE_ERROR instead of retrying until the message times out
            c.LingerMs = 0;
            c.MessageTimeoutMs = 10000;
        });

    [TmpfsFact]
    public async Task A_full_tmpfs_gives_storage_errors_then_recovers_when_space_is_freed()
    {
        string mount = Path.Combine(Path.GetTempPath(), "kiou-enospc-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(mount);
        Assert.True(Run("mount", $"-t tmpfs -o size=4m tmpfs {mount}"), "mount failed although the probe succeeded");
        try
        {
            string filler = Path.Combine(mount, "filler");
            string dataDir = Path.Combine(mount, "data");
            await using var broker = TestBroker.Start(dataDir: dataDir);
            await Clients.CreateTopicAsync(broker.Bootstrap, "full", 1);
            await File.WriteAllBytesAsync(filler, new byte[2 * 1024 * 1024]); // leave well under 2 MiB for the log

            var acked = new List<(long Offset, byte[] Value)>();
            Error? failure = null;
            using (var producer = NoRetryProducer(broker.Bootstrap))
            {
                for (int i = 0; i < 10_000 && failure is null; i++)
                {
                    var value = new byte[8192];
                    Random.Shared.NextBytes(value);
                    try
                    {
                        var r = await producer.ProduceAsync(new TopicPartition("full", 0), new Message<byte[]?, byte[]?> { Value = value });
                        acked.Add((r.Offset.Value, value));
                    }
                    catch (ProduceException<byte[]?, byte[]?> e)
                    {
                        failure = e.Error;
                    }
                }
            }
            Assert.NotNull(failure);
            Assert.Equal(ErrorCode.KafkaStorageError, failure!.Code);
            Assert.True(acked.Count > 10);
            Assert.Contains("No space left on device", broker.LogText.ToString(), StringComparison.OrdinalIgnoreCase);

            var read = Clients.ReadAll(broker.Bootstrap, "full", 1);
            Assert.Equal(acked.Count, read.Count);
            for (int i = 0; i < acked.Count; i++)
            {
                Assert.Equal(acked[i].Offset, read[i].Offset.Value);
                Assert.Equal(acked[i].Value, read[i].Message.Value);
            }

            File.Delete(filler);
            using (var producer = NoRetryProducer(broker.Bootstrap))
            {
                var r = await producer.ProduceAsync(new TopicPartition("full", 0), new Message<byte[]?, byte[]?> { Value = [1, 2, 3] });
                Assert.Equal(acked.Count, r.Offset.Value); // dense: the failed write left no hole and no garbage
            }
            await broker.RestartAsync();
            Assert.Equal(acked.Count + 1, Clients.ReadAll(broker.Bootstrap, "full", 1).Count);
        }
        finally
        {
            Run("umount", $"-l {mount}");
            try
            {
                Directory.Delete(mount, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    [Fact]
    public async Task Injected_write_errors_hit_only_their_partition_and_writes_resume()
    {
        var faults = new FailingDevice.Switch();
        await using var broker = TestBroker.Start(c => c with { WrapDevice = d => new FailingDevice(d, faults) });
        await Clients.CreateTopicAsync(broker.Bootstrap, "sick", 1);
        await Clients.CreateTopicAsync(broker.Bootstrap, "healthy", 1);
        var sickLog = broker.Broker.Logs.Get("sick", 0)!;
        using var producer = NoRetryProducer(broker.Bootstrap);
        for (int i = 0; i < 5; i++)
            await producer.ProduceAsync(new TopicPartition("sick", 0), new Message<byte[]?, byte[]?> { Value = [(byte)i] });

        faults.FailWritesTo = sickLog;
        var e = await Assert.ThrowsAsync<ProduceException<byte[]?, byte[]?>>(() =>
            producer.ProduceAsync(new TopicPartition("sick", 0), new Message<byte[]?, byte[]?> { Value = [99] }));
        Assert.Equal(ErrorCode.KafkaStorageError, e.Error.Code);
        var ok = await producer.ProduceAsync(new TopicPartition("healthy", 0), new Message<byte[]?, byte[]?> { Value = [7] });
        Assert.Equal(0, ok.Offset.Value);
        Assert.Contains("sick-0", broker.LogText.ToString());

        faults.FailWritesTo = null;
        var resumed = await producer.ProduceAsync(new TopicPartition("sick", 0), new Message<byte[]?, byte[]?> { Value = [5] });
        Assert.Equal(5, resumed.Offset.Value);
        var all = Clients.ReadAll(broker.Bootstrap, "sick", 1);
        Assert.Equal(new byte[][] { [0], [1], [2], [3], [4], [5] }, all.Select(r => r.Message.Value!).ToArray());
    }

    internal static bool Run(string file, string args)
    {
        using var p = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardError = true, RedirectStandardOutput = true })!;
        p.WaitForExit();
        return p.ExitCode == 0;
    }

    /// <summary>Fails every write to one partition's files with ENOSPC while switched on; passes everything else through.</summary>
    sealed class FailingDevice(ILogDevice inner, FailingDevice.Switch faults) : ILogDevice
    {
        public sealed class Switch
        {
            public volatile Kiou.Storage.PartitionLog? FailWritesTo;
        }

        const int ENOSPC = 28;

        public string Mode => inner.Mode;

        public bool DirectWrites => inner.DirectWrites;

        public SafeFileHandle? TryOpenDirect(string path, out int errno) => inner.TryOpenDirect(path, out errno);

        public void Write(SafeFileHandle file, long position, ReadOnlyMemory<byte> data, ILogDeviceCallback callback, long token)
        {
            var target = faults.FailWritesTo;
            if (target is not null && PathOf(file).Contains($"{Path.DirectorySeparatorChar}{target.Topic}-{target.Partition}{Path.DirectorySeparatorChar}"))
            {
                callback.OnWriteDone(token, -ENOSPC);
                return;
            }
            inner.Write(file, position, data, callback, token);
        }

        public void Flush(SafeFileHandle file, ILogDeviceCallback callback, long token) => inner.Flush(file, callback, token);

        public void Dispose() => inner.Dispose();

        static string PathOf(SafeFileHandle file)
        {
            string link = $"/proc/self/fd/{file.DangerousGetHandle()}";
            return new FileInfo(link).LinkTarget ?? "";
        }
    }
}

/// <summary>A fact that runs only where a tmpfs can be mounted (root with CAP_SYS_ADMIN); otherwise skipped, saying why.</summary>
public sealed class TmpfsFactAttribute : FactAttribute
{
    static readonly Lazy<string?> WhyNot = new(() =>
    {
        string probe = Path.Combine(Path.GetTempPath(), "kiou-tmpfs-probe-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(probe);
        try
        {
            if (!FaultTests.Run("mount", $"-t tmpfs -o size=1m tmpfs {probe}"))
                return "cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN); the injected-error fault test covers the same path";
            FaultTests.Run("umount", probe);
            return null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return "no mount command on this machine";
        }
        finally
        {
            Directory.Delete(probe);
        }
    });

    public TmpfsFactAttribute()
    {
        if (WhyNot.Value is { } why)
            Skip = why;
    }
}
