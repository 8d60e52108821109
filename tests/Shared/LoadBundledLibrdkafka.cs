using System.Runtime.CompilerServices;

namespace Kiou.Tests;

/// <summary>Test projects run their Confluent.Kafka clients on the bundled librdkafka, never on one the machine has installed.</summary>
static class LoadBundledLibrdkafka
{
    [ModuleInitializer]
    internal static void Init() => BundledLibrdkafka.Load();
}
