using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using Xunit;

namespace VkPrompt.Tests.Model;

/// <summary>The backends' activation epilogues (what T5Pass's feed-forward runs): the gate
/// (<see cref="MatMulEpilogue.Gate"/>) and the relu (<see cref="MatMulEpilogue.Relu"/>), on each
/// backend and activation storage, bit for bit the product into C followed by the backend's own
/// GatedActivation or Relu with the same dropout, as the pass ran them before: the CPU backend's
/// composition of the references, and the GPU backend's operands handed to the kernel (the gate,
/// the hidden, the mask, C kept).</summary>
public sealed class BackendEpilogueTests(GpuFixture f) : GpuTest(f)
{
    [SkippableTheory]
    [InlineData(false, ActivationPrecision.Fp32), InlineData(false, ActivationPrecision.Bf16)]
    [InlineData(true, ActivationPrecision.Fp32), InlineData(true, ActivationPrecision.Bf16), InlineData(true, ActivationPrecision.Fp16)]
    public void GateIsProductThenGatedActivation(bool gpu, ActivationPrecision storage)
    {
        Skip.If(gpu && !storage.IsSupported(Ctx.Capabilities), $"{Ctx.Capabilities.Name} has no 16-bit storage buffers");
        using Backend be = gpu ? new GpuBackend(Ctx) : new CpuBackend();
        const int rows = 37, dFf = 29, d = 13, n = rows * dFf;
        using var x = be.Floats(rows * d, "x", storage: storage);
        using var w = be.Table(dFf, d, "wi1");
        using var gate = be.Floats(n, "gate", storage: storage);
        using var c1 = be.Floats(n, "c1", storage: storage);
        using var h1 = be.Floats(n, "h1", storage: storage);
        using var c2 = be.Floats(n, "c2", storage: storage);
        using var h2 = be.Floats(n, "h2", storage: storage);
        using var seed = be.Ints(1, "seed");
        be.Upload(x, Check.Random(rows * d, 1));
        be.Upload(w, Check.Random(dFf * d, 2));
        be.Upload(gate, Check.Random(n, 3).Select(v => 4 * v).ToArray());
        be.Upload(seed, [1234]);
        var mask = new DropoutMask<Tensor>(0.25f, seed, 9);
        var spec = MatMulSpec.Rows(rows, dFf, d, transposeB: true);
        using (var run = be.Record(() =>
               {
                   be.MatMul(x, w, c1, spec, MatMulEpilogueOperands<Tensor>.Gated(gate, new MatMulGate<Tensor>(h1, GateActivation.GeluTanh, KeepsProduct: true), mask));
                   be.MatMul(x, w, c2, spec);
                   be.GatedActivation(gate, c2, h2, n, GateActivation.GeluTanh, mask);
               }))
            run.Run();
        float[] Read(Tensor t)
        {
            var data = new float[n];
            be.Download(t, data);
            return data;
        }
        string what = $"{(gpu ? "GPU" : "CPU")} backend, {storage.Name()} activations";
        Check.BitIdentical(Read(c2), Read(c1), what + ": C");
        var hidden = Read(h1);
        Check.BitIdentical(Read(h2), hidden, what + ": the hidden");
        Assert.Contains(0f, hidden);
        Assert.Contains(hidden, v => v != 0);
    }

    [SkippableTheory]
    [InlineData(false, ActivationPrecision.Fp32), InlineData(false, ActivationPrecision.Fp16)]
    [InlineData(true, ActivationPrecision.Fp32), InlineData(true, ActivationPrecision.Bf16)]
    public void ReluIsProductThenRelu(bool gpu, ActivationPrecision storage)
    {
        Skip.If(gpu && !storage.IsSupported(Ctx.Capabilities), $"{Ctx.Capabilities.Name} has no 16-bit storage buffers");
        using Backend be = gpu ? new GpuBackend(Ctx) : new CpuBackend();
        const int rows = 37, dFf = 29, d = 13, n = rows * dFf;
        using var x = be.Floats(rows * d, "x", storage: storage);
        using var w = be.Table(dFf, d, "wi");
        using var h1 = be.Floats(n, "h1", storage: storage);
        using var c2 = be.Floats(n, "c2", storage: storage);
        using var h2 = be.Floats(n, "h2", storage: storage);
        using var seed = be.Ints(1, "seed");
        be.Upload(x, Check.Random(rows * d, 1));
        be.Upload(w, Check.Random(dFf * d, 2));
        be.Upload(seed, [4321]);
        var mask = new DropoutMask<Tensor>(0.25f, seed, 11);
        var spec = MatMulSpec.Rows(rows, dFf, d, transposeB: true);
        using (var run = be.Record(() =>
               {
                   be.MatMul(x, w, h1, spec, MatMulEpilogueOperands<Tensor>.Relu(mask));
                   be.MatMul(x, w, c2, spec);
                   be.Relu(c2, h2, n, mask);
               }))
            run.Run();
        float[] Read(Tensor t)
        {
            var data = new float[n];
            be.Download(t, data);
            return data;
        }
        var hidden = Read(h1);
        Check.BitIdentical(Read(h2), hidden, $"{(gpu ? "GPU" : "CPU")} backend, {storage.Name()} activations: the hidden");
        Assert.Contains(0f, hidden);
        Assert.Contains(hidden, v => v > 0);
    }

}
