using System.Collections.Frozen;
using System.Net;
using Kiou.Broker.Controller;
using Kiou.Broker.Groups;
using Kiou.Broker.Handlers;
using Kiou.Broker.Http;
using Kiou.Broker.Logs;
using Kiou.Broker.Network;
using Kiou.Broker.Security;
using Kiou.Broker.Transactions;
using Kiou.Storage.Devices;

namespace Kiou.Broker.Hosting;

/// <summary>
/// The whole broker in one object: data dir lock, log device, partition logs, controller, request handlers and
/// the two listeners. <see cref="Start"/> either returns a running broker or throws <see cref="ConfigException"/>
/// with one sentence for the operator. <see cref="DisposeAsync"/> stops accepting, lets in-flight writes finish
/// and closes every file cleanly.
/// </summary>
public sealed class KiouBroker : IAsyncDisposable
{
    readonly Log _log;
    readonly FileStream _lock;
    readonly ILogDevice _device;
    readonly LogManager _logs;
    readonly Listener _broker;
    // Every broker listener (KIOU_LISTENERS), _broker first.
    readonly IReadOnlyList<Listener> _brokers;
    readonly Listener _controllerListener;
    readonly BrokerMetrics _metrics;
    int _disposed;

    KiouBroker(BrokerConfig config, Log log, FileStream dirLock, ILogDevice device, LogManager logs, ClusterController controller,
        IReadOnlyList<Listener> brokers, Listener controllerListener, GroupCoordinator groups, TransactionCoordinator transactions,
        BrokerMetrics metrics, BrokerHttpListener? http)
    {
        _metrics = metrics;
        Http = http;
        Groups = groups;
        Transactions = transactions;
        Config = config;
        _log = log;
        _lock = dirLock;
        _device = device;
        _logs = logs;
        Controller = controller;
        _brokers = brokers;
        _broker = brokers[0];
        _controllerListener = controllerListener;
    }

    public BrokerConfig Config { get; }
    public ClusterController Controller { get; }
    public GroupCoordinator Groups { get; }
    public TransactionCoordinator Transactions { get; }
    public LogManager Logs => _logs;
    /// <summary>The HTTP listener (the web console, /metrics, /healthz, /readyz); null with KIOU_HTTP_PORT=-1.</summary>
    public BrokerHttpListener? Http { get; }

    /// <summary>Null once start-up has finished (partitions open, coordinators loaded), else what it still waits for.</summary>
    public string? NotReady => NotReadyOf(Groups, Transactions);

    static string? NotReadyOf(GroupCoordinator? groups, TransactionCoordinator? transactions)
    {
        if (groups is null || transactions is null)
            return "starting: opening partitions";
        if (groups.Loading.IsFaulted)
            return "loading __consumer_offsets failed (see the log); restart the broker";
        if (!groups.IsLoaded)
            return "loading consumer groups from __consumer_offsets";
        if (!transactions.IsLoaded)
            return "loading transactions from __transaction_state";
        return null;
    }
    public IPEndPoint BrokerEndPoint => _broker.LocalEndPoint;

    /// <summary>The bound address of the broker listener of that name (KIOU_LISTENERS).</summary>
    public IPEndPoint EndPointOf(string listenerName) => _brokers.First(l => l.Endpoint?.Name == listenerName).LocalEndPoint;

    /// <summary>The broker listeners with their bound ports.</summary>
    public IReadOnlyList<Kiou.Broker.Security.BrokerListener> Listeners => _brokers.Select(l => l.Endpoint!).ToList();
    public IPEndPoint ControllerEndPoint => _controllerListener.LocalEndPoint;

    /// <summary>Request bytes the broker listener holds now (read, not yet answered); for tests.</summary>
    internal long QueuedRequestBytes => _broker.QueuedRequestBytes;
    internal int ConnectionCount => _brokers.Sum(l => l.ConnectionCount);
    internal long PartialRequestBytes => _broker.PartialRequestBytes;
    internal (long Rented, long Retained, long RetainedMax) FrameBytes => _broker.FrameBytes;
    public string IoMode => _device.Mode;
    public string BootstrapServers => $"{BrokerEndPoint.Address}:{BrokerEndPoint.Port}";

