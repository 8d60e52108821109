namespace Kiou.Protocol;

/// <summary>
/// A generated response with ErrorCode fields (top level or per topic and partition): lets the broker count the error
/// codes it answers, per API, without knowing each response's shape.
/// </summary>
public interface IHasErrorCodes
{
    /// <summary>Calls <paramref name="visitor"/> with every ErrorCode field of the response, including NONE (0).</summary>
    void VisitErrorCodes(IErrorCodeVisitor visitor);
}

/// <summary>Receives the error codes of an <see cref="IHasErrorCodes"/> response.</summary>
public interface IErrorCodeVisitor
{
    void Visit(short errorCode);
}
