using System.Text.Json;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Model.Safetensors;
using VkPrompt.Model.Tokenization;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests.Model;

/// <summary>
/// The numerical contract: every golden case of ../shared/golden, on the CPU reference and on
/// the Vulkan device, within SPEC.md's tolerances. Cases are discovered from the directory, so
/// a new golden case is tested without touching this file.
/// </summary>
public sealed class GoldenTests(GpuFixture f) : GpuTest(f)
{
    public static TheoryData<string, string, string> Cases()
    {
        var data = new TheoryData<string, string, string>();
        foreach (var model in Directory.GetDirectories(TestPaths.Golden).Order())
            foreach (var c in Directory.GetDirectories(Path.Combine(model, "cases")).Order())
                foreach (var backend in new[] { "cpu", "vulkan" })
                    data.Add(Path.GetFileName(model), Path.GetFileName(c), backend);
        return data;
    }

    sealed record Golden(T5Checkpoint Ckpt, T5Tokenizer Tokenizer, List<EncodedExample> Examples, float[] Prompt0, string CaseDir) : IDisposable
    {
        public void Dispose() => Ckpt.Dispose();
    }

    static Golden Load(string model, string caseName)
    {
        string dir = Path.Combine(TestPaths.Golden, model);
        var ckpt = T5Checkpoint.Open(dir);
        var tok = T5Tokenizer.Load(dir);
        string caseDir = Path.Combine(dir, "cases", caseName);
        var enc = new ExampleEncoder(tok, 100_000, 100_000);
        var examples = DataFile.Read(Path.Combine(caseDir, "data.jsonl")).Select(enc.Encode).ToList();
        var prompt = PromptFile.Load(Path.Combine(caseDir, "prompt0.safetensors"), ckpt.Config.DModel, out _);
        return new Golden(ckpt, tok, examples, prompt, caseDir);
    }

    Backend MakeBackend(string name) => name == "cpu" ? new CpuBackend() : new GpuBackend(Ctx);

    static double[] Doubles(string path) => JsonSerializer.Deserialize<double[]>(File.ReadAllText(path))!;

    static float[] Tensor(string path, string key)
    {
        using var f = SafetensorsFile.Open(path);
        var data = new float[f.Tensors[key].Shape.Aggregate(1L, (a, b) => a * b)];
        f.ReadFloat32(key, data);
        return data;
    }

    static void AssertLogLikelihoods(double[] expected, IReadOnlyList<ScoreResult> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Count);
        for (int i = 0; i < expected.Length; i++)
        {
            double tol = 1e-3 + 1e-4 * Math.Abs(expected[i]);
            Assert.True(Math.Abs(actual[i].LogProb - expected[i]) <= tol,
                $"{what} example {i}: {actual[i].LogProb} vs golden {expected[i]} (tolerance {tol:E2})");
        }
    }

    [Theory, MemberData(nameof(Cases))]
    public void ScoresMatch(string model, string caseName, string backend)
    {
        using var g = Load(model, caseName);
        using var be = MakeBackend(backend);
        using var weights = new T5Weights(g.Ckpt, be);
        using var scorer = new Scorer(weights);
        int d = g.Ckpt.Config.DModel;
        AssertLogLikelihoods(Doubles(Path.Combine(g.CaseDir, "scores.json")), scorer.Score(g.Examples, g.Prompt0, g.Prompt0.Length / d), "with prompt");
        AssertLogLikelihoods(Doubles(Path.Combine(g.CaseDir, "scores_noprompt.json")), scorer.Score(g.Examples, null, 0), "without prompt");
    }

    [Theory, MemberData(nameof(Cases))]
    public void GradientAndLossMatch(string model, string caseName, string backend)
    {
        using var g = Load(model, caseName);
        using var be = MakeBackend(backend);
        using var weights = new T5Weights(g.Ckpt, be);
        var (loss, grad) = PromptTrainer.Gradient(weights, g.Examples, g.Prompt0);
        double goldLoss = JsonDocument.Parse(File.ReadAllText(Path.Combine(g.CaseDir, "loss.json"))).RootElement.GetProperty("loss").GetDouble();
        Assert.True(Math.Abs(loss - goldLoss) <= 1e-3 + 1e-4 * goldLoss, $"loss {loss} vs golden {goldLoss}");
        double err = Check.NormRelativeError(Tensor(Path.Combine(g.CaseDir, "grad.safetensors"), "prompt_gradient"), grad);
        Assert.True(err <= 1e-3, $"prompt gradient relative error {err:E3} > 1e-3");
    }

    [Theory, MemberData(nameof(Cases))]
    public void AdafactorStepsMatch(string model, string caseName, string backend)
    {
        using var g = Load(model, caseName);
        var spec = JsonDocument.Parse(File.ReadAllText(Path.Combine(g.CaseDir, "train.json"))).RootElement;
        int steps = spec.GetProperty("steps").GetInt32(), batch = spec.GetProperty("batch_size").GetInt32();
        var settings = new AdafactorSettings
        {
            LearningRate = (float)spec.GetProperty("lr").GetDouble(),
            DecayRate = (float)spec.GetProperty("decay_rate").GetDouble(),
            ClippingThreshold = (float)spec.GetProperty("clipping_threshold").GetDouble(),
            WeightDecay = (float)spec.GetProperty("weight_decay").GetDouble(),
        };
        int d = g.Ckpt.Config.DModel;
        Assert.Equal(spec.GetProperty("factored").GetBoolean(), settings.Factored(g.Prompt0.Length / d, d));
        var losses = spec.GetProperty("losses").EnumerateArray().Select(e => e.GetDouble()).ToArray();

        using var be = MakeBackend(backend);
        using var weights = new T5Weights(g.Ckpt, be);
        using var trainer = new PromptTrainer(weights, g.Prompt0, settings, dropout: 0, seed: 0);
        for (int s = 0; s < steps; s++)
        {
            var idx = TrainingRun.BatchIndices(s, batch, g.Examples.Count, shuffle: false, seed: 0);
            double loss = trainer.TrainStep(idx.Select(i => g.Examples[i]).ToList(), batch);
            Assert.True(Math.Abs(loss - losses[s]) <= 1e-3 + 1e-4 * losses[s], $"step {s} loss {loss} vs golden {losses[s]}");
        }
        double err = Check.NormRelativeError(Tensor(Path.Combine(g.CaseDir, "prompt_after.safetensors"), "prompt_embeddings"), trainer.Prompt());
        Assert.True(err <= 1e-3, $"prompt after {steps} steps: relative error {err:E3} > 1e-3");
    }
}
