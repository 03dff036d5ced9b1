using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Model.Safetensors;
using VkPrompt.Runtime;
using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests.Model;

/// <summary>
/// The golden cases of the T5 family's other members in ../shared/golden-variants: tiny-ul2
/// (gated-silu, heads x d_kv != d_model) and tiny-umt5 (a position bias per self-attention layer,
/// 2+3 layers), on the CPU reference and the Vulkan device, attention unfused and fused, within
/// the tolerances of <see cref="GoldenTests"/> (docs/numerics.md). A model whose config.json
/// names another tokenizer needs no more than its name in <see cref="Models"/>.
/// </summary>
public sealed class GoldenVariantTests(GpuFixture f) : GpuTest(f)
{
    static readonly string[] Models = ["tiny-ul2", "tiny-umt5", "tiny-byt5"];

    static readonly string[] Backends = ["cpu", "vulkan", "cpu-fused", "vulkan-fused"];

    public static TheoryData<string, string, string> Cases() => GoldenCase.Cases(TestPaths.GoldenVariants, Models, Backends);

    static GoldenCase Load(string model, string caseName) => GoldenCase.Load(TestPaths.GoldenVariants, model, caseName);

    Backend MakeBackend(string name) => GoldenCase.MakeBackend(name, _ => Ctx);

    [Theory, MemberData(nameof(Cases))]
    public void ScoresMatch(string model, string caseName, string backend) =>
        GoldenCase.Run(TestPaths.GoldenVariants, model, caseName, MakeBackend(backend), (g, weights) => g.AssertScores(weights));

    [Theory, MemberData(nameof(Cases))]
    public void GradientAndLossMatch(string model, string caseName, string backend) =>
        GoldenCase.Run(TestPaths.GoldenVariants, model, caseName, MakeBackend(backend), (g, weights) => g.AssertGradientAndLoss(weights));

    [Theory, MemberData(nameof(Cases))]
    public void AdafactorStepsMatch(string model, string caseName, string backend) =>
        GoldenCase.Run(TestPaths.GoldenVariants, model, caseName, MakeBackend(backend), (g, weights) => g.AssertAdafactorSteps(weights));

    [Fact]
    public void TheVariantsAreWhatTheyClaim()
    {
        // A guard on the files: the tests above would pass just as well on a T5 v1.1 model.
        using var ul2 = T5Checkpoint.Open(Path.Combine(TestPaths.GoldenVariants, "tiny-ul2"));
        Assert.Equal(T5FeedForward.GatedSilu, ul2.Config.FeedForwardProj);
        Assert.NotEqual(ul2.Config.DModel, ul2.Config.InnerDim);
        using var umt5 = T5Checkpoint.Open(Path.Combine(TestPaths.GoldenVariants, "tiny-umt5"));
        Assert.True(umt5.Config.PerLayerPositionBias);
        Assert.NotEqual(umt5.Config.NumLayers, umt5.Config.NumDecoderLayers);
        // Distinct tables: a pass that read block 0's everywhere would differ.
        Assert.NotEqual(umt5.ReadAll(T5Names.RelativeBias(T5Stack.Decoder, 0)), umt5.ReadAll(T5Names.RelativeBias(T5Stack.Decoder, 2)));
    }

    public static TheoryData<string, string, WeightPrecision> HalfCases()
    {
        var data = new TheoryData<string, string, WeightPrecision>();
        foreach (var row in Cases().Where(r => (string)r[2] == "vulkan"))
            foreach (var p in new[] { WeightPrecision.Fp16, WeightPrecision.Bf16 })
                data.Add((string)row[0], (string)row[1], p);
        return data;
    }

