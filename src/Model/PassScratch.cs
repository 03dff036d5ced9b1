using VkPrompt.Model.Backends;
using VkPrompt.Runtime;

namespace VkPrompt.Model;

/// <summary>
/// The tensors that several <see cref="T5Pass"/>es of one shape, mode and layers on one backend
/// share, by name: one set of what a pass uses only within one of its recordings (attention
/// scores, feed-forward activations, gradient buffers), made by the first pass and taken by the
/// others. A stage of a model split across devices keeps a pass per micro-batch; their recordings
/// run one after another on the stage's queue, each beginning with a full barrier, so a pass
/// never finds another's scratch still in use, and the stage holds one micro-batch's scratch
/// beside what each micro-batch keeps from its forward for its backward.
/// </summary>
/// <param name="backend">where the tensors are made (the passes' weights' backend).</param>
/// <param name="holdsKept">whether the passes also share what a forward keeps for its backward
/// (stored activations, the residual streams, the logits): right only where no other pass runs
/// between a pass's forward and its backward, or where the passes run no backward.</param>
internal sealed class PassScratch(Backend backend, bool holdsKept) : IDisposable
{
    readonly Dictionary<string, Tensor> tensors = new();

    /// <summary>Where the tensors are made.</summary>
    public Backend Backend => backend;
    /// <summary>Whether the passes share what a forward keeps for its backward too.</summary>
    public bool HoldsKept => holdsKept;

    /// <summary>The tensor named <paramref name="name"/>, made on first asking.</summary>
    public Tensor Floats(long n, string name, ActivationPrecision storage = ActivationPrecision.Fp32)
    {
        if (tensors.TryGetValue(name, out var t))
            return t.Length == n && t.Storage == storage ? t
                : throw new ArgumentException($"scratch tensor {name} has {t.Length} {t.Storage.Name()} elements, a pass asked for {n} {storage.Name()}");
        return tensors[name] = backend.Floats(n, name, storage: storage);
    }

    public void Dispose()
    {
        foreach (var t in tensors.Values) t.Dispose();
        tensors.Clear();
    }
}
