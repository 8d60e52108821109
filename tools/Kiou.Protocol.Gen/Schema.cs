using System.Text.Json;

namespace Kiou.Protocol.Gen;

public enum TypeKind
{
    Bool,
    Int8,
    Int16,
    UInt16,
    Int32,
    UInt32,
    Int64,
    Float64,
    String,
    Bytes,
    Records,
    Uuid,
    Array,
    Struct,
}

/// <summary>A schema type: a primitive, an array of something, or a named struct.</summary>
public sealed class TypeRef
{
    public required TypeKind Kind { get; init; }

    /// <summary>Element type of an array.</summary>
    public TypeRef? Element { get; init; }

    /// <summary>Schema name of a struct type (before collision renaming).</summary>
    public string? StructName { get; init; }

    /// <summary>Resolved struct, for struct types.</summary>
    public StructSpec? Struct { get; set; }

    public bool IsArray => Kind == TypeKind.Array;

    public bool IsStruct => Kind == TypeKind.Struct;

    /// <summary>The struct this type is or holds (struct or array of struct).</summary>
    public StructSpec? StructOrElementStruct => Kind == TypeKind.Struct ? Struct : Element?.Struct;

    public static TypeRef Parse(string text)
    {
        if (text.StartsWith("[]", StringComparison.Ordinal))
            return new TypeRef { Kind = TypeKind.Array, Element = Parse(text[2..]) };
        TypeKind? kind = text switch
        {
            "bool" => TypeKind.Bool,
            "int8" => TypeKind.Int8,
            "int16" => TypeKind.Int16,
            "uint16" => TypeKind.UInt16,
            "int32" => TypeKind.Int32,
            "uint32" => TypeKind.UInt32,
            "int64" => TypeKind.Int64,
            "float64" => TypeKind.Float64,
            "string" => TypeKind.String,
            "bytes" => TypeKind.Bytes,
            "records" => TypeKind.Records,
            "uuid" => TypeKind.Uuid,
            _ => null,
        };
        if (kind is { } k)
            return new TypeRef { Kind = k };
        if (text.Length == 0 || !char.IsUpper(text[0]))
            throw new FormatException($"unknown type '{text}'");
        return new TypeRef { Kind = TypeKind.Struct, StructName = text };
    }
}

public sealed class FieldSpec
{
    public required string Name { get; init; }

    public required TypeRef Type { get; init; }

    public required VersionRange Versions { get; init; }

    public VersionRange NullableVersions { get; init; } = VersionRange.None;

    public VersionRange TaggedVersions { get; init; } = VersionRange.None;

    public int? Tag { get; init; }

    /// <summary>Per-field override of the message's flexible versions (only RequestHeader.ClientId).</summary>
    public VersionRange? FlexibleVersions { get; init; }

    /// <summary>The schema default as written: a JSON string's value or a JSON number's text.</summary>
    public string? Default { get; init; }

    public string? About { get; init; }

    public bool Ignorable { get; init; }

    /// <summary>The field exists inline (not in the tag buffer) in these versions.</summary>
    public VersionRange InlineVersions => Versions.Subtract(TaggedVersions);

    /// <summary>The field lives in the tag buffer in these versions.</summary>
    public VersionRange TaggedIn => Versions.Intersect(TaggedVersions);

    /// <summary>Whether the C# property type is nullable (the field has any nullable versions).</summary>
    public bool HasNullableVersions => !NullableVersions.IsEmpty;
}

public sealed class StructSpec
{
    /// <summary>The type name from the schema.</summary>
    public required string Name { get; init; }

    /// <summary>The C# class name, nested in the message class (see <see cref="SchemaLoader"/>).</summary>
    public string ClassName { get; set; } = "";

    public required List<FieldSpec> Fields { get; init; }

    /// <summary>True for entries of "commonStructs".</summary>
    public bool IsCommon { get; init; }

    /// <summary>Hull of the versions in which the struct appears on the wire within its message.</summary>
    public VersionRange Context { get; set; } = VersionRange.None;

    /// <summary>True if some tagged field holds this struct (directly or nested): it needs HasDefaultValues.</summary>
    public bool NeedsDefaultCheck { get; set; }
}

