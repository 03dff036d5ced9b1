namespace VkPrompt.Model;

/// <summary>
/// Soft prompts of several tasks stacked for one batch, [Count, Length, d_model] as
/// <see cref="Scorer"/> and <see cref="Generator"/> take them, each example picking one by
/// index. Prompts may differ in length: a shorter one fills the last rows of its slot, zeros
/// before it, and <see cref="HostBatch.Build"/> masks those rows (<see cref="MaskedLengths"/>), so
/// every example computes what its prompt alone would give.
/// </summary>
public sealed class PromptSet
{
    /// <summary>[Count, Length, d_model], row-major.</summary>
    public float[] Data { get; }
    /// <summary>Rows per prompt: the longest prompt's length.</summary>
    public int Length { get; }
    /// <summary>Each prompt's own length in rows, in the order given.</summary>
    public IReadOnlyList<int> Lengths { get; }
    /// <summary>How many prompts the set holds.</summary>
    public int Count => Lengths.Count;
    /// <summary>What <see cref="HostBatch.Build"/> takes as promptLengths: null when every prompt
    /// fills its slot and nothing is masked.</summary>
    internal IReadOnlyList<int>? MaskedLengths => Lengths.All(l => l == Length) ? null : Lengths;

    PromptSet(float[] data, int length, int[] lengths) => (Data, Length, Lengths) = (data, length, lengths);

    /// <summary>Stacks prompts into one set, each padded at its front to the longest.</summary>
    /// <param name="prompts">each [P_k, d_model], row-major.</param>
    /// <param name="dModel">the model width every prompt's length must be a multiple of.</param>
    public static PromptSet Stack(IReadOnlyList<float[]> prompts, int dModel)
    {
        if (prompts.Count == 0) throw new ArgumentException("no prompts to stack");
        if (prompts.FirstOrDefault(p => p.Length == 0 || p.Length % dModel != 0) is { } bad)
            throw new ArgumentException($"a prompt of {bad.Length} floats is not whole rows of d_model {dModel}");
        var lengths = prompts.Select(p => p.Length / dModel).ToArray();
        int length = lengths.Max();
        var data = new float[(long)prompts.Count * length * dModel];
        for (int k = 0; k < prompts.Count; k++)
            prompts[k].CopyTo(data, ((long)k * length + length - lengths[k]) * dModel);
        return new PromptSet(data, length, lengths);
    }
}
