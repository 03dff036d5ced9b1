using System.Globalization;
using System.Text.Json;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Model.Tokenization;
using VkPrompt.Tests.Model;
using Xunit;

namespace VkPrompt.Tests.Cli;

/// <summary>Issue 3: score, tokenize and generate through the CLI against the golden files and
/// against a cache-free greedy decoder built from the teacher-forced T5 program.</summary>
public sealed class InferenceCliTests : IDisposable
{
    readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    public static TheoryData<string, string, string, bool> ScoreCases()
    {
        var data = new TheoryData<string, string, string, bool>();
        foreach (var (model, c) in new[] { ("tiny-v10-bf16", "p5"), ("tiny-v11", "p8") })
            foreach (var device in new[] { "cpu", "vulkan" })
                foreach (var withPrompt in new[] { true, false })
                    data.Add(model, c, device, withPrompt);
        return data;
    }

    [Theory, MemberData(nameof(ScoreCases))]
    public void ScoreMatchesTheGoldenLogLikelihoods(string model, string caseName, string device, bool withPrompt)
    {
        string caseDir = Path.Combine(TestPaths.Golden, model, "cases", caseName);
        string[] args = ["score", "--model", Path.Combine(TestPaths.Golden, model), "--data", Path.Combine(caseDir, "data.jsonl"),
                         "--device", device == "cpu" ? "cpu" : CliRun.VulkanDevice,
                         // A batch smaller than the file, so the lines come from several batches and must still be in file order.
                         "--batch-size", "4"];
        if (withPrompt) args = [.. args, "--prompt", Path.Combine(caseDir, "prompt0.safetensors")];
        var r = CliRun.Of(args).Succeeded();

        var golden = CliRun.GoldenDoubles(Path.Combine(caseDir, withPrompt ? "scores.json" : "scores_noprompt.json"));
        var lines = r.OutLines;
        Assert.Equal(golden.Length, lines.Length);
        var tok = T5Tokenizer.Load(Path.Combine(TestPaths.Golden, model));
        var examples = DataFile.Read(Path.Combine(caseDir, "data.jsonl"));
        for (int i = 0; i < lines.Length; i++)
        {
            var json = JsonDocument.Parse(lines[i]).RootElement;
            Assert.Equal(i, json.GetProperty("index").GetInt32());
            CliRun.AssertLogLikelihood(golden[i], json.GetProperty("logprob").GetDouble(), $"example {i}");
            Assert.Equal(tok.Encode(examples[i].Target!).Length, json.GetProperty("tokens").GetInt32());
        }
    }

    static List<(string Text, int[] Ids)> GoldenTokens() =>
        File.ReadLines(Path.Combine(ModelTestFiles.TinyV11, "cases", "tokens.jsonl"))
            .Select(l => JsonDocument.Parse(l).RootElement)
            .Select(e => (e.GetProperty("text").GetString()!, e.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray()))
            .ToList();

    [Fact]
    public void TokenizeTextPrintsTheGoldenIds()
    {
        foreach (var (text, ids) in GoldenTokens())
        {
            var r = CliRun.Of("tokenize", "--model", ModelTestFiles.TinyV11, "--text", text).Succeeded();
            Assert.Equal(ids, JsonSerializer.Deserialize<int[]>(Assert.Single(r.OutLines)));
        }
    }

    [Fact]
    public void TokenizeDataPrintsTheGoldenIdsPerLine()
    {
        var golden = GoldenTokens();
        var data = dir.File("texts.jsonl");
        File.WriteAllLines(data, golden.Select(g => JsonSerializer.Serialize(new Dictionary<string, string> { ["input"] = g.Text })));
        var lines = CliRun.Of("tokenize", "--model", ModelTestFiles.TinyV11, "--data", data).Succeeded().OutLines;
        Assert.Equal(golden.Count, lines.Length);
        for (int i = 0; i < lines.Length; i++)
        {
            var ids = JsonDocument.Parse(lines[i]).RootElement.GetProperty("input_ids").EnumerateArray().Select(x => x.GetInt32());
            Assert.Equal(golden[i].Ids, ids);
        }
    }

