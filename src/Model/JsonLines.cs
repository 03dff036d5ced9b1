using System.Text;
using System.Text.Json;

namespace VkPrompt.Model;

/// <summary>The one JSONL loop of the data readers (<see cref="DataFile"/>, SuperGLUE's files):
/// a JSON object per line, blank lines skipped, and every problem a
/// <see cref="ModelFormatException"/> naming the file and the line.</summary>
internal static class JsonLines
{
    /// <summary>Reads <paramref name="path"/>, turning each line's object into a
    /// <typeparamref name="T"/> with <paramref name="parse"/>. A parser reports a bad line by
    /// throwing what its second argument makes of a message, which the reader prefixes with the
    /// file and line, so no parser repeats either.</summary>
    public static List<T> Read<T>(string path, Func<JsonElement, Func<string, ModelFormatException>, T> parse)
    {
        if (Directory.Exists(path)) throw new ModelFormatException(path, "is a directory; expected a JSONL file");
        if (!File.Exists(path)) throw new ModelFormatException(path, "file not found");
        // Strict: bytes that are not UTF-8 would otherwise become U+FFFD and train on text the
        // file does not hold. The reader decodes ahead of the line it returns, so the line at
        // fault is found by a second pass, on that error alone.
        try { return Read(File.ReadLines(path, StrictUtf8), path, parse); }
        catch (DecoderFallbackException) { throw new ModelFormatException(path, $"line {FirstLineNotUtf8(path)}: not valid UTF-8"); }
    }

    static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>The number of the first line of <paramref name="path"/> that is not UTF-8.</summary>
    static int FirstLineNotUtf8(string path)
    {
        ReadOnlySpan<byte> rest = File.ReadAllBytes(path);
        for (int line = 1; ; line++)
        {
            int end = rest.IndexOf((byte)'\n');
            var text = end < 0 ? rest : rest[..end];
            if (!System.Text.Unicode.Utf8.IsValid(text) || end < 0) return line;
            rest = rest[(end + 1)..];
        }
    }

    /// <summary>Reads JSON lines a host holds in memory (the C ABI's data arguments);
    /// <paramref name="source"/> names them in messages as a path would.</summary>
    public static List<T> Read<T>(IEnumerable<string> lines, string source, Func<JsonElement, Func<string, ModelFormatException>, T> parse)
    {
        string path = source;
        var list = new List<T>();
        int lineNo = 0;
        foreach (var line in lines)
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            var problem = (string what) => new ModelFormatException(path, $"line {lineNo}: {what}");
            JsonElement root;
            try { root = JsonDocument.Parse(line).RootElement; }
            catch (JsonException e) { throw problem($"not valid JSON ({e.Message.Split('.')[0]})"); }
            if (root.ValueKind != JsonValueKind.Object) throw problem("expected a JSON object");
            // System.Text.Json checks a string's escapes and an element's kind only when a value
            // is read: a lone surrogate ("\ud800"), an array or 1.5 where a string or an integer
            // belongs throw these from inside the parser, and are this line's fault all the same.
            try { list.Add(parse(root, problem)); }
            catch (Exception e) when (e is InvalidOperationException or FormatException) { throw problem(e.Message.TrimEnd('.')); }
        }
        if (list.Count == 0) throw new ModelFormatException(path, "no examples (the file is empty, or blank lines only)");
        return list;
    }
}
