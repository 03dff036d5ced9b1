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
    const int Rows = 37, DFf = 29, D = 13, N = Rows * DFf;

    /// <summary>A feed-forward's first product on one backend: x [Rows, D] and a weight [DFf, D],
    /// random, a mask of rate 0.25, outputs of [Rows, DFf] in the storage asked for.</summary>
    sealed class Product : IDisposable
    {
        public readonly Backend Be;
        public readonly Tensor X, W;
        public readonly DropoutMask<Tensor> Mask;
        public readonly MatMulSpec Spec = MatMulSpec.Rows(Rows, DFf, D, transposeB: true);
        readonly ActivationPrecision storage;
        readonly List<Tensor> owned = new();

        public Product(Backend be, ActivationPrecision storage, uint seed)
        {
            (Be, this.storage) = (be, storage);
            X = Own(be.Floats(Rows * D, "x", storage: storage));
            W = Own(be.Table(DFf, D, "w"));
            var seedTensor = Own(be.Ints(1, "seed"));
            be.Upload(X, Check.Random(Rows * D, 1));
            be.Upload(W, Check.Random(DFf * D, 2));
            be.Upload(seedTensor, [(int)seed]);
            Mask = new DropoutMask<Tensor>(0.25f, seedTensor, seed % 16);
        }

        Tensor Own(Tensor t)
        {
            owned.Add(t);
            return t;
        }

        public Tensor Output(string name) => Own(Be.Floats(N, name, storage: storage));

        public void Run(Action program)
        {
            using var run = Be.Record(program);
            run.Run();
        }

        public float[] Read(Tensor t)
        {
            var data = new float[N];
            Be.Download(t, data);
            return data;
        }

        public void Dispose()
        {
            foreach (var t in owned) t.Dispose();
            Be.Dispose();
        }
    }

    Product Open(bool gpu, ActivationPrecision storage, uint seed)
    {
        Skip.If(gpu && !storage.IsSupported(Ctx.Capabilities), $"{Ctx.Capabilities.Name} has no 16-bit storage buffers");
        return new Product(gpu ? new GpuBackend(Ctx) : new CpuBackend(), storage, seed);
    }

    [SkippableTheory]
    [InlineData(false, ActivationPrecision.Fp32), InlineData(false, ActivationPrecision.Bf16)]
    [InlineData(true, ActivationPrecision.Fp32), InlineData(true, ActivationPrecision.Bf16), InlineData(true, ActivationPrecision.Fp16)]
    public void GateIsProductThenGatedActivation(bool gpu, ActivationPrecision storage)
    {
        using var p = Open(gpu, storage, 1234);
        var gate = p.Output("gate");
        p.Be.Upload(gate, Check.Random(N, 3).Select(v => 4 * v).ToArray());
        Tensor c1 = p.Output("c1"), h1 = p.Output("h1"), c2 = p.Output("c2"), h2 = p.Output("h2");
        p.Run(() =>
        {
            p.Be.MatMul(p.X, p.W, c1, p.Spec, MatMulEpilogueOperands<Tensor>.Gated(gate, new MatMulGate<Tensor>(h1, GateActivation.GeluTanh, KeepsProduct: true), p.Mask));
            p.Be.MatMul(p.X, p.W, c2, p.Spec);
            p.Be.GatedActivation(gate, c2, h2, N, GateActivation.GeluTanh, p.Mask);
        });
        string what = $"{(gpu ? "GPU" : "CPU")} backend, {storage.Name()} activations";
        Check.BitIdentical(p.Read(c2), p.Read(c1), what + ": C");
        var hidden = p.Read(h1);
        Check.BitIdentical(p.Read(h2), hidden, what + ": the hidden");
        Assert.Contains(0f, hidden);
        Assert.Contains(hidden, v => v != 0);
    }

    [SkippableTheory]
    [InlineData(false, ActivationPrecision.Fp32), InlineData(false, ActivationPrecision.Fp16)]
    [InlineData(true, ActivationPrecision.Fp32), InlineData(true, ActivationPrecision.Bf16)]
    public void ReluIsProductThenRelu(bool gpu, ActivationPrecision storage)
    {
        using var p = Open(gpu, storage, 4321);
        Tensor h1 = p.Output("h1"), c2 = p.Output("c2"), h2 = p.Output("h2");
        p.Run(() =>
        {
            p.Be.MatMul(p.X, p.W, h1, p.Spec, MatMulEpilogueOperands<Tensor>.Relu(p.Mask));
            p.Be.MatMul(p.X, p.W, c2, p.Spec);
            p.Be.Relu(c2, h2, N, p.Mask);
        });
        var hidden = p.Read(h1);
        Check.BitIdentical(p.Read(h2), hidden, $"{(gpu ? "GPU" : "CPU")} backend, {storage.Name()} activations: the hidden");
        Assert.Contains(0f, hidden);
        Assert.Contains(hidden, v => v > 0);
    }
}
