using VkPrompt.Model.Tokenization;

namespace VkPrompt.Model;

/// <summary>Tokenizes examples with T5's truncation rule and counts what was cut, so no
/// truncation is ever silent.</summary>
public sealed class ExampleEncoder(T5Tokenizer tokenizer, int maxInputLength, int maxTargetLength)
{
    /// <summary>Inputs cut to the maximum input length so far.</summary>
    public int TruncatedInputs { get; private set; }
    /// <summary>Targets cut to the maximum target length so far.</summary>
    public int TruncatedTargets { get; private set; }

    /// <summary>Token ids of the example's input and target (none given: an empty target, eos
    /// only), each ending in eos and cut to its maximum length.</summary>
    public EncodedExample Encode(Example e)
    {
        var input = tokenizer.Encode(e.Input, maxInputLength, out bool inputCut);
        var target = tokenizer.Encode(e.Target ?? "", maxTargetLength, out bool targetCut);
        if (inputCut) TruncatedInputs++;
        if (targetCut) TruncatedTargets++;
        return new(input, target);
    }

    /// <summary>Encodes an input and target as <see cref="Encode(Example)"/> does.</summary>
    public EncodedExample Encode(string input, string target) => Encode(new Example(input, target));

    /// <summary>Whether any example encoded so far was cut.</summary>
    public bool Truncated => TruncatedInputs + TruncatedTargets > 0;

    /// <summary>What was cut, for the log: how many inputs and targets, to how many tokens.</summary>
    public string Report()
    {
        if (!Truncated) return "no example was truncated";
        var parts = new List<string>();
        if (TruncatedInputs > 0) parts.Add($"{TruncatedInputs} input(s) to {maxInputLength} tokens");
        if (TruncatedTargets > 0) parts.Add($"{TruncatedTargets} target(s) to {maxTargetLength} tokens");
        return "truncated " + string.Join(" and ", parts);
    }
}
