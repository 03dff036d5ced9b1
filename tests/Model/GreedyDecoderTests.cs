using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Model.Tokenization;
using VkPrompt.Runtime;
using Xunit;

namespace VkPrompt.Tests.Model;

/// <summary>Greedy decoding of examples that carry targets, as training's validation decodes
/// its data: the targets play no part (only the encoder runs from the batch).</summary>
public sealed class GreedyDecoderTests
{
    [Fact]
    public void TargetsOfAnyLengthDoNotChangeTheDecoding()
    {
        using var m = new TinyV11OnCpu();
        var (tok, weights) = (m.Tokenizer, m.Weights);
        var withTargets = DataFile.Read(Path.Combine(ModelTestFiles.TinyV11, "cases", "p8", "data.jsonl"))
            .Select(e => new EncodedExample(tok.Encode(e.Input), tok.Encode(e.Target!))).ToList();
        Assert.Contains(withTargets, e => e.TargetIds.Length > HostBatch.LengthQuantum);
        var inputsOnly = withTargets.Select(e => e with { TargetIds = [] }).ToList();

        var decoded = GreedyDecoder.Run(weights, withTargets, null, batchSize: 3, maxNewTokens: 5).ToList();
        var reference = GreedyDecoder.Run(weights, inputsOnly, null, batchSize: 3, maxNewTokens: 5).ToList();
        Assert.Equal(reference.Select(r => r.Index), decoded.Select(r => r.Index));
        Assert.All(reference.Zip(decoded), p => Assert.Equal(p.First.Ids, p.Second.Ids));
        Assert.Contains(reference, r => r.Ids.Count > 0);
    }

    /// <summary>Batches that pad to different input lengths keep one generator at a time: while the
    /// i-th batch's result is read, what is allocated is what decoding that batch alone holds.</summary>
    [Fact]
    public void OneGeneratorIsKeptAtATime()
    {
        using var m = new TinyV11OnCpu();
        var (be, weights) = (m.Backend, m.Weights);
        var examples = ModelTestFiles.OfThreeShapes(m.Tokenizer);
        long start = be.MemoryUse.Current;

        long Held(IEnumerable<(int, List<int>)> run, int reads)
        {
            using var e = run.GetEnumerator();
            for (int i = 0; i < reads; i++) Assert.True(e.MoveNext());
            return be.MemoryUse.Current - start;
        }
        var alone = examples.Select(x => Held(GreedyDecoder.Run(weights, [x], null, 1, 3), 1)).ToArray();
        Assert.Equal(start, be.MemoryUse.Current);
        for (int i = 0; i < examples.Count; i++)
            Assert.Equal(alone[i], Held(GreedyDecoder.Run(weights, examples, null, 1, 3), i + 1));
    }

    /// <summary>Records the storage each float tensor is allocated with, by name (the last of a name).</summary>
    sealed class AllocationRecorder : TraceBackend
    {
        public readonly Dictionary<string, ActivationPrecision> Storages = new();

        internal override Tensor Floats(long length, string name, bool hostVisible = false, ActivationPrecision storage = ActivationPrecision.Fp32)
        {
            Storages[name] = storage;
            return base.Floats(length, name, hostVisible, storage);
        }
    }

    /// <summary>The decoder keeps its key/value caches and block activations in the backend's
    /// activations' storage, as the full forward does, and x, the scores and the logits in fp32.</summary>
    [Theory]
    [InlineData(ActivationPrecision.Fp32)]
    [InlineData(ActivationPrecision.Bf16)]
    [InlineData(ActivationPrecision.Fp16)]
    public void TheDecoderStoresItsCachesAsTheFullForwardStoresKeysAndValues(ActivationPrecision storage)
    {
        var config = ModelTestFiles.Tiny(gated: true);
        using var be = new AllocationRecorder { Activations = storage };
        using var weights = T5Weights.Unloaded(config, be, WeightPrecision.Fp32);
        using var generator = new Generator(weights, new BatchShape(2, 8, 1, 4), maxNewTokens: 3);
        string[] layers = [.. Enumerable.Range(0, config.NumDecoderLayers).SelectMany(i => new[] { $"k_cache{i}", $"v_cache{i}", $"cross_k{i}", $"cross_v{i}" })];
        foreach (var name in new[] { "norm", "q", "ctx", "ff_a", "ff_b", "ff_h" }.Concat(layers))
            Assert.Equal((name, storage), (name, be.Storages[name]));
        foreach (var name in new[] { "x", "probs", "final", "logits" })
            Assert.Equal((name, ActivationPrecision.Fp32), (name, be.Storages[name]));
    }
}