    /// <summary>Greedy decoding with no key/value cache: step t re-runs the whole teacher-forced
    /// decoder over the tokens chosen so far and takes the argmax of the logits at position t
    /// (the first maximum, as the argmax kernel). Stops at eos or after maxNew tokens.</summary>
    static List<int> ReferenceDecode(T5Weights w, int[] inputIds, float[]? prompt, int maxNew)
    {
        var be = w.Backend;
        var c = w.Config;
        int promptLength = prompt is null ? 0 : prompt.Length / c.DModel;
        using var promptTensor = prompt is null ? null : be.Floats(prompt.Length, "prompt");
        if (prompt is not null) be.Upload(promptTensor!, prompt);
        var chosen = new List<int>();
        var logits = new float[c.VocabSize];
        for (int t = 0; t < maxNew; t++)
        {
            // The targets are the tokens so far plus a placeholder: the decoder input is the targets
            // shifted right, so position t sees exactly the chosen tokens. The placeholder's loss is unused.
            var host = HostBatch.Build([new EncodedExample(inputIds, [.. chosen, c.PadTokenId])], promptLength, decoderStart: c.DecoderStartTokenId);
            using var pass = new T5Pass(w, host.Shape, ActivationMode.Inference, promptTensor);
            using var run = be.Record(pass.EmitForward);
            pass.Load(host);
            run.Run();
            be.Download(pass.Logits, logits, (long)t * c.VocabSize);
            int next = 0;
            for (int j = 1; j < logits.Length; j++)
                if (logits[j] > logits[next]) next = j;
            if (next == c.EosTokenId) break;
            chosen.Add(next);
        }
        return chosen;
    }

