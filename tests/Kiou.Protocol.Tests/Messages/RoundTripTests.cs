using Kiou.Protocol.Gen;

namespace Kiou.Protocol.Tests.Messages;

/// <summary>
/// For every version of every schema: a seeded random instance writes, reads back without failure
/// consuming every byte, and writes the same bytes again. Then every strict prefix of that encoding
/// fails cleanly, and random byte flips never throw.
/// </summary>
public class RoundTripTests
{
    private static readonly Lazy<Dictionary<string, MessageSpec>> Schemas = new(() =>
        SchemaLoader.LoadDirectory(TestPaths.SchemaDir).ToDictionary(m => m.Name));

    public static TheoryData<string, short> AllVersions()
    {
        var data = new TheoryData<string, short>();
        foreach (MessageSpec m in SchemaLoader.LoadDirectory(TestPaths.SchemaDir))
        {
            for (short v = m.ValidVersions.Low; v <= m.ValidVersions.High; v++)
                data.Add(m.Name, v);
        }
        return data;
    }

    [Fact]
    public void EveryRequestAndResponseIsCovered()
    {
        int requests = Schemas.Value.Values.Count(m => m.Type == "request");
        int responses = Schemas.Value.Values.Count(m => m.Type == "response");
        Assert.Equal(46, requests);
        Assert.Equal(46, responses);
        Assert.True(AllVersions().Count() > 300);
    }

    [Theory]
    [MemberData(nameof(AllVersions))]
    public void DefaultInstanceRoundTrips(string name, short version)
    {
        MessageSpec spec = Schemas.Value[name];
        var message = (IKafkaMessage)Activator.CreateInstance(MessageFiller.ClassOf(spec))!;
        AssertRoundTrip(spec, message, version);
    }

    [Theory]
    [MemberData(nameof(AllVersions))]
    public void RandomInstanceRoundTrips(string name, short version)
    {
        MessageSpec spec = Schemas.Value[name];
        for (int round = 0; round < 4; round++)
        {
            IKafkaMessage message = RandomMessage(spec, version, round);
            AssertRoundTrip(spec, message, version);
        }
    }

    [Theory]
    [MemberData(nameof(AllVersions))]
    public void EveryStrictPrefixFailsWithoutThrowing(string name, short version)
    {
        MessageSpec spec = Schemas.Value[name];
        byte[] full = Encode(RandomMessage(spec, version, round: 0), version);
        for (int length = 0; length < full.Length; length++)
        {
            var reader = new KafkaReader(full.AsMemory(0, length));
            New(spec).Read(ref reader, version);
            Assert.True(reader.Failed, $"{name} v{version}: a {length}-byte prefix of {full.Length} bytes decoded");
        }
    }

    [Theory]
    [MemberData(nameof(AllVersions))]
    public void RandomByteFlipsNeverThrow(string name, short version)
    {
        MessageSpec spec = Schemas.Value[name];
        byte[] full = Encode(RandomMessage(spec, version, round: 1), version);
        var rng = new Random(MessageFiller.Seed(name, version) ^ 0x5eed);
        byte[] mutated = new byte[full.Length];
        for (int trial = 0; trial < 200; trial++)
        {
            full.CopyTo(mutated, 0);
            int flips = 1 + rng.Next(3);
            for (int i = 0; i < flips && mutated.Length > 0; i++)
                mutated[rng.Next(mutated.Length)] = (byte)rng.Next(256);
            var reader = new KafkaReader(mutated);
            IKafkaMessage decoded = New(spec);
            decoded.Read(ref reader, version); // must not throw; may or may not fail
            if (!reader.Failed)
            {
                using var writer = new KafkaWriter();
                decoded.Write(writer, version); // whatever decoded must be writable again
            }
        }
        // Plain noise too, including lengths and counts that point far past the end.
        for (int trial = 0; trial < 50; trial++)
        {
            byte[] noise = new byte[rng.Next(64)];
            rng.NextBytes(noise);
            var reader = new KafkaReader(noise);
            New(spec).Read(ref reader, version);
        }
    }

    private static IKafkaMessage New(MessageSpec spec) =>
        (IKafkaMessage)Activator.CreateInstance(MessageFiller.ClassOf(spec))!;

    private static IKafkaMessage RandomMessage(MessageSpec spec, short version, int round)
    {
        IKafkaMessage message = New(spec);
        new MessageFiller(MessageFiller.Seed(spec.Name, version) + round).Fill(message, spec.Fields, version);
        return message;
    }

    private static byte[] Encode(IKafkaMessage message, short version)
    {
        using var writer = new KafkaWriter();
        message.Write(writer, version);
        return writer.WrittenSpan.ToArray();
    }

    private static void AssertRoundTrip(MessageSpec spec, IKafkaMessage message, short version)
    {
        byte[] first = Encode(message, version);
        var reader = new KafkaReader(first);
        IKafkaMessage decoded = New(spec);
        decoded.Read(ref reader, version);
        Assert.False(reader.Failed, $"{spec.Name} v{version}: decoding its own encoding failed at byte {reader.Position} of {first.Length}");
        Assert.Equal(0, reader.Remaining);
        byte[] second = Encode(decoded, version);
        Assert.Equal(Convert.ToHexString(first), Convert.ToHexString(second));
    }
}