public sealed class MessageSpec
{
    public required string Name { get; init; }

    /// <summary>request, response, header or data.</summary>
    public required string Type { get; init; }

    public short? ApiKey { get; init; }

    public required VersionRange ValidVersions { get; init; }

    public required VersionRange FlexibleVersions { get; init; }

    public bool LatestVersionUnstable { get; init; }

    public required List<FieldSpec> Fields { get; init; }

    /// <summary>Every struct of the message in emission order: inline ones depth-first, then common ones.</summary>
    public List<StructSpec> Structs { get; } = new();

    public required string FileName { get; init; }

    public short HighestStableVersion => LatestVersionUnstable ? (short)(ValidVersions.High - 1) : ValidVersions.High;
}

/// <summary>
/// Reads the Kafka JSON message schemas (JSON with // comments) into <see cref="MessageSpec"/>s.
/// </summary>
/// <remarks>
/// Struct naming rule: every struct of a message, whether defined inline in a field or listed in
/// "commonStructs", becomes a class nested directly in the message class (flattened, as Kafka's
/// Java generator does; Kafka requires struct names to be unique per message). Its class name is
/// the schema type name, with "Data" appended, repeatedly, while that name equals the message class
/// name, a member of the message class (a top-level field or a generated member such as ApiKey),
/// one of the struct's own field names (C# forbids a member named like its type), or another
/// struct's class name. Example: FetchRequest.ReplicaState (a top-level field) is typed
/// FetchRequest.ReplicaStateData.
/// </remarks>
public static class SchemaLoader
{
    /// <summary>Members the generator emits on every message class.</summary>
    public static readonly IReadOnlySet<string> MessageMemberNames = new HashSet<string>(StringComparer.Ordinal)
    {
        "ApiKey", "LowestSupportedVersion", "HighestSupportedVersion", "HighestStableVersion",
        "FirstFlexibleVersion", "IsFlexible", "Read", "Write",
    };

    /// <summary>Members the generator emits on every struct class.</summary>
    public static readonly IReadOnlySet<string> StructMemberNames = new HashSet<string>(StringComparer.Ordinal)
    {
        "Read", "Write", "HasDefaultValues",
    };

    private static readonly JsonDocumentOptions Options = new()
    {
        CommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = false,
    };

    public static List<MessageSpec> LoadDirectory(string schemaDir)
    {
        var messages = new List<MessageSpec>();
        foreach (string path in Directory.GetFiles(schemaDir, "*.json").Order(StringComparer.Ordinal))
            messages.Add(Load(path));
        return messages;
    }

