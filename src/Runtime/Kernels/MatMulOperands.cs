namespace VkPrompt.Runtime.Kernels;

/// <summary>Operand values for timing and checking products on the device: a hash of the
/// element's index, uniform in [-1, 1), so a reference recomputes any element without a host
/// copy of buffers of hundreds of MiB (<c>vkprompt bench matmul</c>), and a timing reads data
/// as varied as a step's (<see cref="MatMulTuner"/>).</summary>
internal static class MatMulOperands
{
    public const ulong SeedA = 1, SeedB = 2;

    /// <summary>The dropout seed of a dropping epilogue's mask (<see cref="MatMulKernel.OntoC"/>).</summary>
    public const uint DropoutSeed = 0x5eed;
    const int Chunk = 1 << 22;

    public static float Value(ulong seed, long index)
    {
        // splitmix64 of (seed, index)
        ulong z = unchecked(seed * 0x9E3779B97F4A7C15UL + (ulong)index * 0xBF58476D1CE4E5B9UL + 0x94D049BB133111EBUL);
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        z ^= z >> 31;
        return (float)((z >> 40) * (2.0 / (1 << 24)) - 1.0);
    }

    /// <summary>The scale of every row of an int8 operand: the values are stored as
    /// round(value · 127), so a stored value depends on its index alone, whatever row length a
    /// product reads the buffer with (<see cref="FillInt8Scales"/>).</summary>
    public const float Int8Scale = 1f / Int8Rows.Max;

    static sbyte Int8(ulong seed, long index) => (sbyte)MathF.Round(Value(seed, index) * Int8Rows.Max, MidpointRounding.ToEven);

    /// <summary>The value as stored in <paramref name="p"/> and widened back to fp32.</summary>
    public static float Stored(ulong seed, long index, WeightPrecision p) => p switch
    {
        WeightPrecision.Fp16 => HalfFloat.FromFp16(HalfFloat.ToFp16(Value(seed, index))),
        WeightPrecision.Bf16 => HalfFloat.FromBf16(HalfFloat.ToBf16(Value(seed, index))),
        WeightPrecision.Int8 => Int8(seed, index) * Int8Scale,
        _ => Value(seed, index),
    };

    /// <summary>Sets the first <paramref name="rows"/> row scales of an int8 operand to
    /// <see cref="Int8Scale"/>.</summary>
    public static void FillInt8Scales(GpuBuffer scales, long rows)
    {
        var values = new float[rows];
        Array.Fill(values, Int8Scale);
        scales.Upload<float>(values);
    }

    /// <summary>The value as an activation stored as <paramref name="p"/> holds it, widened back to fp32.</summary>
    public static float Stored(ulong seed, long index, ActivationPrecision p) => Stored(seed, index, AsWeight(p));

    /// <summary>Writes the first <paramref name="elements"/> values of <paramref name="seed"/> into
    /// <paramref name="buffer"/>, a buffer of activations stored as <paramref name="p"/>
    /// (<see cref="GpuBuffer.Storage"/>).</summary>
    public static void Fill(GpuBuffer buffer, long elements, ulong seed, ActivationPrecision p) => Fill(buffer, elements, seed, AsWeight(p));

    // A 16-bit activation holds what a weight of the same form does: the values lie in [-1, 1),
    // where fp16's saturation never applies.
    static WeightPrecision AsWeight(ActivationPrecision p) => p switch
    {
        ActivationPrecision.Bf16 => WeightPrecision.Bf16,
        ActivationPrecision.Fp16 => WeightPrecision.Fp16,
        _ => WeightPrecision.Fp32,
    };

    /// <summary>Writes the first <paramref name="elements"/> values of <paramref name="seed"/> into
    /// <paramref name="buffer"/>, stored as <paramref name="p"/>; <paramref name="rounding"/> bf16
    /// with <paramref name="p"/> fp16 stores them as <see cref="SplitTensor"/> stores bf16 weights
    /// for the matrix units (<see cref="DevicePlan.StoredPrecision"/>).</summary>
    public static void Fill(GpuBuffer buffer, long elements, ulong seed, WeightPrecision p, WeightPrecision? rounding = null)
    {
        bool bf16AsFp16 = (rounding, p) == (WeightPrecision.Bf16, WeightPrecision.Fp16);
        var values = new float[(int)Math.Min(Chunk, elements)];
        var halves = p is WeightPrecision.Fp32 or WeightPrecision.Int8 ? [] : new ushort[values.Length];
        var bytes = p == WeightPrecision.Int8 ? new sbyte[values.Length] : [];
        for (long at = 0; at < elements; at += Chunk)
        {
            int n = (int)Math.Min(Chunk, elements - at);
            long first = at;
            // Hundreds of MiB at the largest shapes: the cores share the hashing.
            Parallel.ForEach(System.Collections.Concurrent.Partitioner.Create(0, n, 1 << 16), range =>
            {
                for (int i = range.Item1; i < range.Item2; i++) values[i] = Value(seed, first + i);
            });
            var part = values.AsSpan(0, n);
            if (p == WeightPrecision.Fp32) buffer.Upload<float>(part, at);
            else if (p == WeightPrecision.Int8)
            {
                for (int i = 0; i < n; i++) bytes[i] = Int8(seed, first + i);
                buffer.Upload<sbyte>(bytes.AsSpan(0, n), at);
            }
            else
            {
                if (bf16AsFp16) HalfFloat.EncodeBf16AsFp16(part, halves.AsSpan(0, n));
                else HalfFloat.Encode(part, halves.AsSpan(0, n), p);
                buffer.Upload<ushort>(halves.AsSpan(0, n), at);
            }
        }
    }
}

