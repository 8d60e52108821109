using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Kiou.Broker.Hosting;
using Kiou.Broker.Security;
using ScramMechanism = Confluent.Kafka.Admin.ScramMechanism;
using Kiou.Protocol.Messages;
using static Kiou.Broker.Tests.RawWire;
using SecurityProtocol = Confluent.Kafka.SecurityProtocol;

namespace Kiou.Broker.Tests;

/// <summary>
/// SASL on a SASL_PLAINTEXT or SASL_SSL broker listener (the controller listener stays plaintext, for setup) with real
/// clients: librdkafka (Confluent.Kafka, kcat), kafka-python 2.0.2 and KafkaJS; PLAIN users from a file, SCRAM users
/// from the start-up file and the admin API.
/// </summary>
public sealed class SaslTests : IDisposable
{
    const string AlicePassword = "alice-secret";
    const string CarolPassword = "carol-secret";
    readonly string _dir = Path.Combine(Path.GetTempPath(), "kiou-sasl-" + Guid.NewGuid().ToString("N"));
    TestCertificates? _pki;

    /// <summary>The CA file the clients trust when the broker was started with a SASL_SSL listener, else null: the
    /// clients of a test speak the protocol of the broker it started.</summary>
    string? _ca;

    public SaslTests()
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(PlainFile, $"# PLAIN users\nalice:{AlicePassword}\nbob:bob:with:colons\n");
        File.WriteAllText(ScramFile, $"carol:SCRAM-SHA-256:{CarolPassword}\ncarol:SCRAM-SHA-512:{CarolPassword}\n");
    }

    public void Dispose()
    {
        _pki?.Dispose();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    string PlainFile => Path.Combine(_dir, "plain-users");
    string ScramFile => Path.Combine(_dir, "scram-users");

    TestBroker StartSasl(long reauthMs = 0, int delayMs = 100, string? dataDir = null, string protocol = "SASL_PLAINTEXT")
    {
        TlsSettings? tls = null;
        if (protocol == "SASL_SSL")
        {
            _pki ??= new TestCertificates();
            var (cert, key) = _pki.Issue("server", "CN=localhost,O=KIOU", server: true);
            tls = new TlsSettings { CertificateLocation = cert, KeyLocation = key };
            _ca = _pki.CaPem;
        }
        var listener = protocol == "SASL_SSL"
            ? new Kiou.Broker.Security.BrokerListener("SASL_SSL", Kiou.Broker.Security.SecurityProtocol.SaslSsl, "127.0.0.1", 0)
            : new Kiou.Broker.Security.BrokerListener("SASL_PLAINTEXT", Kiou.Broker.Security.SecurityProtocol.SaslPlaintext, "127.0.0.1", 0);
        return TestBroker.Start(c => c with
        {
            Listeners = [listener],
            Tls = tls ?? c.Tls,
            Sasl = new SaslSettings { PlainUsersFile = PlainFile, ScramUsersFile = ScramFile, ConnectionsMaxReauthMs = reauthMs, FailedAuthenticationDelayMs = delayMs },
            Groups = c.Groups with { InitialRebalanceDelayMs = 0 },
        }, dataDir);
    }

    T WithSasl<T>(T config, string bootstrap, string mechanism, string user, string password) where T : ClientConfig
    {
        config.BootstrapServers = bootstrap;
        config.SecurityProtocol = _ca is null ? SecurityProtocol.SaslPlaintext : SecurityProtocol.SaslSsl;
        config.SslCaLocation = _ca;
        config.SaslMechanism = mechanism switch
        {
            "PLAIN" => SaslMechanism.Plain,
            "SCRAM-SHA-256" => SaslMechanism.ScramSha256,
            _ => SaslMechanism.ScramSha512,
        };
        config.SaslUsername = user;
        config.SaslPassword = password;
        return config;
    }

    static (string User, string Password) UserFor(string mechanism) => mechanism == "PLAIN" ? ("alice", AlicePassword) : ("carol", CarolPassword);

    /// <summary>Produces <paramref name="count"/> records as the user and reads them back as the user.</summary>
    async Task ProduceAndConsumeAsync(string bootstrap, string mechanism, string user, string password, string topic, int count = 20)
    {
        using (var producer = new ProducerBuilder<string, string>(WithSasl(new ProducerConfig { Acks = Acks.All }, bootstrap, mechanism, user, password)).Build())
        {
            for (int i = 0; i < count; i++)
                await producer.ProduceAsync(topic, new Message<string, string> { Key = $"k{i}", Value = $"{topic} {i}" });
        }
        using var consumer = new ConsumerBuilder<string, string>(WithSasl(new ConsumerConfig { GroupId = "g-" + topic, AutoOffsetReset = AutoOffsetReset.Earliest }, bootstrap, mechanism, user, password)).Build();
        consumer.Assign(new TopicPartitionOffset(topic, 0, Offset.Beginning));
        var got = new List<string>();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (got.Count < count && DateTime.UtcNow < deadline)
        {
            var r = consumer.Consume(TimeSpan.FromMilliseconds(200));
            if (r?.Message is not null)
                got.Add(r.Message.Value);
        }
        Assert.Equal(Enumerable.Range(0, count).Select(i => $"{topic} {i}"), got);
    }

    public static TheoryData<string, string> ProtocolsAndMechanisms => new()
    {
        { "SASL_PLAINTEXT", "PLAIN" },
        { "SASL_PLAINTEXT", "SCRAM-SHA-256" },
        { "SASL_PLAINTEXT", "SCRAM-SHA-512" },
        { "SASL_SSL", "PLAIN" },
        { "SASL_SSL", "SCRAM-SHA-256" },
        { "SASL_SSL", "SCRAM-SHA-512" },
    };

    [Theory]
    [MemberData(nameof(ProtocolsAndMechanisms))]
    public async Task Librdkafka_authenticates_and_produces_and_consumes(string protocol, string mechanism)
    {
        await using var broker = StartSasl(protocol: protocol);
        var (user, password) = UserFor(mechanism);
        await ProduceAndConsumeAsync(broker.Bootstrap, mechanism, user, password, "t-" + mechanism.ToLowerInvariant());
        Assert.Contains($"SASL authentication of User:{user} with {mechanism} succeeded", broker.LogText.ToString());
    }

    [Theory]
    [MemberData(nameof(ProtocolsAndMechanisms))]
    public async Task Kcat_authenticates_and_produces_and_consumes(string protocol, string mechanism)
    {
        await using var broker = StartSasl(protocol: protocol);
        var (user, password) = UserFor(mechanism);
        string topic = "kc-" + mechanism.ToLowerInvariant();
        string security = $"-X security.protocol={protocol}" + (_ca is null ? "" : $" -X ssl.ca.location={_ca}");
        string sasl = $"{security} -X sasl.mechanisms={mechanism} -X sasl.username={user} -X sasl.password={password}";
        var lines = Enumerable.Range(0, 50).Select(i => $"value {i}").ToList();
        var produce = Kcat($"-b {broker.Bootstrap} {sasl} -P -t {topic}", string.Join("\n", lines) + "\n");
        Assert.True(produce.ExitCode == 0, produce.Stderr);
        var consume = Kcat($"-b {broker.Bootstrap} {sasl} -C -t {topic} -o beginning -e -f %s\\n");
        Assert.True(consume.ExitCode == 0, consume.Stderr);
        Assert.Equal(lines, consume.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));

        var wrong = Kcat($"-b {broker.Bootstrap} {security} -X sasl.mechanisms={mechanism} -X sasl.username={user} -X sasl.password=nope -L -m 5");
        Assert.NotEqual(0, wrong.ExitCode);
        Assert.Contains("Authentication failed", wrong.Stderr + wrong.Stdout);
    }

    /// <summary>librdkafka reports the broker's SASL_AUTHENTICATION_FAILED as a local authentication error with
    /// the broker's message.</summary>
    static bool IsAuthFailure(Error e) => e.Code is ErrorCode.Local_Authentication or ErrorCode.SaslAuthenticationFailed && e.Reason.Contains("SASL authentication error", StringComparison.Ordinal);

    static ChildProcess.Result Kcat(string args, string? stdin = null) =>
        ChildProcess.Run("kcat", args.Split(' ', StringSplitOptions.RemoveEmptyEntries), stdin);

    [Theory]
    [InlineData("SASL_PLAINTEXT", "PLAIN", "Authentication failed: Invalid username or password")]
    [InlineData("SASL_PLAINTEXT", "SCRAM-SHA-256", "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256")]
    [InlineData("SASL_PLAINTEXT", "SCRAM-SHA-512", "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512")]
    [InlineData("SASL_SSL", "SCRAM-SHA-256", "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256")]
    public async Task A_wrong_password_and_an_unknown_user_get_the_same_refusal_and_other_clients_are_unharmed(string protocol, string mechanism, string expected)
    {
        await using var broker = StartSasl(protocol: protocol);
        var (user, _) = UserFor(mechanism);
        foreach (var (name, password) in new[] { (user, "wrong-password"), ("mallory", "whatever") })
        {
            var errors = new ConcurrentQueue<Error>();
            using var producer = new ProducerBuilder<string, string>(WithSasl(new ProducerConfig(), broker.Bootstrap, mechanism, name, password))
                .SetErrorHandler((_, e) => errors.Enqueue(e))
                .Build();
            var deadline = DateTime.UtcNow.AddSeconds(15);
            while (DateTime.UtcNow < deadline && !errors.Any(e => IsAuthFailure(e)))
                await Task.Delay(50);
            var failure = errors.FirstOrDefault(e => IsAuthFailure(e));
            Assert.True(failure is not null, string.Join("\n", errors.Select(e => e.Reason)));
            Assert.Contains(expected, failure.Reason);
        }
        string log = broker.LogText.ToString();
        Assert.Contains($"SASL authentication with mechanism {mechanism} failed ({expected})", log);
        Assert.Contains("127.0.0.1", log.Split('\n').First(l => l.Contains("SASL authentication with mechanism", StringComparison.Ordinal)));
        Assert.DoesNotContain("mallory", log);

        var (goodUser, goodPassword) = UserFor(mechanism);
        await ProduceAndConsumeAsync(broker.Bootstrap, mechanism, goodUser, goodPassword, "after-failures", 5);
    }

    [Fact]
    public async Task A_failed_authentication_is_answered_after_the_delay_and_the_connection_closed()
    {
        await using var broker = StartSasl(delayMs: 500);
        using var s = await ConnectAsync(broker.Broker.BrokerEndPoint);
        var hs = await SendAsync<SaslHandshakeResponse>(s, new SaslHandshakeRequest { Mechanism = "PLAIN" }, SaslHandshakeRequest.ApiKey, 1, 1);
        Assert.Equal(0, hs.ErrorCode);
        var sw = Stopwatch.StartNew();
        var auth = await SendAsync<SaslAuthenticateResponse>(s, new SaslAuthenticateRequest { AuthBytes = Encoding.UTF8.GetBytes("\0alice\0wrong") }, SaslAuthenticateRequest.ApiKey, 2, 2);
        Assert.True(sw.ElapsedMilliseconds >= 450, $"answered after {sw.ElapsedMilliseconds} ms");
        Assert.Equal(58, auth.ErrorCode);
        Assert.Equal("Authentication failed: Invalid username or password", auth.ErrorMessage);
        await AssertClosedAsync(s);
    }

    [Fact]
    public async Task A_request_before_authentication_closes_the_connection_and_an_unknown_mechanism_gets_the_list()
    {
        await using var broker = StartSasl();
        using (var s = await ConnectAsync(broker.Broker.BrokerEndPoint))
        {
            var versions = await SendAsync<ApiVersionsResponse>(s, new ApiVersionsRequest(), ApiVersionsRequest.ApiKey, 3, 1);
            Assert.Contains(versions.ApiKeys, k => k.ApiKey == SaslHandshakeRequest.ApiKey && k.MaxVersion == 1);
            Assert.Contains(versions.ApiKeys, k => k.ApiKey == SaslAuthenticateRequest.ApiKey && k.MaxVersion == 2);
            await SendRawRequestAsync(s, new MetadataRequest { Topics = null }, MetadataRequest.ApiKey, 12, 2);
            await AssertClosedAsync(s);
        }
        Assert.Contains("Metadata before SASL authentication on a SASL listener; closing the connection", broker.LogText.ToString());

        using (var s = await ConnectAsync(broker.Broker.BrokerEndPoint))
        {
            var hs = await SendAsync<SaslHandshakeResponse>(s, new SaslHandshakeRequest { Mechanism = "GSSAPI" }, SaslHandshakeRequest.ApiKey, 1, 1);
            Assert.Equal(33, hs.ErrorCode);
            Assert.Equal(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], hs.Mechanisms);
            await AssertClosedAsync(s);
        }

        // A large frame before authentication is refused by its size alone.
        using (var s = await ConnectAsync(broker.Broker.BrokerEndPoint))
        {
            await s.SendAsync(new byte[] { 0, 0x10, 0, 0, 0, 17, 0, 1 }, SocketFlags.None);
            await AssertClosedAsync(s);
        }

        // The plaintext controller listener keeps serving without authentication, and refuses SASL clearly.
        using (var s = await ConnectAsync(broker.Broker.ControllerEndPoint))
        {
            var versions = await SendAsync<ApiVersionsResponse>(s, new ApiVersionsRequest(), ApiVersionsRequest.ApiKey, 3, 1);
            Assert.DoesNotContain(versions.ApiKeys, k => k.ApiKey == SaslHandshakeRequest.ApiKey);
            var md = await SendAsync<MetadataResponse>(s, new MetadataRequest { Topics = null }, MetadataRequest.ApiKey, 12, 2);
            Assert.Single(md.Brokers);
        }
    }

    static async Task SendRawRequestAsync(Socket s, Kiou.Protocol.IKafkaMessage request, short apiKey, short version, int correlation)
    {
        var w = new Kiou.Protocol.KafkaWriter();
        int at = w.ReserveInt32();
        new RequestHeader { RequestApiKey = apiKey, RequestApiVersion = version, CorrelationId = correlation, ClientId = "t" }
            .Write(w, ApiMessageTypes.RequestHeaderVersion(apiKey, version));
        request.Write(w, version);
        w.PatchInt32(at, w.Length - 4);
        await s.SendAsync(w.WrittenSpan.ToArray(), SocketFlags.None);
    }

    static async Task AssertClosedAsync(Socket s)
    {
        var buffer = new byte[64];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try
        {
            while (true)
            {
                int n = await s.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
                Assert.True(n >= 0);
                if (n == 0)
                    return;
            }
        }
        catch (SocketException)
        {
            // reset: closed too
        }
    }

    [Fact]
    public async Task Session_lifetime_is_told_and_an_expired_session_is_closed_at_its_next_request()
    {
        await using var broker = StartSasl(reauthMs: 1500);
        using var s = await ConnectAsync(broker.Broker.BrokerEndPoint);
        await SendAsync<SaslHandshakeResponse>(s, new SaslHandshakeRequest { Mechanism = "PLAIN" }, SaslHandshakeRequest.ApiKey, 1, 1);
        var auth = await SendAsync<SaslAuthenticateResponse>(s, new SaslAuthenticateRequest { AuthBytes = Encoding.UTF8.GetBytes($"\0alice\0{AlicePassword}") }, SaslAuthenticateRequest.ApiKey, 2, 2);
        Assert.Equal(0, auth.ErrorCode);
        Assert.Equal(1500, auth.SessionLifetimeMs);
        var md = await SendAsync<MetadataResponse>(s, new MetadataRequest { Topics = null }, MetadataRequest.ApiKey, 12, 3);
        Assert.Single(md.Brokers);

        // Re-authentication on the same connection renews the session; another user may not take it over.
        await SendAsync<SaslHandshakeResponse>(s, new SaslHandshakeRequest { Mechanism = "PLAIN" }, SaslHandshakeRequest.ApiKey, 1, 4);
        auth = await SendAsync<SaslAuthenticateResponse>(s, new SaslAuthenticateRequest { AuthBytes = Encoding.UTF8.GetBytes($"\0alice\0{AlicePassword}") }, SaslAuthenticateRequest.ApiKey, 2, 5);
        Assert.Equal(0, auth.ErrorCode);
        Assert.Contains("SASL re-authentication of User:alice with PLAIN succeeded", broker.LogText.ToString());

        await Task.Delay(1700);
        await SendRawRequestAsync(s, new MetadataRequest { Topics = null }, MetadataRequest.ApiKey, 12, 6);
        await AssertClosedAsync(s);
        Assert.Contains("the SASL session of alice expired", broker.LogText.ToString());

        using var other = await ConnectAsync(broker.Broker.BrokerEndPoint);
        await SendAsync<SaslHandshakeResponse>(other, new SaslHandshakeRequest { Mechanism = "PLAIN" }, SaslHandshakeRequest.ApiKey, 1, 1);
        await SendAsync<SaslAuthenticateResponse>(other, new SaslAuthenticateRequest { AuthBytes = Encoding.UTF8.GetBytes($"\0alice\0{AlicePassword}") }, SaslAuthenticateRequest.ApiKey, 2, 2);
        await SendAsync<SaslHandshakeResponse>(other, new SaslHandshakeRequest { Mechanism = "PLAIN" }, SaslHandshakeRequest.ApiKey, 1, 3);
        auth = await SendAsync<SaslAuthenticateResponse>(other, new SaslAuthenticateRequest { AuthBytes = Encoding.UTF8.GetBytes("\0bob\0bob:with:colons") }, SaslAuthenticateRequest.ApiKey, 2, 4);
        Assert.Equal(58, auth.ErrorCode);
        Assert.Contains("Cannot change principals during re-authentication", auth.ErrorMessage);
    }

    [Fact]
    public async Task Librdkafka_re_authenticates_when_the_session_has_a_lifetime()
    {
        await using var broker = StartSasl(reauthMs: 2000);
        using var producer = new ProducerBuilder<string, string>(WithSasl(new ProducerConfig { Acks = Acks.All }, broker.Bootstrap, "SCRAM-SHA-256", "carol", CarolPassword)).Build();
        var sw = Stopwatch.StartNew();
        int i = 0;
        while (sw.ElapsedMilliseconds < 6000)
        {
            var r = await producer.ProduceAsync("reauth", new Message<string, string> { Key = "k", Value = $"v{i++}" });
            Assert.Equal(PersistenceStatus.Persisted, r.Status);
            await Task.Delay(100);
        }
        string log = broker.LogText.ToString();
        Assert.Contains("SASL re-authentication of User:carol with SCRAM-SHA-256 succeeded", log);
        Assert.DoesNotContain("SASL session of carol expired", log);
    }

    [Fact]
    public async Task Scram_credentials_are_managed_with_the_admin_api_and_survive_a_restart()
    {
        string dataDir = Path.Combine(_dir, "data");
        var broker = StartSasl(dataDir: dataDir);
        try
        {
            // As an authenticated PLAIN admin over the SASL listener.
            using (var admin = new AdminClientBuilder(WithSasl(new AdminClientConfig(), broker.Bootstrap, "PLAIN", "alice", AlicePassword)).Build())
            {
                await admin.AlterUserScramCredentialsAsync([
                    new UserScramCredentialUpsertion { User = "dave", ScramCredentialInfo = new ScramCredentialInfo { Mechanism = ScramMechanism.ScramSha512, Iterations = 8192 }, Password = Encoding.UTF8.GetBytes("dave-secret") },
                    new UserScramCredentialUpsertion { User = "erin", ScramCredentialInfo = new ScramCredentialInfo { Mechanism = ScramMechanism.ScramSha256, Iterations = 4096 }, Password = Encoding.UTF8.GetBytes("erin-secret") },
                ]);
                var described = await admin.DescribeUserScramCredentialsAsync(["dave", "carol"]);
                var dave = described.UserScramCredentialsDescriptions.Single(d => d.User == "dave");
                Assert.Equal(ScramMechanism.ScramSha512, Assert.Single(dave.ScramCredentialInfos).Mechanism);
                Assert.Equal(8192, dave.ScramCredentialInfos[0].Iterations);
                var carol = described.UserScramCredentialsDescriptions.Single(d => d.User == "carol");
                Assert.Equal(2, carol.ScramCredentialInfos.Count);

                // Kafka's errors: an unknown user described, a credential deleted that does not exist, too few iterations.
                var unknown = await Assert.ThrowsAsync<DescribeUserScramCredentialsException>(() => admin.DescribeUserScramCredentialsAsync(["nobody"]));
                Assert.Equal(ErrorCode.ResourceNotFound, unknown.Results.UserScramCredentialsDescriptions.Single().Error.Code);
                var alter = await Assert.ThrowsAsync<AlterUserScramCredentialsException>(() => admin.AlterUserScramCredentialsAsync([
                    new UserScramCredentialDeletion { User = "nobody", Mechanism = ScramMechanism.ScramSha256 },
                    new UserScramCredentialUpsertion { User = "frank", ScramCredentialInfo = new ScramCredentialInfo { Mechanism = ScramMechanism.ScramSha256, Iterations = 100 }, Password = Encoding.UTF8.GetBytes("x") },
                ]));
                Assert.Equal(ErrorCode.ResourceNotFound, alter.Results.Single(r => r.User == "nobody").Error.Code);
                Assert.Equal(ErrorCode.UnacceptableCredential, alter.Results.Single(r => r.User == "frank").Error.Code);
                await admin.AlterUserScramCredentialsAsync([new UserScramCredentialDeletion { User = "erin", Mechanism = ScramMechanism.ScramSha256 }]);
            }
            await ProduceAndConsumeAsync(broker.Bootstrap, "SCRAM-SHA-512", "dave", "dave-secret", "dave-1", 5);
            Assert.DoesNotContain("dave-secret", File.ReadAllText(Path.Combine(dataDir, ScramCredentialStore.FileName)));

            await broker.RestartAsync();
            await ProduceAndConsumeAsync(broker.Bootstrap, "SCRAM-SHA-512", "dave", "dave-secret", "dave-2", 5);
            using (var admin = new AdminClientBuilder(WithSasl(new AdminClientConfig(), broker.Bootstrap, "SCRAM-SHA-512", "dave", "dave-secret")).Build())
            {
                var all = await admin.DescribeUserScramCredentialsAsync([]);
                Assert.Equal(["carol", "dave"], all.UserScramCredentialsDescriptions.Select(d => d.User).Order());
            }
            // The deleted user cannot log in.
            var errors = new ConcurrentQueue<Error>();
            using (var producer = new ProducerBuilder<string, string>(WithSasl(new ProducerConfig(), broker.Bootstrap, "SCRAM-SHA-256", "erin", "erin-secret")).SetErrorHandler((_, e) => errors.Enqueue(e)).Build())
            {
                var deadline = DateTime.UtcNow.AddSeconds(15);
                while (DateTime.UtcNow < deadline && !errors.Any(e => IsAuthFailure(e)))
                    await Task.Delay(50);
            }
            Assert.Contains(errors, e => IsAuthFailure(e));
        }
        finally
        {
            await broker.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_damaged_credential_file_is_set_aside_and_the_start_refused()
    {
        string dataDir = Path.Combine(_dir, "damaged");
        await (StartSasl(dataDir: dataDir)).StopAsync();
        string path = Path.Combine(dataDir, ScramCredentialStore.FileName);
        Assert.True(File.Exists(path));
        File.WriteAllText(path, "{\"Version\":1,\"Credentials\":[{\"User\":\"carol\"");
        var e = Assert.Throws<ConfigException>(() => StartSasl(dataDir: dataDir));
        Assert.Contains("moved aside", e.Message);
        Assert.False(File.Exists(path));
        Assert.Single(Directory.GetFiles(dataDir, ScramCredentialStore.FileName + ".damaged-*"));
    }

    [Fact]
    public async Task The_plain_users_file_is_read_again_when_it_changes()
    {
        await using var broker = StartSasl();
        File.WriteAllText(PlainFile, "alice:new-password\n");
        await Task.Delay(1100);
        await ProduceAndConsumeAsync(broker.Bootstrap, "PLAIN", "alice", "new-password", "reloaded", 3);
        // A broken file keeps the users read before.
        File.WriteAllText(PlainFile, "no colon here\n");
        await Task.Delay(1100);
        await ProduceAndConsumeAsync(broker.Bootstrap, "PLAIN", "alice", "new-password", "reloaded2", 3);
        Assert.Contains("line 1 is not name:password", broker.LogText.ToString());
    }

    [Theory]
    [MemberData(nameof(ProtocolsAndMechanisms))]
    public async Task Kafka_python_authenticates_with_bare_tokens_after_handshake_v0(string protocol, string mechanism)
    {
        await using var broker = StartSasl(protocol: protocol);
        var (user, password) = UserFor(mechanism);
        var run = ChildProcess.Run("/usr/bin/python3", [Path.Combine(CompatTests.CompatDir, "kafka_python_sasl_auth.py"), broker.Bootstrap, mechanism, user, password, "kp-" + mechanism.ToLowerInvariant(), .. CaArgument], timeoutMs: 60_000);
        Assert.True(run.ExitCode == 0, $"exit code {run.ExitCode}\nstdout:\n{run.Stdout}\nstderr:\n{run.Stderr}\n{broker.LogText}");
        Assert.Contains("ok: consumed", run.Stdout);
        Assert.Contains("ok: wrong password refused", run.Stdout);
    }

    /// <summary>The compat scripts' optional last argument: the CA file, which makes them connect with SASL_SSL.</summary>
    string[] CaArgument => _ca is null ? [] : [_ca];

    [Theory]
    [InlineData("SASL_PLAINTEXT", "scram-sha-256")]
    [InlineData("SASL_PLAINTEXT", "scram-sha-512")]
    [InlineData("SASL_SSL", "scram-sha-256")]
    [InlineData("SASL_SSL", "scram-sha-512")]
    public async Task KafkaJS_authenticates_with_scram(string protocol, string mechanism)
    {
        await using var broker = StartSasl(protocol: protocol);
        var run = ChildProcess.Run("node", [Path.Combine(CompatTests.CompatDir, "kafkajs_sasl.js"), broker.Bootstrap, mechanism, "carol", CarolPassword, "kjs-" + mechanism, .. CaArgument], timeoutMs: 90_000);
        Assert.True(run.ExitCode == 0, $"exit code {run.ExitCode}\nstdout:\n{run.Stdout}\nstderr:\n{run.Stderr}");
        Assert.Contains("ok: consumed", run.Stdout);
        Assert.Contains("ok: wrong password refused", run.Stdout);
    }
}