    /// <summary>On cpu and on the Vulkan device, against one reference decoding per input, on the
    /// v1.1 golden model (the v1.0 one greedily repeats one token for every input). Five inputs
    /// of different lengths in batches of three: the batches pad to different lengths and the
    /// second is short (one padding row). The Vulkan run is held to the CPU reference's tokens
    /// too: along these paths the smallest gap between the best and the second-best logit is
    /// 1.4e-3, far above the fp32 differences between backends.</summary>
    [Theory, InlineData(true), InlineData(false)]
    public void GenerateEqualsCacheFreeArgmaxDecoding(bool withPrompt)
    {
        const int maxNew = 7;
        string model = ModelTestFiles.TinyV11;
        string caseDir = Path.Combine(model, "cases", "p8");
        var inputs = DataFile.Read(Path.Combine(caseDir, "data.jsonl")).Select(e => e.Input).Take(5).ToList();
        var data = dir.File("inputs.jsonl");
        File.WriteAllLines(data, inputs.Select(i => JsonSerializer.Serialize(new Dictionary<string, string> { ["input"] = i })));
        string prompt = Path.Combine(caseDir, "prompt0.safetensors");

        string[] args = ["generate", "--model", model, "--data", data, "--batch-size", "3", "--max-new-tokens", maxNew.ToString(CultureInfo.InvariantCulture)];
        if (withPrompt) args = [.. args, "--prompt", prompt];

        using var ckpt = T5Checkpoint.Open(model);
        var tok = T5Tokenizer.Load(model);
        using var be = new CpuBackend();
        using var weights = new T5Weights(ckpt, be);
        var promptData = withPrompt ? PromptFile.Load(prompt, ckpt.Config.DModel, out _) : null;
        Assert.True(inputs.Select(i => HostBatch.Round(tok.Encode(i).Length)).Distinct().Count() > 1, "the inputs should pad to different lengths");
        var reference = inputs.Select(i => ReferenceDecode(weights, tok.Encode(i), promptData, maxNew)).ToList();
        Assert.All(reference, Assert.NotEmpty);
        foreach (var device in new[] { "cpu", CliRun.VulkanDevice })
        {
            var lines = CliRun.Of([.. args, "--device", device]).Succeeded().OutLines;
            Assert.Equal(inputs.Count, lines.Length);
            for (int i = 0; i < inputs.Count; i++)
            {
                var line = JsonDocument.Parse(lines[i]).RootElement;
                Assert.Equal(i, line.GetProperty("index").GetInt32());
                var ids = line.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToList();
                Assert.True(reference[i].SequenceEqual(ids), $"--device {device}, input {i}: generated [{string.Join(", ", ids)}], reference [{string.Join(", ", reference[i])}]");
                Assert.Equal(tok.Decode(ids), line.GetProperty("text").GetString());
            }
        }
    }
    /// <summary>One file serving two tasks: each line names its prompt, the prompts differ in
    /// length (8 and 3 tokens), and every line's score and decoding equal those of a run of its
    /// task's lines alone with its one prompt.</summary>
    [Fact]
    public void ScoreAndGenerateServeSeveralPromptsFromOneFile()
    {
        string model = ModelTestFiles.TinyV11;
        string caseDir = Path.Combine(model, "cases", "p8");
        string longPrompt = Path.Combine(caseDir, "prompt0.safetensors");
        using var ckpt = T5Checkpoint.Open(model);
        int d = ckpt.Config.DModel;
        var full = PromptFile.Load(longPrompt, d, out int longLength);
        string shortPrompt = dir.File("short.npy");
        PromptFile.SaveNpy(shortPrompt, full.AsSpan(0, 3 * d), 3, d);
        Assert.NotEqual(3, longLength);

        var examples = DataFile.Read(Path.Combine(caseDir, "data.jsonl"));
        string Line(Example e, string? prompt) => JsonSerializer.Serialize(prompt is null
            ? new Dictionary<string, string> { ["input"] = e.Input, ["target"] = e.Target! }
            : new Dictionary<string, string> { ["input"] = e.Input, ["target"] = e.Target!, ["prompt"] = prompt });
        string Task(int i) => i % 3 == 0 ? "long" : "short";
        string mixed = dir.File("mixed.jsonl");
        File.WriteAllLines(mixed, examples.Select((e, i) => Line(e, Task(i))));
        var alone = new Dictionary<string, (string File, string Prompt, List<int> Lines)>();
        foreach (var (task, prompt) in new[] { ("long", longPrompt), ("short", shortPrompt) })
        {
            var lines = Enumerable.Range(0, examples.Count).Where(i => Task(i) == task).ToList();
            string file = dir.File(task + ".jsonl");
            File.WriteAllLines(file, lines.Select(i => Line(examples[i], null)));
            alone[task] = (file, prompt, lines);
        }
        string[] Common(string verb, string data) => [verb, "--model", model, "--data", data, "--device", CliRun.VulkanDevice, "--batch-size", "4"];
        string[] Prompts = ["--prompt", "long=" + longPrompt, "--prompt", shortPrompt];

        var scores = CliRun.Of([.. Common("score", mixed), .. Prompts]).Succeeded().OutLines.Select(l => JsonDocument.Parse(l).RootElement).ToList();
        var generated = CliRun.Of([.. Common("generate", mixed), .. Prompts, "--max-new-tokens", "4"]).Succeeded().OutLines
            .Select(l => JsonDocument.Parse(l).RootElement.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToList()).ToList();
        Assert.Equal(examples.Count, scores.Count);
        foreach (var (task, (file, prompt, lines)) in alone)
        {
            var own = CliRun.Of([.. Common("score", file), "--prompt", prompt]).Succeeded().OutLines.Select(l => JsonDocument.Parse(l).RootElement).ToList();
            var ownIds = CliRun.Of([.. Common("generate", file), "--prompt", prompt, "--max-new-tokens", "4"]).Succeeded().OutLines
                .Select(l => JsonDocument.Parse(l).RootElement.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToList()).ToList();
            for (int j = 0; j < lines.Count; j++)
            {
                CliRun.AssertLogLikelihood(own[j].GetProperty("logprob").GetDouble(), scores[lines[j]].GetProperty("logprob").GetDouble(), $"line {lines[j]} ({task})");
                Assert.Equal(ownIds[j], generated[lines[j]]);
            }
        }

        // A line for no prompt given, a line without a name among several prompts, two prompts of one name.
        File.WriteAllLines(dir.File("unknown.jsonl"), [Line(examples[0], "long"), Line(examples[1], "other")]);
        File.WriteAllLines(dir.File("unnamed.jsonl"), [Line(examples[0], "long"), Line(examples[1], null)]);
        foreach (var (data, prompts, message) in new[]
        {
            (dir.File("unknown.jsonl"), Prompts, "example 2 is for prompt 'other', but the --prompt names are long, short"),
            (dir.File("unknown.jsonl"), Array.Empty<string>(), "example 1 is for prompt 'long', but no --prompt was given"),
            (dir.File("unnamed.jsonl"), Prompts, "example 2 has no \"prompt\" field; with several --prompt each line names the one it is for (the --prompt names are long, short)"),
            (mixed, ["--prompt", "short=" + longPrompt, "--prompt", shortPrompt], "two --prompt are named 'short'; name them apart with --prompt NAME=PATH"),
        })
        {
            var r = CliRun.Of([.. Common("score", data), .. prompts]);
            Assert.Equal(VkPrompt.Cli.Cli.UserError, r.ExitCode);
            Assert.EndsWith(message, Assert.Single(CliRun.Lines(r.Err)), StringComparison.Ordinal);
        }
    }