    /// <summary>16-bit weights, like with like as in <see cref="GoldenTests"/>: the device reading
    /// the halves against the CPU backend computing with the same rounded weights, within the
    /// fp32 tolerances, on the portable kernels (<see cref="GpuFixture.Portable"/>: no product on
    /// matrix units, which would round the activations).</summary>
    [Theory, MemberData(nameof(HalfCases))]
    public void VulkanHalfWeightsMatchTheCpuRounding(string model, string caseName, WeightPrecision precision)
    {
        using var g = Load(model, caseName);
        (double[] Scores, double Loss, float[] Grad) Run(Backend be)
        {
            using var weights = new T5Weights(g.Ckpt, be, precision);
            using var scorer = new Scorer(weights);
            var scores = scorer.Score(g.Examples, PromptSet.Stack([g.Prompt0], g.DModel)).Select(r => r.LogProb).ToArray();
            var (loss, grad) = PromptTrainer.Gradient(weights, g.Examples, g.Prompt0);
            return (scores, loss, grad);
        }
        using var cpuBackend = new CpuBackend();
        // fp32 activations, as the CPU keeps them: a GPU's plan would choose bf16, beyond these bounds.
        using var gpuBackend = new GpuBackend(PortableCtx) { Activations = ActivationPrecision.Fp32 };
        var cpu = Run(cpuBackend);
        var gpu = Run(gpuBackend);
        for (int i = 0; i < cpu.Scores.Length; i++)
            Assert.True(Math.Abs(gpu.Scores[i] - cpu.Scores[i]) <= 1e-3 + 1e-4 * Math.Abs(cpu.Scores[i]),
                $"{precision} example {i}: {gpu.Scores[i]} on the device vs {cpu.Scores[i]} on the CPU");
        Assert.True(Math.Abs(gpu.Loss - cpu.Loss) <= 1e-3 + 1e-4 * cpu.Loss, $"{precision} loss {gpu.Loss} vs {cpu.Loss}");
        double err = Check.NormRelativeError(cpu.Grad, gpu.Grad);
        Assert.True(err <= 1e-3, $"{precision} prompt gradient: device vs CPU relative error {err:E3} > 1e-3");
    }

    public static TheoryData<string, string, ActivationPrecision> DecodingCases()
    {
        var data = new TheoryData<string, string, ActivationPrecision>();
        foreach (var model in Models)
            foreach (var backend in new[] { "cpu", "vulkan" })
                foreach (var storage in new[] { ActivationPrecision.Fp32, ActivationPrecision.Bf16, ActivationPrecision.Fp16 })
                    data.Add(model, backend, storage);
        return data;
    }

    static GoldenCase FirstCase(string model) =>
        Load(model, Path.GetFileName(Directory.GetDirectories(Path.Combine(TestPaths.GoldenVariants, model, "cases")).Order().First()));

    const int MaxNewTokens = 6;

    /// <summary>Greedy decoding of the first three examples of <paramref name="g"/>, inputs only,
    /// with its prompt: <see cref="MaxNewTokens"/> tokens at most; with
    /// <paramref name="tokensToCompare"/>, at least one example decodes two tokens.</summary>
    static (PromptSet Prompts, List<EncodedExample> Examples, List<List<int>> Decoded) Decode(GoldenCase g, T5Weights weights, bool tokensToCompare = true)
    {
        var prompts = PromptSet.Stack([g.Prompt0], g.DModel);
        var examples = g.Examples.Take(3).Select(e => e with { TargetIds = [] }).ToList();
        var decoded = GreedyDecoder.Run(weights, examples, prompts, null, batchSize: examples.Count, maxNewTokens: MaxNewTokens).OrderBy(r => r.Index).Select(r => r.Ids).ToList();
        if (tokensToCompare) Assert.Contains(decoded, ids => ids.Count >= 2);
        return (prompts, examples, decoded);
    }

    /// <summary>The teacher-forced pass's logits with <paramref name="targets"/> as the examples'
    /// targets: row (i, t) ranks the token after example i's first t targets. Also returns the
    /// rows' stride in steps (the batch's target length).</summary>
    static (float[] Logits, int Steps) ForcedLogits(T5Weights weights, PromptSet prompts, List<EncodedExample> examples, List<List<int>> targets)
    {
        var c = weights.Config;
        var forced = examples.Zip(targets, (e, ids) => e with { TargetIds = [.. ids] }).ToList();
        var host = HostBatch.Build(forced, prompts.Length, 1, null, forced.Count, c.DecoderStartTokenId, promptLengths: prompts.MaskedLengths);
        var be = weights.Backend;
        using var promptTensor = be.Floats(prompts.Data.Length, "prompt");
        be.Upload(promptTensor, prompts.Data);
        using var pass = new T5Pass(weights, host.Shape, ActivationMode.Inference, promptTensor);
        pass.Load(host);
        using (var run = be.Record(pass.EmitForward)) run.Run();
        var logits = new float[pass.Logits.Length];
        be.Download(pass.Logits, logits);
        return (logits, host.Shape.TargetLength);
    }

