using System.Buffers;
using System.Numerics.Tensors;
using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Runtime.Reference;

/// <summary>CPU reference of <see cref="MatMulKernel"/>, and the CPU backend's matrix product.</summary>
internal static class MatMulReference
{
    /// <summary>Every C[m,n] is one SIMD dot product (float, like the device) of row m of A with
    /// column n of B. Operands whose k-stride is not 1 are first copied k-contiguous per batch,
    /// which turns A·B, Aᵀ·B and P·V from strided, cache-hostile walks into the same dot
    /// products as A·Bᵀ.</summary>
    public static void Run(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, in MatMulSpec s) => Run(a, b, c, s, default);

    /// <summary>The product with <see cref="MatMulEpilogue.Residual"/>: C = D + dropout(Alpha·A·B),
    /// <paramref name="addend"/> (D) read at C's addresses, each scaled sum rounded, dropped with
    /// the mask <see cref="DropoutReference"/> draws for C's element index under
    /// <paramref name="seed"/> and <paramref name="stream"/> (rate 0: none), then added to D: what
    /// this product into a branch of its own, DropoutReference over the branch and
    /// <see cref="AddReference"/> give, bit for bit. A spec without the epilogue ignores the
    /// addend (none needed).</summary>
    public static void Run(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, in MatMulSpec s, ReadOnlySpan<float> addend,
                           float dropoutRate = 0f, uint seed = 0, uint stream = 0)
    {
        s.Validate(a.Length, b.Length, c.Length);
        bool residual = s.Epilogue == MatMulEpilogue.Residual;
        if (residual && addend.Length < s.Extents().C)
            throw new ArgumentException($"the epilogue's addend holds {addend.Length} elements, but C's range spans {s.Extents().C}", nameof(addend));
        uint threshold = DropoutKernel.KeepThreshold(dropoutRate);
        float scale = DropoutKernel.KeepScale(dropoutRate);
        if (s.M == 0 || s.N == 0 || s.Batch1 == 0 || s.Batch2 == 0) return;
        int k = s.K;
        // K = 0 goes through the (empty) packed path too: A and B are not validated then, so
        // their offsets may lie anywhere.
        var packA = s.AStrideK == 1 && k > 0 ? null : ArrayPool<float>.Shared.Rent(s.M * k);
        var packB = s.BStrideK == 1 && k > 0 ? null : ArrayPool<float>.Shared.Rent(s.N * k);
        try
        {
            for (int z1 = 0; z1 < s.Batch1; z1++)
            for (int z2 = 0; z2 < s.Batch2; z2++)
            {
                int aBase = s.AOffset + z1 * s.AStrideBatch1 + z2 * s.AStrideBatch2;
                int bBase = s.BOffset + z1 * s.BStrideBatch1 + z2 * s.BStrideBatch2;
                int cBase = s.COffset + z1 * s.CStrideBatch1 + z2 * s.CStrideBatch2;
                if (packA is not null)
                    for (int m = 0; m < s.M; m++)
                    for (int i = 0; i < k; i++)
                        packA[m * k + i] = a[aBase + m * s.AStrideM + i * s.AStrideK];
                if (packB is not null)
                    for (int n = 0; n < s.N; n++)
                    for (int i = 0; i < k; i++)
                        packB[n * k + i] = b[bBase + i * s.BStrideK + n * s.BStrideN];
                for (int m = 0; m < s.M; m++)
                {
                    // Row m of op(A) and, below, column n of op(B): k contiguous floats each.
                    var aRow = packA is null ? a.Slice(aBase + m * s.AStrideM, k) : packA.AsSpan(m * k, k);
                    int row = cBase + m * s.CStrideM;
                    var cRow = c.Slice(row, s.N);
                    for (int n = 0; n < s.N; n++)
                    {
                        var bCol = packB is null ? b.Slice(bBase + n * s.BStrideN, k) : packB.AsSpan(n * k, k);
                        float v = s.Alpha * TensorPrimitives.Dot(aRow, bCol);
                        if (residual)
                        {
                            uint at = (uint)(row + n);
                            if (threshold != 0) v = DropoutReference.Keep(at, threshold, seed, stream) ? v * scale : 0f;
                            cRow[n] = addend[row + n] + v;
                        }
                        else cRow[n] = v + (s.Accumulate ? cRow[n] : 0f);
                    }
                }
            }
        }
        finally
        {
            if (packA is not null) ArrayPool<float>.Shared.Return(packA);
            if (packB is not null) ArrayPool<float>.Shared.Return(packB);
        }
    }
}