    public static KiouBroker Start(BrokerConfig config, Log log, TimeProvider? time = null)
    {
        time ??= TimeProvider.System;
        string dataDir = Path.GetFullPath(config.DataDir);
        config = config with { DataDir = dataDir };
        var deferred = new List<(Log.Level, string)>(); // logged once the metadata loaded: a broken file gets its one line alone
        FileStream dirLock = LockDataDir(dataDir, deferred);
        config = config with { MaxPartitions = SizeForDescriptors(config, deferred) };
        ILogDevice? device = null;
        LogManager? logs = null;
        Listener? broker = null, controllerListener = null;
        var brokers = new List<Listener>();
        GroupCoordinator? groups = null;
        TransactionCoordinator? transactions = null;
        BrokerHttpListener? http = null;
        Action<GroupCoordinator, TransactionCoordinator>? readyProbe = null;
        var metrics = new BrokerMetrics();
        try
        {
            var router = new RequestRouter { Metrics = metrics };
            router.Sasl = Kiou.Broker.Security.SaslServer.Open(config.Sasl, dataDir, time, log);
            var specs = config.EffectiveListeners;
            var tls = specs.Any(l => l.UsesTls) ? Kiou.Broker.Security.TlsServer.Create(config.Tls, log) : null;
            var bound = new List<Kiou.Broker.Security.BrokerListener>();
            foreach (var spec in specs)
            {
                var l = Listener.Bind(spec.Host, spec.Port, router, config, log, ListenerKind.Broker, spec.Protocol, config.Listeners is null ? null : "KIOU_LISTENERS");
                brokers.Add(l);
                // Port 0 (tests) means "any free port": advertise the one we got.
                l.Endpoint = spec with { Port = l.LocalEndPoint.Port };
                l.Tls = spec.UsesTls ? tls : null;
                bound.Add(l.Endpoint);
            }
            broker = brokers[0];
            controllerListener = Listener.Bind(config.ControllerHost, config.ControllerPort, router, config, log, ListenerKind.Controller);
            config = config with
            {
                Port = broker.LocalEndPoint.Port,
                ControllerPort = controllerListener.LocalEndPoint.Port,
                Listeners = config.Listeners is null ? null : bound,
            };
            WarnExposed(brokers, controllerListener, config, log);
            device = OpenDevice(config, log);
            if (config.WrapDevice is not null)
                device = config.WrapDevice(device);
            device = new MeteredLogDevice(device, metrics);
            logs = new LogManager(config, device, time, log);
            var brokerListeners = brokers;
            var controllerConnections = controllerListener;
            metrics.Observe(logs, () => brokerListeners.Sum(l => l.ConnectionCount), () => controllerConnections.ConnectionCount, device);
            if (config.HttpPort >= 0)
            {
                // Up before the partitions open, so /healthz answers and /readyz says what start-up waits for.
                GroupCoordinator? g = null;
                TransactionCoordinator? t = null;
                http = BrokerHttpListener.Start(config.HttpHost, config.HttpPort, () => NotReadyOf(Volatile.Read(ref g), Volatile.Read(ref t)), metrics);
                config = config with { HttpPort = http.LocalEndPoint.Port };
                readyProbe = (c, x) => { Volatile.Write(ref g, c); Volatile.Write(ref t, x); };
            }
            var brokerConfigs = new DynamicBrokerConfigs(dataDir, config.NodeId, StaticBrokerConfigs(config));
            brokerConfigs.Load(log.Info, log.Warn);
            logs.ApplyTopicDefaults(brokerConfigs.TopicDefaults);
            var (brokerL, controllerL, logsL) = (brokers, controllerListener, logs);
            // The cleaner starts below (StartBackgroundWork) with the dynamic values; the listeners take them now.
            brokerConfigs.Reconfigure = dyn => ApplyBrokerSettings(dyn, logsL, brokerL, controllerL, log);
            ApplyBrokerSettings(brokerConfigs, logsL, brokerL, controllerL, log);
            var authorizer = new Authorizer(config.Acls, new AclStore(dataDir));
            int aclCount = authorizer.Load();
            if (config.Acls.Enabled)
                log.Info($"authorizer: standard, {aclCount} ACLs from {Path.Combine(dataDir, "__cluster", AclStore.FileName)}, super users: {(config.Acls.SuperUsers.Count == 0 ? "none" : string.Join(", ", config.Acls.SuperUsers))}, allow everyone if no ACL found: {config.Acls.AllowEveryoneIfNoAclFound}");
            var controller = new ClusterController(config, new MetadataStore(dataDir), logs, log);
            try
            {
                controller.Start();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new ConfigException(StartFailure(dataDir, e));
            }
            foreach (var (level, line) in deferred)
                log.Write(level, line);
            var offsetsStore = new OffsetsStore(controller, logs, config.Groups.OffsetsTopicPartitions, log, time);
            groups = new GroupCoordinator(config.Groups, offsetsStore, dataDir, time, log,
                (topic, partition) => controller.Find(topic) is { } t && partition >= 0 && partition < t.Partitions);
            metrics.ObserveGroups(groups, logs);
            var txnStore = new TransactionStateStore(controller, logs, config.Transactions, log, groups);
            transactions = new TransactionCoordinator(config.Transactions, txnStore, time, log);
            var handlers = new BrokerHandlers(config, controller, logs, router, time, log) { Coordinator = groups, Transactions = transactions, BrokerConfigs = brokerConfigs, Authorizer = authorizer };
            handlers.RegisterAll();
            logs.StartBackgroundWork(cleaner => ReconfigureCleaner(brokerConfigs, cleaner));
            groups.StartLoading(config.BeforeGroupLoad);
            LoadTransactions(transactions, txnStore, log);
            readyProbe?.Invoke(groups, transactions);
            http?.WebConsole.Attach(new ConsoleSources(config, logs, groups, controller, device.Mode, broker.LocalEndPoint, controllerListener.LocalEndPoint, time));
            foreach (var l in brokers)
                l.Start();
            controllerListener.Start();
            return new KiouBroker(config, log, dirLock, device, logs, controller, brokers, controllerListener, groups, transactions, metrics, http);
        }
        catch
        {
            http?.DisposeAsync().AsTask().GetAwaiter().GetResult();
            metrics.Dispose();
            foreach (var l in brokers)
                l.DisposeAsync().AsTask().GetAwaiter().GetResult();
            controllerListener?.DisposeAsync().AsTask().GetAwaiter().GetResult();
            groups?.DisposeAsync().AsTask().GetAwaiter().GetResult();
            transactions?.DisposeAsync().AsTask().GetAwaiter().GetResult();
            logs?.DisposeAsync().AsTask().GetAwaiter().GetResult();
            device?.Dispose();
            dirLock.Dispose();
            throw;
        }
    }

