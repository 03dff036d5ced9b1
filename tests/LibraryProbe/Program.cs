using System.Text.Json;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Model.Tokenization;
using VkPrompt.Runtime;

// Scores one golden case (tests/Model/GoldenTests.cs reads them the same way) on a context
// created with the default options, and prints the log-likelihoods with and without the prompt
// as JSON: {"scores": [...], "noPrompt": [...]}.
if (args.Length != 2)
{
    Console.Error.WriteLine("usage: LibraryProbe GOLDEN_MODEL_DIR CASE");
    return 2;
}
string dir = args[0], caseDir = Path.Combine(dir, "cases", args[1]);
using var ckpt = T5Checkpoint.Open(dir);
var tok = T5Tokenizer.Load(dir);
var enc = new ExampleEncoder(tok, 100_000, 100_000);
var examples = DataFile.Read(Path.Combine(caseDir, "data.jsonl")).Select(enc.Encode).ToList();
var prompt = PromptFile.Load(Path.Combine(caseDir, "prompt0.safetensors"), ckpt.Config.DModel, out _);

using var ctx = GpuContext.Create();
using var backend = new GpuBackend(ctx);
using var weights = new T5Weights(ckpt, backend);
using var scorer = new Scorer(weights);
var scores = scorer.Score(examples, PromptSet.Stack([prompt], ckpt.Config.DModel)).Select(s => s.LogProb).ToArray();
var noPrompt = scorer.Score(examples, null).Select(s => s.LogProb).ToArray();
Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, double[]> { ["scores"] = scores, ["noPrompt"] = noPrompt }));
return 0;
