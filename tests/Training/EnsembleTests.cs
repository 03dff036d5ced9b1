using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Model.Tokenization;
using VkPrompt.Tests.Model;
using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests.Training;

/// <summary>A two-label task on the golden v1.0 model's inputs and three different prompts, for the
/// ensemble tests here and in the CLI's eval test.</summary>
public static class EnsembleTask
{
    public static string Model => ModelTestFiles.TinyV10Bf16;
    public const int PromptLength = 5;
    /// <summary>Two one-piece words this random model finds about equally likely after these
    /// inputs, so that the prompts, not a fixed preference for one label, decide the predictions
    /// (with label words such as positive/negative every prompt picks the same label everywhere).</summary>
    public static string[] Labels => ["make", "contain"];

    /// <summary>The golden inputs with alternating gold labels: the model is random, so any
    /// labelling is as good as another; alternating keeps both labels present.</summary>
    public static List<Example> Examples() =>
        DataFile.Read(Path.Combine(Model, "cases", "p5", "data.jsonl")).Select((e, i) => new Example(e.Input, Labels[i % 2])).ToList();

    /// <summary>The golden prompt0 and two uniform random prompts of its size, scaled like it.</summary>
    public static float[][] Prompts(int dModel)
    {
        var golden = PromptFile.Load(Path.Combine(Model, "cases", "p5", "prompt0.safetensors"), dModel, out _);
        float scale = golden.Max(MathF.Abs);
        return [golden, Check.Random(golden.Length, seed: 11, scale), Check.Random(golden.Length, seed: 12, scale)];
    }

    /// <summary>The majority of each example's votes, counted here rather than by the code under test.</summary>
    public static int[] Majority(int[][] predictions, int numChoices) =>
        Enumerable.Range(0, predictions[0].Length).Select(e =>
        {
            var votes = new int[numChoices];
            foreach (var p in predictions) votes[p[e]]++;
            // Three voters and two choices: there is always a strict majority.
            return Array.IndexOf(votes, votes.Max());
        }).ToArray();
}

/// <summary>Issue 4: several prompts in one batch over the frozen model score and vote exactly as
/// each prompt would alone.</summary>
public sealed class EnsembleTests(GpuFixture f) : GpuTest(f)
{
    Backend MakeBackend(string name) => name == "cpu" ? new CpuBackend() : new GpuBackend(Ctx);

    [Theory, InlineData("cpu"), InlineData("vulkan")]
    public void ABatchOfMixedPromptsScoresAsEachPromptAlone(string backend)
    {
        using var ckpt = T5Checkpoint.Open(EnsembleTask.Model);
        var tok = T5Tokenizer.Load(EnsembleTask.Model);
        using var be = MakeBackend(backend);
        using var weights = new T5Weights(ckpt, be);
        using var scorer = new Scorer(weights);
        var enc = new ExampleEncoder(tok, 512, 128);
        var examples = EnsembleTask.Examples().Select(enc.Encode).ToList();
        var prompts = EnsembleTask.Prompts(ckpt.Config.DModel);

        var promptIndex = examples.Select((_, i) => i % prompts.Length).ToList();
        var mixed = scorer.Score(examples, PromptSet.Stack(prompts, ckpt.Config.DModel), promptIndex);
        var alone = prompts.Select(p => scorer.Score(examples, PromptSet.Stack([p], ckpt.Config.DModel))).ToArray();
        for (int i = 0; i < examples.Count; i++)
        {
            var expected = alone[promptIndex[i]][i];
            Assert.Equal(expected.Tokens, mixed[i].Tokens);
            Assert.True(Math.Abs(mixed[i].LogProb - expected.LogProb) <= 1e-5 * Math.Abs(expected.LogProb),
                        $"example {i} with prompt {promptIndex[i]}: {mixed[i].LogProb} in the mixed batch, {expected.LogProb} alone");
        }
        // Different prompts give different scores, or the comparison above would prove nothing.
        Assert.NotEqual(alone[0][0].LogProb, alone[1][0].LogProb);
    }

