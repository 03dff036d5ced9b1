namespace VkPrompt.Runtime.Kernels;

/// <summary>
/// A strided, doubly batched matrix product over flat float buffers:
/// <c>C[z1,z2][m,n] = Alpha * Σ_k A[z1,z2][m,k] · B[z1,z2][k,n] + (Accumulate ? C[z1,z2][m,n] : 0)</c>
/// for z1 &lt; Batch1, z2 &lt; Batch2. Offsets and strides count elements, not bytes. Element
/// (z1, z2, m, k) of A is at <c>AOffset + z1·AStrideBatch1 + z2·AStrideBatch2 + m·AStrideM + k·AStrideK</c>,
/// and likewise for B (k, n) and C (m, n; C's n-stride is 1). A transposed operand is the same
/// memory with its two strides swapped, so one description covers A·B, A·Bᵀ, Aᵀ·B and the
/// per-head products of attention without copies.
/// </summary>
/// <example>
/// Attention scores from Q and K held as [B, L, H·dkv] activations,
/// <c>scores[b,h,i,j] = Σ_d Q[b,i,h,d] · K[b,j,h,d]</c>, written as a contiguous [B, H, Lq, Lk]:
/// <code>
/// new MatMulSpec
/// {
///     M = Lq, N = Lk, K = dkv, Batch1 = B, Batch2 = H,
///     // A = Q: batch b at b·Lq·H·dkv, head h at h·dkv, row i at i·H·dkv, d contiguous.
///     AStrideBatch1 = Lq * H * dkv, AStrideBatch2 = dkv, AStrideM = H * dkv, AStrideK = 1,
///     // B = Kᵀ: the same layout as Q read with k (= d) and n (= j) swapped.
///     BStrideBatch1 = Lk * H * dkv, BStrideBatch2 = dkv, BStrideK = 1, BStrideN = H * dkv,
///     CStrideBatch1 = H * Lq * Lk, CStrideBatch2 = Lq * Lk, CStrideM = Lk,
/// }
/// </code>
/// which is what <see cref="AttentionQKt"/> returns. The batch offset of head h is folded into
/// AStrideBatch2 = dkv rather than an offset, so a single dispatch covers every (b, h).
/// </example>
internal readonly record struct MatMulSpec
{
    public MatMulSpec() { }

    public int M { get; init; }
    public int N { get; init; }
    public int K { get; init; }
    public int Batch1 { get; init; } = 1;
    public int Batch2 { get; init; } = 1;

    public int AOffset { get; init; }
    public int AStrideBatch1 { get; init; }
    public int AStrideBatch2 { get; init; }
    public int AStrideM { get; init; }
    public int AStrideK { get; init; }

    public int BOffset { get; init; }
    public int BStrideBatch1 { get; init; }
    public int BStrideBatch2 { get; init; }
    public int BStrideK { get; init; }
    public int BStrideN { get; init; }

    public int COffset { get; init; }
    public int CStrideBatch1 { get; init; }
    public int CStrideBatch2 { get; init; }
    public int CStrideM { get; init; }

    public float Alpha { get; init; } = 1f;

    /// <summary>Adds the product to C instead of overwriting it (gradient accumulation, residuals).</summary>
    public bool Accumulate { get; init; }

    /// <summary>What the product does with each sum as it stores it (<see cref="MatMulEpilogue"/>);
    /// the backends set it from the epilogue's operands they are given, as they set the storages.
    /// An epilogue replaces <see cref="Accumulate"/>: the two exclude each other.</summary>
    public MatMulEpilogue Epilogue { get; init; }

    /// <summary>Whether the epilogue drops (its operands' <see cref="DropoutMask{TBuffer}"/> has a
    /// rate above 0). What the product computes is the operands' business; this says what kind of
    /// product it is: on the matrix units every tile of a dropping product takes the staged store,
    /// so the tuner keys it apart (<see cref="MatMulShapeKey"/>) and the benchmarks time it with a
    /// mask (<see cref="MatMulKernel.OntoC"/>). The backends set it from the operands, as they set
    /// <see cref="Epilogue"/>, and <see cref="MatMulKernel"/>'s entry point likewise.</summary>
    public bool EpilogueDropout { get; init; }

    /// <summary>How A stores its elements where it is an activation kept in 16 bits
    /// (<see cref="GpuBuffer.Storage"/>); the backends set the three storages from the tensors a
    /// product reads and writes, so a product's kernel, tuning and trace know them.</summary>
    public ActivationPrecision AStorage { get; init; }
    /// <summary>How an activation B stores its elements (attention's k and v, say). A frozen
    /// weight B keeps fp32 here: its form is the product's <see cref="WeightPrecision"/>.</summary>
    public ActivationPrecision BStorage { get; init; }
    /// <summary>How C stores its elements; the sums stay fp32 and are narrowed as they are stored.</summary>
    public ActivationPrecision CStorage { get; init; }

    /// <summary>
    /// One row-major product C[m,n] = op(A)·op(B). A is stored [m,k], or [k,m] when
    /// <paramref name="transposeA"/>; B is stored [k,n], or [n,k] when <paramref name="transposeB"/>
    /// (a Hugging Face Linear weight [out, in]: <c>Rows(tokens, out, in, transposeB: true)</c>).
    /// </summary>
    public static MatMulSpec Rows(int m, int n, int k, bool transposeA = false, bool transposeB = false) => new()
    {
        M = m, N = n, K = k,
        AStrideM = transposeA ? 1 : k, AStrideK = transposeA ? m : 1,
        BStrideK = transposeB ? 1 : n, BStrideN = transposeB ? k : 1,
        CStrideM = n,
    };

    /// <summary>
    /// Per (batch, head): X[b,i,h,:] · Y[b,j,h,:]ᵀ into a contiguous [B, H, Lq, Lk], where X is a
    /// [B, Lq, H·dkv] and Y a [B, Lk, H·dkv] activation. Scores Q·Kᵀ, and dP = dO·Vᵀ in the backward.
    /// </summary>
    public static MatMulSpec AttentionQKt(int batch, int heads, int lq, int lk, int dkv) => new()
    {
        M = lq, N = lk, K = dkv, Batch1 = batch, Batch2 = heads,
        AStrideBatch1 = lq * heads * dkv, AStrideBatch2 = dkv, AStrideM = heads * dkv, AStrideK = 1,
        BStrideBatch1 = lk * heads * dkv, BStrideBatch2 = dkv, BStrideK = 1, BStrideN = heads * dkv,
        CStrideBatch1 = heads * lq * lk, CStrideBatch2 = lq * lk, CStrideM = lk,
    };

    /// <summary>
    /// Per (batch, head): P[b,h] · Y[b,:,h,:] into a [B, Lq, H·dkv] activation, where P is a
    /// contiguous [B, H, Lq, Lk] and Y a [B, Lk, H·dkv] activation. The attention output P·V,
    /// and dQ = dS·K in the backward.
    /// </summary>
    public static MatMulSpec AttentionPV(int batch, int heads, int lq, int lk, int dkv) => new()
    {
        M = lq, N = dkv, K = lk, Batch1 = batch, Batch2 = heads,
        AStrideBatch1 = heads * lq * lk, AStrideBatch2 = lq * lk, AStrideM = lk, AStrideK = 1,
        BStrideBatch1 = lk * heads * dkv, BStrideBatch2 = dkv, BStrideK = heads * dkv, BStrideN = 1,
        CStrideBatch1 = lq * heads * dkv, CStrideBatch2 = dkv, CStrideM = heads * dkv,
    };

    /// <summary>
    /// Per (batch, head): P[b,h]ᵀ · X[b,:,h,:] into a [B, Lk, H·dkv] activation, where P is a
    /// contiguous [B, H, Lq, Lk] and X a [B, Lq, H·dkv] activation. The backward's
    /// dV = Pᵀ·dO and dK = dSᵀ·Q.
    /// </summary>
    public static MatMulSpec AttentionPtV(int batch, int heads, int lq, int lk, int dkv) => new()
    {
        M = lk, N = dkv, K = lq, Batch1 = batch, Batch2 = heads,
        AStrideBatch1 = heads * lq * lk, AStrideBatch2 = lq * lk, AStrideM = 1, AStrideK = lk,
        BStrideBatch1 = lq * heads * dkv, BStrideBatch2 = dkv, BStrideK = heads * dkv, BStrideN = 1,
        CStrideBatch1 = lk * heads * dkv, CStrideBatch2 = dkv, CStrideM = heads * dkv,
    };

    /// <summary>How many elements of A, B and C the product spans: the last one it touches, plus
    /// one (what a buffer needs to hold for it).</summary>
    public (long A, long B, long C) Extents()
    {
        static long Extent(int offset, params (int Size, int Stride)[] dims) => offset + dims.Sum(d => (long)(d.Size - 1) * d.Stride) + 1;
        return (Extent(AOffset, (Batch1, AStrideBatch1), (Batch2, AStrideBatch2), (M, AStrideM), (K, AStrideK)),
                Extent(BOffset, (Batch1, BStrideBatch1), (Batch2, BStrideBatch2), (K, BStrideK), (N, BStrideN)),
                Extent(COffset, (Batch1, CStrideBatch1), (Batch2, CStrideBatch2), (M, CStrideM), (N, 1)));
    }

    /// <summary>
    /// Checks that every element the product touches lies inside buffers of the given lengths
    /// (in elements), that no size, offset or stride is negative, and that no two elements of C
    /// share an address (they would be written concurrently). Throws <see cref="ArgumentException"/>
    /// naming the operand at fault.
    /// </summary>
    public void Validate(long aLen, long bLen, long cLen)
    {
        if (M < 0 || N < 0 || K < 0 || Batch1 < 0 || Batch2 < 0)
            throw new ArgumentException($"matmul sizes must be non-negative: M={M} N={N} K={K} Batch1={Batch1} Batch2={Batch2}");
        if (Accumulate && Epilogue != MatMulEpilogue.None)
            throw new ArgumentException($"a matmul either accumulates onto C or has the {Epilogue} epilogue, not both");
        if (EpilogueDropout && Epilogue == MatMulEpilogue.None)
            throw new ArgumentException("a matmul without an epilogue has no dropout (EpilogueDropout)");
        if (M == 0 || N == 0 || Batch1 == 0 || Batch2 == 0) return;
        if (K > 0)
        {
            CheckOperand("A", aLen, AOffset, (Batch1, AStrideBatch1), (Batch2, AStrideBatch2), (M, AStrideM), (K, AStrideK));
            CheckOperand("B", bLen, BOffset, (Batch1, BStrideBatch1), (Batch2, BStrideBatch2), (K, BStrideK), (N, BStrideN));
        }
        CheckOperand("C", cLen, COffset, (Batch1, CStrideBatch1), (Batch2, CStrideBatch2), (M, CStrideM), (N, 1));
        CheckNoOverlap((Batch1, CStrideBatch1), (Batch2, CStrideBatch2), (M, CStrideM), (N, 1));
    }

    static void CheckOperand(string name, long length, int offset, params (int Size, int Stride)[] dims)
    {
        if (offset < 0 || dims.Any(d => d.Stride < 0))
            throw new ArgumentException($"matmul operand {name}: offset and strides must be non-negative (offset {offset}, strides {string.Join(", ", dims.Select(d => d.Stride))})");
        long last = offset + dims.Sum(d => (long)(d.Size - 1) * d.Stride);
        if (last >= length)
            throw new ArgumentException($"matmul operand {name}: reads element {last} but the buffer holds {length} elements");
    }

    // Sufficient for the layouts in use: sorted by stride, each dimension must step past
    // everything the smaller ones span. A layout that interleaves dimensions without
    // overlapping would be rejected too; none of T5's does.
    static void CheckNoOverlap(params (int Size, int Stride)[] dims)
    {
        long span = 1;
        foreach (var (size, stride) in dims.Where(d => d.Size > 1).OrderBy(d => d.Stride))
        {
            if (stride < span)
                throw new ArgumentException($"matmul operand C: stride {stride} revisits elements an inner dimension already covers ({span}); outputs would overlap");
            span = (long)stride * (size - 1) + span;
        }
    }
}
