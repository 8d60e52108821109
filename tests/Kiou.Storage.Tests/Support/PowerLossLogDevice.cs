using Kiou.Storage.Devices;
using Microsoft.Win32.SafeHandles;

namespace Kiou.Storage.Tests.Support;

/// <summary>How unsynced writes fare when the power is cut (chosen per file).</summary>
public enum PowerLossShape
{
    /// <summary>Every write not covered by a finished fdatasync is lost: the file is its last synced content.</summary>
    AllUnsyncedLost,

    /// <summary>The first k unsynced writes (in completion order) reached the disk, the rest did not.</summary>
    Prefix,

    /// <summary>As <see cref="Prefix"/>, and the next write reached it only in part: new bytes up to a cut inside it,
    /// old bytes after, sometimes zeros from the old end of file up to the next page (the size was updated, the data
    /// was not).</summary>
    TornLastWrite,

    /// <summary>Writeback in any order: each unsynced write reached the disk or not; holes read as zeros.</summary>
    Reordered,
}

/// <summary>
/// A power-loss model over a real device: records, per file, the content made durable by each finished fdatasync
/// issued through it, and on <see cref="CutPower"/> swallows every later operation; <see cref="RestoreAfterPowerLoss"/>
/// then rewrites each file to what a disk could hold after the cut (<see cref="PowerLossShape"/>).
/// </summary>
/// <remarks>
/// <para>What is modelled: segment bytes written through <see cref="ILogDevice.Write"/>; a flush covers exactly the
/// writes of that file whose completion ran before the flush was issued (the device contract), not writes that
/// complete while it runs. Files never written through the device keep their synced state from
/// <see cref="Baseline"/> (files present then: the log fdatasyncs what it recovers at open) or are empty (created
/// at roll).</para>
/// <para>What is not: files written by other means keep what they hold at the cut. These are the index files and
/// the clean-shutdown marker (each written to a temporary file, fdatasync'ed, renamed, directory fsync'ed), and
/// truncations with ftruncate (recovery, O_DIRECT padding trim). Directory entries are taken as durable: the log
/// fsyncs the directory after creating a segment, before the first append to it, and after deleting one. If that
/// directory fsync fails the log goes on (it logs the failure), and a power cut could then lose the new file; this
/// model does not cover that case.</para>
/// </remarks>
public sealed class PowerLossLogDevice : ILogDevice
{
    private readonly ILogDevice _inner;
    private readonly object _gate = new();
    private readonly Dictionary<string, FileModel> _files = new(StringComparer.Ordinal);
    private bool _cut;
    private int _inFlight; // issued to the inner device and not yet through the log's callback

    public PowerLossLogDevice(ILogDevice inner) => _inner = inner;

    public string Mode => "power-loss(" + _inner.Mode + ")";

    public bool DirectWrites { get; init; }

    public int DirectMinRoundBytes { get; init; } = DirectTail.DirectMinRoundBytes;

    /// <summary>Writes swallowed because the power was off.</summary>
    public int Swallowed { get; private set; }

    /// <summary>Takes every file in <paramref name="directory"/> as durable as it is now (after an open, which syncs).</summary>
    public void Baseline(string directory)
    {
        lock (_gate)
        {
            _files.Clear();
            _cut = false;
            foreach (string path in Directory.EnumerateFiles(directory, "*.log"))
            {
                _files[path] = new FileModel(File.ReadAllBytes(path));
            }
        }
    }

    public void Write(SafeFileHandle file, long position, ReadOnlyMemory<byte> data, ILogDeviceCallback callback, long token)
    {
        string path = PathOf(file);
        lock (_gate)
        {
            if (_cut)
            {
                Swallowed++;
                return; // never completes: the machine is off
            }

            _inFlight++;
        }

        _inner.Write(file, position, data, new WriteDone(this, path, position, data.ToArray(), callback), token);
    }

    public void Flush(SafeFileHandle file, ILogDeviceCallback callback, long token)
    {
        string path = PathOf(file);
        int covers;
        lock (_gate)
        {
            if (_cut)
            {
                return;
            }

            covers = Model(path).Completed.Count;
            _inFlight++;
        }

        _inner.Flush(file, new FlushDone(this, path, covers, callback), token);
    }

    /// <summary>From now on nothing reaches the disk and nothing completes.</summary>
    public void CutPower()
    {
        lock (_gate)
        {
            _cut = true;
        }
    }

    /// <summary>
    /// Waits until every operation issued before the cut has come back through the log's callbacks, so that the
    /// abandoned log starts nothing more (a crashed process runs no code); then its background work can be awaited.
    /// </summary>
    public async Task WhenQuietAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            lock (_gate)
            {
                if (_inFlight == 0)
                {
                    return;
                }
            }

