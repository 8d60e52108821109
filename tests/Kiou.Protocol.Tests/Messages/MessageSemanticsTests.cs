using Kiou.Protocol.Messages;

namespace Kiou.Protocol.Tests.Messages;

/// <summary>Defaults, nullability, dropped fields, tagged fields and the per-API lookups.</summary>
public class MessageSemanticsTests
{
    private static byte[] Encode(IKafkaMessage message, short version)
    {
        using var writer = new KafkaWriter();
        message.Write(writer, version);
        return writer.WrittenSpan.ToArray();
    }

    [Fact]
    public void SchemaDefaultsInitialiseProperties()
    {
        var fetch = new FetchRequest();
        Assert.Equal(int.MaxValue, fetch.MaxBytes);
        Assert.Equal(-1, fetch.ReplicaId);
        Assert.Equal(-1, fetch.SessionEpoch);
        Assert.Null(fetch.ClusterId);
        Assert.Equal(string.Empty, fetch.RackId);
        Assert.Empty(fetch.Topics);
        Assert.Equal(-1, new FetchRequest.FetchPartition().CurrentLeaderEpoch);
        Assert.True(new MetadataRequest().AllowAutoTopicCreation);
        Assert.Equal(-1, new JoinGroupRequest().RebalanceTimeoutMs);
        Assert.Null(new ConsumerGroupHeartbeatResponse().Assignment);
        Assert.Null(new ConsumerProtocolAssignment().UserData);
        Assert.Equal(-1, new ApiVersionsResponse().FinalizedFeaturesEpoch);
        Assert.Null(new ProduceRequest.PartitionProduceData().Records);
    }

    [Fact]
    public void ConstantsComeFromTheSchema()
    {
        Assert.Equal(1, FetchRequest.ApiKey);
        Assert.Equal(0, FetchRequest.LowestSupportedVersion);
        Assert.Equal(17, FetchRequest.HighestSupportedVersion);
        Assert.Equal(17, FetchRequest.HighestStableVersion);
        Assert.Equal(12, FetchRequest.FirstFlexibleVersion);
        Assert.False(FetchRequest.IsFlexible(11));
        Assert.True(FetchRequest.IsFlexible(12));
        Assert.Equal(1, ConsumerGroupHeartbeatRequest.HighestSupportedVersion);
        Assert.Equal(0, ConsumerGroupHeartbeatRequest.HighestStableVersion); // latestVersionUnstable
        Assert.Equal(-1, OffsetDeleteRequest.FirstFlexibleVersion);
        Assert.False(OffsetDeleteRequest.IsFlexible(0));
        Assert.Equal(-1, RequestHeader.ApiKey);
        Assert.Equal(2, RequestHeader.FirstFlexibleVersion);
        Assert.Equal(1, ResponseHeader.FirstFlexibleVersion);
        Assert.Equal(-1, ConsumerProtocolSubscription.ApiKey);
    }

    [Fact]
    public void ApiMessageTypesLookups()
    {
        Assert.Equal("Produce", ApiMessageTypes.Name(0));
        Assert.Equal("OffsetForLeaderEpoch", ApiMessageTypes.Name(23));
        Assert.Equal("Unknown", ApiMessageTypes.Name(1000));
        Assert.Equal(46, ApiMessageTypes.AllApiKeys.Length);

        Assert.Equal(1, ApiMessageTypes.RequestHeaderVersion(18, 2));
        Assert.Equal(2, ApiMessageTypes.RequestHeaderVersion(18, 3));
        Assert.Equal(2, ApiMessageTypes.RequestHeaderVersion(18, 7)); // newer than we know: still flexible
        Assert.Equal(0, ApiMessageTypes.ResponseHeaderVersion(18, 3)); // ApiVersions: always v0
        Assert.Equal(0, ApiMessageTypes.ResponseHeaderVersion(18, 4));
        Assert.Equal(0, ApiMessageTypes.ResponseHeaderVersion(3, 8));
        Assert.Equal(1, ApiMessageTypes.ResponseHeaderVersion(3, 9));
        Assert.Equal(1, ApiMessageTypes.RequestHeaderVersion(47, 0)); // OffsetDelete: never flexible
        Assert.Equal(2, ApiMessageTypes.RequestHeaderVersion(60, 0)); // DescribeCluster: flexible from v0
        Assert.Equal(-1, ApiMessageTypes.RequestHeaderVersion(7, 0)); // ControlledShutdown: not in our set
        Assert.Equal(-1, ApiMessageTypes.ResponseHeaderVersion(-5, 0));

        Assert.Equal(0, ApiMessageTypes.LowestSupportedVersion(1));
        Assert.Equal(17, ApiMessageTypes.HighestSupportedVersion(1));
        Assert.Equal(0, ApiMessageTypes.HighestStableVersion(68));
        Assert.Equal(10, ApiMessageTypes.HighestStableVersion(2)); // "latestVersionUnstable": false
        Assert.Equal(-1, ApiMessageTypes.HighestSupportedVersion(99));

        Assert.IsType<ProduceRequest>(ApiMessageTypes.CreateRequest(0));
        Assert.IsType<ProduceResponse>(ApiMessageTypes.CreateResponse(0));
        Assert.Null(ApiMessageTypes.CreateRequest(99));
        Assert.Null(ApiMessageTypes.CreateResponse(99));
        foreach (short key in ApiMessageTypes.AllApiKeys)
        {
            Assert.NotNull(ApiMessageTypes.CreateRequest(key));
            Assert.NotNull(ApiMessageTypes.CreateResponse(key));
            Assert.Equal(ApiMessageTypes.Name(key) + "Request", ApiMessageTypes.CreateRequest(key)!.GetType().Name);
        }
    }

