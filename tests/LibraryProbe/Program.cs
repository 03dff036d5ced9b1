using System.Text.Json;
using VkPrompt.Model;
using VkPrompt.Runtime;
using VkPrompt.Training;

// Scores one golden case (tests/Model/GoldenTests.cs reads them the same way) on a context
// created with the default options, and prints the log-likelihoods with and without the prompt
// as JSON: {"scores": [...], "noPrompt": [...]}.
if (args.Length != 2)
{
    Console.Error.WriteLine("usage: LibraryProbe GOLDEN_MODEL_DIR CASE");
    return 2;
}
string dir = args[0], caseDir = Path.Combine(dir, "cases", args[1]);
using var ctx = GpuContext.Create();
using var model = PromptModel.Open(dir, ctx);
var enc = model.Encoder(100_000, 100_000);
var examples = DataFile.Read(Path.Combine(caseDir, "data.jsonl")).Select(enc.Encode).ToList();
var prompts = model.Prompts([model.LoadPrompt(Path.Combine(caseDir, "prompt0.safetensors"))]);
// One batch of all the examples, as the golden scores were computed.
var scores = model.Score(examples, prompts, batchSize: examples.Count).Select(s => s.LogProb).ToArray();
var noPrompt = model.Score(examples, null, batchSize: examples.Count).Select(s => s.LogProb).ToArray();
Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, double[]> { ["scores"] = scores, ["noPrompt"] = noPrompt }));
return 0;
