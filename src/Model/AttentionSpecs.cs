using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Model;

/// <summary>
/// Batched attention products over activations laid out [batch, positions, heads·d_kv]. Head h
/// is the column block h·d_kv of a row, so heads are walked through strides rather than
/// transposed into [B, H, L, d_kv]. Probability tensors are [B, H, Lq, Lk] contiguous.
/// The batch strides are explicit because a KV cache holds more positions than are attended.
/// </summary>
internal readonly record struct AttentionSpecs(int Batch, int Heads, int DKv)
{
    int Inner => Heads * DKv;

    /// <summary>scores = q·kᵀ (also dP = dctx·vᵀ). qRows/kRows: positions per batch in each buffer.</summary>
    public MatMulSpec QK(int lq, int lk, int qRows, int kRows) => new()
    {
        M = lq, N = lk, K = DKv, Batch1 = Batch, Batch2 = Heads,
        AStrideBatch1 = qRows * Inner, AStrideBatch2 = DKv, AStrideM = Inner, AStrideK = 1,
        BStrideBatch1 = kRows * Inner, BStrideBatch2 = DKv, BStrideK = 1, BStrideN = Inner,
        CStrideBatch1 = Heads * lq * lk, CStrideBatch2 = lq * lk, CStrideM = lk, Alpha = 1,
    };

    /// <summary>ctx = P·v (also dq = dS·k).</summary>
    public MatMulSpec PV(int lq, int lk, int outRows, int vRows) => new()
    {
        M = lq, N = DKv, K = lk, Batch1 = Batch, Batch2 = Heads,
        AStrideBatch1 = Heads * lq * lk, AStrideBatch2 = lq * lk, AStrideM = lk, AStrideK = 1,
        BStrideBatch1 = vRows * Inner, BStrideBatch2 = DKv, BStrideK = Inner, BStrideN = 1,
        CStrideBatch1 = outRows * Inner, CStrideBatch2 = DKv, CStrideM = Inner, Alpha = 1,
    };

    /// <summary>dk = dSᵀ·q and dv = Pᵀ·dctx: the probability matrix read transposed.</summary>
    public MatMulSpec TransposedPV(int lq, int lk) => new()
    {
        M = lk, N = DKv, K = lq, Batch1 = Batch, Batch2 = Heads,
        AStrideBatch1 = Heads * lq * lk, AStrideBatch2 = lq * lk, AStrideM = 1, AStrideK = lk,
        BStrideBatch1 = lq * Inner, BStrideBatch2 = DKv, BStrideK = Inner, BStrideN = 1,
        CStrideBatch1 = lk * Inner, CStrideBatch2 = DKv, CStrideM = Inner, Alpha = 1,
    };
}