    [Fact]
    public void NullForANonNullableFieldFails()
    {
        // MetadataRequest.Topics is nullable from v1: null is "all topics" there, invalid in v0.
        var v1 = new MetadataRequest();
        var reader = new KafkaReader(TestPaths.Hex("ffffffff 01"));
        v1.Read(ref reader, 4);
        Assert.False(reader.Failed);
        Assert.Null(v1.Topics);

        var v0 = new MetadataRequest();
        reader = new KafkaReader(TestPaths.Hex("ffffffff"));
        v0.Read(ref reader, 0);
        Assert.True(reader.Failed);

        // A null STRING in a non-nullable position.
        reader = new KafkaReader(TestPaths.Hex("ffff 0000"));
        new SaslHandshakeRequest().Read(ref reader, 0);
        Assert.True(reader.Failed);
    }

    [Fact]
    public void NullInAVersionThatCannotCarryItIsWrittenAsEmpty()
    {
        Assert.Equal(Encode(new MetadataRequest { Topics = new() }, 0), Encode(new MetadataRequest { Topics = null }, 0));
        Assert.Equal(TestPaths.Hex("ffffffff 00"), Encode(new MetadataRequest { Topics = null, AllowAutoTopicCreation = false }, 4));
    }

    [Fact]
    public void ValuesTheVersionCannotCarryAreDroppedSilently()
    {
        var plain = new FetchRequest();
        var withNewFields = new FetchRequest { MaxBytes = 5, IsolationLevel = 1, RackId = "rack", ClusterId = "c" };
        Assert.Equal(Encode(plain, 2), Encode(withNewFields, 2));
        Assert.NotEqual(Encode(plain, 4), Encode(withNewFields, 4));

        var decoded = new FetchRequest();
        var reader = new KafkaReader(Encode(withNewFields, 2));
        decoded.Read(ref reader, 2);
        Assert.False(reader.Failed);
        Assert.Equal(int.MaxValue, decoded.MaxBytes); // absent in v2: keeps its default
    }

    [Fact]
    public void TaggedFieldsAreWrittenOnlyWhenNotDefault()
    {
        var request = new FetchRequest();
        byte[] plain = Encode(request, 15);
        Assert.Equal(0, plain[^1]); // empty tag buffer

        request.ClusterId = new string('c', 200); // payload 202 bytes: a 2-byte size varint
        request.ReplicaState.ReplicaEpoch = 9;
        byte[] tagged = Encode(request, 15);
        var reader = new KafkaReader(tagged);
        var decoded = new FetchRequest();
        decoded.Read(ref reader, 15);
        Assert.False(reader.Failed);
        Assert.Equal(0, reader.Remaining);
        Assert.Equal(request.ClusterId, decoded.ClusterId);
        Assert.Equal(9, decoded.ReplicaState.ReplicaEpoch);
        Assert.Equal(-1, decoded.ReplicaState.ReplicaId);

        // The tag buffer: count 2, tag 0 size 202 (ca 01), ..., tag 1 size 14 (int32 + int64 + empty tags).
        int tail = tagged.Length - (1 + 1 + 2 + 202 + 1 + 1 + 13);
        Assert.Equal(TestPaths.Hex("02 00 ca01 c901"), tagged.AsSpan(tail, 6).ToArray());
        Assert.Equal(TestPaths.Hex("01 0d ffffffff 0000000000000009 00"), tagged.AsSpan(tagged.Length - 15).ToArray());
    }

