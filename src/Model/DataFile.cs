using System.Text.Json;

namespace VkPrompt.Model;

/// <summary>One line of a data file: the encoder input, when known the target text, and where
/// several tasks share a file the name of the prompt it is for.</summary>
public sealed record Example(string Input, string? Target, string? Prompt = null);

/// <summary>Reads JSONL data files: one {"input": "...", "target": "..."} object per line, with an
/// optional "prompt" naming the line's soft prompt.</summary>
public static class DataFile
{
    /// <summary>The examples of <paramref name="path"/>, in file order.</summary>
    /// <param name="path">The JSONL file.</param>
    /// <param name="requireTargets">Every line must have a target (scoring, training); decoding
    /// and classifying read inputs alone.</param>
    public static List<Example> Read(string path, bool requireTargets = true) => JsonLines.Read(path, (root, problem) => Parse(root, problem, requireTargets));

    /// <summary>The examples of JSONL <paramref name="text"/> held in memory, in order;
    /// <paramref name="source"/> names it in messages.</summary>
    /// <inheritdoc cref="Read(string, bool)"/>
    public static List<Example> ReadText(string text, string source, bool requireTargets = true) =>
        JsonLines.Read(text.Split('\n'), source, (root, problem) => Parse(root, problem, requireTargets));

    static Example Parse(JsonElement root, Func<string, ModelFormatException> problem, bool requireTargets)
    {
        if (!root.TryGetProperty("input", out var input) || input.ValueKind != JsonValueKind.String)
            throw problem("missing string field \"input\"");
        string? target = null;
        if (root.TryGetProperty("target", out var t))
        {
            if (t.ValueKind != JsonValueKind.String) throw problem("field \"target\" must be a string");
            target = t.GetString();
        }
        else if (requireTargets)
            throw problem("missing string field \"target\"");
        string? prompt = null;
        if (root.TryGetProperty("prompt", out var pr))
        {
            if (pr.ValueKind != JsonValueKind.String) throw problem("field \"prompt\" must be a string (a prompt's name)");
            prompt = pr.GetString();
        }
        return new Example(input.GetString()!, target, prompt);
    }
}
