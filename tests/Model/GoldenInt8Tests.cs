using System.Text.Json;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using Xunit;

namespace VkPrompt.Tests.Model;

/// <summary>
/// int8 weights (SPEC.md's "int8 storage of frozen weights"): every case of every model of
/// ../shared/golden that has a cases-int8 folder, computed by the reference with the weights
/// quantised row by row, on the CPU backend (which rounds the weights as it loads them) and on
/// the Vulkan device (which reads the bytes and scales), attention unfused and fused, within
/// docs/numerics.md's fp32 tolerances: both compute with exactly the quantised values, so
/// nothing but fp32 summation separates them from the reference. "vulkan-matrix-units" is the
/// context that puts 16-bit weights on the matrix units; int8 products stay on the portable
/// kernel there (DevicePlan.OnMatrixUnits), so the fp32 tolerances hold as well.
/// </summary>
public sealed class GoldenInt8Tests(GpuFixture f) : GpuTest(f)
{
    static IEnumerable<string> Models() =>
        Directory.GetDirectories(TestPaths.Golden).Order().Where(d => Directory.Exists(Path.Combine(d, GoldenCase.Int8Cases))).Select(Path.GetFileName)!;

    public static TheoryData<string, string, string> Cases() =>
        GoldenCase.Cases(TestPaths.Golden, Models(), ["cpu", "vulkan", "cpu-fused", "vulkan-fused", "vulkan-matrix-units"], GoldenCase.Int8Cases);

    Backend MakeBackend(string name) => GoldenCase.MakeBackend(name, device => device == "vulkan-matrix-units" ? MatrixUnitsCtx : Ctx);

    void Run(string model, string caseName, string backend, Action<GoldenCase, T5Weights> check) =>
        GoldenCase.Run(TestPaths.Golden, model, caseName, MakeBackend(backend), check, WeightPrecision.Int8, GoldenCase.Int8Cases);

    [SkippableTheory, MemberData(nameof(Cases))]
    public void ScoresMatch(string model, string caseName, string backend) => Run(model, caseName, backend, (g, weights) => g.AssertScores(weights));

    [SkippableTheory, MemberData(nameof(Cases))]
    public void GradientAndLossMatch(string model, string caseName, string backend) => Run(model, caseName, backend, (g, weights) => g.AssertGradientAndLoss(weights));

    [SkippableTheory, MemberData(nameof(Cases))]
    public void AdafactorStepsMatch(string model, string caseName, string backend) => Run(model, caseName, backend, (g, weights) => g.AssertAdafactorSteps(weights));

    public static TheoryData<string> ModelNames()
    {
        var data = new TheoryData<string>();
        foreach (var m in Models()) data.Add(m);
        return data;
    }

    /// <summary>A guard on the files and the theories above: the cases say they are int8's, and
    /// fp32 weights miss their scores, so the theories could not pass with the quantisation
    /// left out.</summary>
    [Theory, MemberData(nameof(ModelNames))]
    public void TheCasesNeedTheQuantisedWeights(string model)
    {
        Assert.NotEmpty(Models());
        foreach (var dir in Directory.GetDirectories(Path.Combine(TestPaths.Golden, model, GoldenCase.Int8Cases)).Order())
        {
            string caseName = Path.GetFileName(dir);
            using var g = GoldenCase.Load(TestPaths.Golden, model, caseName, GoldenCase.Int8Cases);
            var train = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "train.json"))).RootElement;
            Assert.Equal("int8", train.GetProperty("weights").GetString());
            using var cpu = new CpuBackend();
            using var weights = new T5Weights(g.Ckpt, cpu, WeightPrecision.Fp32);
            using var scorer = new Scorer(weights);
            var scores = scorer.Score(g.Examples, PromptSet.Stack([g.Prompt0], g.DModel));
            Assert.Throws<Xunit.Sdk.TrueException>(() => GoldenCase.AssertLogLikelihoods(g.Scores, scores, $"{model}/{caseName} fp32 weights against int8 golden"));
        }
    }
}
