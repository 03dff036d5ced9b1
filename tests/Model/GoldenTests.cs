using System.Text.Json;
using VkPrompt.Cli;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Model.Safetensors;
using VkPrompt.Model.Tokenization;
using VkPrompt.Runtime;
using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests.Model;

/// <summary>
/// The numerical contract: every golden case of ../shared/golden, on the CPU reference and on
/// the Vulkan device, with attention unfused and fused, within docs/numerics.md's tolerances. Cases are
/// discovered from the directory, so a new golden case is tested without touching this file.
/// </summary>
public sealed class GoldenTests(GpuFixture f) : GpuTest(f)
{
    public static TheoryData<string, string, string> Cases() =>
        GoldenCase.Cases(TestPaths.Golden, Directory.GetDirectories(TestPaths.Golden).Order().Select(Path.GetFileName)!, ["cpu", "vulkan", "cpu-fused", "vulkan-fused"]);

    static GoldenCase Load(string model, string caseName) => GoldenCase.Load(TestPaths.Golden, model, caseName);

    /// <summary>"-fused" runs every attention through FusedAttention, whatever the sizes;
    /// "vulkan-matrix-units" runs products with 16-bit weights on the cooperative-matrix kernel,
    /// emulated where the device has no matrix units; "vulkan-matrix-units-all" every product,
    /// attention's too (VKPROMPT_MATRIX_UNITS=all), and fused there the attention itself
    /// (fused_attention_coopmat*, where d_kv is a multiple of 16: tiny-v11's 32).</summary>
    Backend MakeBackend(string name) => GoldenCase.MakeBackend(name, device => device switch
    {
        "vulkan-matrix-units" => MatrixUnitsCtx,
        "vulkan-matrix-units-all" => MatrixUnitsAllProductsCtx,
        _ => Ctx,
    });

    [Theory, MemberData(nameof(Cases))]
    public void ScoresMatch(string model, string caseName, string backend) =>
        GoldenCase.Run(TestPaths.Golden, model, caseName, MakeBackend(backend), (g, weights) => g.AssertScores(weights));

    [Theory, MemberData(nameof(Cases))]
    public void GradientAndLossMatch(string model, string caseName, string backend) =>
        GoldenCase.Run(TestPaths.Golden, model, caseName, MakeBackend(backend), (g, weights) => g.AssertGradientAndLoss(weights));

    [Theory, MemberData(nameof(Cases))]
    public void AdafactorStepsMatch(string model, string caseName, string backend) =>
        GoldenCase.Run(TestPaths.Golden, model, caseName, MakeBackend(backend), (g, weights) => g.AssertAdafactorSteps(weights));

    static readonly WeightPrecision[] HalfPrecisions = [WeightPrecision.Fp16, WeightPrecision.Bf16];

    /// <summary>Every golden case with fp16 and bf16 weights on every backend, but for bf16 on the
    /// matrix units' backends, which only the first case has (today tiny-v10-bf16 p5, whose weights
    /// are bf16 already). The suite's units multiply fp16 fragments (GpuFixture), for which bf16
    /// weights are stored as fp16 on upload (<see cref="DevicePlan.StoredPrecision"/>, checked bit
    /// for bit by MatMulTests.Bf16WeightsStoredAsFp16GiveTheSameProducts), so a bf16 row there runs
    /// the fp16 row's kernels on other values; and on lavapipe the emulated units are the slowest
    /// backend by far (p128: about 5 s a row warm on a 2-core machine, under 1 s on the portable
    /// kernels). (bf16 fragments: ActivationPrecisionTests.Bf16FragmentsStayNearGolden.)</summary>
    public static TheoryData<string, string, string, WeightPrecision> HalfCases()
    {
        var data = new TheoryData<string, string, string, WeightPrecision>();
        var cases = Cases().ToList();
        bool IsFirstCase(object[] row) => (string)row[0] == (string)cases[0][0] && (string)row[1] == (string)cases[0][1];
        foreach (var row in cases)
            foreach (var backend in (string)row[2] == "vulkan" ? ["vulkan", "vulkan-matrix-units", "vulkan-matrix-units-all", "vulkan-matrix-units-all-fused"] : new[] { (string)row[2] })
                foreach (var p in HalfPrecisions)
                    if (p == WeightPrecision.Fp16 || !backend.StartsWith("vulkan-matrix-units", StringComparison.Ordinal) || IsFirstCase(row))
                        data.Add((string)row[0], (string)row[1], backend, p);
        return data;
    }

    /// <summary>The largest relative error of storing a weight in p significant bits, 2^-p.</summary>
    static double UnitRoundoff(WeightPrecision p) => p == WeightPrecision.Fp16 ? Math.Pow(2, -11) : Math.Pow(2, -8);

