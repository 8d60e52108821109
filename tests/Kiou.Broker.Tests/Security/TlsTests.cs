using System.Buffers.Binary;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Confluent.Kafka;
using Kiou.Broker.Hosting;
using Kiou.Broker.Security;
using Kiou.Protocol;
using Kiou.Protocol.Messages;
using SecurityProtocol = Kiou.Broker.Security.SecurityProtocol;

namespace Kiou.Broker.Tests;

/// <summary>
/// Listeners and TLS with real clients: Confluent.Kafka and kcat over SSL, client certificates (mTLS) and the principal
/// they give, certificates a client or the broker must refuse, certificate reload, and hostile bytes before and after
/// the handshake. Each broker has a PLAINTEXT and an SSL listener, so "other clients unaffected" is checked on both.
/// </summary>
public sealed class TlsTests : IDisposable
{
    readonly TestCertificates _pki = new();

    public void Dispose() => _pki.Dispose();

    TestBroker StartBroker(ClientAuth auth = ClientAuth.None, (string Cert, string Key)? server = null, long arrivalMs = 30_000)
    {
        var (cert, key) = server ?? _pki.Issue("server", "CN=localhost,O=KIOU", server: true);
        return TestBroker.Start(c => c with
        {
            Listeners = [new("PLAINTEXT", SecurityProtocol.Plaintext, "127.0.0.1", 0), new("SSL", SecurityProtocol.Ssl, "127.0.0.1", 0)],
            Tls = new TlsSettings { CertificateLocation = cert, KeyLocation = key, CaLocation = _pki.CaPem, ClientAuth = auth },
            RequestArrivalTimeoutMs = arrivalMs,
        });
    }

    static string SslBootstrap(TestBroker b) => $"127.0.0.1:{b.Broker.EndPointOf("SSL").Port}";

    ProducerConfig SslProducer(TestBroker b, string? ca = null, (string Cert, string Key)? client = null) => new()
    {
        BootstrapServers = SslBootstrap(b),
        SecurityProtocol = Confluent.Kafka.SecurityProtocol.Ssl,
        SslCaLocation = ca ?? _pki.CaPem,
        SslCertificateLocation = client?.Cert,
        SslKeyLocation = client?.Key,
        Acks = Acks.All,
        MessageTimeoutMs = 5000,
        SocketTimeoutMs = 5000,
        EnableIdempotence = false,
    };

    /// <summary>A producer expected to fail: short timeouts keep the test short.</summary>
    IProducer<byte[]?, byte[]?> RefusedProducer(TestBroker b, string? ca = null, (string Cert, string Key)? client = null)
    {
        var config = SslProducer(b, ca, client);
        config.MessageTimeoutMs = 1500;
        return new ProducerBuilder<byte[]?, byte[]?>(config).SetLogHandler((_, _) => { }).Build();
    }

    static async Task ProducePlaintextAsync(TestBroker b, string topic)
    {
        using var p = Clients.Producer(b.Bootstrap, Acks.All);
        var r = await p.ProduceAsync(topic, new Message<byte[]?, byte[]?> { Value = "plain"u8.ToArray() });
        Assert.Equal(PersistenceStatus.Persisted, r.Status);
    }

