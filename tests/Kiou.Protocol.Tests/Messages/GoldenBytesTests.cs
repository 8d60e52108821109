using Kiou.Protocol.Messages;

namespace Kiou.Protocol.Tests.Messages;

/// <summary>Frames from the protocol README, decoded and re-encoded byte for byte.</summary>
public class GoldenBytesTests
{
    // README §1.5: ApiVersions v3 request as librdkafka sends it, size prefix included.
    private const string ApiVersionsV3Request =
        "00000025" + "0012" + "0003" + "00000001" + "0007 72646b61666b61" + "00" +
        "0b 6c696272646b61666b61" + "07 322e31362e30" + "00";

    // README §4.2: fallback answer to an ApiVersions version the broker does not support.
    private const string ApiVersionsFallbackResponse =
        "00000010" + "00000001" + "0023" + "00000001" + "0012 0000 0004";

    [Fact]
    public void ApiVersionsV3RequestDecodes()
    {
        byte[] frame = TestPaths.Hex(ApiVersionsV3Request);
        var reader = new KafkaReader(frame);
        Assert.Equal(37, reader.ReadInt32());
        Assert.Equal(37, reader.Remaining);

        short apiKey = (short)((frame[4] << 8) | frame[5]); // fixed offsets in every header version
        short apiVersion = (short)((frame[6] << 8) | frame[7]);
        short headerVersion = ApiMessageTypes.RequestHeaderVersion(apiKey, apiVersion);
        Assert.Equal(2, headerVersion);

        var header = new RequestHeader();
        header.Read(ref reader, headerVersion);
        Assert.Equal(ApiVersionsRequest.ApiKey, header.RequestApiKey);
        Assert.Equal(3, header.RequestApiVersion);
        Assert.Equal(1, header.CorrelationId);
        Assert.Equal("rdkafka", header.ClientId);

        var body = (ApiVersionsRequest)ApiMessageTypes.CreateRequest(header.RequestApiKey)!;
        body.Read(ref reader, header.RequestApiVersion);
        Assert.False(reader.Failed);
        Assert.Equal(0, reader.Remaining);
        Assert.Equal("librdkafka", body.ClientSoftwareName);
        Assert.Equal("2.16.0", body.ClientSoftwareVersion);

        using var writer = new KafkaWriter();
        int size = writer.ReserveInt32();
        header.Write(writer, headerVersion);
        body.Write(writer, header.RequestApiVersion);
        writer.PatchInt32(size, writer.Length - 4);
        Assert.Equal(frame, writer.WrittenSpan.ToArray());
    }

    [Fact]
    public void ApiVersionsFallbackResponseIsWrittenByteForByte()
    {
        var header = new ResponseHeader { CorrelationId = 1 };
        var body = new ApiVersionsResponse
        {
            ErrorCode = 35,
            ApiKeys = { new ApiVersionsResponse.ApiVersion { ApiKey = 18, MinVersion = 0, MaxVersion = 4 } },
        };
        using var writer = new KafkaWriter();
        int size = writer.ReserveInt32();
        header.Write(writer, ApiMessageTypes.ResponseHeaderVersion(ApiVersionsRequest.ApiKey, 0));
        body.Write(writer, 0);
        writer.PatchInt32(size, writer.Length - 4);
        Assert.Equal(TestPaths.Hex(ApiVersionsFallbackResponse), writer.WrittenSpan.ToArray());
    }

    [Fact]
    public void ApiVersionsV3ResponseWithTaggedFields()
    {
        var body = new ApiVersionsResponse
        {
            ApiKeys = { new ApiVersionsResponse.ApiVersion { ApiKey = 18, MinVersion = 0, MaxVersion = 4 } },
            FinalizedFeaturesEpoch = 5,
            ZkMigrationReady = true,
        };
        string expected =
            "0000" + // error code
            "02" + "0012 0000 0004 00" + // compact array of 1, entry ends with an empty tag buffer
            "00000000" + // throttle
            "02" + "01 08 0000000000000005" + "03 01 01"; // tags 1 and 3, ascending; defaults omitted
        using var writer = new KafkaWriter();
        body.Write(writer, 3);
        Assert.Equal(TestPaths.Hex(expected), writer.WrittenSpan.ToArray());

        var back = new ApiVersionsResponse();
        var reader = new KafkaReader(writer.WrittenMemory);
        back.Read(ref reader, 3);
        Assert.False(reader.Failed);
        Assert.Equal(0, reader.Remaining);
        Assert.Equal(5, back.FinalizedFeaturesEpoch);
        Assert.True(back.ZkMigrationReady);
        Assert.Empty(back.SupportedFeatures);
    }

    [Fact]
    public void MetadataV0RequestForOneTopic()
    {
        // Request body v0: INT32 array of STRING names.
        string hex = "00000001" + "0003 666f6f";
        var request = new MetadataRequest();
        var reader = new KafkaReader(TestPaths.Hex(hex));
        request.Read(ref reader, 0);
        Assert.False(reader.Failed);
        Assert.Equal("foo", Assert.Single(request.Topics!).Name);
        Assert.True(request.AllowAutoTopicCreation); // v0-3 have no field: the schema default says true

        using var writer = new KafkaWriter();
        request.Write(writer, 0);
        Assert.Equal(TestPaths.Hex(hex), writer.WrittenSpan.ToArray());
    }

    [Fact]
    public void ResponseHeaderV1HasATagBuffer()
    {
        using var writer = new KafkaWriter();
        new ResponseHeader { CorrelationId = 7 }.Write(writer, 1);
        Assert.Equal(TestPaths.Hex("00000007 00"), writer.WrittenSpan.ToArray());
    }

    [Fact]
    public void RequestHeaderClientIdStaysInt16LengthWhenFlexible()
    {
        var header = new RequestHeader { RequestApiKey = 3, RequestApiVersion = 12, CorrelationId = 9, ClientId = null };
        using var writer = new KafkaWriter();
        header.Write(writer, 2);
        Assert.Equal(TestPaths.Hex("0003 000c 00000009 ffff 00"), writer.WrittenSpan.ToArray());
    }
}
