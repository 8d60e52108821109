using System.Globalization;

namespace Kiou.Protocol.Gen;

/// <summary>
/// An inclusive range of message versions as written in the schemas: "N", "N+", "N-M" or "none".
/// "N+" is open-ended: <see cref="High"/> is <see cref="short.MaxValue"/>.
/// </summary>
public readonly record struct VersionRange(short Low, short High)
{
    public const short Open = short.MaxValue;

    public static readonly VersionRange None = new(1, 0);

    public static readonly VersionRange All = new(0, Open);

    public bool IsEmpty => Low > High;

    public bool Contains(short version) => version >= Low && version <= High;

    public bool Contains(VersionRange other) => other.IsEmpty || (!IsEmpty && other.Low >= Low && other.High <= High);

    public VersionRange Intersect(VersionRange other)
    {
        if (IsEmpty || other.IsEmpty)
            return None;
        var result = new VersionRange(Math.Max(Low, other.Low), Math.Min(High, other.High));
        return result.IsEmpty ? None : result;
    }

    /// <summary>The smallest range covering both.</summary>
    public VersionRange Hull(VersionRange other)
    {
        if (IsEmpty)
            return other;
        if (other.IsEmpty)
            return this;
        return new VersionRange(Math.Min(Low, other.Low), Math.Max(High, other.High));
    }

    /// <summary>This range without <paramref name="other"/>; fails if the result is not one range.</summary>
    public VersionRange Subtract(VersionRange other)
    {
        VersionRange overlap = Intersect(other);
        if (overlap.IsEmpty)
            return this;
        if (overlap == this)
            return None;
        if (overlap.Low == Low)
            return new VersionRange((short)(overlap.High + 1), High);
        if (overlap.High == High)
            return new VersionRange(Low, (short)(overlap.Low - 1));
        throw new InvalidOperationException($"{this} minus {other} is not a single range");
    }

    public static VersionRange Parse(string text)
    {
        text = text.Trim();
        if (text == "none")
            return None;
        if (text.EndsWith('+'))
            return new VersionRange(ParseVersion(text[..^1]), Open);
        int dash = text.IndexOf('-', StringComparison.Ordinal);
        if (dash > 0)
            return new VersionRange(ParseVersion(text[..dash]), ParseVersion(text[(dash + 1)..]));
        short v = ParseVersion(text);
        return new VersionRange(v, v);
    }

    private static short ParseVersion(string text) =>
        short.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out short v) && v >= 0
            ? v
            : throw new FormatException($"bad version '{text}'");

    public override string ToString() =>
        IsEmpty ? "none" : High == Open ? $"{Low}+" : Low == High ? $"{Low}" : $"{Low}-{High}";
}