    [Fact]
    public async Task Confluent_produces_and_consumes_over_ssl_and_metadata_advertises_the_ssl_port()
    {
        await using var broker = StartBroker();
        int sslPort = broker.Broker.EndPointOf("SSL").Port;
        Assert.NotEqual(broker.Broker.BrokerEndPoint.Port, sslPort);
        await Clients.CreateTopicAsync(broker.Bootstrap, "tls", 1);

        // Enough bytes that fetch responses carry file regions (sendfile on plaintext, read + encrypt here), and one
        // record larger than the direct-read threshold of the request path.
        var values = Enumerable.Range(0, 200).Select(i => Enumerable.Repeat((byte)i, 1024).ToArray()).ToList();
        values.Add(Enumerable.Range(0, 300_000).Select(i => (byte)(i * 7)).ToArray());
        using (var p = new ProducerBuilder<byte[]?, byte[]?>(SslProducer(broker)).Build())
        {
            foreach (var v in values)
                p.Produce("tls", new Message<byte[]?, byte[]?> { Value = v });
            Assert.Equal(0, p.Flush(TimeSpan.FromSeconds(20)));
        }

        using (var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = SslBootstrap(broker), SecurityProtocol = Confluent.Kafka.SecurityProtocol.Ssl, SslCaLocation = _pki.CaPem }).Build())
        {
            var md = admin.GetMetadata(TimeSpan.FromSeconds(10));
            Assert.Equal(sslPort, Assert.Single(md.Brokers).Port);
        }
        using (var admin = Clients.Admin(broker.Bootstrap))
            Assert.Equal(broker.Broker.BrokerEndPoint.Port, Assert.Single(admin.GetMetadata(TimeSpan.FromSeconds(10)).Brokers).Port);

        using var consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
        {
            BootstrapServers = SslBootstrap(broker),
            SecurityProtocol = Confluent.Kafka.SecurityProtocol.Ssl,
            SslCaLocation = _pki.CaPem,
            GroupId = "tls-group",
            AutoOffsetReset = AutoOffsetReset.Earliest,
            EnableAutoCommit = false,
        }).Build();
        consumer.Subscribe("tls");
        var got = new List<byte[]>();
        var until = DateTime.UtcNow.AddSeconds(20);
        while (got.Count < values.Count && DateTime.UtcNow < until)
        {
            var r = consumer.Consume(TimeSpan.FromMilliseconds(500));
            if (r?.Message is { } m)
                got.Add(m.Value!);
        }
        Assert.Equal(values.Count, got.Count);
        for (int i = 0; i < values.Count; i++)
            Assert.True(values[i].AsSpan().SequenceEqual(got[i]), $"record {i} differs");
        consumer.Commit();
        consumer.Close();
    }

    [Fact]
    public async Task Kcat_produces_and_consumes_over_ssl()
    {
        await using var broker = StartBroker();
        string b = SslBootstrap(broker);
        string[] ssl = ["-X", "security.protocol=ssl", "-X", $"ssl.ca.location={_pki.CaPem}"];
        var lines = Enumerable.Range(0, 100).Select(i => $"value {i}").ToList();
        var produce = ChildProcess.Run("kcat", ["-b", b, .. ssl, "-P", "-t", "kc-tls"], string.Join("\n", lines) + "\n");
        Assert.True(produce.ExitCode == 0, produce.Stderr);
        var consume = ChildProcess.Run("kcat", ["-b", b, .. ssl, "-C", "-t", "kc-tls", "-o", "beginning", "-e"]);
        Assert.True(consume.ExitCode == 0, consume.Stderr);
        Assert.Equal(lines, consume.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        var list = ChildProcess.Run("kcat", ["-b", b, .. ssl, "-L"]);
        Assert.Contains($"broker 1 at 127.0.0.1:{broker.Broker.EndPointOf("SSL").Port}", list.Stdout);
    }

    [Fact]
    public async Task Client_certificate_gives_the_principal_and_bad_client_certificates_are_refused()
    {
        await using var broker = StartBroker(ClientAuth.Required);
        var alice = _pki.Issue("alice", "CN=alice,OU=Payments,O=Example", server: false);
        using (var p = new ProducerBuilder<byte[]?, byte[]?>(SslProducer(broker, client: alice)).Build())
        {
            var r = await p.ProduceAsync("mtls", new Message<byte[]?, byte[]?> { Value = "x"u8.ToArray() });
            Assert.Equal(PersistenceStatus.Persisted, r.Status);
        }
        string principalLine = broker.LogText.ToString().Split('\n').FirstOrDefault(l => l.Contains("client certificate", StringComparison.Ordinal)) ?? broker.LogText.ToString();
        Assert.Contains("principal User:CN=alice,OU=Payments,O=Example", principalLine);

        using (var tls = await TlsWire.ConnectAsync(broker.Broker.EndPointOf("SSL"), _pki, alice))
            Assert.Equal(ErrorCodes.None, (await tls.SendAsync<ApiVersionsResponse>(ApiVersionsRequest.ApiKey, 0, new ApiVersionsRequest())).ErrorCode);

        var expired = _pki.Issue("expired-client", "CN=old,O=Example", server: false, expired: true);
        var stranger = _pki.Issue("stranger", "CN=mallory,O=Elsewhere", server: false, issuer: _pki.OtherCa);
        foreach (var bad in new (string, string)?[] { expired, stranger, null })
        {
            using var p = RefusedProducer(broker, client: bad);
            await Assert.ThrowsAsync<ProduceException<byte[]?, byte[]?>>(() => p.ProduceAsync("mtls", new Message<byte[]?, byte[]?> { Value = "x"u8.ToArray() }));
        }
        Assert.Contains("TLS handshake failed on listener SSL", broker.LogText.ToString());
        await ProducePlaintextAsync(broker, "mtls");
    }

    [Fact]
    public async Task Client_not_trusting_the_server_or_an_expired_server_certificate_fails_and_others_are_served()
    {
        await using (var broker = StartBroker())
        {
            using (var p = RefusedProducer(broker, ca: _pki.OtherCaPem))
                await Assert.ThrowsAsync<ProduceException<byte[]?, byte[]?>>(() => p.ProduceAsync("t", new Message<byte[]?, byte[]?> { Value = "x"u8.ToArray() }));
            using (var p = new ProducerBuilder<byte[]?, byte[]?>(SslProducer(broker)).Build())
                Assert.Equal(PersistenceStatus.Persisted, (await p.ProduceAsync("t", new Message<byte[]?, byte[]?> { Value = "x"u8.ToArray() })).Status);
        }
        var expired = _pki.Issue("expired-server", "CN=localhost,O=KIOU", server: true, expired: true);
        await using (var broker = StartBroker(server: expired))
        {
            using (var p = RefusedProducer(broker))
                await Assert.ThrowsAsync<ProduceException<byte[]?, byte[]?>>(() => p.ProduceAsync("t", new Message<byte[]?, byte[]?> { Value = "x"u8.ToArray() }));
            await ProducePlaintextAsync(broker, "t");
            Assert.Contains("expired at", broker.LogText.ToString());
        }
    }

    [Fact]
    public async Task Certificate_files_changed_are_used_by_new_connections_and_a_broken_reload_keeps_the_old()
    {
        var first = _pki.Issue("reload", "CN=localhost,O=First", server: true);
        await using var broker = StartBroker(server: first);
        var ep = broker.Broker.EndPointOf("SSL");
        Assert.Contains("O=First", await ServerSubjectAsync(ep));
        await Task.Delay(1100); // the files are looked at at most once a second
        _pki.Issue("reload", "CN=localhost,O=Second", server: true);
        await Task.Delay(1100);
        Assert.Contains("O=Second", await ServerSubjectAsync(ep));
        Assert.Contains("TLS certificate reloaded", broker.LogText.ToString());

        File.WriteAllText(first.Cert, "not a certificate");
        await Task.Delay(1100);
        Assert.Contains("O=Second", await ServerSubjectAsync(ep));
        Assert.Contains("keep the previous certificate", broker.LogText.ToString());
    }

    async Task<string> ServerSubjectAsync(IPEndPoint ep)
    {
        using var tls = await TlsWire.ConnectAsync(ep, _pki);
        return tls.Ssl.RemoteCertificate!.Subject;
    }

    [Fact]
    public async Task Hostile_bytes_before_and_after_the_handshake_close_only_that_connection()
    {
        await using var broker = StartBroker(arrivalMs: 1000);
        var ep = broker.Broker.EndPointOf("SSL");

        // Garbage instead of a ClientHello: closed at once.
        using (var s = await ConnectionLimitTests.ConnectAsync(ep))
        {
            await s.SendAsync(System.Text.Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n" + new string('A', 5000)), SocketFlags.None);
            Assert.True(await ConnectionLimitTests.ClosedByBrokerAsync(s, TimeSpan.FromSeconds(3)));
        }
        // A record header announcing a huge handshake record, then silence; and a client that sends nothing: both
        // closed by the handshake deadline (KIOU_REQUEST_ARRIVAL_TIMEOUT_MS here).
        using (var stalled = await ConnectionLimitTests.ConnectAsync(ep))
        using (var silent = await ConnectionLimitTests.ConnectAsync(ep))
        {
            await stalled.SendAsync(new byte[] { 0x16, 0x03, 0x01, 0x40, 0x00, 0x01 }, SocketFlags.None);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            Assert.True(await ConnectionLimitTests.ClosedByBrokerAsync(stalled, TimeSpan.FromSeconds(5)));
            Assert.True(await ConnectionLimitTests.ClosedByBrokerAsync(silent, TimeSpan.FromSeconds(5)));
            Assert.InRange(sw.ElapsedMilliseconds, 0, 4000);
        }
        Assert.Contains("TLS handshake failed", broker.LogText.ToString());

        // Over an established TLS connection: a size field beyond KIOU_SOCKET_REQUEST_MAX_BYTES, then garbage frames.
        using (var tls = await TlsWire.ConnectAsync(ep, _pki))
        {
            await tls.Ssl.WriteAsync(new byte[] { 0x7f, 0xff, 0xff, 0xff, 1, 2, 3, 4 });
            Assert.True(await tls.ClosedByBrokerAsync(TimeSpan.FromSeconds(3)));
        }
        using (var tls = await TlsWire.ConnectAsync(ep, _pki))
        {
            var frame = new byte[4 + 64];
            BinaryPrimitives.WriteInt32BigEndian(frame, 64);
            Random.Shared.NextBytes(frame.AsSpan(4));
            BinaryPrimitives.WriteInt16BigEndian(frame.AsSpan(4), 31000); // no such API
            await tls.Ssl.WriteAsync(frame);
            Assert.True(await tls.ClosedByBrokerAsync(TimeSpan.FromSeconds(3)));
        }
        // A large request whose rest never comes: its buffer is given back when the deadline closes it.
        using (var tls = await TlsWire.ConnectAsync(ep, _pki))
        {
            var head = new byte[4 + 100_000];
            BinaryPrimitives.WriteInt32BigEndian(head, 5_000_000);
            BinaryPrimitives.WriteInt16BigEndian(head.AsSpan(4), ProduceRequest.ApiKey);
            await tls.Ssl.WriteAsync(head);
            Assert.True(await tls.ClosedByBrokerAsync(TimeSpan.FromSeconds(5)));
        }
        Assert.Equal(0, broker.Broker.PartialRequestBytes);

        using (var tls = await TlsWire.ConnectAsync(ep, _pki))
            Assert.Equal(ErrorCodes.None, (await tls.SendAsync<ApiVersionsResponse>(ApiVersionsRequest.ApiKey, 0, new ApiVersionsRequest())).ErrorCode);
        await ProducePlaintextAsync(broker, "after-hostile");
    }

    [Fact]
    public async Task An_encrypted_key_loads_with_its_password_and_each_listener_advertises_its_own_endpoint()
    {
        var (cert, key) = _pki.Issue("encrypted", "CN=localhost,O=KIOU", server: true, password: "s3cret");
        await using var broker = TestBroker.Start(c => c with
        {
            Listeners = [new("PLAINTEXT", SecurityProtocol.Plaintext, "127.0.0.1", 0, "kiou.example.com", 29092), new("SSL", SecurityProtocol.Ssl, "127.0.0.1", 0)],
            Tls = new TlsSettings { CertificateLocation = cert, KeyLocation = key, KeyPassword = "s3cret" },
        });
        int sslPort = broker.Broker.EndPointOf("SSL").Port;
        using (var plain = await SegmentFilesTests.Wire.ConnectAsync(broker.Broker.BrokerEndPoint))
        {
            var md = await plain.SendAsync<MetadataResponse>(MetadataRequest.ApiKey, 12, new MetadataRequest());
            Assert.Equal(("kiou.example.com", 29092), (md.Brokers[0].Host, md.Brokers[0].Port));
            var fc = await plain.SendAsync<FindCoordinatorResponse>(FindCoordinatorRequest.ApiKey, 4, new FindCoordinatorRequest { KeyType = 0, CoordinatorKeys = ["g"] });
            Assert.Equal(("kiou.example.com", 29092), (fc.Coordinators[0].Host, fc.Coordinators[0].Port));
        }
        using (var tls = await TlsWire.ConnectAsync(broker.Broker.EndPointOf("SSL"), _pki))
        {
            var md = await tls.SendAsync<MetadataResponse>(MetadataRequest.ApiKey, 12, new MetadataRequest());
            Assert.Equal(("127.0.0.1", sslPort), (md.Brokers[0].Host, md.Brokers[0].Port));
            var fc = await tls.SendAsync<FindCoordinatorResponse>(FindCoordinatorRequest.ApiKey, 4, new FindCoordinatorRequest { KeyType = 0, CoordinatorKeys = ["g"] });
            Assert.Equal(("127.0.0.1", sslPort), (fc.Coordinators[0].Host, fc.Coordinators[0].Port));
            var dc = await tls.SendAsync<DescribeClusterResponse>(DescribeClusterRequest.ApiKey, 1, new DescribeClusterRequest());
            Assert.Equal(("127.0.0.1", sslPort), (dc.Brokers[0].Host, dc.Brokers[0].Port));
        }
        // DescribeConfigs names both listeners (asked over SSL: the PLAINTEXT listener advertises a host not reachable here).
        using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = SslBootstrap(broker), SecurityProtocol = Confluent.Kafka.SecurityProtocol.Ssl, SslCaLocation = _pki.CaPem }).Build();
        var configs = await admin.DescribeConfigsAsync([new Confluent.Kafka.Admin.ConfigResource { Type = Confluent.Kafka.Admin.ResourceType.Broker, Name = "1" }]);
        string listeners = configs[0].Entries["listeners"].Value;
        Assert.Contains($"SSL://127.0.0.1:{sslPort}", listeners);
        Assert.Contains("PLAINTEXT://kiou.example.com:29092", configs[0].Entries["advertised.listeners"].Value);
    }

    [Fact]
    public async Task A_listener_open_to_the_network_without_authentication_is_named_in_a_warning()
    {
        await using var broker = TestBroker.Start(c => c with
        {
            Listeners = [new("PLAINTEXT", SecurityProtocol.Plaintext, "127.0.0.1", 0), new("OPEN", SecurityProtocol.Plaintext, "0.0.0.0", 0)],
        });
        string log = broker.LogText.ToString();
        Assert.Contains("listener OPEN (PLAINTEXT) on 0.0.0.0:", log);
        Assert.Contains("DeleteTopics", log);
        Assert.DoesNotContain("listener PLAINTEXT (PLAINTEXT)", log);
    }

    [Fact]
    public void Listener_settings_parse_as_kafka_and_a_bad_value_says_what_is_wrong()
    {
        var ls = BrokerConfig.FromEnvironment(n => n switch
        {
            "KIOU_LISTENERS" => "PLAINTEXT://127.0.0.1:9092,INTERNAL://:9095,SSL://0.0.0.0:9094",
            "KIOU_LISTENER_SECURITY_PROTOCOL_MAP" => "PLAINTEXT:PLAINTEXT,INTERNAL:SASL_SSL,SSL:SSL",
            "KIOU_ADVERTISED_LISTENERS" => "SSL://kiou.example.com:19094",
            _ => null,
        }).EffectiveListeners;
        Assert.Equal(["PLAINTEXT", "INTERNAL", "SSL"], ls.Select(l => l.Name));
        Assert.Equal(SecurityProtocol.SaslSsl, ls[1].Protocol);
        Assert.Equal("0.0.0.0", ls[1].Host);
        Assert.Equal(("kiou.example.com", 19094), (ls[2].EffectiveAdvertisedHost, ls[2].EffectiveAdvertisedPort));
        Assert.Equal(("127.0.0.1", 9092), (ls[0].EffectiveAdvertisedHost, ls[0].EffectiveAdvertisedPort));

        var single = Assert.Single(BrokerConfig.FromEnvironment(n => n == "KIOU_PORT" ? "9999" : null).EffectiveListeners);
        Assert.Equal(("PLAINTEXT", SecurityProtocol.Plaintext, 9999), (single.Name, single.Protocol, single.Port));

        foreach (var (listeners, map, word) in new[]
        {
            ("PLAINTEXT://127.0.0.1", null, "NAME://host:port"),
            ("FOO://127.0.0.1:1", null, "FOO has no security protocol"),
            ("PLAINTEXT://a:1,PLAINTEXT://b:2", null, "appears twice"),
            ("A://a:1", "A:TLS", "KIOU_LISTENER_SECURITY_PROTOCOL_MAP"),
            ("PLAINTEXT://a:99999", null, "no valid port"),
        })
        {
            var e = Assert.Throws<ConfigException>(() => BrokerConfig.FromEnvironment(n => n switch
            {
                "KIOU_LISTENERS" => listeners,
                "KIOU_LISTENER_SECURITY_PROTOCOL_MAP" => map,
                _ => null,
            }));
            Assert.Contains(word, e.Message);
        }
        Assert.Contains("KIOU_SSL_CLIENT_AUTH", Assert.Throws<ConfigException>(() => BrokerConfig.FromEnvironment(n => n == "KIOU_SSL_CLIENT_AUTH" ? "yes" : null)).Message);
    }

    [Fact]
    public void An_ssl_listener_without_a_certificate_stops_the_start_with_one_line()
    {
        var e = Assert.Throws<ConfigException>(() => TestBroker.Start(c => c with { Listeners = [new("SSL", SecurityProtocol.Ssl, "127.0.0.1", 0)] }));
        Assert.Contains("KIOU_SSL_CERTIFICATE_LOCATION", e.Message);
    }

    [Fact]
    public void The_principal_of_a_certificate_is_its_subject_as_rfc_2253()
    {
        var name = new X500DistinguishedName("CN=\"al,ice\", OU=Payments, O=Example Corp, C=DE");
        Assert.Equal("CN=al\\,ice,OU=Payments,O=Example Corp,C=DE", TlsServer.Rfc2253(name));
    }

    /// <summary>A raw Kafka connection over TLS (for hostile frames and seeing what the broker presents).</summary>
    sealed class TlsWire : IDisposable
    {
        readonly Socket _socket;
        public SslStream Ssl { get; }
        int _correlation;

        TlsWire(Socket socket, SslStream ssl)
        {
            _socket = socket;
            Ssl = ssl;
        }

        public static async Task<TlsWire> ConnectAsync(IPEndPoint ep, TestCertificates pki, (string Cert, string Key)? client = null)
        {
            var s = await ConnectionLimitTests.ConnectAsync(ep);
            var ssl = new SslStream(new NetworkStream(s, ownsSocket: true));
            var options = new SslClientAuthenticationOptions
            {
                TargetHost = "localhost",
                EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                CertificateChainPolicy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, CustomTrustStore = { pki.Ca }, RevocationMode = X509RevocationMode.NoCheck },
            };
            if (client is { } c)
                options.ClientCertificates = [X509Certificate2.CreateFromPemFile(c.Cert, c.Key)];
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await ssl.AuthenticateAsClientAsync(options, cts.Token);
            return new TlsWire(s, ssl);
        }

        public async Task<TResponse> SendAsync<TResponse>(short apiKey, short version, IKafkaMessage request) where TResponse : IKafkaMessage, new()
        {
            var w = new KafkaWriter();
            int at = w.ReserveInt32();
            int correlation = ++_correlation;
            new RequestHeader { RequestApiKey = apiKey, RequestApiVersion = version, CorrelationId = correlation, ClientId = "tls-test" }
                .Write(w, ApiMessageTypes.RequestHeaderVersion(apiKey, version));
            request.Write(w, version);
            w.PatchInt32(at, w.Length - 4);
            await Ssl.WriteAsync(w.WrittenMemory);
            var size = new byte[4];
            await Ssl.ReadExactlyAsync(size);
            var body = new byte[BinaryPrimitives.ReadInt32BigEndian(size)];
            await Ssl.ReadExactlyAsync(body);
            var reader = new KafkaReader(body);
            new ResponseHeader().Read(ref reader, ApiMessageTypes.ResponseHeaderVersion(apiKey, version));
            var response = new TResponse();
            response.Read(ref reader, version);
            Assert.False(reader.Failed);
            return response;
        }

        public async Task<bool> ClosedByBrokerAsync(TimeSpan within)
        {
            using var cts = new CancellationTokenSource(within);
            var buffer = new byte[1024];
            try
            {
                while (true)
                {
                    if (await Ssl.ReadAsync(buffer, cts.Token) == 0)
                        return true;
                }
            }
            catch (Exception e) when (e is IOException or SocketException or AuthenticationException)
            {
                return true;
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }

        public void Dispose()
        {
            Ssl.Dispose();
            _socket.Dispose();
        }
    }
}
