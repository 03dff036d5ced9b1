using System.Text.Json;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Model.Safetensors;
using VkPrompt.Model.Tokenization;
using VkPrompt.Runtime;
using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests.Model;

/// <summary>One golden case (a model directory's cases/NAME: data.jsonl, prompt0.safetensors,
/// scores.json, scores_noprompt.json, loss.json, grad.safetensors, train.json,
/// prompt_after.safetensors; cases-int8/NAME the same computed with int8 weights) and the checks
/// of docs/numerics.md's tolerances against it, shared by <see cref="GoldenTests"/>,
/// <see cref="GoldenVariantTests"/> and <see cref="GoldenInt8Tests"/>.</summary>
internal sealed record GoldenCase(T5Checkpoint Ckpt, T5Tokenizer Tokenizer, List<EncodedExample> Examples, float[] Prompt0, string CaseDir) : IDisposable
{
    public void Dispose() => Ckpt.Dispose();

    /// <summary>The folder of a model directory holding the cases computed with fp32 weights.</summary>
    public const string Fp32Cases = "cases";

    /// <summary>The folder holding the cases computed with int8 weights (SPEC.md's "int8 storage of frozen weights").</summary>
    public const string Int8Cases = "cases-int8";

    /// <summary>Every (model, case, backend) of <paramref name="models"/> under <paramref name="root"/>,
    /// the cases those of folder <paramref name="cases"/>.</summary>
    public static TheoryData<string, string, string> Cases(string root, IEnumerable<string> models, IReadOnlyList<string> backends, string cases = Fp32Cases)
    {
        var data = new TheoryData<string, string, string>();
        foreach (var model in models)
            foreach (var c in Directory.GetDirectories(Path.Combine(root, model, cases)).Order())
                foreach (var backend in backends)
                    data.Add(model, Path.GetFileName(c), backend);
        return data;
    }

    /// <summary>The backend a test case names: "cpu..." the CPU reference, else a Vulkan device,
    /// the context <paramref name="context"/> gives for the name without "-fused"; "-fused" runs
    /// every attention through FusedAttention whatever the sizes, otherwise none.</summary>
    public static Backend MakeBackend(string name, Func<string, GpuContext> context)
    {
        bool fused = name.EndsWith("-fused", StringComparison.Ordinal);
        Backend be = name.StartsWith("cpu", StringComparison.Ordinal) ? new CpuBackend() : new GpuBackend(context(fused ? name[..^"-fused".Length] : name));
        be.AttentionFusion = fused ? AttentionFusion.Fused : AttentionFusion.Unfused;
        // The golden tolerances are fp32 activations'; a GPU's plan would choose bf16
        // (ActivationPrecisionTests hold those to theirs).
        be.Activations = ActivationPrecision.Fp32;
        return be;
    }

    /// <summary>The model's tokenizer is whatever its directory asks for (T5Tokenizer.Load reads it).</summary>
    public static GoldenCase Load(string root, string model, string caseName, string cases = Fp32Cases)
    {
        string dir = Path.Combine(root, model);
        var ckpt = T5Checkpoint.Open(dir);
        var tok = T5Tokenizer.Load(dir);
        string caseDir = Path.Combine(dir, cases, caseName);
        var enc = new ExampleEncoder(tok, 100_000, 100_000);
        var examples = DataFile.Read(Path.Combine(caseDir, "data.jsonl")).Select(enc.Encode).ToList();
        var prompt = PromptFile.Load(Path.Combine(caseDir, "prompt0.safetensors"), ckpt.Config.DModel, out _);
        return new GoldenCase(ckpt, tok, examples, prompt, caseDir);
    }

    /// <summary>Loads the case, builds its weights on <paramref name="backend"/> and runs
    /// <paramref name="check"/> on them, disposing all three: the body of every golden theory.
    /// The weights are stored as <paramref name="precision"/>, which must be the one the cases of
    /// folder <paramref name="cases"/> were computed with.</summary>
    public static void Run(string root, string model, string caseName, Backend backend, Action<GoldenCase, T5Weights> check,
                           WeightPrecision precision = WeightPrecision.Fp32, string cases = Fp32Cases)
    {
        using var g = Load(root, model, caseName, cases);
        using (backend)
        {
            using var weights = new T5Weights(g.Ckpt, backend, precision);
            check(g, weights);
        }
    }

    public int DModel => Ckpt.Config.DModel;

    public static double[] Doubles(string path) => JsonSerializer.Deserialize<double[]>(File.ReadAllText(path))!;

    public static float[] Tensor(string path, string key)
    {
        using var f = SafetensorsFile.Open(path);
        var data = new float[f.Tensors[key].Shape.Aggregate(1L, (a, b) => a * b)];
        f.ReadFloat32(key, data);
        return data;
    }

    public double[] Scores => Doubles(Path.Combine(CaseDir, "scores.json"));
    public double[] ScoresWithoutPrompt => Doubles(Path.Combine(CaseDir, "scores_noprompt.json"));
    public double Loss => JsonDocument.Parse(File.ReadAllText(Path.Combine(CaseDir, "loss.json"))).RootElement.GetProperty("loss").GetDouble();
    public float[] Gradient => Tensor(Path.Combine(CaseDir, "grad.safetensors"), "prompt_gradient");

