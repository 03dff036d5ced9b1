using VkPrompt.Model.Tokenization;

namespace VkPrompt.Model;

/// <summary>Tokenizes examples with T5's truncation rule and counts what was cut, so no
/// truncation is ever silent.</summary>
public sealed class ExampleEncoder(T5Tokenizer tokenizer, int maxInputLength, int maxTargetLength)
{
    public int TruncatedInputs { get; private set; }
    public int TruncatedTargets { get; private set; }

    public EncodedExample Encode(Example e) =>
        new(Truncate(tokenizer.Encode(e.Input), maxInputLength, () => TruncatedInputs++),
            Truncate(tokenizer.Encode(e.Target ?? ""), maxTargetLength, () => TruncatedTargets++));

    public EncodedExample Encode(string input, string target) => Encode(new Example(input, target));

    /// <summary>Keeps the first max-1 tokens and the final eos, as docs/numerics.md and HF do.</summary>
    int[] Truncate(int[] ids, int max, Action counted)
    {
        if (ids.Length <= max) return ids;
        counted();
        var cut = ids[..max];
        cut[^1] = ids[^1];
        return cut;
    }

    public bool Truncated => TruncatedInputs + TruncatedTargets > 0;

    public string Report()
    {
        if (!Truncated) return "no example was truncated";
        var parts = new List<string>();
        if (TruncatedInputs > 0) parts.Add($"{TruncatedInputs} input(s) to {maxInputLength} tokens");
        if (TruncatedTargets > 0) parts.Add($"{TruncatedTargets} target(s) to {maxTargetLength} tokens");
        return "truncated " + string.Join(" and ", parts);
    }
}
