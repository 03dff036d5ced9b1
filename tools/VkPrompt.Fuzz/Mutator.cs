using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace VkPrompt.Fuzz;

/// <summary>
/// Makes a new input from an old one with one to four stacked edits: half the time edits that
/// know the format (JSON nodes, JSONL lines, protobuf fields, the safetensors length prefix and
/// header), otherwise byte-level ones (bit flips, interesting integers, truncation, deleted and
/// repeated chunks, splicing with another input, numbers in text swapped for huge or odd ones).
/// </summary>
internal sealed partial class Mutator(Random rng, Format format, Func<byte[]> other)
{
    /// <summary>No input grows past this: the parsers' cost per byte is not what is tested, and
    /// a kept finding must stay small.</summary>
    public const int MaxLength = 1 << 20;

    static readonly long[] InterestingIntegers =
        [0, 1, -1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, int.MaxValue, int.MinValue, uint.MaxValue,
         1L << 32, 1L << 53, long.MaxValue, long.MinValue, 100_000_000, 100_000_001];

    static readonly string[] InterestingNumbers =
        ["0", "-0", "1", "-1", "2", "1.5", "-1.5", "1e308", "1e-320", "-1e308", "1e999", "99999999999", "2147483647", "2147483648", "-2147483648",
         "-2147483649", "4294967296", "9223372036854775807", "9223372036854775808", "18446744073709551616", "99999999999999999999999999999", "NaN", "Infinity", "0x10", "00", "1_0"];

    const string RawMarker = "@@vkprompt-fuzz-raw@@";

    public byte[] Mutate(byte[] input)
    {
        var b = input;
        for (int i = 0, n = 1 + rng.Next(4); i < n; i++)
        {
            b = rng.Next(2) == 0 ? Structured(b) ?? Bytes(b) : Bytes(b);
            if (b.Length > MaxLength) b = b[..MaxLength];
        }
        return b;
    }

    byte[]? Structured(byte[] b) => format switch
    {
        Format.Json => Json(b),
        Format.JsonLines => JsonLines(b),
        Format.Protobuf => Protobuf(b),
        Format.Safetensors => Safetensors(b),
        _ => null,
    };

    // ---- bytes ----

    byte[] Bytes(byte[] b)
    {
        if (b.Length == 0) return [(byte)rng.Next(256)];
        var c = (byte[])b.Clone();
        int at = rng.Next(b.Length);
        switch (rng.Next(9))
        {
            case 0:
                c[at] ^= (byte)(1 << rng.Next(8));
                return c;
            case 1:
                c[at] = (byte)InterestingIntegers[rng.Next(InterestingIntegers.Length)];
                return c;
            case 2:
            {
                int width = 1 << rng.Next(4);
                if (at + width > c.Length) return c;
                long v = InterestingIntegers[rng.Next(InterestingIntegers.Length)];
                Span<byte> le = stackalloc byte[8];
                BinaryPrimitives.WriteInt64LittleEndian(le, v);
                le[..width].CopyTo(c.AsSpan(at));
                return c;
            }
            case 3: return b[..at];
            case 4:
            {
                int len = 1 + rng.Next(Math.Min(b.Length - at, 1 + rng.Next(256)));
                return [.. b.AsSpan(0, at), .. b.AsSpan(at + len)];
            }
            case 5:
            {
                int from = rng.Next(b.Length), len = 1 + rng.Next(Math.Min(b.Length - from, 1 + rng.Next(256)));
                return [.. b.AsSpan(0, at), .. b.AsSpan(from, len), .. b.AsSpan(at)];
            }
            case 6:
            {
                var o = other();
                if (o.Length == 0) return c;
                return [.. b.AsSpan(0, at), .. o.AsSpan(rng.Next(o.Length))];
            }
            case 7:
            {
                var random = new byte[1 + rng.Next(16)];
                rng.NextBytes(random);
                return [.. b.AsSpan(0, at), .. random, .. b.AsSpan(at)];
            }
            default: return Numbers(b);
        }
    }