    /// <summary>Prompts of 5, 2 and 3 tokens in one batch (<see cref="PromptSet"/>: the shorter ones
    /// at the end of their slot, the rows before them masked) score and decode as each prompt alone
    /// at its own length, on each backend and with attention fused and unfused.</summary>
    [Theory]
    [InlineData("cpu", AttentionFusion.Unfused), InlineData("vulkan", AttentionFusion.Unfused), InlineData("vulkan", AttentionFusion.Fused)]
    public void PromptsOfDifferentLengthsInOneBatchComputeAsEachAlone(string backend, AttentionFusion attention)
    {
        using var ckpt = T5Checkpoint.Open(EnsembleTask.Model);
        var tok = T5Tokenizer.Load(EnsembleTask.Model);
        using var be = MakeBackend(backend);
        be.AttentionFusion = attention;
        using var weights = new T5Weights(ckpt, be);
        using var scorer = new Scorer(weights);
        int d = ckpt.Config.DModel;
        var examples = EnsembleTask.Examples().Select(new ExampleEncoder(tok, 512, 128).Encode).ToList();
        var full = EnsembleTask.Prompts(d);
        float[][] prompts = [full[0], full[1][..(2 * d)], full[2][(2 * d)..]];
        var set = PromptSet.Stack(prompts, d);
        Assert.Equal(5, set.Length);
        Assert.Equal([5, 2, 3], set.Lengths);

        var promptIndex = examples.Select((_, i) => i % prompts.Length).ToList();
        var mixed = scorer.Score(examples, set, promptIndex);
        var alone = prompts.Select(p => scorer.Score(examples, PromptSet.Stack([p], d))).ToArray();
        for (int i = 0; i < examples.Count; i++)
        {
            var expected = alone[promptIndex[i]][i];
            Assert.True(Math.Abs(mixed[i].LogProb - expected.LogProb) <= 1e-5 * Math.Abs(expected.LogProb),
                        $"example {i} with prompt {promptIndex[i]}: {mixed[i].LogProb} in the mixed batch, {expected.LogProb} alone");
        }
        // Unmasked (the zeros in front made part of each prompt) the padding rows would change the
        // shorter prompts' scores: the mask is what is tested.
        var unmasked = scorer.Score(examples, PromptSet.Stack(Enumerable.Range(0, set.Count).Select(k => set.Data[(k * set.Length * d)..((k + 1) * set.Length * d)]).ToArray(), d), promptIndex);
        Assert.True(Math.Abs(unmasked[1].LogProb - alone[1][1].LogProb) > 1e-3 * Math.Abs(alone[1][1].LogProb));

        var decoded = GreedyDecoder.Run(weights, examples, set, promptIndex, batchSize: 4, maxNewTokens: 4).ToList();
        for (int k = 0; k < prompts.Length; k++)
        {
            var mine = Enumerable.Range(0, examples.Count).Where(i => promptIndex[i] == k).ToList();
            var own = GreedyDecoder.Run(weights, mine.Select(i => examples[i]).ToList(), prompts[k], 4, 4).ToList();
            for (int j = 0; j < mine.Count; j++)
                Assert.Equal(own[j].Ids, decoded[mine[j]].Ids);
        }
    }

    [Fact]
    public void EnsembleVotesAreEachPromptsOwnPredictionsAndTheVoteIsTheMajority()
    {
        using var ckpt = T5Checkpoint.Open(EnsembleTask.Model);
        var tok = T5Tokenizer.Load(EnsembleTask.Model);
        using var be = new CpuBackend();
        using var weights = new T5Weights(ckpt, be);
        using var scorer = new Scorer(weights);
        var inputs = EnsembleTask.Examples().Select(e => tok.Encode(e.Input)).ToList();
        var choices = EnsembleTask.Labels.Select(l => tok.Encode(l)).ToList();
        var prompts = EnsembleTask.Prompts(ckpt.Config.DModel);

        var together = RankClassifier.Predict(scorer, inputs, choices, PromptSet.Stack(prompts, ckpt.Config.DModel), batchSize: 8);
        var alone = prompts.Select(p => RankClassifier.Predict(scorer, inputs, choices, PromptSet.Stack([p], ckpt.Config.DModel), batchSize: 8)[0]).ToArray();
        Assert.Equal(alone, together);
        // The prompts disagree somewhere, so the vote decides something.
        Assert.Contains(Enumerable.Range(0, inputs.Count), e => alone.Select(p => p[e]).Distinct().Count() > 1);
        Assert.Equal(EnsembleTask.Majority(alone, choices.Count), RankClassifier.MajorityVote(together, choices.Count));
    }

    [Fact]
    public void TiedVoteGoesToTheLowestNumberedPromptsChoice()
    {
        // Three prompts, three choices, each prompt a different choice on example 0; prompt 1 and 2 agree on example 1.
        int[][] predictions = [[2, 0], [0, 1], [1, 1]];
        Assert.Equal([2, 1], RankClassifier.MajorityVote(predictions, 3));
    }
}
