namespace Kiou.Broker.Security;

/// <summary>
/// Who a connection is, as Kafka's KafkaPrincipal ("User:alice"): set once by authentication (SASL, or the client
/// certificate's subject on an SSL listener with client authentication), ANONYMOUS otherwise. ACLs name principals
/// in this form.
/// </summary>
public sealed record KafkaPrincipal(string Type, string Name)
{
    public const string UserType = "User";

    public static readonly KafkaPrincipal Anonymous = new(UserType, "ANONYMOUS");

    public static KafkaPrincipal User(string name) => new(UserType, name);

    public override string ToString() => $"{Type}:{Name}";
}

/// <summary>Kafka's security.protocol of a listener.</summary>
public enum SecurityProtocol
{
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}
