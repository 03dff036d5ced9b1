using BenchmarkDotNet.Attributes;
using VkPrompt.Cli;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;

namespace VkPrompt.Bench;

/// <summary>
/// Inference on a random model with t5-small's shapes (issue 3): scoring a batch of 8 inputs of
/// 128 tokens, and greedy decoding with the key/value cache against re-running the whole decoder
/// for every new token. Runs on VKPROMPT_DEVICE (auto: the best Vulkan device), under the suite's
/// job (BenchConfig), one call per iteration: a call takes seconds on lavapipe (the re-run baseline
/// close to a minute), and the pilot stage's first guess of four calls would dominate the suite.
/// </summary>
[InvocationCount(1)]
public class InferenceBenchmarks
{
    const int Batch = 8, InputLength = 128, NewTokens = 8;

    string dir = "";
    T5Checkpoint ckpt = null!;
    GpuContext ctx = null!;
    GpuBackend backend = null!;
    T5Weights weights = null!;
    Scorer scorer = null!;
    Generator generator = null!;
    List<EncodedExample> examples = null!;

    [GlobalSetup]
    public void Setup()
    {
        dir = Directory.CreateTempSubdirectory("vkprompt-bench").FullName;
        RandomT5.Write(dir, T5Config.Named("t5-small"), seed: 0);
        ckpt = T5Checkpoint.Open(dir);
        ctx = GpuContext.Create(EnvironmentSettings.GpuOptions());
        backend = new GpuBackend(ctx) { AttentionFusion = EnvironmentSettings.Attention() };
        weights = new T5Weights(ckpt, backend);
        scorer = new Scorer(weights);
        var rng = new Random(1);
        examples = Enumerable.Range(0, Batch).Select(_ =>
            new EncodedExample([.. Enumerable.Range(0, InputLength - 1).Select(_ => rng.Next(3, 32000)), 1], [rng.Next(3, 32000), 1])).ToList();
        generator = new Generator(weights, new BatchShape(Batch, InputLength, 1, 0), NewTokens);
    }

    [Benchmark(Description = "score 8 x 128 tokens (t5-small)")]
    public ScoreResult[] Score() => scorer.Score(examples, null);

    [Benchmark(Description = "greedy 8 tokens, KV cache (t5-small)")]
    public List<int>[] GenerateWithCache() => generator.Generate(examples, null);

    /// <summary>The baseline the cache is measured against: every new token re-runs the encoder
    /// and the whole decoder over all tokens so far (what a decoder without a cache does).</summary>
    [Benchmark(Description = "greedy 8 tokens, full re-run per token (t5-small)")]
    public int[][] GenerateFromScratch()
    {
        var generated = examples.Select(_ => new List<int>()).ToArray();
        int vocab = weights.Config.VocabSize;
        for (int t = 0; t < NewTokens; t++)
        {
            // Targets = tokens so far plus a placeholder whose logits give the next token.
            var batch = examples.Select((e, i) => e with { TargetIds = [.. generated[i], 0] }).ToList();
            var host = HostBatch.Build(batch, 0, decoderStart: weights.Config.DecoderStartTokenId);
            using var pass = new T5Pass(weights, host.Shape, ActivationMode.Inference, null);
            using var run = backend.Record(pass.EmitForward);
            pass.Load(host);
            run.Run();
            var logits = new float[pass.Logits.Length];
            backend.Download(pass.Logits, logits);
            for (int i = 0; i < Batch; i++)
            {
                var row = logits.AsSpan((i * host.Shape.TargetLength + t) * vocab, vocab);
                generated[i].Add(System.Numerics.Tensors.TensorPrimitives.IndexOfMax(row));
            }
        }
        return generated.Select(g => g.ToArray()).ToArray();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        generator.Dispose();
        scorer.Dispose();
        weights.Dispose();
        backend.Dispose();
        ctx.Dispose();
        ckpt.Dispose();
        Directory.Delete(dir, true);
    }
}