            Assert.True(DateTime.UtcNow < deadline, "device operations still in flight after the power cut");
            await Task.Delay(1);
        }
    }

    private void Returned()
    {
        lock (_gate)
        {
            _inFlight--;
        }
    }

    /// <summary>
    /// Rewrites every file written through the device since <see cref="Baseline"/> to its synced content plus what
    /// <paramref name="shape"/> (or a random shape per file, when null) lets survive. Files deleted meanwhile stay
    /// deleted. Returns one line per file, for failure messages.
    /// </summary>
    public List<string> RestoreAfterPowerLoss(Random rng, PowerLossShape? shape = null)
    {
        var report = new List<string>();
        lock (_gate)
        {
            Assert.True(_cut, "cut the power first");
            foreach (var (path, model) in _files)
            {
                if (!File.Exists(path))
                {
                    continue;
                }

                PowerLossShape s = shape ?? (PowerLossShape)rng.Next(4);
                var content = new List<byte>(model.Synced);
                List<(long Position, byte[] Data)> unsynced = model.Completed.GetRange(model.SyncedCount, model.Completed.Count - model.SyncedCount);
                int kept = 0;
                switch (s)
                {
                    case PowerLossShape.AllUnsyncedLost:
                        break;
                    case PowerLossShape.Prefix:
                    case PowerLossShape.TornLastWrite:
                        kept = rng.Next(unsynced.Count + 1);
                        for (int i = 0; i < kept; i++)
                        {
                            Apply(content, unsynced[i].Position, unsynced[i].Data);
                        }

                        if (s == PowerLossShape.TornLastWrite && kept < unsynced.Count)
                        {
                            (long position, byte[] data) = unsynced[kept];
                            int cut = rng.Next(data.Length);
                            Apply(content, position, data.AsSpan(0, cut).ToArray());
                            long pageEnd = (position + cut + 4095) / 4096 * 4096;
                            if (rng.Next(2) == 0 && pageEnd > content.Count)
                            {
                                // The size grew, the data did not: zeros, but only past what the file held (a torn
                                // write leaves old bytes where there were some).
                                Apply(content, content.Count, new byte[pageEnd - content.Count]);
                            }
                        }

                        break;
                    case PowerLossShape.Reordered:
                        foreach ((long position, byte[] data) in unsynced)
                        {
                            if (rng.Next(2) == 0)
                            {
                                Apply(content, position, data);
                                kept++;
                            }
                        }

                        break;
                }

                File.WriteAllBytes(path, content.ToArray());
                report.Add($"{Path.GetFileName(path)}: {s}, synced {model.Synced.Length} bytes, kept {kept} of {unsynced.Count} unsynced writes, now {content.Count} bytes");
            }
        }

        return report;
    }

    public void Dispose() => _inner.Dispose();

    private static void Apply(List<byte> content, long position, ReadOnlySpan<byte> data)
    {
        int p = checked((int)position);
        while (content.Count < p + data.Length)
        {
            content.Add(0);
        }

        for (int i = 0; i < data.Length; i++)
        {
            content[p + i] = data[i];
        }
    }

    private static string PathOf(SafeFileHandle file) =>
        new FileInfo("/proc/self/fd/" + file.DangerousGetHandle()).LinkTarget ?? throw new InvalidOperationException("descriptor without a path");

    private FileModel Model(string path)
    {
        if (!_files.TryGetValue(path, out FileModel? model))
        {
            model = new FileModel([]); // created at roll: empty, its directory entry synced
            _files[path] = model;
        }

        return model;
    }

    private sealed class FileModel(byte[] synced)
    {
        public byte[] Synced { get; set; } = synced;

        /// <summary>Completed writes in completion order; the first <see cref="SyncedCount"/> are in <see cref="Synced"/>.</summary>
        public List<(long Position, byte[] Data)> Completed { get; } = new();

        public int SyncedCount { get; set; }
    }

    private sealed class WriteDone(PowerLossLogDevice device, string path, long position, byte[] data, ILogDeviceCallback inner) : ILogDeviceCallback
    {
        public void OnWriteDone(long token, int result)
        {
            try
            {
                lock (device._gate)
                {
                    if (device._cut)
                    {
                        return;
                    }

                    if (result == data.Length)
                    {
                        device.Model(path).Completed.Add((position, data));
                    }
                }

                inner.OnWriteDone(token, result);
            }
            finally
            {
                device.Returned();
            }
        }

        public void OnFlushDone(long token, int result) => throw new InvalidOperationException("flush completion on a write");
    }

    private sealed class FlushDone(PowerLossLogDevice device, string path, int covers, ILogDeviceCallback inner) : ILogDeviceCallback
    {
        public void OnWriteDone(long token, int result) => throw new InvalidOperationException("write completion on a flush");

        public void OnFlushDone(long token, int result)
        {
            try
            {
                lock (device._gate)
                {
                    if (device._cut)
                    {
                        return; // finished on a machine that was already off: nobody learns of it
                    }

                    FileModel model = device.Model(path);
                    if (result == 0 && covers > model.SyncedCount)
                    {
                        var content = new List<byte>(model.Synced);
                        for (int i = model.SyncedCount; i < covers; i++)
                        {
                            Apply(content, model.Completed[i].Position, model.Completed[i].Data);
                        }

                        model.Synced = content.ToArray();
                        model.SyncedCount = covers;
                    }
                }

                inner.OnFlushDone(token, result);
            }
            finally
            {
                device.Returned();
            }
        }
    }
}
