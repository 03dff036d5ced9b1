using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Diagnostics;

/// <summary>One matrix product of a training step, timed alone on a context and checked against
/// fp64: a row of <c>vkprompt bench matmul</c>'s report.</summary>
/// <param name="Name">The product's uses in the step, as its trace names them, with how often (e.g. "enc wi_0 x2").</param>
/// <param name="M">Rows of the output.</param>
/// <param name="N">Columns of the output.</param>
/// <param name="K">The summed dimension.</param>
/// <param name="Batch">How many such products one dispatch makes (heads times batch, for attention's).</param>
/// <param name="UsesPerStep">How many times one training step runs this very product.</param>
/// <param name="Kernel">The shader that ran; null where the product was skipped.</param>
/// <param name="Tiling">Its tile shape, as the tiling options spell it; null where skipped.</param>
/// <param name="TimesMs">Each timed dispatch, in milliseconds (GPU timestamps where the device has them).</param>
/// <param name="MaxRelativeError">The largest error over the largest |reference| of the sampled
/// outputs; null where skipped or an output was not finite.</param>
/// <param name="Tolerance">The largest relative error the kernel's precision and the storage of
/// the product's output allow (a 16-bit output adds its rounding).</param>
/// <param name="Skipped">Why the product was not measured (an operand beyond one binding), else null.</param>
public sealed record ProductCheck(string Name, int M, int N, int K, int Batch, int UsesPerStep, string? Kernel, string? Tiling,
                                  IReadOnlyList<double>? TimesMs, double? MaxRelativeError, double Tolerance, string? Skipped)
{
    /// <summary>Measured, and within <see cref="Tolerance"/> of the fp64 reference.</summary>
    public bool Ok => Skipped is null && MaxRelativeError is { } e && e <= Tolerance;
}

/// <summary>
/// The checks <c>vkprompt bench matmul</c> makes, for a host on its own context: every distinct
/// matrix product a training step of a model makes (traced from the step itself, not listed by
/// hand), run alone with the kernel and tiling the context's <see cref="DevicePlan"/> chooses,
/// timed, and compared with an fp64 reference. A host that lends its device can run them before
/// training on it, to see each product's kernel, time and accuracy there.
/// </summary>
public static class StepProductChecks
{
    /// <summary>Measures and checks each distinct product of a training step of
    /// <paramref name="config"/> at this batch shape, weights stored as <paramref name="precision"/>.
    /// Attentions the context would fuse (<paramref name="attention"/>) make no products and are
    /// left out, as in the step.</summary>
    /// <param name="context">Where the products run, with its plan's kernels and tilings.</param>
    /// <param name="config">The model's shape; no weights are needed.</param>
    /// <param name="batchSize">Examples per step.</param>
    /// <param name="inputLength">Padded input tokens per example, without the prompt.</param>
    /// <param name="targetLength">Padded target tokens per example.</param>
    /// <param name="promptLength">Rows of the soft prompt.</param>
    /// <param name="precision">How the frozen weights are stored.</param>
    /// <param name="attention">Which attentions run fused, as a backend on this context would decide.</param>
    /// <param name="reps">Timed dispatches per product.</param>
    /// <param name="warmupMs">Untimed runs per product first, for at least this long.</param>
    /// <param name="activations">How the step stores its block activations, which its products
    /// read and write as stored; null: the context's choice (<see cref="DevicePlan.Activations"/>),
    /// what a model opened there uses by default.</param>
    /// <returns>One check per distinct product, in the order the step first makes them.</returns>
    /// <exception cref="GpuException">The device cannot read weights stored as <paramref name="precision"/>,
    /// or keep activations as <paramref name="activations"/>.</exception>
    public static IReadOnlyList<ProductCheck> Run(GpuContext context, T5Config config, int batchSize, int inputLength, int targetLength, int promptLength,
                                                  WeightPrecision precision = WeightPrecision.Fp32, AttentionFusion attention = AttentionFusion.Auto,
                                                  int reps = 5, int warmupMs = 100, ActivationPrecision? activations = null)
    {
        precision.Require(context.Capabilities);
        var stored = activations ?? context.Plan.Activations;
        stored.Require(context.Capabilities);
        using var backend = new GpuBackend(context) { AttentionFusion = attention };
        var products = Of(config, new BatchShape(batchSize, inputLength, targetLength, promptLength), precision, stored, backend.FusesAttention);
        var bench = ProductBench.Run(context, products.Select(p => new BenchProduct(p.Name, p.Spec, p.Weight ?? WeightPrecision.Fp32)).ToList(), reps, warmupMs);
        return products.Zip(bench.Products, (p, m) => new ProductCheck(p.Name, p.Spec.M, p.Spec.N, p.Spec.K, p.Spec.Batch1 * p.Spec.Batch2, p.Count, m.Kernel, m.Tiling,
                                                                           m.TimesMs, m.MaxRelativeError, m.Tolerance, m.Skipped)).ToList();
    }

    /// <summary>The distinct products of a training step at <paramref name="shape"/> with its
    /// block activations stored as <paramref name="activations"/>, traced (<see cref="T5Pass.Trace"/>:
    /// each spec has the storages of the tensors it reads and writes) with the attentions
    /// <paramref name="fusesAttention"/> fuses left out: what both this class and
    /// <c>vkprompt bench matmul</c> measure.</summary>
    internal static IReadOnlyList<StepProduct> Of(T5Config config, BatchShape shape, WeightPrecision precision, ActivationPrecision activations,
                                                  Func<AttentionShape, bool> fusesAttention) =>
        StepProduct.Distinct(T5Pass.Trace(config, shape, ActivationMode.Store, (float)config.DropoutRate, precision, fusesAttention, activations: activations));
}
