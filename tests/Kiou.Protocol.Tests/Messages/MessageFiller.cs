using System.Collections;
using System.Reflection;
using Kiou.Protocol.Gen;

namespace Kiou.Protocol.Tests.Messages;

/// <summary>
/// Fills generated message objects with seeded pseudo-random values for the fields one version
/// carries, driven by the same schema model the generator uses. Tagged fields are sometimes left
/// at their defaults, so both the present and the omitted path get exercised.
/// </summary>
internal sealed class MessageFiller
{
    private static readonly string[] Strings = ["", "a", "topic-0", "héllo", "日本語", "🚀 rocket", "x.y_z-1"];

    private readonly Random _rng;

    public MessageFiller(int seed) => _rng = new Random(seed);

    /// <summary>A stable seed from a name (string.GetHashCode is randomised per process).</summary>
    public static int Seed(string name, short version)
    {
        uint hash = 2166136261;
        foreach (char c in name)
            hash = (hash ^ c) * 16777619;
        return (int)(hash ^ (uint)(version * 7919));
    }

    public static Type ClassOf(MessageSpec message) =>
        typeof(IKafkaMessage).Assembly.GetType("Kiou.Protocol.Messages." + message.Name, throwOnError: true)!;

    public void Fill(object target, IReadOnlyList<FieldSpec> fields, short version, int depth = 0)
    {
        foreach (FieldSpec f in fields)
        {
            if (!f.Versions.Contains(version))
                continue;
            if (f.TaggedIn.Contains(version) && _rng.Next(4) == 0)
                continue; // leave the default: the field is then omitted from the tag buffer
            PropertyInfo p = target.GetType().GetProperty(f.Name)
                ?? throw new InvalidOperationException($"{target.GetType().Name} has no property {f.Name}");
            p.SetValue(target, Value(f.Type, p.PropertyType, version, depth, f.NullableVersions.Contains(version)));
        }
    }

    private object? Value(TypeRef t, Type clrType, short version, int depth, bool nullable)
    {
        if (nullable && _rng.Next(6) == 0)
            return null;
        switch (t.Kind)
        {
            case TypeKind.Bool: return _rng.Next(2) == 1;
            case TypeKind.Int8: return (sbyte)_rng.Next(sbyte.MinValue, sbyte.MaxValue + 1);
            case TypeKind.Int16: return (short)_rng.Next(short.MinValue, short.MaxValue + 1);
            case TypeKind.UInt16: return (ushort)_rng.Next(0, ushort.MaxValue + 1);
            case TypeKind.Int32: return _rng.Next(3) == 0 ? _rng.Next(-2, 3) : _rng.Next(int.MinValue, int.MaxValue);
            case TypeKind.UInt32: return (uint)_rng.NextInt64(0, uint.MaxValue + 1L);
            case TypeKind.Int64: return _rng.Next(3) == 0 ? _rng.Next(-2, 3) : _rng.NextInt64(long.MinValue, long.MaxValue);
            case TypeKind.Float64: return _rng.NextDouble() * 1e6 - 5e5;
            case TypeKind.String: return Strings[_rng.Next(Strings.Length)];
            case TypeKind.Uuid:
                Span<byte> id = stackalloc byte[16];
                _rng.NextBytes(id);
                return new Guid(id, bigEndian: true);
            case TypeKind.Bytes:
                return RandomBytes(12);
            case TypeKind.Records:
                return (ReadOnlyMemory<byte>?)RandomBytes(24);
            case TypeKind.Struct:
                object instance = Activator.CreateInstance(clrType)!;
                Fill(instance, t.Struct!.Fields, version, depth + 1);
                return instance;
            case TypeKind.Array:
                Type elementType = clrType.GetGenericArguments()[0];
                var list = (IList)Activator.CreateInstance(clrType)!;
                int count = _rng.Next(depth < 2 ? 4 : 2);
                for (int i = 0; i < count; i++)
                    list.Add(Value(t.Element!, elementType, version, depth + 1, nullable: false));
                return list;
            default:
                throw new InvalidOperationException($"unhandled {t.Kind}");
        }
    }

    private byte[] RandomBytes(int max)
    {
        byte[] bytes = new byte[_rng.Next(max + 1)];
        _rng.NextBytes(bytes);
        return bytes;
    }
}
