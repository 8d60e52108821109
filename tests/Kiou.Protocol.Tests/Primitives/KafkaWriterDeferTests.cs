using Kiou.Protocol.Messages;

namespace Kiou.Protocol.Tests.Primitives;

/// <summary>
/// <see cref="KafkaWriter.DeferRecordsFrom"/>: large RECORDS fields are left out of the buffer and listed instead;
/// splicing them back in at their positions must give exactly the bytes of a normal write, in every Fetch version.
/// </summary>
public class KafkaWriterDeferTests
{
    private static FetchResponse Sample(Random rng, out List<byte[]> records)
    {
        records = [];
        var response = new FetchResponse { ThrottleTimeMs = 3, SessionId = 0 };
        for (int t = 0; t < 2; t++)
        {
            var topic = new FetchResponse.FetchableTopicResponse { Topic = $"topic-{t}", TopicId = Guid.NewGuid() };
            response.Responses.Add(topic);
            for (int p = 0; p < 4; p++)
            {
                // Sizes around the threshold: some deferred, some copied, one empty.
                int size = p switch { 0 => 0, 1 => 100, 2 => 4096, _ => 70_000 + t };
                var bytes = new byte[size];
                rng.NextBytes(bytes);
                records.Add(bytes);
                topic.Partitions.Add(new FetchResponse.PartitionData { PartitionIndex = p, HighWatermark = 10 * p, LastStableOffset = 10 * p, LogStartOffset = 0, Records = bytes });
            }
        }

        return response;
    }

    [Theory]
    [InlineData(4)]
    [InlineData(11)]
    [InlineData(12)]
    public void SplicedOutputEqualsTheNormalWrite(short version)
    {
        var response = Sample(new Random(version), out var records);
        using var plain = new KafkaWriter();
        response.Write(plain, version);

        using var deferring = new KafkaWriter { DeferRecordsFrom = 4096 };
        for (int round = 0; round < 2; round++)
        {
            deferring.Reset(); // reused writers start over, deferred list included
            response.Write(deferring, version);
            Assert.Equal(4, deferring.Deferred.Count); // per topic: the 4,096-byte one and the 70,000-byte one
            Assert.Equal((2 * 4096) + 70_000 + 70_001, deferring.DeferredBytes);
            Assert.Equal(plain.Length, deferring.Length + deferring.DeferredBytes);

            var spliced = new List<byte>();
            int at = 0;
            foreach (var (position, bytes) in deferring.Deferred)
            {
                Assert.True(position >= at);
                spliced.AddRange(deferring.WrittenSpan[at..position].ToArray());
                spliced.AddRange(bytes.ToArray());
                at = position;
            }

            spliced.AddRange(deferring.WrittenSpan[at..].ToArray());
            Assert.Equal(plain.WrittenSpan.ToArray(), spliced.ToArray());
        }

        Assert.Contains(records, r => r.Length == 4096);
    }

    [Fact]
    public void NothingIsDeferredByDefault()
    {
        var response = Sample(new Random(1), out _);
        using var w = new KafkaWriter();
        response.Write(w, 12);
        Assert.Empty(w.Deferred);
        Assert.Equal(0, w.DeferredBytes);
    }
}
