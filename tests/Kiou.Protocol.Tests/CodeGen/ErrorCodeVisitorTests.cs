using Kiou.Protocol.Messages;

namespace Kiou.Protocol.Tests.CodeGen;

/// <summary>The generated VisitErrorCodes reaches every ErrorCode field of a response, at every level, in order.</summary>
public sealed class ErrorCodeVisitorTests
{
    sealed class Collect : IErrorCodeVisitor
    {
        public readonly List<short> Codes = [];
        public void Visit(short errorCode) => Codes.Add(errorCode);
    }

    [Fact]
    public void Nested_per_partition_error_codes_are_visited()
    {
        var response = new ProduceResponse();
        var topic = new ProduceResponse.TopicProduceResponse { Name = "t" };
        topic.PartitionResponses.Add(new ProduceResponse.PartitionProduceResponse { Index = 0, ErrorCode = 0 });
        topic.PartitionResponses.Add(new ProduceResponse.PartitionProduceResponse { Index = 1, ErrorCode = 6 });
        response.Responses.Add(topic);
        response.Responses.Add(new ProduceResponse.TopicProduceResponse { Name = "u", PartitionResponses = [new() { ErrorCode = 3 }] });
        var seen = new Collect();
        ((IHasErrorCodes)response).VisitErrorCodes(seen);
        Assert.Equal(new short[] { 0, 6, 3 }, seen.Codes);
    }

    [Fact]
    public void Top_level_and_nested_codes_are_visited_and_responses_without_any_do_not_implement_it()
    {
        var response = new DescribeGroupsResponse();
        response.Groups.Add(new DescribeGroupsResponse.DescribedGroup { GroupId = "a", ErrorCode = 69 });
        response.Groups.Add(new DescribeGroupsResponse.DescribedGroup { GroupId = "b", ErrorCode = 0 });
        var seen = new Collect();
        response.VisitErrorCodes(seen);
        Assert.Equal(new short[] { 69, 0 }, seen.Codes);

        var fetch = new FetchResponse { ErrorCode = 0 };
        fetch.Responses.Add(new FetchResponse.FetchableTopicResponse { Topic = "t", Partitions = [new() { ErrorCode = 1 }] });
        seen.Codes.Clear();
        fetch.VisitErrorCodes(seen);
        Assert.Equal(new short[] { 0, 1 }, seen.Codes);

        // Requests carry no answers to count.
        Assert.False(typeof(IHasErrorCodes).IsAssignableFrom(typeof(ProduceRequest)));
        Assert.False(typeof(IHasErrorCodes).IsAssignableFrom(typeof(FetchRequest)));
    }
}
