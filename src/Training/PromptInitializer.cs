using VkPrompt.Model;
using VkPrompt.Model.Tokenization;

namespace VkPrompt.Training;

/// <summary>The initialisers of docs/numerics.md: random, vocab, class, text:STRING and file:PATH.</summary>
internal static class PromptInitializer
{
    const int VocabSampleRange = 5000;

    /// <summary>Resolves "auto" as the paper does: class labels when they are known, else vocab.
    /// An unknown initialiser, and a file: without a path, are refused here, as the run is made and
    /// before it takes its output directory (a file: without one would read the current
    /// directory's "").</summary>
    public static string Resolve(string init, IReadOnlyList<string>? labels)
    {
        if (init == "file:") throw new TrainingOptionException($"{Setting.Init} file: needs the path of a prompt file");
        if (init is not ("auto" or "random" or "vocab" or "class") && !init.StartsWith("text:", StringComparison.Ordinal) && !init.StartsWith("file:", StringComparison.Ordinal))
            throw Unknown(init);
        return init == "auto" ? (labels is { Count: > 0 } ? "class" : "vocab") : init;
    }

    static TrainingOptionException Unknown(string init) =>
        new($"unknown {Setting.Init} '{init}'; use random, vocab, class, text:STRING or file:PATH");

    /// <summary>The length of the prompt a file:PATH initialiser reads; null for the others,
    /// which make a prompt of any length.</summary>
    public static int? FileLength(string init, int dModel)
    {
        if (!init.StartsWith("file:", StringComparison.Ordinal)) return null;
        PromptFile.Load(init["file:".Length..], dModel, out int length);
        return length;
    }

    public static float[] Create(string init, int promptLength, T5Checkpoint ckpt, T5Tokenizer tokenizer, IReadOnlyList<string>? labels, int seed)
    {
        int d = ckpt.Config.DModel;
        var rng = new Random(seed);
        var prompt = new float[promptLength * d];
        switch (init)
        {
            case "random":
                for (int i = 0; i < prompt.Length; i++) prompt[i] = (float)(rng.NextDouble() - 0.5);
                return prompt;
            case "vocab":
                FillSampled(prompt, 0, promptLength, ckpt, tokenizer, rng);
                return prompt;
            case "class":
                if (labels is not { Count: > 0 })
                    throw new TrainingOptionException($"{Setting.Init} class needs labels: pass {Setting.Choices} or a training file whose targets form a small label set");
                int rows = Math.Min(labels.Count, promptLength);
                var row = new float[d];
                for (int r = 0; r < rows; r++)
                {
                    // Sub-tokens of the label without the eos T5 appends (for ByT5, its bytes).
                    var ids = tokenizer.Encode(labels[r], addEos: false);
                    if (ids.Length == 0) ids = [tokenizer.UnkId];
                    var dst = prompt.AsSpan(r * d, d);
                    foreach (var id in ids)
                    {
                        ckpt.Read("shared.weight", row, (long)id * d);
                        for (int j = 0; j < d; j++) dst[j] += row[j] / ids.Length;
                    }
                }
                FillSampled(prompt, rows, promptLength - rows, ckpt, tokenizer, rng);
                return prompt;
        }
        if (init.StartsWith("text:", StringComparison.Ordinal))
        {
            var ids = tokenizer.Encode(init["text:".Length..], addEos: false);
            if (ids.Length == 0) throw new TrainingOptionException($"{Setting.Init} text: needs a non-empty string");
            for (int r = 0; r < promptLength; r++)
                ckpt.Read("shared.weight", prompt.AsSpan(r * d, d), (long)ids[r % ids.Length] * d);
            return prompt;
        }
        if (init.StartsWith("file:", StringComparison.Ordinal))
        {
            string path = init["file:".Length..];
            var data = PromptFile.Load(path, d, out int length);
            if (length != promptLength)
                throw new TrainingOptionException($"{Path.GetFullPath(path)} holds a prompt of length {length}, but {Setting.PromptLength} is {promptLength}");
            return data;
        }
        throw Unknown(init);
    }

    /// <summary>
    /// Rows of shared.weight drawn without replacement (repeating once all are drawn) from the paper's 5000 most
    /// common tokens: a SentencePiece vocabulary is ordered by frequency, so they are its first 5000 ids. A byte
    /// vocabulary (ByT5) has no such order and only 256 text tokens, so the rows come from the 256 byte ids; pad,
    /// eos, unk and the sentinels, which are not text, are left out.
    /// </summary>
    static void FillSampled(float[] prompt, int firstRow, int count, T5Checkpoint ckpt, T5Tokenizer tokenizer, Random rng)
    {
        int d = ckpt.Config.DModel;
        var (first, range) = tokenizer.IsByteLevel
            ? T5Tokenizer.ByteIds.GetOffsetAndLength(tokenizer.VocabSize)
            : (0, Math.Min(VocabSampleRange, ckpt.Config.VocabSize));
        var ids = Enumerable.Range(first, range).ToArray();
        rng.Shuffle(ids);
        for (int r = 0; r < count; r++)
            ckpt.Read("shared.weight", prompt.AsSpan((firstRow + r) * d, d), (long)ids[r % range] * d);
    }
}