    /// <summary>No truncation is silent: every command that cuts inputs to --max-input-length
    /// says how many on stderr (stdout stays its data), and train says it of both files.</summary>
    [Fact]
    public void EveryCommandSaysWhatItTruncated()
    {
        string model = ModelTestFiles.TinyV11;
        string data = Path.Combine(model, "cases", "p8", "data.jsonl");
        var tok = T5Tokenizer.Load(model);
        var lengths = DataFile.Read(data).Select(e => tok.Encode(e.Input).Length).Order().ToList();
        // A limit that cuts some inputs and not others, so the count means something.
        string max = lengths[1].ToString(CultureInfo.InvariantCulture);
        int cut = lengths.Count(l => l > lengths[1]);
        Assert.InRange(cut, 1, lengths.Count - 2);
        string expected = $"warning: truncated {cut} input(s) to {max} tokens (--max-input-length, --max-target-length)";
        string[] Common(string verb) => [verb, "--model", model, "--data", data, "--device", "cpu", "--max-input-length", max];
        string choices = string.Join(',', DataFile.Read(data).Select(e => e.Target).Distinct());
        foreach (var args in new[]
        {
            Common("score"), Common("generate"), [.. Common("classify"), "--choices", choices],
            [.. Common("eval"), "--choices", choices, "--prompt", Path.Combine(model, "cases", "p8", "prompt0.safetensors")],
        })
        {
            var r = CliRun.Of(args).Succeeded();
            Assert.True(CliRun.Lines(r.Err).Contains(expected), $"{args[0]}: stderr '{r.Err}'");
            Assert.DoesNotContain("truncated", r.Out, StringComparison.Ordinal);
            Assert.NotEmpty(r.OutLines);
        }
        var train = CliRun.Of("train", "--model", model, "--train", data, "--validation", data, "--output", dir.File("out"), "--device", "cpu",
                              "--steps", "1", "--batch-size", "2", "--prompt-length", "2", "--max-input-length", max, "--max-target-length", "2").Succeeded();
        int cutTargets = DataFile.Read(data).Count(e => tok.Encode(e.Target!).Length > 2);
        string both = $"truncated {cut} input(s) to {max} tokens and {cutTargets} target(s) to 2 tokens";
        Assert.Contains($"{both}; validation: {both}", train.Out, StringComparison.Ordinal);
    }

    /// <summary>classify's accuracy over targets that are none of the choices counts them wrong,
    /// and says so.</summary>
    [Fact]
    public void ClassifySaysWhichTargetsAreNoneOfTheChoices()
    {
        string data = Path.Combine(ModelTestFiles.TinyV11, "cases", "p8", "data.jsonl");
        var targets = DataFile.Read(data).Select(e => e.Target!).ToList();
        string[] choices = ["True", "entailment"];
        int outside = targets.Count(t => !choices.Contains(t));
        int first = targets.FindIndex(t => !choices.Contains(t));
        var r = CliRun.Of("classify", "--model", ModelTestFiles.TinyV11, "--data", data, "--choices", string.Join(',', choices), "--device", "cpu").Succeeded();
        Assert.Equal($"warning: {outside} target(s) are none of the choices (example {first + 1}: '{targets[first]}'); the accuracy counts them wrong",
                     Assert.Single(CliRun.Lines(r.Err)));
        var predicted = r.OutLines[..targets.Count];
        int right = predicted.Zip(targets).Count(p => p.First == p.Second);
        Assert.Equal(string.Create(CultureInfo.InvariantCulture, $"accuracy: {right / (double)targets.Count:F4} ({right}/{targets.Count})"), r.OutLines[^1]);
    }

    /// <summary>generate's lines show text as it reads (sentinels, accents), escaping only what JSON
    /// must, and parse back to the same text.</summary>
    [Fact]
    public void GeneratedTextIsReadableJson()
    {
        var line = new VkPrompt.Cli.Commands.GeneratedLine(3, "<extra_id_0> café \"q\"\n", [32099, 1]);
        string json = JsonSerializer.Serialize(line, VkPrompt.Cli.CliJsonLines.Readable.GeneratedLine);
        Assert.Equal("""{"index":3,"text":"<extra_id_0> café \"q\"\n","ids":[32099,1]}""", json);
        Assert.Equal(line.Text, JsonDocument.Parse(json).RootElement.GetProperty("text").GetString());
    }
}