    /// <summary>
    /// One WARN per listener that anyone who can reach its address may use without authenticating: bound to an
    /// address other than loopback with PLAINTEXT, or SSL without required client certificates. Every API is open
    /// there, DeleteTopics included; the line says how to close it.
    /// </summary>
    static void WarnExposed(List<Listener> brokers, Listener controllerListener, BrokerConfig config, Log log)
    {
        foreach (var l in brokers.Append(controllerListener))
        {
            if (IPAddress.IsLoopback(l.LocalEndPoint.Address))
                continue;
            string name = l.Endpoint is { } e ? $"listener {e.Name} ({Kiou.Broker.Security.BrokerListener.ProtocolName(e.Protocol)})" : "controller listener (PLAINTEXT, KIOU_CONTROLLER_HOST)";
            string how = l.Endpoint is null
                ? "bind it to 127.0.0.1 with KIOU_CONTROLLER_HOST (clients need only the broker listeners)"
                : "bind it to 127.0.0.1, or use an SSL listener with KIOU_SSL_CLIENT_AUTH=required or a SASL_SSL listener in KIOU_LISTENERS, or firewall the port";
            if (l.Protocol == Kiou.Broker.Security.SecurityProtocol.Plaintext)
                log.Warn($"{name} on {l.LocalEndPoint} authenticates nobody and is not encrypted: anyone who reaches this address can use every API, produce, consume, delete topics (DeleteTopics), records and groups; {how}");
            else if (l.Protocol == Kiou.Broker.Security.SecurityProtocol.Ssl && config.Tls.ClientAuth != Kiou.Broker.Security.ClientAuth.Required)
                log.Warn($"{name} on {l.LocalEndPoint} is encrypted but authenticates nobody (KIOU_SSL_CLIENT_AUTH={config.Tls.ClientAuth.ToString().ToLowerInvariant()}): anyone who reaches this address can use every API, produce, consume, delete topics (DeleteTopics), records and groups; {how}");
        }
    }

