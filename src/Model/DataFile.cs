using System.Text.Json;

namespace VkPrompt.Model;

/// <summary>One line of a data file: the encoder input, when known the target text, and where
/// several tasks share a file the name of the prompt it is for.</summary>
public sealed record Example(string Input, string? Target, string? Prompt = null);

/// <summary>Reads JSONL data files: one {"input": "...", "target": "..."} object per line, with an
/// optional "prompt" naming the line's soft prompt.</summary>
public static class DataFile
{
    public static List<Example> Read(string path, bool requireTargets = true)
    {
        if (Directory.Exists(path)) throw new ModelFormatException(path, "is a directory; expected a JSONL file");
        if (!File.Exists(path)) throw new ModelFormatException(path, "file not found");
        var list = new List<Example>();
        int lineNo = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonElement root;
            try { root = JsonDocument.Parse(line).RootElement; }
            catch (JsonException e) { throw new ModelFormatException(path, $"line {lineNo}: not valid JSON ({e.Message.Split('.')[0]})"); }
            if (root.ValueKind != JsonValueKind.Object) throw new ModelFormatException(path, $"line {lineNo}: expected a JSON object");
            if (!root.TryGetProperty("input", out var input) || input.ValueKind != JsonValueKind.String)
                throw new ModelFormatException(path, $"line {lineNo}: missing string field \"input\"");
            string? target = null;
            if (root.TryGetProperty("target", out var t))
            {
                if (t.ValueKind != JsonValueKind.String) throw new ModelFormatException(path, $"line {lineNo}: field \"target\" must be a string");
                target = t.GetString();
            }
            else if (requireTargets)
                throw new ModelFormatException(path, $"line {lineNo}: missing string field \"target\"");
            string? prompt = null;
            if (root.TryGetProperty("prompt", out var pr))
            {
                if (pr.ValueKind != JsonValueKind.String) throw new ModelFormatException(path, $"line {lineNo}: field \"prompt\" must be a string (a prompt's name)");
                prompt = pr.GetString();
            }
            list.Add(new Example(input.GetString()!, target, prompt));
        }
        if (list.Count == 0) throw new ModelFormatException(path, "no examples (the file is empty)");
        return list;
    }
}
