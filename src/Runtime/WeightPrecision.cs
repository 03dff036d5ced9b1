namespace VkPrompt.Runtime;

/// <summary>
/// How frozen weights (the B of a matrix product, embedding tables) are stored on the device.
/// Halves and int8 values are widened to fp32 as they are loaded, so products still accumulate
/// in fp32 and activations stay fp32 whatever is chosen: only the stored weight is rounded.
/// Activations are kept out of 16 bits on purpose, since T5's feed-forward outputs overflow fp16.
/// </summary>
public enum WeightPrecision
{
    /// <summary>As the checkpoint holds them (F16 and BF16 files widened): exact, 4 bytes a weight.</summary>
    Fp32,
    /// <summary>IEEE half: 2 bytes and 11 significant bits, but a range that ends at 65504.</summary>
    Fp16,
    /// <summary>bfloat16: 2 bytes with fp32's range and 8 significant bits; what T5 was trained in.</summary>
    Bf16,
    /// <summary>One signed byte a weight and one fp32 scale per row (<see cref="Int8Rows"/>):
    /// a quarter of fp32's memory, 8 bits per weight relative to its row's largest.</summary>
    Int8,
}

/// <summary>Names, sizes and device support of <see cref="WeightPrecision"/>, with the
/// parser the CLI and PromptModel's "auto" share.</summary>
public static class WeightPrecisions
{
    /// <summary>The spellings <see cref="Parse"/> accepts, as the CLI lists them.</summary>
    public static IReadOnlyList<string> Names { get; } = ["fp32", "fp16", "bf16", "int8", "auto"];

    /// <summary>Bytes one stored weight takes: 4 for fp32, 2 for the 16-bit forms, 1 for int8
    /// (whose rows carry a scale besides: <see cref="TableBytes"/>).</summary>
    public static int ElementBytes(this WeightPrecision p) => p switch
    {
        WeightPrecision.Fp32 => 4,
        WeightPrecision.Int8 => 1,
        _ => 2,
    };

    /// <summary>Bytes a [rows, cols] table stored as <paramref name="p"/> takes: its elements,
    /// and for int8 one fp32 scale per row.</summary>
    public static long TableBytes(this WeightPrecision p, long rows, long cols) =>
        rows * cols * p.ElementBytes() + (p == WeightPrecision.Int8 ? rows * sizeof(float) : 0);

    /// <summary>The lower-case spelling <see cref="Parse"/> reads back (fp32, fp16, bf16, int8).</summary>
    public static string Name(this WeightPrecision p) => p switch
    {
        WeightPrecision.Fp16 => "fp16",
        WeightPrecision.Bf16 => "bf16",
        WeightPrecision.Int8 => "int8",
        _ => "fp32",
    };

    /// <summary>Whether kernels can read weights stored this way on the device. Both 16-bit forms
    /// need only storageBuffer16BitAccess: bf16 is widened by integer shifts, not through
    /// VK_KHR_shader_bfloat16, and fp16 by a conversion that needs no shaderFloat16. int8 needs
    /// nothing: the kernels read its bytes four to a 32-bit word and sign-extend them with
    /// integer operations (shaders/include/int8.glsl), so every device reads it, including those
    /// without storageBuffer8BitAccess.</summary>
    public static bool IsSupported(this WeightPrecision p, DeviceCapabilities caps) =>
        p is WeightPrecision.Fp32 or WeightPrecision.Int8 || caps.StorageBuffer16Bit;

    /// <summary>Throws a <see cref="GpuException"/> saying what is missing when the device
    /// cannot read weights stored as <paramref name="p"/>.</summary>
    public static void Require(this WeightPrecision p, DeviceCapabilities caps)
    {
        if (!p.IsSupported(caps))
            throw new GpuException($"{p.Name()} weights need 16-bit storage buffers (storageBuffer16BitAccess), which {caps.Described} does not support; use fp32, or auto to fall back to fp32 where 16-bit storage is missing");
    }

    /// <summary>fp32, fp16, bf16 or int8 as named; auto is bf16 where <paramref name="device"/> can
    /// read 16-bit weights and fp32 elsewhere, including the CPU backend (null), which would only
    /// emulate the rounding. bf16 keeps fp32's range, so no checkpoint can overflow it.</summary>
    public static WeightPrecision Parse(string text, DeviceCapabilities? device) => text.ToLowerInvariant() switch
    {
        "fp32" => WeightPrecision.Fp32,
        "fp16" => WeightPrecision.Fp16,
        "bf16" => WeightPrecision.Bf16,
        "int8" => WeightPrecision.Int8,
        "auto" => device is not null && WeightPrecision.Bf16.IsSupported(device) ? WeightPrecision.Bf16 : WeightPrecision.Fp32,
        _ => throw new ArgumentException($"unknown weight precision '{text}'; expected one of {string.Join(", ", Names)}", nameof(text)),
    };

    /// <summary>auto for one model across <paramref name="devices"/> (the replicas of data
    /// parallel, the stages of a pipeline, which store their weights alike): what
    /// <see cref="Parse"/> picks where every device picks the same, else fp32.</summary>
    public static WeightPrecision Auto(IEnumerable<DeviceCapabilities?> devices) =>
        devices.Select(d => Parse("auto", d)).Aggregate((a, b) => a == b ? a : WeightPrecision.Fp32);
}