    /// <summary>
    /// Weights stored as fp16 or bf16 against the fp32 golden values. Each stored weight is off
    /// by at most u = 2^-11 (fp16) or 2^-8 (bf16) of itself; the errors are independent and
    /// mostly cancel within each dot product. Measured on tiny-v11, whose weights are fp32
    /// (tiny-v10-bf16's are bf16 already and come through unchanged, to ~1e-7): log-likelihoods
    /// move by at most 0.09u (fp16, 4.3e-5 relative) and 0.16u (bf16, 6.4e-4) of their value,
    /// the loss by 0.04u, and the prompt gradient by 2.6u (fp16, 1.25e-3) and 2.3u (bf16, 9.0e-3)
    /// of its norm, the same on both backends. The errors scale with u, so the tolerances do:
    /// u/2 relative (on top of docs/numerics.md's 1e-3 absolute) for log-likelihoods and the loss, 8u for
    /// the gradient, a margin of three or more everywhere. On the matrix units, which round the
    /// activations to fp16 as well, the gradient moved by up to 4.7u (fp16 weights: two roundings
    /// of the same size) and 2.3u (bf16), the loss by 0.04u: within the same bounds. With every
    /// product there (VKPROMPT_MATRIX_UNITS=all), attention's scores, probabilities and their gradients
    /// are rounded to fp16 too, an error that does not shrink with the weights' u: the gradient
    /// moved by up to 7.5e-3 (15.5 fp16 u; tiny-v10-bf16 p5, whose weights alone move it by
    /// 2.3e-3), the loss by 0.07u; its gradient bound adds 32 fp16 u, twice that.
    /// </summary>
    [SkippableTheory, MemberData(nameof(HalfCases))]
    public void HalfWeightsStayNearGolden(string model, string caseName, string backend, WeightPrecision precision)
    {
        using var g = Load(model, caseName);
        using var be = MakeBackend(backend);
        using var weights = new T5Weights(g.Ckpt, be, precision);
        double u = UnitRoundoff(precision);
        int d = g.Ckpt.Config.DModel;
        using (var scorer = new Scorer(weights))
        {
            GoldenCase.AssertLogLikelihoods(g.Scores, scorer.Score(g.Examples, PromptSet.Stack([g.Prompt0], d)), $"{precision} with prompt", u / 2);
            GoldenCase.AssertLogLikelihoods(g.ScoresWithoutPrompt, scorer.Score(g.Examples, null), $"{precision} without prompt", u / 2);
        }
        var (loss, grad) = PromptTrainer.Gradient(weights, g.Examples, g.Prompt0);
        double goldLoss = g.Loss;
        Assert.True(Math.Abs(loss - goldLoss) <= 1e-3 + u / 2 * goldLoss, $"{precision} loss {loss} vs golden {goldLoss}");
        double err = Check.NormRelativeError(g.Gradient, grad);
        double bound = 8 * u + (backend.StartsWith("vulkan-matrix-units-all", StringComparison.Ordinal) ? 32 * UnitRoundoff(WeightPrecision.Fp16) : 0);
        Assert.True(err <= bound, $"{precision} prompt gradient relative error {err:E3} > {bound:E3}");
    }

    public static TheoryData<string, string, WeightPrecision> HalfModelCases()
    {
        var data = new TheoryData<string, string, WeightPrecision>();
        foreach (var row in Cases().Where(r => (string)r[2] == "vulkan"))
            foreach (var p in HalfPrecisions)
                data.Add((string)row[0], (string)row[1], p);
        return data;
    }

    /// <summary>Like with like: the device reading 16-bit weights against the CPU backend
    /// computing with the same weights rounded on load. Both multiply the same numbers in fp32,
    /// so docs/numerics.md's fp32 tolerances hold between them. On a device whose matrix units take the
    /// products (GpuContext.UsesMatrixUnits), activations are rounded to fp16 as well, an error
    /// the CPU does not make: there the tolerances of fp16 weights against golden apply.</summary>
    [Theory, MemberData(nameof(HalfModelCases))]
    public void VulkanHalfWeightsMatchTheCpuRounding(string model, string caseName, WeightPrecision precision)
    {
        using var g = Load(model, caseName);
        int d = g.Ckpt.Config.DModel;
        (double[] Scores, double Loss, float[] Grad) Run(Backend be)
        {
            using var weights = new T5Weights(g.Ckpt, be, precision);
            using var scorer = new Scorer(weights);
            var scores = scorer.Score(g.Examples, PromptSet.Stack([g.Prompt0], d)).Select(r => r.LogProb).ToArray();
            var (loss, grad) = PromptTrainer.Gradient(weights, g.Examples, g.Prompt0);
            return (scores, loss, grad);
        }
        // Both as VKPROMPT_ATTENTION asks, so the variable tests either path here.
        using var cpuBackend = new CpuBackend { AttentionFusion = EnvironmentSettings.Attention() };
        // fp32 activations, as the CPU keeps them: a GPU's plan would choose bf16, beyond these bounds.
        using var gpuBackend = new GpuBackend(Ctx) { AttentionFusion = EnvironmentSettings.Attention(), Activations = ActivationPrecision.Fp32 };
        var cpu = Run(cpuBackend);
        var gpu = Run(gpuBackend);
        double u = Ctx.UsesMatrixUnits ? UnitRoundoff(WeightPrecision.Fp16) : 0;
        double relative = Math.Max(1e-4, u / 2), gradTolerance = Math.Max(1e-3, 8 * u);
        for (int i = 0; i < cpu.Scores.Length; i++)
            Assert.True(Math.Abs(gpu.Scores[i] - cpu.Scores[i]) <= 1e-3 + relative * Math.Abs(cpu.Scores[i]),
                $"{precision} example {i}: {gpu.Scores[i]} on the device vs {cpu.Scores[i]} on the CPU");
        Assert.True(Math.Abs(gpu.Loss - cpu.Loss) <= 1e-3 + relative * cpu.Loss, $"{precision} loss {gpu.Loss} vs {cpu.Loss}");
        double err = Check.NormRelativeError(cpu.Grad, gpu.Grad);
        Assert.True(err <= gradTolerance, $"{precision} prompt gradient: device vs CPU relative error {err:E3} > {gradTolerance:E1}");
    }
}
