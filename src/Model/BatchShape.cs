namespace VkPrompt.Model;

/// <summary>The shape one recorded pass is built for: batch size, padded input length (without
/// the prompt), padded target length, prompt length and how many distinct prompts share it.</summary>
internal readonly record struct BatchShape(int Batch, int InputLength, int TargetLength, int PromptLength, int NumPrompts = 1)
{
    public int EncoderLength => PromptLength + InputLength;

    /// <summary>"batch 6 x 64 input tokens (+8 prompt) x 8 target tokens", as messages name the shape.</summary>
    public override string ToString() =>
        $"batch {Batch} x {InputLength} input tokens{(PromptLength > 0 ? $" (+{PromptLength} prompt{(NumPrompts > 1 ? $", {NumPrompts} prompts" : "")})" : "")} x {TargetLength} target tokens";

    /// <summary>The most elements one buffer of a pass may hold: batches and activations are .NET
    /// arrays and device buffers that the host and the kernels index with 32-bit ints.</summary>
    public const long MaxElements = int.MaxValue;

    /// <summary>The elements of the largest per-token activation a pass over this shape holds:
    /// every position of the encoder (or the decoder, if longer) times the widest of d_model, d_ff
    /// and heads × d_kv. Compared with <see cref="MaxElements"/> before anything is allocated, a
    /// batch far too large is refused at once instead of overflowing an index or growing memory
    /// for minutes (issue 21 finding 7). Longs throughout: the sizes asked for may overflow ints.</summary>
    public static long LargestActivation(long batch, long encoderLength, long targetLength, T5Config config) =>
        batch * Math.Max(encoderLength, targetLength) * Math.Max(config.DModel, Math.Max(config.DFf, (long)config.NumHeads * config.DKv));
}