    /// <summary>Replays __transaction_state in the background (transaction requests get COORDINATOR_LOAD_IN_PROGRESS
    /// meanwhile), then resumes the prepared transactions.</summary>
    static void LoadTransactions(TransactionCoordinator transactions, TransactionStateStore store, Log log) =>
        _ = Task.Run(() =>
        {
            try
            {
                transactions.Load(store.Replay());
            }
            catch (Exception e)
            {
                log.Error($"loading {TransactionLog.TopicName} failed: {e.Message}; transaction requests get COORDINATOR_NOT_AVAILABLE until a restart loads it");
                transactions.LoadFailed(e);
            }
        });

    static FileStream LockDataDir(string dataDir, List<(Log.Level, string)> deferred)
    {
        try
        {
            Directory.CreateDirectory(dataDir);
            string probe = Path.Combine(dataDir, ".write-test");
            try
            {
                File.WriteAllText(probe, "ok");
            }
            catch (IOException e) when (MetadataStore.IsDiskFull(e) && new MetadataStore(dataDir).ReleaseReserve())
            {
                // The reserve exists for this: a broker that starts can delete topics and records to free space.
                File.WriteAllText(probe, "ok");
                deferred.Add((Log.Level.Warn, $"data dir {dataDir} is on a full disk (ENOSPC): gave up the 1 MiB reserve file to start; " +
                    "produce requests will get KAFKA_STORAGE_ERROR until space is freed (delete topics or records, or files that are not KIOU's)"));
            }
            File.Delete(probe);
        }
        catch (IOException e) when (MetadataStore.IsDiskFull(e))
        {
            throw new ConfigException($"data dir {dataDir} is on a full disk: ENOSPC, disk full ({e.Message}); free space on the file system of {dataDir} (`df -h {dataDir}`), e.g. by removing files that are not KIOU's, then start again");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException($"data dir {dataDir} is not writable ({e.Message}); fix its permissions or point KIOU_DATA_DIR elsewhere");
        }
        try
        {
            return new FileStream(Path.Combine(dataDir, ".lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException)
        {
            throw new ConfigException($"data dir {dataDir} is in use by another KIOU broker; stop it or point KIOU_DATA_DIR elsewhere");
        }
    }

    /// <summary>One sentence for an I/O failure while loading the metadata and opening the partitions.</summary>
    /// <summary>Broker configs that KIOU_* settings set away from Kafka's default, by Kafka name (the static level of
    /// <see cref="DynamicBrokerConfigs"/>).</summary>
    static Dictionary<string, string> StaticBrokerConfigs(BrokerConfig config)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        void Add(string name, long value)
        {
            string v = value.ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (v != DynamicBrokerConfigs.Find(name)!.Default)
                values[name] = v;
        }
        Add("message.max.bytes", config.MessageMaxBytes);
        Add("log.cleaner.dedupe.buffer.size", config.Cleaner.DedupeBufferBytes);
        Add("log.cleaner.io.max.bytes.per.second", config.Cleaner.IoMaxBytesPerSecond);
        Add("log.cleaner.backoff.ms", config.Cleaner.BackoffMs);
        Add("max.connections", config.MaxConnections);
        Add("max.connections.per.ip", config.MaxConnectionsPerIp);
        return values;
    }

    /// <summary>The broker settings of their own that change at run time, to their owners (the cleaner, the
    /// listeners' admission), each of which reads its holder on every use.</summary>
    static void ApplyBrokerSettings(DynamicBrokerConfigs dyn, LogManager logs, IReadOnlyList<Listener> brokers, Listener controller, Log log)
    {
        if (logs.Cleaner is { } cleaner)
            ReconfigureCleaner(dyn, cleaner);
        int max = (int)dyn.EffectiveLong("max.connections"), perIp = (int)dyn.EffectiveLong("max.connections.per.ip");
        var overrides = new Dictionary<System.Net.IPAddress, int>();
        foreach (var (host, count) in DynamicBrokerConfigs.ParseOverrides(dyn.Effective("max.connections.per.ip.overrides") ?? "") ?? [])
        {
            // As Kafka's ConnectionQuotas: a host name is resolved when the value is set.
            System.Net.IPAddress[] addresses;
            try
            {
                addresses = System.Net.IPAddress.TryParse(host, out var literal) ? [literal] : System.Net.Dns.GetHostAddresses(host);
            }
            catch (System.Net.Sockets.SocketException e)
            {
                log.Warn($"max.connections.per.ip.overrides: host {host} does not resolve ({e.Message}); its connections get max.connections.per.ip ({perIp}). Fix the name and set the value again (bin/configs.sh --entity-type brokers)");
                continue;
            }
            foreach (var a in addresses)
                overrides[a.IsIPv4MappedToIPv6 ? a.MapToIPv4() : a] = count;
        }
        var frozen = overrides.ToFrozenDictionary();
        foreach (var broker in brokers)
            broker.SetLimits(max, perIp, frozen);
        controller.SetLimits(max, perIp, frozen);
    }

    static void ReconfigureCleaner(DynamicBrokerConfigs dyn, Kiou.Storage.Cleaner.LogCleaner cleaner) =>
        cleaner.Reconfigure(dyn.EffectiveLong("log.cleaner.io.max.bytes.per.second"), dyn.EffectiveLong("log.cleaner.backoff.ms"),
            (int)dyn.EffectiveLong("log.cleaner.dedupe.buffer.size"));

    static string StartFailure(string dataDir, Exception e)
    {
        int errno = e is Kiou.Storage.StorageException s ? s.Errno : e.HResult;
        return errno switch
        {
            28 or 122 => $"cannot start: ENOSPC, disk full ({e.Message}); free space on the file system of {dataDir} (`df -h {dataDir}`) and start again",
            23 or 24 => $"cannot start: out of file descriptors ({e.Message}); raise the limit (`ulimit -n`, LimitNOFILE= in systemd) and start again",
            _ => $"cannot start: {e.Message}",
        };
    }

    /// <summary>
    /// Raises the soft descriptor limit to the hard one and returns the partition limit: KIOU_MAX_PARTITIONS when
    /// set (with a warning if the descriptors cannot cover it), else the default lowered to fit the descriptors.
    /// </summary>
    static int SizeForDescriptors(BrokerConfig config, List<(Log.Level, string)> log)
    {
        var (before, after) = Kiou.IoUring.Interop.DescriptorLimit.RaiseSoftToHard();
        // 1024 descriptors for sockets and the ring; one per idle partition (its active segment).
        const int Reserved = 1024;
        long fits = after < 0 ? ClusterController.DefaultMaxPartitions : Math.Max(1, after - Reserved);
        if (after >= 0)
            log.Add((Log.Level.Info, after > before ? $"file descriptor limit raised from {before} to {after}" : $"file descriptor limit {after}"));
        if (config.MaxPartitions is { } set)
        {
            if (set > fits)
                log.Add((Log.Level.Warn, $"KIOU_MAX_PARTITIONS={set} is more than the file descriptor limit ({after}) can keep open; raise `ulimit -n` or creating partitions may fail with EMFILE"));
            return set;
        }
        int max = (int)Math.Min(ClusterController.DefaultMaxPartitions, fits);
        if (max < ClusterController.DefaultMaxPartitions)
            log.Add((Log.Level.Warn, $"partition limit lowered to {max} (from {ClusterController.DefaultMaxPartitions}) to fit the file descriptor limit {after}; raise `ulimit -n` or set KIOU_MAX_PARTITIONS"));
        return max;
    }

    static ILogDevice OpenDevice(BrokerConfig config, Log log)
    {
        if (config.IoMode == "sync")
            return new SyncLogDevice();
        var uring = UringLogDevice.TryCreate(config.UringWrites, out string? whyNot);
        if (uring is not null)
            return uring;
        if (config.IoMode == "uring")
            throw new ConfigException($"KIOU_IO=uring but io_uring cannot be used here: {whyNot}");
        log.Warn($"io_uring is not available ({whyNot}); using synchronous pwrite writes instead. Set KIOU_IO=sync to silence this warning.");
        return new SyncLogDevice();
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        foreach (var l in _brokers)
            await l.StopAcceptingAsync().ConfigureAwait(false);
        await _controllerListener.StopAcceptingAsync().ConfigureAwait(false);
        if (Http is not null)
            await Http.DisposeAsync().ConfigureAwait(false);
        // Both at once: each waits a bounded grace for its connections, and SIGTERM has one bound for the whole stop.
        await Task.WhenAll(_brokers.Select(l => l.DisposeAsync().AsTask()).Append(_controllerListener.DisposeAsync().AsTask())).ConfigureAwait(false);
        // Transactions first: a marker in flight may still complete a group's transactional offsets.
        await Transactions.DisposeAsync().ConfigureAwait(false);
        await Groups.DisposeAsync().ConfigureAwait(false);
        await _logs.DisposeAsync().ConfigureAwait(false);
        _device.Dispose();
        _metrics.Dispose();
        _lock.Dispose();
        _log.Info("stopped: every in-flight write finished and all files are closed");
    }
}
