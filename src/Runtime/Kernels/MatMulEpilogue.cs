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
    /// <summary>T5 v1.0's feed-forward hidden C = dropout(relu(Alpha·A·B)) (wi's product), the sum
    /// rounded as C stores it before the relu: bit for bit the product into C followed by
    /// <see cref="ReluKernel.Forward"/> into a tensor stored alike, without the pre-activation
    /// written or read. Its backward reads this output in place of the pre-activation (both are
    /// positive exactly where the gradient passes).</summary>
    Relu,
}

/// <summary>The operands of a product's epilogue (<see cref="Kind"/>): the residual's addend D,
/// stored as C is and read at C's addresses (it may be C's own buffer); the gate's a, read
/// likewise, and its outputs; and the dropout of the scaled sum (residual), of the hidden element
/// (gate) or of the relu's output, whose mask is the one <see cref="DropoutKernel"/> draws for C's
/// element index in its buffer (none, or rate 0: no dropout). TBuffer is the GPU buffer of a
/// dispatch or the tensor of a backend. Made by <see cref="Residual"/>, <see cref="Gated"/> and
/// <see cref="Relu"/>, which give each kind what it reads and nothing else.</summary>
internal readonly record struct MatMulEpilogueOperands<TBuffer> where TBuffer : class
{
    /// <summary>The epilogue these operands are for (never <see cref="MatMulEpilogue.None"/>).</summary>
    public MatMulEpilogue Kind { get; }
    /// <summary>The residual's D or the gate's a; null for the relu.</summary>
    public TBuffer? Addend { get; }
    public DropoutMask<TBuffer>? Dropout { get; }
    /// <summary>The gate's outputs; null for the other kinds.</summary>
    public MatMulGate<TBuffer>? Gate { get; }

    MatMulEpilogueOperands(MatMulEpilogue kind, TBuffer? addend, DropoutMask<TBuffer>? dropout, MatMulGate<TBuffer>? gate) =>
        (Kind, Addend, Dropout, Gate) = (kind, addend, dropout, gate);

    /// <summary>C = D + dropout(Alpha·A·B), D = <paramref name="addend"/>.</summary>
    public static MatMulEpilogueOperands<TBuffer> Residual(TBuffer addend, DropoutMask<TBuffer>? dropout = null) =>
        new(MatMulEpilogue.Residual, addend, dropout, null);

    /// <summary>H = dropout(act(a)·Alpha·A·B) into <paramref name="outputs"/>, a = <paramref name="gate"/>.</summary>
    public static MatMulEpilogueOperands<TBuffer> Gated(TBuffer gate, MatMulGate<TBuffer> outputs, DropoutMask<TBuffer>? dropout = null) =>
        new(MatMulEpilogue.Gate, gate, dropout, outputs);

    /// <summary>C = dropout(relu(Alpha·A·B)).</summary>
    public static MatMulEpilogueOperands<TBuffer> Relu(DropoutMask<TBuffer>? dropout = null) =>
        new(MatMulEpilogue.Relu, null, dropout, null);

    /// <summary>The same operands over other buffers (a backend's tensors as a dispatch's buffers).</summary>
    public MatMulEpilogueOperands<TOther> Select<TOther>(Func<TBuffer, TOther> buffer) where TOther : class =>
        new(Kind, Addend is null ? null : buffer(Addend),
            Dropout?.Select(buffer),
            Gate is { } g ? new MatMulGate<TOther>(buffer(g.Hidden), g.Activation, g.KeepsProduct) : null);
}

/// <summary>The outputs of a <see cref="MatMulEpilogue.Gate"/> product: the hidden H, stored as C
/// is and written at C's addresses, with <paramref name="Activation"/>; and whether C keeps the
/// product b (the backward of the gate reads it; an inference forward and Recompute's first
/// forward do not).</summary>
internal readonly record struct MatMulGate<TBuffer>(TBuffer Hidden, GateActivation Activation, bool KeepsProduct) where TBuffer : class;