    /// <summary>A run of digits in the text (a length, a shape, an id, an offset) replaced by a
    /// huge, negative, fractional or malformed number.</summary>
    byte[] Numbers(byte[] b)
    {
        var runs = new List<(int Start, int End)>();
        for (int i = 0; i < b.Length && runs.Count < 4096; i++)
        {
            if (b[i] is < (byte)'0' or > (byte)'9') continue;
            int start = i;
            while (i < b.Length && b[i] is >= (byte)'0' and <= (byte)'9') i++;
            runs.Add((start, i));
        }
        var number = Encoding.ASCII.GetBytes(InterestingNumbers[rng.Next(InterestingNumbers.Length)]);
        if (runs.Count == 0)
        {
            int at = rng.Next(b.Length + 1);
            return [.. b.AsSpan(0, at), .. number, .. b.AsSpan(at)];
        }
        var (s, e) = runs[rng.Next(runs.Count)];
        return [.. b.AsSpan(0, s), .. number, .. b.AsSpan(e)];
    }

    // ---- JSON ----

    byte[]? Json(byte[] b) => JsonText(b) is { } s ? Encoding.UTF8.GetBytes(s) : null;

    /// <summary>An edited JSON text, or null where <paramref name="b"/> is no JSON that
    /// JsonNode holds (it refuses a repeated key only when the object is first walked).</summary>
    string? JsonText(byte[] b)
    {
        try { return EditJson(b); }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException) { return null; }
    }

    string? EditJson(byte[] b)
    {
        // Textual edits work on any text, parsable or not.
        if (rng.Next(4) == 0) return DuplicateKey(Encoding.UTF8.GetString(b));
        var root = JsonNode.Parse(b, documentOptions: new() { AllowTrailingCommas = true });
        if (root is null) return null;
        var nodes = new List<JsonNode>();
        Collect(root, nodes);
        var raw = new List<string>();
        var node = nodes[rng.Next(nodes.Count)];
        switch (rng.Next(5))
        {
            case 0 when node.Parent is JsonObject parent:
                parent.Remove(node.GetPropertyName());
                break;
            case 1 when node.Parent is JsonObject parent:
            {
                // Retag: the key renamed to another key of the document, or a near miss of its own.
                string name = node.GetPropertyName();
                var keys = nodes.Where(n => n.Parent is JsonObject).Select(n => n.GetPropertyName()).ToList();
                string renamed = rng.Next(3) switch
                {
                    0 => keys[rng.Next(keys.Count)],
                    1 => name.ToUpperInvariant(),
                    _ => name + "_",
                };
                if (parent.ContainsKey(renamed)) break;
                parent.Remove(name);
                parent[renamed] = node;
                break;
            }
            case 2 when node.Parent is JsonArray array:
            {
                int i = array.IndexOf(node);
                if (rng.Next(2) == 0) array.RemoveAt(i);
                else array.Insert(i, node.DeepClone());
                break;
            }
            default:
            {
                var replacement = Replacement(nodes, raw);
                if (node.Parent is null) root = replacement;
                else node.ReplaceWith(replacement);
                break;
            }
        }
        string text = root?.ToJsonString() ?? "null";
        // Raw values (huge numbers, deep nesting) are spliced into the text where the serializer
        // left their markers, since JsonNode would not hold them.
        foreach (var r in raw)
        {
            int at = text.IndexOf($"\"{RawMarker}\"", StringComparison.Ordinal);
            if (at >= 0) text = text[..at] + r + text[(at + RawMarker.Length + 2)..];
        }
        return text;
    }

    static void Collect(JsonNode node, List<JsonNode> into)
    {
        into.Add(node);
        if (node is JsonObject o) foreach (var (_, v) in o) { if (v is not null) Collect(v, into); }
        else if (node is JsonArray a) foreach (var v in a) { if (v is not null) Collect(v, into); }
    }

    /// <summary>A value of another kind: null, booleans, strings (empty, long, odd characters),
    /// numbers (huge, negative, fractional), empty or deeply nested containers, or a copy of another node.</summary>
    JsonNode? Replacement(List<JsonNode> nodes, List<string> raw)
    {
        switch (rng.Next(10))
        {
            case 0: return null;
            case 1: return JsonValue.Create(rng.Next(2) == 0);
            case 2: return JsonValue.Create(rng.Next(3) switch { 0 => "", 1 => new string('x', 1 + rng.Next(100_000)), _ => "\u2581\0\ud83d\ude42 <extra_id_0></s>" });
            case 3: return new JsonArray();
            case 4: return new JsonObject();
            case 5:
            {
                int depth = 1 + rng.Next(rng.Next(2) == 0 ? 70 : 5000);
                raw.Add(rng.Next(2) == 0 ? new string('[', depth) + new string(']', depth) : string.Concat(Enumerable.Repeat("{\"a\":", depth)) + "1" + new string('}', depth));
                return JsonValue.Create(RawMarker);
            }
            case 6:
            {
                var pick = nodes[rng.Next(nodes.Count)];
                return pick.Parent is null ? new JsonObject() : pick.DeepClone();
            }
            case 7: return JsonValue.Create("\ud800");
            default:
                raw.Add(InterestingNumbers[rng.Next(InterestingNumbers.Length)]);
                return JsonValue.Create(RawMarker);
        }
    }

    [GeneratedRegex("\"([^\"\\\\]{1,64})\"\\s*:")]
    private static partial Regex KeyPattern();

    /// <summary>A key repeated in its object with another value before it (JSON allows it; a
    /// reader that keeps one of the two may check one and use the other).</summary>
    string? DuplicateKey(string text)
    {
        var keys = KeyPattern().Matches(text);
        if (keys.Count == 0) return null;
        var key = keys[rng.Next(keys.Count)];
        string value = rng.Next(3) switch { 0 => "null", 1 => InterestingNumbers[rng.Next(InterestingNumbers.Length)], _ => "\"x\"" };
        return text[..key.Index] + $"\"{key.Groups[1].Value}\": {value}, " + text[key.Index..];
    }

    // ---- JSONL ----

    byte[] JsonLines(byte[] b)
    {
        var lines = Encoding.UTF8.GetString(b).Split('\n').ToList();
        int i = rng.Next(lines.Count);
        switch (rng.Next(6))
        {
            case 0: lines.RemoveAt(i); break;
            case 1: lines.Insert(i, lines[rng.Next(lines.Count)]); break;
            case 2: lines.Insert(i, rng.Next(3) switch { 0 => "", 1 => " \t\r", _ => "{\"input\": \"" + new string('a', 1 + rng.Next(200_000)) + " b\", \"target\": \"t\"}" }); break;
            default:
                if (JsonText(Encoding.UTF8.GetBytes(lines[i])) is { } edited) lines[i] = edited.ReplaceLineEndings(" ");
                break;
        }
        return Encoding.UTF8.GetBytes(string.Join('\n', lines));
    }

    // ---- protobuf ----

    /// <summary>One field of a protobuf message: its tag at <c>Start</c>, its value from
    /// <c>Value</c> (a length-delimited one's length varint at <c>Length</c>) to <c>End</c>.</summary>
    readonly record struct Field(int Start, int Length, int Value, int End, int Number, int WireType, int Depth);

    byte[]? Protobuf(byte[] b)
    {
        var fields = new List<Field>();
        if (!Walk(b, 0, b.Length, 0, fields) || fields.Count == 0) return null;
        // Most fields are pieces; a third of the edits go to the specs and other rare fields.
        var specs = fields.Where(f => f.Depth == 0 && f.Number != 1).ToList();
        var rare = fields.Where(f => specs.Any(s => s.Start <= f.Start && f.End <= s.End)).ToList();
        var f = rare.Count > 0 && rng.Next(3) == 0 ? rare[rng.Next(rare.Count)] : fields[rng.Next(fields.Count)];
        byte[] Replace(int start, int end, ReadOnlySpan<byte> with) => [.. b.AsSpan(0, start), .. with, .. b.AsSpan(end)];
        switch (rng.Next(6))
        {
            case 0 when f.WireType == 0:
                return Replace(f.Value, f.End, Varint((ulong)InterestingIntegers[rng.Next(InterestingIntegers.Length)]));
            case 1 when f.WireType == 2:
            {
                long length = f.End - f.Value;
                ulong changed = rng.Next(4) switch
                {
                    0 => (ulong)(length + rng.Next(-8, 9)),
                    1 => 0,
                    2 => (ulong)InterestingIntegers[rng.Next(InterestingIntegers.Length)],
                    _ => (ulong)(length * 2),
                };
                return Replace(f.Length, f.Value, Varint(changed));
            }
            case 2 when f.WireType == 5:
            {
                float[] odd = [float.NaN, float.PositiveInfinity, float.NegativeInfinity, 0, -0f, float.MaxValue, float.Epsilon, 1e30f, -1e30f];
                var bytes = new byte[4];
                BinaryPrimitives.WriteSingleLittleEndian(bytes, odd[rng.Next(odd.Length)]);
                return Replace(f.Value, f.End, bytes);
            }
            case 3: return Replace(f.Start, f.End, []);
            case 4: return Replace(f.End, f.End, b.AsSpan(f.Start, f.End - f.Start));
            default:
            {
                int number = rng.Next(3) == 0 ? rng.Next(1, 1 << 20) : f.Number, wire = rng.Next(3) == 0 ? rng.Next(8) : f.WireType;
                if (number == f.Number && wire == f.WireType) number = rng.Next(1, 20);
                return Replace(f.Start, f.Length, Varint(((ulong)number << 3) | (uint)wire));
            }
        }
    }

    /// <summary>The fields of the message in b[start..end] into <paramref name="into"/>, and those
    /// of length-delimited fields that parse as messages themselves (to depth 2); false where
    /// b[start..end] is not a message.</summary>
    static bool Walk(byte[] b, int start, int end, int depth, List<Field> into)
    {
        int count = into.Count;
        int at = start;
        while (at < end)
        {
            int fieldStart = at;
            if (!ReadVarint(b, ref at, end, out ulong tag)) return Undo(into, count);
            int wire = (int)(tag & 7);
            int lengthAt = at, valueAt = at;
            switch (wire)
            {
                case 0: if (!ReadVarint(b, ref at, end, out _)) return Undo(into, count); break;
                case 1: at += 8; break;
                case 5: at += 4; break;
                case 2:
                    if (!ReadVarint(b, ref at, end, out ulong length) || length > (ulong)(end - at)) return Undo(into, count);
                    valueAt = at;
                    at += (int)length;
                    break;
                default: return Undo(into, count);
            }
            if (at > end || tag >> 3 is 0 or > int.MaxValue) return Undo(into, count);
            into.Add(new Field(fieldStart, lengthAt, valueAt, at, (int)(tag >> 3), wire, depth));
            if (wire == 2 && depth < 2) Walk(b, valueAt, at, depth + 1, into);
        }
        return true;
    }

    static bool Undo(List<Field> into, int count)
    {
        into.RemoveRange(count, into.Count - count);
        return false;
    }

    static bool ReadVarint(byte[] b, ref int at, int end, out ulong value)
    {
        value = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            if (at >= end) return false;
            byte x = b[at++];
            value |= (ulong)(x & 0x7F) << shift;
            if (x < 0x80) return true;
        }
        return false;
    }

    static byte[] Varint(ulong v)
    {
        var bytes = new List<byte>();
        do
        {
            byte x = (byte)(v & 0x7F);
            v >>= 7;
            bytes.Add(v != 0 ? (byte)(x | 0x80) : x);
        } while (v != 0);
        return [.. bytes];
    }

    // ---- safetensors ----

    /// <summary>The 8-byte header length set to an interesting value, or the JSON header edited
    /// as JSON with the length prefix kept consistent (so the edit reaches the header's checks).</summary>
    byte[]? Safetensors(byte[] b)
    {
        if (b.Length < 8) return null;
        ulong length = BinaryPrimitives.ReadUInt64LittleEndian(b);
        if (rng.Next(4) == 0)
        {
            var c = (byte[])b.Clone();
            ulong changed = rng.Next(2) == 0 ? (ulong)InterestingIntegers[rng.Next(InterestingIntegers.Length)] : length + (ulong)rng.Next(-8, 9);
            BinaryPrimitives.WriteUInt64LittleEndian(c, changed);
            return c;
        }
        if (length > (ulong)(b.Length - 8)) return null;
        var header = b[8..(8 + (int)length)];
        var edited = Json(header);
        if (edited is null) return null;
        var result = new byte[8 + edited.Length + (b.Length - 8 - (int)length)];
        BinaryPrimitives.WriteUInt64LittleEndian(result, (ulong)edited.Length);
        edited.CopyTo(result, 8);
        b.AsSpan(8 + (int)length).CopyTo(result.AsSpan(8 + edited.Length));
        return result;
    }
}