    static ReadOnlySpan<float> Row(float[] logits, int steps, int vocab, int example, int step) =>
        logits.AsSpan(checked(((example * steps) + step) * vocab), vocab);

    /// <summary>KV-cached greedy decoding (Generator, one decoder step per token, each layer's
    /// own position bias in umT5) picks at every step the token the teacher-forced pass, which the
    /// golden cases check, ranks first given the tokens before it; with activations in 16 bits
    /// the decoder keeps its caches and block activations as the pass keeps them.</summary>
    [Theory, MemberData(nameof(DecodingCases))]
    public void GreedyDecodingFollowsTheFullForward(string model, string backend, ActivationPrecision storage)
    {
        using var g = FirstCase(model);
        using var be = MakeBackend(backend);
        be.Activations = storage;
        using var weights = new T5Weights(g.Ckpt, be);
        var (prompts, examples, decoded) = Decode(g, weights);
        AssertFollowsTheFullForward(weights, prompts, examples, decoded);
    }

    /// <summary>Stopping is a choice too, which no golden model makes within
    /// <see cref="MaxNewTokens"/>: with the LM head's eos row made twice the row of a token the
    /// decoding picks (eos then outranks it wherever that token's logit is the largest and
    /// positive), the decoding stops short for at least one example, where the full forward ranks
    /// eos first, and follows it before.</summary>
    [Theory]
    [InlineData("tiny-ul2", "cpu"), InlineData("tiny-ul2", "vulkan")]
    [InlineData("tiny-umt5", "cpu"), InlineData("tiny-umt5", "vulkan")]
    [InlineData("tiny-byt5", "cpu"), InlineData("tiny-byt5", "vulkan")]
    public void GreedyDecodingStopsWhereTheFullForwardRanksEosFirst(string model, string backend)
    {
        int like;
        using (var golden = FirstCase(model))
        using (var be = MakeBackend(backend))
        using (var weights = new T5Weights(golden.Ckpt, be))
            like = Decode(golden, weights).Decoded.First(ids => ids.Count > MaxNewTokens / 2)[MaxNewTokens / 2];

        using var dir = new TempDir();
        string source = Path.Combine(TestPaths.GoldenVariants, model), copy = dir.CopyOf(source, model);
        using (var ckpt = T5Checkpoint.Open(source))
        {
            var layout = T5Names.All(ckpt.Config);
            int d = ckpt.Config.DModel, eos = ckpt.Config.EosTokenId;
            SafetensorsWriter.Write(Path.Combine(copy, "model.safetensors"), layout, i =>
            {
                var values = ckpt.ReadAll(layout[i].Name);
                if (layout[i].Name == T5Names.LmHead)
                    for (int j = 0; j < d; j++) values[eos * d + j] = 2 * values[like * d + j];
                return values;
            }, new Dictionary<string, string> { ["format"] = "pt" });
        }

        using var g = GoldenCase.Load(dir.Path, model, Path.GetFileName(Directory.GetDirectories(Path.Combine(copy, "cases")).Order().First()));
        using var stopping = MakeBackend(backend);
        using var stoppingWeights = new T5Weights(g.Ckpt, stopping);
        // Where every example stops within two tokens, the stops are what is compared.
        var (prompts, examples, decoded) = Decode(g, stoppingWeights, tokensToCompare: false);
        Assert.Contains(decoded, ids => ids.Count < MaxNewTokens);
        AssertFollowsTheFullForward(stoppingWeights, prompts, examples, decoded);
    }

