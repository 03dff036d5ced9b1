using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Model.Tokenization;
using VkPrompt.Runtime;
using VkPrompt.Tests.Model;
using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests.Training;

public sealed class PromptTrainerTests
{
    /// <summary>Batches of changing shape (data of varying length) hold one training step's
    /// activations, not one per shape seen: after steps on three shapes, what is allocated is what
    /// the last shape's step alone holds.</summary>
    [Fact]
    public void BatchesOfChangingShapeHoldOneStepsActivations()
    {
        using var m = new TinyV11OnCpu();
        var (be, weights) = (m.Backend, m.Weights);
        var batches = ModelTestFiles.OfThreeShapes(m.Tokenizer).Select(e => new List<EncodedExample> { e }).ToList();
        var prompt = Check.Random(2 * m.DModel, seed: 1, 0.5f);

        long Alone(List<EncodedExample> batch)
        {
            long before = be.MemoryUse.Current;
            using var t = new PromptTrainer(weights, prompt, new AdafactorSettings(), 0, seed: 0);
            t.TrainStep(batch, 1);
            return be.MemoryUse.Current - before;
        }
        var alone = batches.Select(Alone).ToArray();

        long start = be.MemoryUse.Current;
        using var trainer = new PromptTrainer(weights, prompt, new AdafactorSettings(), 0, seed: 0);
        for (int i = 0; i < batches.Count; i++)
        {
            trainer.TrainStep(batches[i], 1);
            Assert.Equal(alone[i], be.MemoryUse.Current - start);
        }
    }
}
