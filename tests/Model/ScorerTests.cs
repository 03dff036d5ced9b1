using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Model.Tokenization;
using Xunit;

namespace VkPrompt.Tests.Model;

/// <summary>How much a Scorer keeps between calls: a pass (with its activations) per batch shape,
/// up to maxShapes of them.</summary>
public sealed class ScorerTests
{
    [Theory, InlineData(1), InlineData(2)]
    public void AtMostMaxShapesPassesStayAllocated(int maxShapes)
    {
        string model = ModelTestFiles.TinyV11;
        using var ckpt = T5Checkpoint.Open(model);
        var tok = T5Tokenizer.Load(model);
        using var be = new CpuBackend();
        using var weights = new T5Weights(ckpt, be);
        var batches = ModelTestFiles.OfThreeShapes(tok).Select(e => new List<EncodedExample> { e }).ToList();

        long before = be.MemoryUse.Current;
        var alone = new long[batches.Count];
        for (int i = 0; i < batches.Count; i++)
            using (var s = new Scorer(weights, maxShapes))
            {
                s.Score(batches[i], null);
                alone[i] = be.MemoryUse.Current - before;
            }
        Assert.Equal(before, be.MemoryUse.Current);

        using var scorer = new Scorer(weights, maxShapes);
        for (int i = 0; i < batches.Count; i++)
        {
            var first = scorer.Score(batches[i], null);
            Assert.InRange(scorer.CachedShapes, 1, maxShapes);
            // What is held is the passes of the shapes kept, the latest among them.
            long held = be.MemoryUse.Current - before;
            long bound = alone.Skip(Math.Max(0, i + 1 - maxShapes)).Take(Math.Min(i + 1, maxShapes)).Sum();
            Assert.True(held <= bound, $"after shape {i}: {held} bytes held, at most {bound} expected with {maxShapes} shape(s) kept");
            Assert.Equal(first, scorer.Score(batches[i], null));
        }
    }
}
