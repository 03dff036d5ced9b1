using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Model.Safetensors;
using VkPrompt.Runtime;
using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests.Model;

/// <summary>
/// Block activations kept in 16 bits (<see cref="Backend.Activations"/>, <c>--activations</c>):
/// every golden case and variant against its fp32 golden values, with the tolerances
/// docs/numerics.md states for them; 16-bit tensors' uploads and downloads; and a model whose
/// feed-forward activations exceed fp16's range, which must come out finite on every path.
/// </summary>
public sealed class ActivationPrecisionTests(GpuFixture f) : GpuTest(f)
{
    static readonly ActivationPrecision[] SixteenBits = [ActivationPrecision.Bf16, ActivationPrecision.Fp16];

    /// <summary>The Vulkan device with attention unfused and fused, and "-all-fused": every
    /// product on the matrix units (emulated on lavapipe), which round their operands to fp16
    /// too, and fused attention there.</summary>
    static readonly string[] Backends = ["cpu", "vulkan", "vulkan-fused"];
    const string MatrixUnits = "vulkan-matrix-units-all-fused";

    /// <summary>Every case and variant on <see cref="Backends"/>; on the matrix units (whose
    /// emulation compiles slowly on lavapipe: 9 s a case) one case of each golden model, one
    /// gated and one relu, the variants' shapes being checked there by GoldenVariantTests.</summary>
    public static TheoryData<string, string, string, string, ActivationPrecision> Cases()
    {
        var data = new TheoryData<string, string, string, string, ActivationPrecision>();
        foreach (var (root, models) in new[] { (TestPaths.Golden, Directory.GetDirectories(TestPaths.Golden).Order().Select(Path.GetFileName).ToArray()),
                                               (TestPaths.GoldenVariants, ["tiny-ul2", "tiny-umt5", "tiny-byt5"]) })
            foreach (var row in GoldenCase.Cases(root, models!, [.. Backends, MatrixUnits]))
                if ((string)row[2] != MatrixUnits || root == TestPaths.Golden && (string)row[1] is "p8" or "p5")
                    foreach (var p in SixteenBits)
                        data.Add(Path.GetFileName(root), (string)row[0], (string)row[1], (string)row[2], p);
        return data;
    }

    static string Root(string folder) => folder == Path.GetFileName(TestPaths.Golden) ? TestPaths.Golden : TestPaths.GoldenVariants;

    Backend MakeBackend(string name, ActivationPrecision storage)
    {
        var be = GoldenCase.MakeBackend(name, device => device switch
        {
            "vulkan-matrix-units-all" => MatrixUnitsAllProductsCtx,
            "vulkan-matrix-units-bf16" => MatrixUnitsBf16Ctx,
            _ => Ctx,
        });
        be.Activations = storage;
        return be;
    }

    /// <summary>
    /// Against the fp32 golden values. Every activation a block keeps is off by at most u of
    /// itself (2^-8 bf16, 2^-11 fp16), and the roundings mostly cancel in the sums that follow.
    /// Measured on the CPU backend over every case and variant: log-likelihoods moved by at most
    /// 0.13u (bf16, 5.0e-4 relative; tiny-umt5) and 0.16u (fp16), the loss by 0.03u and 0.05u,
    /// and the prompt gradient by 9.0u (bf16, 3.5e-2; tiny-v10-bf16 p5, whose gradient is small
    /// beside its activations) and 6.0u (fp16) of its norm; the device within the same. The
    /// tolerances: u/2 relative on top of 1e-3 absolute for log-likelihoods and the loss, 24u for
    /// the gradient, a margin of 2.7 or more. On the matrix units (emulated here) the operands are
    /// rounded to fp16 once more, attention's scores and probabilities included: the bound adds
    /// the 32 fp16 u GoldenTests allows for that rounding.
    /// </summary>
    [SkippableTheory, MemberData(nameof(Cases))]
    public void SixteenBitActivationsStayNearGolden(string folder, string model, string caseName, string backend, ActivationPrecision storage)
    {
        using var g = GoldenCase.Load(Root(folder), model, caseName);
        using var be = MakeBackend(backend, storage);
        using var weights = new T5Weights(g.Ckpt, be, WeightPrecision.Fp32);
        double u = storage.UnitRoundoff();
        using (var scorer = new Scorer(weights))
        {
            GoldenCase.AssertLogLikelihoods(g.Scores, scorer.Score(g.Examples, PromptSet.Stack([g.Prompt0], g.DModel)), $"{storage} with prompt", u / 2);
            GoldenCase.AssertLogLikelihoods(g.ScoresWithoutPrompt, scorer.Score(g.Examples, null), $"{storage} without prompt", u / 2);
        }
        var (loss, grad) = PromptTrainer.Gradient(weights, g.Examples, g.Prompt0);
        Assert.True(Math.Abs(loss - g.Loss) <= 1e-3 + u / 2 * g.Loss, $"{storage} loss {loss} vs golden {g.Loss}");
        double err = Check.NormRelativeError(g.Gradient, grad);
        double bound = 24 * u + (backend.StartsWith("vulkan-matrix-units-all", StringComparison.Ordinal) ? 32 * ActivationPrecision.Fp16.UnitRoundoff() : 0);
        Assert.True(err <= bound, $"{storage} prompt gradient relative error {err:E3} > {bound:E3}");
    }

