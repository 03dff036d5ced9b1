using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Model.Tokenization;
using Xunit;

namespace VkPrompt.Tests.Model;

/// <summary>What a Scorer keeps between calls: the pass (with its activations) of the last batch
/// shape, replayed while the shape stays.</summary>
public sealed class ScorerTests
{
    [Fact]
    public void OnlyTheLastShapesPassStaysAllocated()
    {
        using var m = new TinyV11OnCpu();
        var (be, weights) = (m.Backend, m.Weights);
        var batches = ModelTestFiles.OfThreeShapes(m.Tokenizer).Select(e => new List<EncodedExample> { e }).ToList();
        var prompts = PromptSet.Stack([Check.Random(2 * m.DModel, seed: 1, 0.5f)], m.DModel);

        long before = be.MemoryUse.Current;
        var alone = new long[batches.Count];
        for (int i = 0; i < batches.Count; i++)
            using (var s = new Scorer(weights))
            {
                s.Score(batches[i], prompts);
                alone[i] = be.MemoryUse.Current - before;
            }
        Assert.Equal(before, be.MemoryUse.Current);

        using var scorer = new Scorer(weights);
        for (int i = 0; i < batches.Count; i++)
        {
            var first = scorer.Score(batches[i], prompts);
            Assert.Equal(alone[i], be.MemoryUse.Current - before);
            Assert.Equal(first, scorer.Score(batches[i], prompts));
            Assert.Equal(alone[i], be.MemoryUse.Current - before);
        }
        scorer.Dispose();
        Assert.Equal(before, be.MemoryUse.Current);
    }
}