    /// <summary>Each example's decoded tokens are the full forward's first choices given the
    /// tokens before, and where it stopped short of <see cref="MaxNewTokens"/> (eos counts in
    /// them and is not returned), eos is.</summary>
    static void AssertFollowsTheFullForward(T5Weights weights, PromptSet prompts, List<EncodedExample> examples, List<List<int>> decoded)
    {
        var (logits, steps) = ForcedLogits(weights, prompts, examples, decoded);
        var c = weights.Config;
        for (int i = 0; i < examples.Count; i++)
        {
            for (int t = 0; t < decoded[i].Count; t++)
            {
                int best = ArgMax(Row(logits, steps, c.VocabSize, i, t));
                Assert.True(best == decoded[i][t], $"example {i} step {t}: decoded {decoded[i][t]}, the full forward ranks {best} first");
            }
            if (decoded[i].Count < MaxNewTokens)
            {
                Assert.True(decoded[i].Count < steps, $"example {i}: {decoded[i].Count} tokens, {steps} forced steps");
                int stop = ArgMax(Row(logits, steps, c.VocabSize, i, decoded[i].Count));
                Assert.True(stop == c.EosTokenId, $"example {i} stopped after {decoded[i].Count} tokens, where the full forward ranks {stop} first, not eos");
            }
        }
    }

    static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int v = 1; v < row.Length; v++) if (row[v] > row[best]) best = v;
        return best;
    }

    /// <summary>How far below the CPU's first choice, relative to the step's largest logit, the
    /// token the device chose instead may be (<see cref="SixteenBitDecodingOnTheDeviceIsTheCpus"/>):
    /// 2⁻⁸ (bf16's unit roundoff u), the size of one stored value's rounding flipping.</summary>
    const double NearTie = 1.0 / 256;

    /// <summary>With 16-bit caches the device decodes the tokens the CPU reference decodes with
    /// the same storage, whose rounding it emulates, but for near-ties. The two sum in different
    /// orders (and lavapipe's order depends on the CPU it runs on), so a value that lands next to a
    /// rounding boundary may be stored as neighbouring 16-bit values on the two, and a later choice
    /// between two almost equal logits may follow it: where the tokens part, the CPU's own logits
    /// at that step must rank the device's token within <see cref="NearTie"/> of its first choice
    /// (a wrong kernel misses that by far). The tokens after a parting follow different inputs and
    /// are not compared; at least one example must decode alike throughout.</summary>
    [Theory]
    [InlineData("tiny-ul2", ActivationPrecision.Bf16)]
    [InlineData("tiny-umt5", ActivationPrecision.Bf16)]
    [InlineData("tiny-byt5", ActivationPrecision.Bf16)]
    [InlineData("tiny-umt5", ActivationPrecision.Fp16)]
    public void SixteenBitDecodingOnTheDeviceIsTheCpus(string model, ActivationPrecision storage)
    {
        using var g = FirstCase(model);
        using var cpu = MakeBackend("cpu");
        using var gpu = MakeBackend("vulkan");
        cpu.Activations = gpu.Activations = storage;
        using var onCpu = new T5Weights(g.Ckpt, cpu);
        using var onGpu = new T5Weights(g.Ckpt, gpu);
        var (prompts, examples, cpuIds) = Decode(g, onCpu);
        var gpuIds = Decode(g, onGpu).Decoded;
        var c = g.Ckpt.Config;
        // The token chosen at step t: eos where the decoding stopped early (the ids leave it out).
        int At(List<int> ids, int t) => t < ids.Count ? ids[t] : c.EosTokenId;
        int alike = 0;
        for (int i = 0; i < examples.Count; i++)
        {
            int t = 0;
            while (t < MaxNewTokens && (t < cpuIds[i].Count || t < gpuIds[i].Count) && At(cpuIds[i], t) == At(gpuIds[i], t)) t++;
            if (t == MaxNewTokens || t >= cpuIds[i].Count && t >= gpuIds[i].Count) { alike++; continue; }
            // The CPU's logits after the shared first t tokens.
            var prefix = new List<int>(cpuIds[i].Take(t)) { At(cpuIds[i], t) };
            var (logits, steps) = ForcedLogits(onCpu, prompts, [examples[i]], [prefix]);
            var row = Row(logits, steps, c.VocabSize, 0, t);
            int mine = At(cpuIds[i], t), theirs = At(gpuIds[i], t);
            double scale = 0;
            foreach (float v in row) scale = Math.Max(scale, Math.Abs(v));
            double gap = row[mine] - row[theirs];
            Assert.True(gap <= NearTie * scale,
                $"example {i} step {t}: the CPU decodes {mine}, the device {theirs}, which the CPU ranks {gap:G4} below ({gap / scale:G3} of the largest logit, more than {NearTie:G3})");
        }
        Assert.True(alike > 0, $"no example of {model} decodes alike on the CPU and the device");
    }
}