/// <summary>Scratch operands for timing and checking products (<see cref="MatMulTuner"/>,
/// <c>ProductBench</c>): one buffer per operand and storage, as the products' specs store them
/// (<see cref="MatMulSpec.AStorage"/>, <see cref="MatMulSpec.BStorage"/>,
/// <see cref="MatMulSpec.CStorage"/>), sized for the largest product and reused by all. A and C
/// hold <see cref="MatMulOperands.SeedA"/>'s values and B <see cref="MatMulOperands.SeedB"/>'s,
/// each rounded to its storage (<see cref="MatMulOperands.Stored(ulong, long, ActivationPrecision)"/>);
/// a weight B, one buffer per precision as asked, is stored the way the context stores such
/// weights (<see cref="DevicePlan.StoredPrecision"/>: bf16 as fp16 for the matrix units) with
/// the values rounded as asked.</summary>
internal sealed class MatMulOperandBuffers : IDisposable
{
    readonly Dictionary<ActivationPrecision, GpuBuffer> a = new(), c = new();
    readonly Dictionary<(WeightPrecision, ActivationPrecision), GpuBuffer> b = new();
    // An int8 B's row scales (MatMulOperands.FillInt8Scales), for as many rows as any product reads.
    readonly GpuBuffer? int8Scales;

    /// <param name="ctx">the context the buffers live on.</param>
    /// <param name="products">each product with the precision its B is read in as asked (fp32 for an activation).</param>
    /// <param name="name">the buffers' names' prefix, for messages.</param>
    public MatMulOperandBuffers(GpuContext ctx, IEnumerable<(MatMulSpec Spec, WeightPrecision B)> products, string name)
    {
        var aMax = new Dictionary<ActivationPrecision, long>();
        var cMax = new Dictionary<ActivationPrecision, long>();
        var bMax = new Dictionary<(WeightPrecision, ActivationPrecision), long>();
        long int8Rows = 0;
        foreach (var (spec, p) in products)
        {
            var (aElems, bElems, cElems) = spec.Extents();
            aMax[spec.AStorage] = Math.Max(aMax.GetValueOrDefault(spec.AStorage), aElems);
            cMax[spec.CStorage] = Math.Max(cMax.GetValueOrDefault(spec.CStorage), cElems);
            bMax[(p, spec.BStorage)] = Math.Max(bMax.GetValueOrDefault((p, spec.BStorage)), bElems);
            if (ctx.Plan.StoredPrecision(p) == WeightPrecision.Int8) int8Rows = Math.Max(int8Rows, MatMulKernel.Int8RowsRead(spec));
        }
        try
        {
            foreach (var (storage, elems) in aMax)
            {
                a[storage] = GpuBuffer.Activations(ctx, elems, storage, $"{name}_a_{storage.Name()}");
                MatMulOperands.Fill(a[storage], elems, MatMulOperands.SeedA, storage);
            }
            foreach (var (storage, elems) in cMax)
            {
                c[storage] = GpuBuffer.Activations(ctx, elems, storage, $"{name}_c_{storage.Name()}");
                MatMulOperands.Fill(c[storage], elems, MatMulOperands.SeedA, storage);
            }
            foreach (var ((p, storage), elems) in bMax)
            {
                // A weight B is a table (fp32 storage, its form the stored precision); an fp32 B may be an activation.
                var stored = ctx.Plan.StoredPrecision(p);
                var buffer = b[(p, storage)] = p == WeightPrecision.Fp32
                    ? GpuBuffer.Activations(ctx, elems, storage, $"{name}_b_{storage.Name()}")
                    : new GpuBuffer(ctx, stored.ElementBytes() * elems, $"{name}_b_{p.Name()}");
                if (p == WeightPrecision.Fp32) MatMulOperands.Fill(buffer, elems, MatMulOperands.SeedB, storage);
                else MatMulOperands.Fill(buffer, elems, MatMulOperands.SeedB, stored, p);
            }
            if (int8Rows > 0)
            {
                int8Scales = new GpuBuffer(ctx, 4 * int8Rows, $"{name}_b_int8_scales");
                MatMulOperands.FillInt8Scales(int8Scales, int8Rows);
            }
            Seed = GpuBuffer.From<uint>(ctx, [MatMulOperands.DropoutSeed], $"{name}_dropout_seed");
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The A of <paramref name="s"/>.</summary>
    public GpuBuffer A(in MatMulSpec s) => a[s.AStorage];

    /// <summary>The B of <paramref name="s"/>, whose B is read in <paramref name="p"/> as asked.</summary>
    public GpuBuffer B(in MatMulSpec s, WeightPrecision p) => b[(p, s.BStorage)];

    /// <summary>The C of <paramref name="s"/>.</summary>
    public GpuBuffer C(in MatMulSpec s) => c[s.CStorage];

    /// <summary>The row scales a B stored as <paramref name="stored"/> needs: an int8 B's, else null.</summary>
    public GpuBuffer? Scales(WeightPrecision stored) => stored == WeightPrecision.Int8 ? int8Scales : null;

    /// <summary>A dropping epilogue's seed, <see cref="MatMulOperands.DropoutSeed"/> (<see cref="MatMulKernel.OntoC"/>).</summary>
    public GpuBuffer Seed { get; } = null!;

    public void Dispose()
    {
        foreach (var buffer in a.Values.Concat(b.Values).Concat(c.Values)) buffer.Dispose();
        int8Scales?.Dispose();
        Seed?.Dispose();
    }
}
