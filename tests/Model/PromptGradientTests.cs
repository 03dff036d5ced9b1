using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests.Model;

/// <summary>The prompt gradient through the whole model against central finite differences of
/// the loss, on small random checkpoints of both FF variants, and Vulkan against the CPU.</summary>
public sealed class PromptGradientTests(GpuFixture f) : GpuTest(f), IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("vkprompt-fd").FullName;

    public override void Dispose()
    {
        Directory.Delete(dir, true);
        base.Dispose();
    }

    static T5Config Tiny(bool gated) => T5Config.Named("t5-small") with
    {
        VocabSize = 64, DModel = 24, DKv = 5, NumHeads = 3, DFf = 40, NumLayers = 2, NumDecoderLayers = 3,
        FeedForwardProj = gated ? T5FeedForward.GatedGelu : T5FeedForward.Relu, TieWordEmbeddings = !gated, DropoutRate = 0,
    };

    static List<EncodedExample> Examples() =>
    [
        new([5, 9, 13, 1], [7, 8, 1]),
        new([20, 1], [30, 31, 32, 33, 1]),
        new([40, 41, 42, 43, 44, 45, 1], [50, 1]),
    ];

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void GradientMatchesFiniteDifferences(bool gated, bool fused)
    {
        RandomT5.Write(dir, Tiny(gated), seed: 3);
        using var ckpt = T5Checkpoint.Open(dir);
        using var be = new CpuBackend { AttentionFusion = fused ? AttentionFusion.Fused : AttentionFusion.Unfused };
        using var weights = new T5Weights(ckpt, be);
        const int promptLength = 4;
        var prompt = Check.Random(promptLength * ckpt.Config.DModel, 11, 0.5f);
        var examples = Examples();
        var (_, grad) = PromptTrainer.Gradient(weights, examples, prompt);

        var rng = new Random(5);
        for (int trial = 0; trial < 3; trial++)
        {
            var u = Check.Random(prompt.Length, 100 + trial);
            double norm = Math.Sqrt(u.Sum(x => (double)x * x));
            // Small enough that few ReLU pre-activations cross zero (a kink breaks the difference), large
            // enough that fp32 rounding of the loss (~1e-6) stays ~1e-3 of the difference.
            const float h = 1e-3f;
            var plus = prompt.Zip(u, (p, v) => p + h * (float)(v / norm)).ToArray();
            var minus = prompt.Zip(u, (p, v) => p - h * (float)(v / norm)).ToArray();
            double fd = (PromptTrainer.Gradient(weights, examples, plus).Loss - PromptTrainer.Gradient(weights, examples, minus).Loss) / (2 * h);
            double analytic = grad.Zip(u, (g, v) => (double)g * v / norm).Sum();
            // fp32 losses of magnitude ~4 are good to ~1e-6; over 2h = 0.002 that is ~1e-3 absolute.
            Assert.True(Math.Abs(fd - analytic) <= 2e-3 + 2e-2 * Math.Abs(analytic), $"direction {trial}: finite difference {fd} vs gradient {analytic}");
        }
    }

    /// <summary>The Vulkan device, fused or not, against the unfused CPU reference.</summary>
    [Theory]
    [InlineData(false, ActivationMode.Store, false)]
    [InlineData(true, ActivationMode.Recompute, false)]
    [InlineData(false, ActivationMode.Recompute, true)]
    [InlineData(true, ActivationMode.Store, true)]
    public void VulkanMatchesCpu(bool gated, ActivationMode mode, bool fused)
    {
        RandomT5.Write(dir, Tiny(gated), seed: 4);
        using var ckpt = T5Checkpoint.Open(dir);
        var prompt = Check.Random(6 * ckpt.Config.DModel, 12, 0.5f);
        var examples = Examples();
        using var cpu = new CpuBackend { AttentionFusion = AttentionFusion.Unfused };
        using var cpuWeights = new T5Weights(ckpt, cpu);
        var (cpuLoss, cpuGrad) = PromptTrainer.Gradient(cpuWeights, examples, prompt);
        // fp32 activations (here and below), as the CPU keeps them: a GPU's plan would choose bf16, beyond 1e-4.
        using var gpu = new GpuBackend(Ctx) { AttentionFusion = fused ? AttentionFusion.Fused : AttentionFusion.Unfused, Activations = ActivationPrecision.Fp32 };
        using var gpuWeights = new T5Weights(ckpt, gpu);
        var (gpuLoss, gpuGrad) = PromptTrainer.Gradient(gpuWeights, examples, prompt, mode);
        Assert.Equal(cpuLoss, gpuLoss, 4);
        Assert.True(Check.NormRelativeError(cpuGrad, gpuGrad) <= 1e-4, "Vulkan prompt gradient differs from the CPU reference");
    }

    /// <summary>A training pass with dropout, fused and unfused, on the same device: the fused
    /// kernels must drop exactly the probabilities DropoutKernel drops (a different mask would
    /// move the loss and the gradient by far more than rounding), in either activation mode.</summary>
    [Theory]
    [InlineData(false, ActivationMode.Store)]
    [InlineData(true, ActivationMode.Recompute)]
    public void FusedAttentionDropsWhatUnfusedDrops(bool gated, ActivationMode mode)
    {
        RandomT5.Write(dir, Tiny(gated), seed: 5);
        using var ckpt = T5Checkpoint.Open(dir);
        var prompt = Check.Random(6 * ckpt.Config.DModel, 13, 0.5f);
        using var gpu = new GpuBackend(Ctx) { Activations = ActivationPrecision.Fp32 };
        using var weights = new T5Weights(ckpt, gpu);
        gpu.AttentionFusion = AttentionFusion.Unfused;
        var (unfusedLogProbs, unfusedGrad) = TrainingPass(weights, prompt, mode, fused: false);
        gpu.AttentionFusion = AttentionFusion.Fused;
        var (fusedLogProbs, fusedGrad) = TrainingPass(weights, prompt, mode, fused: true);
        Check.Close(unfusedLogProbs, fusedLogProbs, 1e-4, "log-probabilities with dropout, fused vs unfused");
        Assert.True(Check.NormRelativeError(unfusedGrad, fusedGrad) <= 1e-4, "prompt gradient with dropout, fused vs unfused");
    }

    /// <summary>A training pass with dropout on the Vulkan device against the CPU reference,
    /// both unfused: their softmax kernels drop the probabilities with the same masks.</summary>
    [Theory]
    [InlineData(false, ActivationMode.Store)]
    [InlineData(true, ActivationMode.Recompute)]
    public void VulkanDropsWhatCpuDrops(bool gated, ActivationMode mode)
    {
        RandomT5.Write(dir, Tiny(gated), seed: 6);
        using var ckpt = T5Checkpoint.Open(dir);
        var prompt = Check.Random(6 * ckpt.Config.DModel, 14, 0.5f);
        using var cpu = new CpuBackend { AttentionFusion = AttentionFusion.Unfused };
        using var cpuWeights = new T5Weights(ckpt, cpu);
        var (cpuLogProbs, cpuGrad) = TrainingPass(cpuWeights, prompt, mode, fused: false);
        using var gpu = new GpuBackend(Ctx) { AttentionFusion = AttentionFusion.Unfused, Activations = ActivationPrecision.Fp32 };
        using var gpuWeights = new T5Weights(ckpt, gpu);
        var (gpuLogProbs, gpuGrad) = TrainingPass(gpuWeights, prompt, mode, fused: false);
        // As VulkanMatchesCpu and FusedAttentionDropsWhatUnfusedDrops: rounding only.
        Check.Close(cpuLogProbs, gpuLogProbs, 1e-4, "log-probabilities with dropout, Vulkan vs CPU");
        Assert.True(Check.NormRelativeError(cpuGrad, gpuGrad) <= 1e-4, "prompt gradient with dropout, Vulkan vs CPU");
    }

    static (float[] LogProbs, float[] Gradient) TrainingPass(T5Weights weights, float[] promptData, ActivationMode mode, bool fused)
    {
        var be = weights.Backend;
        using var prompt = be.Floats(promptData.Length, "prompt");
        be.Upload(prompt, promptData);
        var host = HostBatch.Build(Examples(), promptData.Length / weights.Config.DModel, decoderStart: weights.Config.DecoderStartTokenId);
        using var pass = new T5Pass(weights, host.Shape, mode, prompt, dropoutRate: 0.1f);
        Assert.Equal((fused, fused, fused), pass.FusedAttention);
        using var run = be.Record(() => { pass.EmitForward(); pass.EmitBackward(); });
        pass.Load(host);
        be.Upload(pass.DropoutSeed!, [1234]);
        run.Run();
        var grad = new float[promptData.Length];
        be.Download(pass.PromptGradient!, grad);
        return (pass.ReadLogProbs(), grad);
    }
}