    public static void AssertLogLikelihoods(double[] expected, IReadOnlyList<ScoreResult> actual, string what, double relative = 1e-4)
    {
        Assert.Equal(expected.Length, actual.Count);
        for (int i = 0; i < expected.Length; i++)
        {
            double tol = 1e-3 + relative * Math.Abs(expected[i]);
            Assert.True(Math.Abs(actual[i].LogProb - expected[i]) <= tol,
                $"{what} example {i}: {actual[i].LogProb} vs golden {expected[i]} (tolerance {tol:E2})");
        }
    }

    /// <summary>Log-likelihoods with and without the prompt.</summary>
    public void AssertScores(T5Weights weights)
    {
        using var scorer = new Scorer(weights);
        AssertScores(scorer);
    }

    /// <summary>Log-likelihoods with and without the prompt, from <paramref name="scorer"/>.</summary>
    internal void AssertScores(IBatchScorer scorer)
    {
        AssertLogLikelihoods(Scores, scorer.Score(Examples, PromptSet.Stack([Prompt0], DModel)), "with prompt");
        AssertLogLikelihoods(ScoresWithoutPrompt, scorer.Score(Examples, null), "without prompt");
    }

    /// <summary>The loss and the prompt gradient of the whole case as one batch.</summary>
    public void AssertGradientAndLoss(T5Weights weights) => AssertGradientAndLoss(() => PromptTrainer.Gradient(weights, Examples, Prompt0));

    /// <summary>As below, the loss and gradient computed by the caller.</summary>
    public void AssertGradientAndLoss((double Loss, float[] Gradient) computed) => AssertGradientAndLoss(() => computed);

    /// <summary>As above, the loss and gradient computed by <paramref name="compute"/> (data parallel, for one).</summary>
    public void AssertGradientAndLoss(Func<(double Loss, float[] Gradient)> compute)
    {
        var (loss, grad) = compute();
        double goldLoss = Loss;
        Assert.True(Math.Abs(loss - goldLoss) <= 1e-3 + 1e-4 * goldLoss, $"loss {loss} vs golden {goldLoss}");
        double err = Check.NormRelativeError(Gradient, grad);
        Assert.True(err <= 1e-3, $"prompt gradient relative error {err:E3} > 1e-3");
    }

    /// <summary>train.json's Adafactor steps: each step's loss and the prompt after them.</summary>
    public void AssertAdafactorSteps(T5Weights weights) => AssertAdafactorSteps((prompt, settings) => new PromptTrainer(weights, prompt, settings, dropout: 0, seed: 0));

    /// <summary>As above, with the trainer <paramref name="trainer"/> makes from the case's prompt
    /// and Adafactor settings (data parallel, for one).</summary>
    public void AssertAdafactorSteps(Func<float[], AdafactorSettings, IStepTrainer> trainer)
    {
        var (losses, prompt) = TrainAdafactorSteps(trainer);
        var golden = TrainSpec.GetProperty("losses").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.Equal(golden.Length, losses.Length);
        for (int s = 0; s < losses.Length; s++)
            Assert.True(Math.Abs(losses[s] - golden[s]) <= 1e-3 + 1e-4 * golden[s], $"step {s} loss {losses[s]} vs golden {golden[s]}");
        double err = Check.NormRelativeError(Tensor(Path.Combine(CaseDir, "prompt_after.safetensors"), "prompt_embeddings"), prompt);
        Assert.True(err <= 1e-3, $"prompt after {losses.Length} steps: relative error {err:E3} > 1e-3");
    }

    JsonElement TrainSpec => JsonDocument.Parse(File.ReadAllText(Path.Combine(CaseDir, "train.json"))).RootElement;

    /// <summary>Runs train.json's Adafactor steps from the case's prompt: each step's loss and the
    /// prompt after them.</summary>
    public (double[] Losses, float[] Prompt) TrainAdafactorSteps(T5Weights weights) =>
        TrainAdafactorSteps((prompt, settings) => new PromptTrainer(weights, prompt, settings, dropout: 0, seed: 0));

    /// <summary>As above, on the trainer <paramref name="makeTrainer"/> makes (at dropout 0).</summary>
    public (double[] Losses, float[] Prompt) TrainAdafactorSteps(Func<float[], AdafactorSettings, IStepTrainer> makeTrainer)
    {
        var spec = TrainSpec;
        int steps = spec.GetProperty("steps").GetInt32(), batch = spec.GetProperty("batch_size").GetInt32();
        var settings = new AdafactorSettings
        {
            LearningRate = (float)spec.GetProperty("lr").GetDouble(),
            DecayRate = (float)spec.GetProperty("decay_rate").GetDouble(),
            ClippingThreshold = (float)spec.GetProperty("clipping_threshold").GetDouble(),
            WeightDecay = (float)spec.GetProperty("weight_decay").GetDouble(),
        };
        Assert.Equal(spec.GetProperty("factored").GetBoolean(), settings.Factored(Prompt0.Length / DModel, DModel));

        using var trainer = makeTrainer(Prompt0, settings);
        var losses = new double[steps];
        for (int s = 0; s < steps; s++)
        {
            var idx = TrainingRun.BatchIndices(s, batch, Examples.Count, shuffle: false, seed: 0);
            losses[s] = trainer.TrainStep(idx.Select(i => Examples[i]).ToList(), batch);
        }
        return (losses, trainer.Prompt());
    }
}