    /// <summary>One case of each golden model (p8 and p5, as the matrix units' cases above).</summary>
    public static TheoryData<string, string> Bf16FragmentCases()
    {
        var data = new TheoryData<string, string>();
        foreach (var row in GoldenCase.Cases(TestPaths.Golden, Directory.GetDirectories(TestPaths.Golden).Order().Select(Path.GetFileName)!, ["vulkan"]))
            if ((string)row[1] is "p8" or "p5")
                data.Add((string)row[0], (string)row[1]);
        return data;
    }

    /// <summary>
    /// The configuration bf16 fragments exist for (an H100's default: bf16 weights kept bf16,
    /// bf16 activations, the products on bf16 fragments; emulated on lavapipe) against the fp32
    /// golden values. The fragments take the stored bf16 activations and weights as they are; the
    /// only rounding they add is of fp32 operands (the products' inputs not kept in 16 bits) to
    /// bf16, the same u = 2^-8 the stored activations have. So the two storages' bounds add (docs/numerics.md,
    /// section 8): u/2 + u/2 relative on top of 1e-3 absolute for log-likelihoods and the loss,
    /// 24u (bf16 activations, above) + 8u (bf16 weights, GoldenTests) for the prompt gradient.
    /// Measured here: log-likelihoods within 0.23u, the loss 0.07u, the gradient 3.5u (tiny-v11
    /// p8) and 10.9u (tiny-v10-bf16 p5, whose bf16 activations alone move it 9.0u); margins of
    /// 2.9 or more.
    /// </summary>
    [SkippableTheory, MemberData(nameof(Bf16FragmentCases))]
    public void Bf16FragmentsStayNearGolden(string model, string caseName)
    {
        using var g = GoldenCase.Load(TestPaths.Golden, model, caseName);
        using var be = MakeBackend("vulkan-matrix-units-bf16", ActivationPrecision.Bf16);
        // The weights stay bf16, which the fragments take as stored.
        Assert.Equal(WeightPrecision.Bf16, MatrixUnitsBf16Ctx.Plan.StoredPrecision(WeightPrecision.Bf16));
        using var weights = new T5Weights(g.Ckpt, be, WeightPrecision.Bf16);
        double u = ActivationPrecision.Bf16.UnitRoundoff();
        using (var scorer = new Scorer(weights))
        {
            GoldenCase.AssertLogLikelihoods(g.Scores, scorer.Score(g.Examples, PromptSet.Stack([g.Prompt0], g.DModel)), "bf16 fragments with prompt", u);
            GoldenCase.AssertLogLikelihoods(g.ScoresWithoutPrompt, scorer.Score(g.Examples, null), "bf16 fragments without prompt", u);
        }
        var (loss, grad) = PromptTrainer.Gradient(weights, g.Examples, g.Prompt0);
        Assert.True(Math.Abs(loss - g.Loss) <= 1e-3 + u * g.Loss, $"bf16 fragments: loss {loss} vs golden {g.Loss}");
        double err = Check.NormRelativeError(g.Gradient, grad);
        Assert.True(err <= 32 * u, $"bf16 fragments: prompt gradient relative error {err:E3} > {32 * u:E3}");
    }

    /// <summary>A 16-bit tensor takes and gives back floats as its kernels store them: uploads
    /// round (fp16 saturating, NaN kept), downloads widen exactly, on the device as on the CPU.</summary>
    [Theory]
    [InlineData("cpu", ActivationPrecision.Bf16)]
    [InlineData("cpu", ActivationPrecision.Fp16)]
    [InlineData("vulkan", ActivationPrecision.Bf16)]
    [InlineData("vulkan", ActivationPrecision.Fp16)]
    public void SixteenBitTensorsRoundTripTheStoredValues(string backend, ActivationPrecision storage)
    {
        using var be = MakeBackend(backend, storage);
        float[] values = [1f, 1f + 1f / 512, -3.14159f, 1e5f, -7e4f, 1e-30f, float.NaN, 0f, 65519f, 3e38f];
        using var t = be.Floats(values.Length, "t", storage: storage);
        Assert.Equal(storage, t.Storage);
        be.Upload(t, values);
        var back = new float[values.Length];
        be.Download(t, back);
        // Worked by hand (and with Python's struct, not this code), element by element:
        // 1 + 2^-9 needs 9 significant bits: fp16 keeps it, bf16 rounds it to 1. -3.14159 is
        // 1608.49 fp16 steps of 2^-9 and 201.06 bf16 steps of 2^-6 from 0: -3.140625 in both. Past
        // fp16's range it saturates to ±65504, 65519 too (below 65520, halfway to 65536); bf16 keeps
        // 8 significant bits: 1e5 = 195.3 steps of 512, -7e4 = 136.7 of them, 65519 = 255.9 steps
        // of 256, 3e38 = 225.7 steps of 2^120. 1e-30 is below fp16's smallest subnormal and in
        // bf16 1.2677·2^-100 rounds to 162/128·2^-100 (bits 0x0DA20000).
        float[] expected = storage == ActivationPrecision.Fp16
            ? [1f, 1f + 1f / 512, -3.140625f, 65504f, -65504f, 0f, float.NaN, 0f, 65504f, 65504f]
            : [1f, 1f, -3.140625f, 99840f, -70144f, BitConverter.Int32BitsToSingle(0x0DA20000), float.NaN, 0f, 65536f,
               BitConverter.Int32BitsToSingle(0x7F620000)];
        Assert.Equal(expected, back);
        Assert.True(float.IsNaN(back[6]));
    }

