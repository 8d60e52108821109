namespace Kiou.Broker.Tests;

/// <summary>KIOU_IO=uring runs the append path on an io_uring instance; KIOU_IO=sync holds none.</summary>
public sealed class IoModeTests
{
    static int RingsHeldBy(int pid)
    {
        int rings = 0;
        foreach (var fd in Directory.GetFiles($"/proc/{pid}/fd"))
        {
            try
            {
                if (new FileInfo(fd).LinkTarget == "anon_inode:[io_uring]")
                    rings++;
            }
            catch (IOException)
            {
            }
        }
        return rings;
    }

    [Theory]
    [InlineData("uring")]
    [InlineData("sync")]
    public async Task The_broker_holds_an_io_uring_instance_only_in_uring_mode(string mode)
    {
        string dataDir = Path.Combine(Path.GetTempPath(), "kiou-io-" + Guid.NewGuid().ToString("N"));
        var env = new Dictionary<string, string> { ["KIOU_IO"] = mode };
        try
        {
            BrokerProcess broker;
            try
            {
                broker = BrokerProcess.Start(dataDir, env);
            }
            catch (InvalidOperationException e) when (mode == "uring" && e.Message.Contains("io_uring cannot be used"))
            {
                // A machine that refuses io_uring: the broker must say so and exit 1, not fall back silently.
                Assert.Contains("KIOU_IO=uring", e.Message);
                return;
            }
            using (broker)
            {
                Assert.Contains(mode == "uring" ? "I/O io_uring" : "I/O sync", broker.Output);
                await Clients.CreateTopicAsync(broker.Bootstrap, "io", 1);
                int rings = RingsHeldBy(broker.ProcessId);
                if (mode == "uring")
                    Assert.True(rings >= 1, "no anon_inode:[io_uring] fd in the broker process");
                else
                    Assert.Equal(0, rings);
                Assert.Equal(0, broker.Terminate());
                Assert.Contains("stopped", broker.Output);
            }
        }
        finally
        {
            Directory.Delete(dataDir, recursive: true);
        }
    }
}
