namespace VkPrompt.Runtime.Kernels;

/// <summary>What a product does with each element of its sum as it stores it, besides scaling by
/// <see cref="MatMulSpec.Alpha"/> (shaders/include/matmul_epilogue.glsl): a pass over the output
/// that would otherwise follow the product, fused into its store.</summary>
internal enum MatMulEpilogue
{
    /// <summary>C = Alpha·A·B (+ C where <see cref="MatMulSpec.Accumulate"/>).</summary>
    None,
    /// <summary>C = D + dropout(Alpha·A·B), D an addend read at C's own addresses
    /// (<see cref="MatMulEpilogueOperands{TBuffer}"/>): a residual branch's output projection
    /// joining the stream, bit for bit the product into a branch of its own followed by
    /// <see cref="AddKernel"/>'s dropping add, without writing and reading the branch.</summary>
    Residual,
}

/// <summary>The operands of a <see cref="MatMulEpilogue.Residual"/> product: the addend D, stored
/// as C is and read at C's addresses (it may be C's own buffer), and the dropout of the scaled sum,
/// whose mask is the one <see cref="DropoutKernel"/> draws for C's element index in its buffer
/// (none, or rate 0: no dropout). TBuffer is the GPU buffer of a dispatch or the tensor of a backend.</summary>
internal readonly record struct MatMulEpilogueOperands<TBuffer>(TBuffer Addend, DropoutMask<TBuffer>? Dropout = null) where TBuffer : class;
