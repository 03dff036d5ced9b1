using VkPrompt.Model;

namespace VkPrompt.Training;

/// <summary>Random token ids in the shape of a real batch, for benchmarks: no tokenizer and no
/// data set needed, and every example fills its full lengths so no position is padding.</summary>
internal static class SyntheticBatch
{
    /// <summary><paramref name="batch"/> examples of exactly <paramref name="inputLength"/> input
    /// and <paramref name="targetLength"/> target ids, each ending in eos. Ids are drawn from
    /// [2, vocab), past pad (0) and eos (1), with a fixed seed so runs are repeatable.</summary>
    public static List<EncodedExample> Create(int batch, int inputLength, int targetLength, T5Config config, int seed = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batch);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inputLength);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(targetLength);
        if (config.VocabSize <= 2) throw new ArgumentException("the vocabulary needs ids past pad and eos", nameof(config));
        var rng = new Random(seed);
        int[] Ids(int n)
        {
            var ids = new int[n];
            for (int i = 0; i < n - 1; i++) ids[i] = rng.Next(2, config.VocabSize);
            ids[^1] = config.EosTokenId;
            return ids;
        }
        return Enumerable.Range(0, batch).Select(_ => new EncodedExample(Ids(inputLength), Ids(targetLength))).ToList();
    }

    /// <summary>A [P, d] prompt drawn uniformly from [-0.5, 0.5], the paper's random
    /// initialisation; the values do not change the work of a step.</summary>
    public static float[] Prompt(int promptLength, int dModel, int seed = 0)
    {
        var rng = new Random(seed);
        var prompt = new float[promptLength * dModel];
        for (int i = 0; i < prompt.Length; i++) prompt[i] = (float)(rng.NextDouble() - 0.5);
        return prompt;
    }
}