    [Fact]
    public void UnknownTaggedFieldsAreSkipped()
    {
        // ResponseHeader v1 with tags 5 and 9 that this schema does not define.
        var reader = new KafkaReader(TestPaths.Hex("0000002a 02 05 02 abcd 09 00"));
        var header = new ResponseHeader();
        header.Read(ref reader, 1);
        Assert.False(reader.Failed);
        Assert.Equal(0, reader.Remaining);
        Assert.Equal(42, header.CorrelationId);

        // FetchRequest v12 with an unknown tag 7 next to the known tag 0.
        var request = new FetchRequest { ClusterId = "x" };
        byte[] bytes = Encode(request, 12);
        // Rewrite the tag buffer: "01 00 02 02 78" -> "02 00 02 02 78 07 01 ff".
        byte[] patched = [.. bytes.AsSpan(0, bytes.Length - 5), .. TestPaths.Hex("02 00 02 02 78 07 01 ff")];
        reader = new KafkaReader(patched);
        var decoded = new FetchRequest();
        decoded.Read(ref reader, 12);
        Assert.False(reader.Failed);
        Assert.Equal(0, reader.Remaining);
        Assert.Equal("x", decoded.ClusterId);
    }

    [Fact]
    public void MalformedKnownTaggedFieldFails()
    {
        // ResponseHeader has no tags, so use ApiVersionsResponse v3 tag 1 (INT64) with a 4-byte payload.
        var reader = new KafkaReader(TestPaths.Hex("0000 01 00000000 01 01 04 00000005"));
        new ApiVersionsResponse().Read(ref reader, 3);
        Assert.True(reader.Failed);

        // Same tag with 9 bytes: the INT64 leaves one byte unread.
        reader = new KafkaReader(TestPaths.Hex("0000 01 00000000 01 01 09 000000000000000500"));
        new ApiVersionsResponse().Read(ref reader, 3);
        Assert.True(reader.Failed);
    }

    [Fact]
    public void NullableStructUsesAnInt8Marker()
    {
        var response = new ConsumerGroupHeartbeatResponse();
        byte[] absent = Encode(response, 0);
        Assert.Equal(TestPaths.Hex("00000000 0000 00 00 00000000 00000000 ff 00"), absent);

        response.Assignment = new ConsumerGroupHeartbeatResponse.AssignmentData
        {
            TopicPartitions = { new ConsumerGroupHeartbeatResponse.TopicPartitions { Partitions = { 3 } } },
        };
        byte[] present = Encode(response, 0);
        var reader = new KafkaReader(present);
        var decoded = new ConsumerGroupHeartbeatResponse();
        decoded.Read(ref reader, 0);
        Assert.False(reader.Failed);
        Assert.Equal(3, Assert.Single(Assert.Single(decoded.Assignment!.TopicPartitions).Partitions));
    }

    [Fact]
    public void RecordsDecodeAsASliceOfTheFrame()
    {
        var request = new ProduceRequest
        {
            Acks = -1,
            TimeoutMs = 1000,
            TopicData =
            {
                new ProduceRequest.TopicProduceData
                {
                    Name = "t",
                    PartitionData = { new ProduceRequest.PartitionProduceData { Index = 0, Records = new byte[] { 1, 2, 3 } } },
                },
            },
        };
        byte[] frame = Encode(request, 9);
        var reader = new KafkaReader(frame);
        var decoded = new ProduceRequest();
        decoded.Read(ref reader, 9);
        Assert.False(reader.Failed);
        ReadOnlyMemory<byte> records = decoded.TopicData[0].PartitionData[0].Records!.Value;
        Assert.True(System.Runtime.InteropServices.MemoryMarshal.TryGetArray(records, out ArraySegment<byte> segment));
        Assert.Same(frame, segment.Array);
        Assert.Equal(new byte[] { 1, 2, 3 }, records.ToArray());
    }
}
