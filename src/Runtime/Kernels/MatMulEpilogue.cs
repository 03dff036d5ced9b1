namespace VkPrompt.Runtime.Kernels;

/// <summary>What a product does with each element of its sum as it stores it, besides scaling by
/// <see cref="MatMulSpec.Alpha"/> (shaders/include/matmul_epilogue.glsl): a pass over the output
/// that would otherwise follow the product, fused into its store. Each value is the shader's
/// EPILOGUE code, a specialization constant, so a product kernel is built for one of them.</summary>
internal enum MatMulEpilogue
{
    /// <summary>C = Alpha·A·B (+ C where <see cref="MatMulSpec.Accumulate"/>).</summary>
    None,
    /// <summary>C = D + dropout(Alpha·A·B), D an addend read at C's own addresses
    /// (<see cref="MatMulEpilogueOperands{TBuffer}"/>): a residual branch's output projection
    /// joining the stream, bit for bit the product into a branch of its own followed by
    /// <see cref="AddKernel"/>'s dropping add, without writing and reading the branch.</summary>
    Residual,
    /// <summary>The gated feed-forward's hidden H = dropout(act(a)·b), b = Alpha·A·B (wi_1's
    /// product) and the gate a (wi_0's) read at C's addresses, stored into H at C's addresses;
    /// b stored into C only where <see cref="MatMulGate{TBuffer}.KeepsProduct"/> (the backward
    /// reads it): bit for bit the product into C followed by <see cref="GatedActivationKernel.Forward"/>,
    /// without that pass's read of a and b and write of H.</summary>
    Gate,
}

/// <summary>The operands of a product's epilogue: the addend D, stored as C is and read at C's
/// addresses (it may be C's own buffer), or with <paramref name="Gate"/> the gate a, read likewise;
/// and the dropout of the scaled sum (residual) or of the hidden element (gate), whose mask is the
/// one <see cref="DropoutKernel"/> draws for C's element index in its buffer (none, or rate 0: no
/// dropout). TBuffer is the GPU buffer of a dispatch or the tensor of a backend.</summary>
internal readonly record struct MatMulEpilogueOperands<TBuffer>(TBuffer Addend, DropoutMask<TBuffer>? Dropout = null, MatMulGate<TBuffer>? Gate = null) where TBuffer : class
{
    /// <summary>The epilogue these operands are for.</summary>
    public MatMulEpilogue Kind => Gate is null ? MatMulEpilogue.Residual : MatMulEpilogue.Gate;
}

/// <summary>The outputs of a <see cref="MatMulEpilogue.Gate"/> product: the hidden H, stored as C
/// is and written at C's addresses, with <paramref name="Activation"/>; and whether C keeps the
/// product b (the backward of the gate reads it; an inference forward does not).</summary>
internal readonly record struct MatMulGate<TBuffer>(TBuffer Hidden, GateActivation Activation, bool KeepsProduct) where TBuffer : class;
