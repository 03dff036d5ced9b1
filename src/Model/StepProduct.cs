using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Model;

/// <summary>One distinct matrix product of a traced program (<see cref="T5Pass.Trace"/>): its
/// <see cref="MatMulSpec"/>, the precision its B is stored in where B is a frozen weight (null
/// where it is an fp32 activation), and every use of it with how often each occurs.</summary>
internal sealed record StepProduct(MatMulSpec Spec, WeightPrecision? Weight, IReadOnlyList<StepProductUse> Uses)
{
    /// <summary>Whether B is a frozen weight rather than an activation.</summary>
    public bool WeightB => Weight is not null;

    /// <summary>How many times the program runs this product.</summary>
    public int Count => Uses.Sum(u => u.Count);

    /// <summary>"enc q x6, enc k x6, xattn k x6": what the product is, for a table.</summary>
    public string Name => string.Join(", ", Uses.Select(u => $"{u.Name} x{u.Count}"));

    /// <summary>2·M·N·K·Batch1·Batch2 of one run.</summary>
    public long Flops => 2L * Spec.M * Spec.N * Spec.K * Spec.Batch1 * Spec.Batch2;

    /// <summary>The trace with identical products (same spec, same B) merged, in the order of
    /// each one's first use, and its uses merged by name, in the order of their first.</summary>
    public static IReadOnlyList<StepProduct> Distinct(IEnumerable<TracedProduct> trace) =>
        trace.GroupBy(p => (p.Spec, p.Weight))
             .Select(g => new StepProduct(g.Key.Spec, g.Key.Weight, g.GroupBy(p => p.Name).Select(u => new StepProductUse(u.Key, u.Count())).ToList()))
             .ToList();
}

/// <summary>One place in the program where a product is made, and how many times.</summary>
internal sealed record StepProductUse(string Name, int Count);
