using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Model.Tokenization;
using Xunit;

namespace VkPrompt.Tests.Model;

/// <summary>Greedy decoding of examples that carry targets, as training's validation decodes
/// its data: the targets play no part (only the encoder runs from the batch).</summary>
public sealed class GreedyDecoderTests
{
    [Fact]
    public void TargetsOfAnyLengthDoNotChangeTheDecoding()
    {
        string model = ModelTestFiles.TinyV11;
        using var ckpt = T5Checkpoint.Open(model);
        var tok = T5Tokenizer.Load(model);
        using var be = new CpuBackend();
        using var weights = new T5Weights(ckpt, be);
        var withTargets = DataFile.Read(Path.Combine(model, "cases", "p8", "data.jsonl"))
            .Select(e => new EncodedExample(tok.Encode(e.Input), tok.Encode(e.Target!))).ToList();
        Assert.Contains(withTargets, e => e.TargetIds.Length > HostBatch.LengthQuantum);
        var inputsOnly = withTargets.Select(e => e with { TargetIds = [] }).ToList();

        var decoded = GreedyDecoder.Run(weights, withTargets, null, 0, batchSize: 3, maxNewTokens: 5).ToList();
        var reference = GreedyDecoder.Run(weights, inputsOnly, null, 0, batchSize: 3, maxNewTokens: 5).ToList();
        Assert.Equal(reference.Select(r => r.Index), decoded.Select(r => r.Index));
        Assert.All(reference.Zip(decoded), p => Assert.Equal(p.First.Ids, p.Second.Ids));
        Assert.Contains(reference, r => r.Ids.Count > 0);
    }
}