    public static MessageSpec Load(string path)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(path), Options);
        JsonElement root = doc.RootElement;
        string name = root.GetProperty("name").GetString()!;
        try
        {
            return Build(root, name, Path.GetFileName(path));
        }
        catch (Exception e) when (e is FormatException or InvalidOperationException or KeyNotFoundException)
        {
            throw new InvalidOperationException($"{Path.GetFileName(path)}: {e.Message}", e);
        }
    }

    private static MessageSpec Build(JsonElement root, string name, string fileName)
    {
        var message = new MessageSpec
        {
            Name = name,
            Type = root.GetProperty("type").GetString()!,
            ApiKey = root.TryGetProperty("apiKey", out JsonElement k) ? k.GetInt16() : null,
            ValidVersions = VersionRange.Parse(root.GetProperty("validVersions").GetString()!),
            FlexibleVersions = VersionRange.Parse(root.GetProperty("flexibleVersions").GetString()!),
            LatestVersionUnstable = root.TryGetProperty("latestVersionUnstable", out JsonElement u) && u.GetBoolean(),
            Fields = new List<FieldSpec>(),
            FileName = fileName,
        };

        var structs = new Dictionary<string, StructSpec>(StringComparer.Ordinal);
        var common = new List<StructSpec>();
        if (root.TryGetProperty("commonStructs", out JsonElement commonStructs))
        {
            foreach (JsonElement cs in commonStructs.EnumerateArray())
            {
                var spec = new StructSpec
                {
                    Name = cs.GetProperty("name").GetString()!,
                    Fields = new List<FieldSpec>(),
                    IsCommon = true,
                };
                if (!structs.TryAdd(spec.Name, spec))
                    throw new InvalidOperationException($"duplicate struct {spec.Name}");
                common.Add(spec);
            }
            // Fields after all names are known: common structs may refer to each other.
            foreach (JsonElement cs in commonStructs.EnumerateArray())
            {
                StructSpec spec = structs[cs.GetProperty("name").GetString()!];
                spec.Fields.AddRange(ParseFields(cs.GetProperty("fields"), structs, message.Structs));
            }
        }
        message.Fields.AddRange(ParseFields(root.GetProperty("fields"), structs, message.Structs));
        message.Structs.AddRange(common);

        ResolveStructReferences(message.Fields, structs);
        foreach (StructSpec s in common)
            ResolveStructReferences(s.Fields, structs);
        ComputeContexts(message.Fields, message.ValidVersions);
        foreach (StructSpec s in message.Structs)
        {
            if (s.Context.IsEmpty)
                s.Context = message.ValidVersions; // unused common struct: still emitted, never on the wire
        }
        MarkDefaultChecks(message);
        AssignClassNames(message);
        Validate(message);
        return message;
    }

    private static List<FieldSpec> ParseFields(JsonElement fields, Dictionary<string, StructSpec> structs, List<StructSpec> order)
    {
        var result = new List<FieldSpec>();
        foreach (JsonElement f in fields.EnumerateArray())
        {
            string fieldName = f.GetProperty("name").GetString()!;
            TypeRef type = TypeRef.Parse(f.GetProperty("type").GetString()!);
            // As Kafka's FieldSpec: a tagged field without "versions" exists in its tagged versions.
            VersionRange versions = f.TryGetProperty("versions", out JsonElement v)
                ? VersionRange.Parse(v.GetString()!)
                : OptionalRange(f, "taggedVersions") ?? throw new InvalidOperationException($"field {fieldName} has neither versions nor taggedVersions");
            var field = new FieldSpec
            {
                Name = fieldName,
                Type = type,
                Versions = versions,
                NullableVersions = OptionalRange(f, "nullableVersions") ?? VersionRange.None,
                TaggedVersions = OptionalRange(f, "taggedVersions") ?? VersionRange.None,
                Tag = f.TryGetProperty("tag", out JsonElement tag) ? tag.GetInt32() : null,
                FlexibleVersions = OptionalRange(f, "flexibleVersions"),
                Default = f.TryGetProperty("default", out JsonElement d)
                    ? d.ValueKind == JsonValueKind.String ? d.GetString() : d.GetRawText()
                    : null,
                About = f.TryGetProperty("about", out JsonElement about) ? about.GetString() : null,
                Ignorable = f.TryGetProperty("ignorable", out JsonElement ign) && ign.GetBoolean(),
            };
            if (f.TryGetProperty("fields", out JsonElement inner))
            {
                TypeRef structType = type.IsArray ? type.Element! : type;
                if (!structType.IsStruct)
                    throw new InvalidOperationException($"field {fieldName} has fields but type is not a struct");
                var spec = new StructSpec { Name = structType.StructName!, Fields = new List<FieldSpec>() };
                if (!structs.TryAdd(spec.Name, spec))
                    throw new InvalidOperationException($"duplicate struct {spec.Name}");
                order.Add(spec); // parent before children: depth-first pre-order
                spec.Fields.AddRange(ParseFields(inner, structs, order));
                structType.Struct = spec;
            }
            if (field.Tag is not null && field.TaggedVersions.IsEmpty)
                throw new InvalidOperationException($"field {fieldName} has a tag but no taggedVersions");
            if (field.Tag is null && !field.TaggedVersions.IsEmpty)
                throw new InvalidOperationException($"field {fieldName} has taggedVersions but no tag");
            result.Add(field);
        }
        return result;
    }

    private static VersionRange? OptionalRange(JsonElement e, string property) =>
        e.TryGetProperty(property, out JsonElement v) ? VersionRange.Parse(v.GetString()!) : null;

    private static void ResolveStructReferences(List<FieldSpec> fields, Dictionary<string, StructSpec> structs)
    {
        foreach (FieldSpec f in fields)
        {
            TypeRef t = f.Type.IsArray ? f.Type.Element! : f.Type;
            if (t.IsArray)
                throw new InvalidOperationException($"field {f.Name}: arrays of arrays are not supported");
            if (!t.IsStruct)
                continue;
            if (t.Struct is null)
            {
                if (!structs.TryGetValue(t.StructName!, out StructSpec? s))
                    throw new InvalidOperationException($"field {f.Name}: unknown struct {t.StructName}");
                t.Struct = s;
            }
            else
            {
                ResolveStructReferences(t.Struct.Fields, structs);
            }
        }
    }

    /// <summary>Widens each struct's <see cref="StructSpec.Context"/> by every place it is used.</summary>
    private static void ComputeContexts(List<FieldSpec> fields, VersionRange context)
    {
        foreach (FieldSpec f in fields)
        {
            StructSpec? s = f.Type.StructOrElementStruct;
            if (s is null)
                continue;
            VersionRange used = f.Versions.Intersect(context);
            s.Context = s.Context.Hull(used);
            ComputeContexts(s.Fields, used);
        }
    }

    private static void MarkDefaultChecks(MessageSpec message)
    {
        static void Mark(StructSpec s)
        {
            if (s.NeedsDefaultCheck)
                return;
            s.NeedsDefaultCheck = true;
            foreach (FieldSpec f in s.Fields)
            {
                if (f.Type.IsStruct)
                    Mark(f.Type.Struct!);
            }
        }

        void Walk(List<FieldSpec> fields)
        {
            foreach (FieldSpec f in fields)
            {
                if (f.Type.IsStruct && !f.TaggedVersions.IsEmpty)
                    Mark(f.Type.Struct!);
            }
        }

        Walk(message.Fields);
        foreach (StructSpec s in message.Structs)
            Walk(s.Fields);
    }

    private static void AssignClassNames(MessageSpec message)
    {
        var assigned = new HashSet<string>(StringComparer.Ordinal);
        foreach (StructSpec s in message.Structs)
        {
            string candidate = s.Name;
            while (Collides(candidate, s, message, assigned))
                candidate += "Data";
            s.ClassName = candidate;
            assigned.Add(candidate);
        }
    }

    private static bool Collides(string candidate, StructSpec s, MessageSpec message, HashSet<string> assigned)
    {
        if (candidate == message.Name || MessageMemberNames.Contains(candidate) || assigned.Contains(candidate))
            return true;
        foreach (FieldSpec f in message.Fields)
        {
            if (f.Name == candidate)
                return true;
        }
        foreach (FieldSpec f in s.Fields)
        {
            if (f.Name == candidate)
                return true;
        }
        if (candidate != s.Name)
        {
            foreach (StructSpec other in message.Structs)
            {
                if (other != s && other.Name == candidate)
                    return true;
            }
        }
        return false;
    }

    private static void Validate(MessageSpec message)
    {
        void Check(List<FieldSpec> fields, IReadOnlySet<string> reserved, string owner)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (FieldSpec f in fields)
            {
                if (!seen.Add(f.Name))
                    throw new InvalidOperationException($"{owner}: duplicate field {f.Name}");
                if (reserved.Contains(f.Name))
                    throw new InvalidOperationException($"{owner}: field {f.Name} collides with a generated member");
                if (!f.TaggedVersions.IsEmpty && !message.FlexibleVersions.Contains(f.TaggedIn))
                    throw new InvalidOperationException($"{owner}: field {f.Name} is tagged outside flexible versions");
                _ = f.InlineVersions; // throws if tagged versions split the field's range
                if (!f.NullableVersions.IsEmpty && f.Type.Kind is not (TypeKind.String or TypeKind.Bytes or TypeKind.Records or TypeKind.Array or TypeKind.Struct))
                    throw new InvalidOperationException($"{owner}: field {f.Name} of type {f.Type.Kind} cannot be nullable");
            }
        }

        Check(message.Fields, MessageMemberNames, message.Name);
        foreach (StructSpec s in message.Structs)
            Check(s.Fields, StructMemberNames, s.Name);
    }
}