    /// <summary>tiny-v11 with every feed-forward layer norm's weight multiplied by
    /// <paramref name="scale"/>: the normed input of wi_0 and wi_1 grows by it, and so do their
    /// outputs and the gated activation's (quadratically), far past fp16's 65504, while the
    /// residual stream (fp32) and every other norm take it in their stride.</summary>
    static string LoudModel(TempDir dir, float scale)
    {
        string source = Path.Combine(TestPaths.Golden, "tiny-v11");
        foreach (var file in Directory.GetFiles(source)) File.Copy(file, Path.Combine(dir.Path, Path.GetFileName(file)));
        using (var ckpt = T5Checkpoint.Open(source))
        {
            var layout = T5Names.All(ckpt.Config);
            SafetensorsWriter.Write(Path.Combine(dir.Path, "model.safetensors"), layout, i =>
            {
                var values = ckpt.ReadAll(layout[i].Name);
                if (layout[i].Name.Contains(".layer.1.layer_norm.", StringComparison.Ordinal) && layout[i].Name.StartsWith("encoder", StringComparison.Ordinal)
                    || layout[i].Name.Contains(".layer.2.layer_norm.", StringComparison.Ordinal))
                    for (int j = 0; j < values.Length; j++) values[j] *= scale;
                return values;
            }, new Dictionary<string, string> { ["format"] = "pt" });
        }
        return dir.Path;
    }

    public static TheoryData<string, ActivationPrecision> LoudCases()
    {
        var data = new TheoryData<string, ActivationPrecision>();
        foreach (var backend in new[] { "cpu", "vulkan", "vulkan-fused", "vulkan-matrix-units-all" })
            foreach (var p in SixteenBits)
                data.Add(backend, p);
        return data;
    }

    /// <summary>
    /// A model whose feed-forward activations exceed fp16's range (the loud model's reach ~1e9;
    /// T5 v1.1's real ones pass 65504 in its later layers): no path may turn them into infinities
    /// and then NaNs. bf16 keeps fp32's range, so there the result stays near fp32 activations'
    /// (the golden tolerances above); fp16 stores saturate at ±65504, so the loss and gradient are
    /// wrong but finite, and the fp16 run must differ from the fp32 one by far more than fp16's
    /// rounding — proof that the model did overflow fp16, without which the test could not fail.
    /// The emulated matrix units round their fp16 operands with the same saturation.
    /// </summary>
    [SkippableTheory, MemberData(nameof(LoudCases))]
    public void ActivationsBeyondFp16RangeStayFinite(string backend, ActivationPrecision storage)
    {
        using var dir = new TempDir();
        string model = LoudModel(dir, 3e4f);
        using var g = GoldenCase.Load(TestPaths.Golden, "tiny-v11", "p8");
        (double Loss, float[] Grad) Run(Backend be)
        {
            using (be)
            {
                using var ckpt = T5Checkpoint.Open(model);
                using var weights = new T5Weights(ckpt, be, WeightPrecision.Fp32);
                return PromptTrainer.Gradient(weights, g.Examples, g.Prompt0);
            }
        }
        var reference = Run(MakeBackend("cpu", ActivationPrecision.Fp32));
        var (loss, grad) = Run(MakeBackend(backend, storage));
        Assert.True(double.IsFinite(loss), $"{storage} on {backend}: loss {loss}");
        Assert.True(grad.All(float.IsFinite), $"{storage} on {backend}: a non-finite prompt gradient");
        double err = Check.NormRelativeError(reference.Grad, grad);
        if (storage == ActivationPrecision.Bf16 && !backend.StartsWith("vulkan-matrix-units", StringComparison.Ordinal))
        {
            Assert.True(Math.Abs(loss - reference.Loss) <= 1e-3 + storage.UnitRoundoff() / 2 * reference.Loss, $"bf16 loss {loss} vs fp32 activations' {reference.Loss}");
            Assert.True(err <= 24 * storage.UnitRoundoff(), $"bf16 prompt gradient relative error {err:E3} against fp32 activations");
        }
        else if (storage == ActivationPrecision.Fp16)
            Assert.True(err > 100 * storage.UnitRoundoff(), $"fp16 on {backend} stayed within {err:E3} of fp32 activations: the model did not overflow fp16, so the test tests nothing");
    }
}
