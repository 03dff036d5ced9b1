using VkPrompt.Diagnostics;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using Xunit;

namespace VkPrompt.Tests.Model;

/// <summary>The public checks a host runs on its own context are bench matmul's: every distinct
/// product of the traced step, each within its kernel's tolerance of fp64.</summary>
public sealed class StepProductChecksTests(GpuFixture f) : GpuTest(f)
{
    // null: the device plan's activations, the default, as a host that asks nothing gets them.
    [Theory, InlineData(false, null), InlineData(true, null), InlineData(true, ActivationPrecision.Bf16)]
    public void EveryProductOfTheStepIsCheckedAgainstFp64(bool gated, ActivationPrecision? activations)
    {
        var config = ModelTestFiles.Tiny(gated);
        var checks = StepProductChecks.Run(Ctx, config, batchSize: 2, inputLength: 7, targetLength: 5, promptLength: 3, attention: AttentionFusion.Unfused,
                                           reps: 1, warmupMs: 0, activations: activations);

        var trace = T5Pass.Trace(config, new BatchShape(2, 7, 5, 3), ActivationMode.Store, (float)config.DropoutRate, WeightPrecision.Fp32, _ => false,
                                 activations: activations ?? Ctx.Plan.Activations);
        var distinct = StepProduct.Distinct(trace);
        Assert.Equal(distinct.Select(p => (p.Name, p.Spec.M, p.Spec.N, p.Spec.K, p.Count)), checks.Select(c => (c.Name, c.M, c.N, c.K, c.UsesPerStep)));
        Assert.Equal(trace.Count, checks.Sum(c => c.UsesPerStep));
        Assert.All(checks, c =>
        {
            Assert.Null(c.Skipped);
            Assert.NotNull(c.Kernel);
            Assert.Single(c.TimesMs!);
            Assert.True(c.Ok, $"{c.Name}: error {c.MaxRelativeError} against the tolerance {c.Tolerance}");
        });
    }
}
