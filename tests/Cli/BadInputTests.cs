using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using VkPrompt.Model;
using VkPrompt.Model.Safetensors;
using VkPrompt.Tests.Model;
using Xunit;
using CliConventions = VkPrompt.Cli.Cli;

namespace VkPrompt.Tests.Cli;

/// <summary>
/// Issue 3: every bad input to an inference command is one line "error: FILE: what is wrong",
/// exit code 2, no stack trace. The bad files are made in a temp dir, mostly by copying the small
/// golden v1.0 model and damaging the copy. --device cpu: the failures happen before any device work.
/// </summary>
public sealed class BadInputTests : IDisposable
{
    static readonly string GoldenModel = ModelTestFiles.TinyV10Bf16;
    static readonly string GoldenData = Path.Combine(GoldenModel, "cases", "p5", "data.jsonl");

    readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    /// <summary>Runs the command and asserts the one-line user error naming
    /// <paramref name="file"/> and saying <paramref name="says"/>.</summary>
    static void FailsWith(string file, string says, params string[] args)
    {
        var r = CliRun.Of(args);
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        Assert.Equal("", r.Out);
        var line = Assert.Single(CliRun.Lines(r.Err));
        Assert.StartsWith("error: ", line, StringComparison.Ordinal);
        Assert.Contains(file, line, StringComparison.Ordinal);
        Assert.Contains(says, line, StringComparison.Ordinal);
        Assert.DoesNotContain(" at VkPrompt", r.Err, StringComparison.Ordinal);
    }

    static string[] Score(string model, string data, params string[] extra) => ["score", "--model", model, "--data", data, "--device", "cpu", .. extra];

    /// <summary>A writable copy of the golden model.</summary>
    string CopyModel()
    {
        var copy = dir.File("model");
        Directory.CreateDirectory(copy);
        foreach (var f in Directory.GetFiles(GoldenModel)) File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
        return copy;
    }

    /// <summary>A path whose reads fail with EIO even for root (reading /proc/self/mem at offset 0),
    /// so "unreadable" does not depend on which user runs the tests.</summary>
    string Unreadable(string path)
    {
        File.CreateSymbolicLink(path, "/proc/self/mem");
        return path;
    }

    /// <summary>Rewrites a safetensors header in place, keeping the data section byte for byte.</summary>
    static void EditHeader(string path, Action<JsonObject> edit)
    {
        var bytes = File.ReadAllBytes(path);
        int length = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(bytes));
        var header = JsonNode.Parse(bytes.AsSpan(8, length))!.AsObject();
        edit(header);
        var newHeader = Encoding.UTF8.GetBytes(header.ToJsonString());
        using var f = File.Create(path);
        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)newHeader.Length);
        f.Write(prefix);
        f.Write(newHeader);
        f.Write(bytes.AsSpan(8 + length));
    }

    /// <summary>Rewrites a checkpoint as F32 with each tensor reshaped or, where
    /// <paramref name="reshape"/> gives null, dropped with its data, so the file itself stays valid;
    /// <paramref name="edit"/> may change a tensor's values.</summary>
    static void Rewrite(string path, Func<string, long[], long[]?> reshape, Action<string, float[]>? edit = null)
    {
        var tensors = new List<(string, long[], ReadOnlyMemory<float>)>();
        using (var file = SafetensorsFile.Open(path))
        {
            foreach (var t in file.Tensors.Values)
            {
                if (reshape(t.Name, t.Shape) is not { } shape) continue;
                var data = new float[t.ElementCount];
                file.ReadFloat32(t.Name, data);
                edit?.Invoke(t.Name, data);
                tensors.Add((t.Name, shape, data));
            }
        }
        SafetensorsWriter.Write(path, tensors);
    }

    [Fact]
    public void MissingModelDirectory()
    {
        var model = dir.File("no-such-model");
        FailsWith(model, "model directory not found", Score(model, GoldenData));
    }

    [Fact]
    public void MissingDataFile()
    {
        var data = dir.File("no-such-data.jsonl");
        FailsWith(data, "file not found", Score(GoldenModel, data));
    }

    [Fact]
    public void MissingPrompt()
    {
        var prompt = dir.File("no-such-prompt.safetensors");
        FailsWith(prompt, "prompt file not found", Score(GoldenModel, GoldenData, "--prompt", prompt));
    }

    [Fact]
    public void DataPathIsADirectory()
    {
        FailsWith(dir.Path, "is a directory; expected a JSONL file", Score(GoldenModel, dir.Path));
    }

    [Fact]
    public void UnreadableDataFile()
    {
        var data = Unreadable(dir.File("data.jsonl"));
        FailsWith(data, "Input/output error", Score(GoldenModel, data));
    }

    [Fact]
    public void UnreadableTokenizerInTheModelDirectory()
    {
        var model = CopyModel();
        File.Delete(Path.Combine(model, "spiece.model"));
        var spiece = Unreadable(Path.Combine(model, "spiece.model"));
        FailsWith(spiece, "cannot read the file", Score(model, GoldenData));
    }

    [Fact]
    public void UnreadablePrompt()
    {
        var prompt = Unreadable(dir.File("prompt.safetensors"));
        // The kernel reports the size of a /proc file as 0, so the reader sees an empty file.
        FailsWith(prompt, "shorter than the 8-byte header length", Score(GoldenModel, GoldenData, "--prompt", prompt));
    }

    [Fact]
    public void TruncatedSafetensors()
    {
        var model = CopyModel();
        var weights = Path.Combine(model, "model.safetensors");
        using (var f = File.OpenWrite(weights)) f.SetLength(f.Length / 2);
        FailsWith(weights, "run past the end of the file", Score(model, GoldenData));
    }

    [Fact]
    public void SafetensorsTruncatedInsideTheHeader()
    {
        var model = CopyModel();
        var weights = Path.Combine(model, "model.safetensors");
        using (var f = File.OpenWrite(weights)) f.SetLength(100);
        FailsWith(weights, "runs past the end of the file (100 bytes)", Score(model, GoldenData));
    }

    [Fact]
    public void HeaderOffsetsRunPastTheFile()
    {
        var model = CopyModel();
        var weights = Path.Combine(model, "model.safetensors");
        long dataLength, size;
        using (var f = SafetensorsFile.Open(weights))
        {
            dataLength = f.Tensors.Values.Sum(t => t.Bytes);
            size = f.Tensors["shared.weight"].Bytes;
        }
        EditHeader(weights, h => h["shared.weight"]!["data_offsets"] = new JsonArray(dataLength, dataLength + size));
        FailsWith(weights, $"tensor shared.weight: data_offsets [{dataLength}, {dataLength + size}] run past the end of the file", Score(model, GoldenData));
    }

    [Fact]
    public void HeaderOffsetsOverlap()
    {
        var model = CopyModel();
        var weights = Path.Combine(model, "model.safetensors");
        // k and v have one shape, so v pointed at k's bytes is well-sized and only overlaps.
        const string k = "encoder.block.0.layer.0.SelfAttention.k.weight", v = "encoder.block.0.layer.0.SelfAttention.v.weight";
        EditHeader(weights, h => h[v]!["data_offsets"] = h[k]!["data_offsets"]!.DeepClone());
        FailsWith(weights, $"tensors {k} and {v} overlap", Score(model, GoldenData));
    }

    [Fact]
    public void MissingTensor()
    {
        var model = CopyModel();
        var weights = Path.Combine(model, "model.safetensors");
        const string gone = "decoder.block.2.layer.1.EncDecAttention.v.weight";
        Rewrite(weights, (name, shape) => name == gone ? null : shape);
        FailsWith(weights, $"missing tensor {gone} [48, 64], which config.json implies", Score(model, GoldenData));
    }

    [Fact]
    public void MisShapedTensor()
    {
        var model = CopyModel();
        var weights = Path.Combine(model, "model.safetensors");
        const string bent = "encoder.block.1.layer.0.SelfAttention.o.weight";
        Rewrite(weights, (name, shape) => name == bent ? [shape[1], shape[0]] : shape);
        FailsWith(weights, $"tensor {bent} is [48, 64] but config.json implies [64, 48]", Score(model, GoldenData));
    }

    /// <summary>A config with fewer layers than the checkpoint holds ran the first layers alone,
    /// without a word; it is a config that does not describe the weights.</summary>
    [Theory]
    [InlineData("num_layers", "encoder.block.1.layer.0.SelfAttention.k.weight")]
    [InlineData("num_decoder_layers", "decoder.block.1.layer.0.SelfAttention.k.weight")]
    public void ConfigWithFewerLayersThanTheWeights(string key, string firstPast)
    {
        var model = CopyModel();
        var config = Path.Combine(model, "config.json");
        var json = JsonNode.Parse(File.ReadAllText(config))!;
        json[key] = 1;  // of 2 encoder and 3 decoder blocks; num_decoder_layers is given, so stays 3
        File.WriteAllText(config, json.ToJsonString());
        FailsWith(config, $"{key} is 1, but the checkpoint holds {firstPast}: the config does not describe these weights", Score(model, GoldenData));
    }

    [Fact]
    public void UnknownFeedForwardProj()
    {
        var model = CopyModel();
        var config = Path.Combine(model, "config.json");
        var json = JsonNode.Parse(File.ReadAllText(config))!;
        json["feed_forward_proj"] = "gated-relu";
        File.WriteAllText(config, json.ToJsonString());
        FailsWith(config, "feed_forward_proj \"gated-relu\" is not supported", Score(model, GoldenData));
    }

    [Theory]
    [InlineData("")]
    [InlineData("\n  \n\t\n")]
    public void DataWithoutExamples(string text)
    {
        var data = dir.File("data.jsonl");
        File.WriteAllText(data, text);
        FailsWith(data, "no examples (the file is empty, or blank lines only)", Score(GoldenModel, data));
    }

    [Fact]
    public void MalformedJsonlLineIsNamedByNumber()
    {
        var data = dir.File("data.jsonl");
        File.WriteAllLines(data, ["""{"input": "a", "target": "b"}""", "", """{"input": "c", "target": """, """{"input": "d", "target": "e"}"""]);
        // Line numbers count blank lines too: they are what an editor shows.
        FailsWith(data, "line 3: not valid JSON", Score(GoldenModel, data));
    }

    [Fact]
    public void JsonlLineWithoutInput()
    {
        var data = dir.File("data.jsonl");
        File.WriteAllLines(data, ["""{"input": "a"}""", """{"text": "b"}"""]);
        FailsWith(data, "line 2: missing string field \"input\"", ["generate", "--model", GoldenModel, "--data", data, "--device", "cpu"]);
    }

    [Fact]
    public void PromptOfTheWrongWidth()
    {
        // The v1.1 golden prompt is [8, 128]; the v1.0 model's d_model is 64.
        var prompt = Path.Combine(ModelTestFiles.TinyV11, "cases", "p8", "prompt0.safetensors");
        FailsWith(prompt, "prompt is [8, 128] but the model's d_model is 64", Score(GoldenModel, GoldenData, "--prompt", prompt));
    }

    [Fact]
    public void PromptWithANaN()
    {
        var prompt = dir.File("prompt.safetensors");
        var values = new float[5 * 64];
        values[64 + 3] = float.NaN;
        SafetensorsWriter.Write(prompt, [(VkPrompt.Model.PromptFile.TensorName, [5, 64], values)]);
        FailsWith(prompt, "prompt value [1, 3] is NaN; a prompt must be finite", Score(GoldenModel, GoldenData, "--prompt", prompt));
    }

    [Theory]
    [InlineData(float.NaN, "NaN")]
    [InlineData(float.PositiveInfinity, "Infinity")]
    public void WeightThatIsNotFinite(float value, string said)
    {
        var model = CopyModel();
        var weights = Path.Combine(model, "model.safetensors");
        const string damaged = "encoder.block.1.layer.1.DenseReluDense.wo.weight";
        Rewrite(weights, (_, shape) => shape, (name, data) =>
        {
            if (name == damaged) data[2 * 96 + 5] = value;
        });
        FailsWith(weights, $"tensor {damaged} holds {said} at [2, 5]; weights must be finite", Score(model, GoldenData));
    }

    /// <summary>A copy of the golden model with finite weights, but a final norm that scales the
    /// decoder's output past fp32's range, so the LM head's logits are ±∞ and the log-softmax NaN.</summary>
    string OverflowingModel()
    {
        var model = CopyModel();
        Rewrite(Path.Combine(model, "model.safetensors"), (_, shape) => shape, (name, data) =>
        {
            if (name == "decoder.final_layer_norm.weight") data.AsSpan().Fill(3e38f);
        });
        return model;
    }

    /// <summary>Where the model computes NaN, a command says so instead of printing it (invalid
    /// JSON) or voting between NaNs.</summary>
    [Theory]
    [InlineData("score", "the log-likelihood of a target is NaN")]
    [InlineData("classify", "the log-likelihood of a target is NaN")]
    [InlineData("grad", "the loss is NaN")]
    public void AnOverflowingModelIsAnErrorNotANumber(string command, string says)
    {
        string[] extra = command switch
        {
            "classify" => ["--choices", "yes,no"],
            "grad" => ["--prompt", Path.Combine(GoldenModel, "cases", "p5", "prompt0.safetensors"), "--output", dir.File("grad.safetensors")],
            _ => [],
        };
        var r = CliRun.Of([command, "--model", OverflowingModel(), "--data", GoldenData, "--device", "cpu", .. extra]);
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        Assert.Equal("", r.Out);
        var line = Assert.Single(CliRun.Lines(r.Err));
        Assert.StartsWith($"error: {says}: the model's activations overflow fp32", line, StringComparison.Ordinal);
        Assert.False(File.Exists(dir.File("grad.safetensors")), "no gradient file is written");
    }

    /// <summary>Optimizer settings the update cannot work with are refused before anything is
    /// written, NaN included (a comparison with NaN is false, so range checks must say what is
    /// allowed, not what is not).</summary>
    [Theory]
    [InlineData("--lr", "nan", "--lr must be a finite number above 0, got NaN")]
    [InlineData("--lr", "0", "--lr must be a finite number above 0, got 0")]
    [InlineData("--clip", "-1", "--clip must be a finite number above 0, got -1")]
    [InlineData("--decay-rate", "-0.5", "--decay-rate must be a finite number of at least 0, got -0.5")]
    [InlineData("--weight-decay", "1", "--weight-decay must be in [0, 1), got 1")]
    [InlineData("--epsilon1", "0", "--epsilon1 must be a finite number above 0, got 0")]
    [InlineData("--min-dim-to-factor", "0", "--min-dim-to-factor must be at least 1, got 0")]
    [InlineData("--dropout", "nan", "--dropout must be in [0, 1), got NaN")]
    [InlineData("--step-offset", "-1", "--step-offset must be at least 0, got -1")]
    public void AnOptimizerSettingOutOfRangeIsAUserError(string option, string value, string says)
    {
        var output = Path.Combine(dir.Path, "out");
        var r = CliRun.Of("train", "--model", GoldenModel, "--train", GoldenData, "--output", output,
                          "--device", "cpu", "--steps", "1", "--prompt-length", "2", option, value);
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        Assert.Equal($"error: {says}", Assert.Single(CliRun.Lines(r.Err)));
        Assert.False(Directory.Exists(output), "nothing is written for a refused setting");
    }

    /// <summary>A run whose loss turns NaN stops at that step with one line, and leaves the
    /// checkpoint, the adapter and metrics.jsonl as the last good step wrote them. The NaN comes
    /// from <see cref="OverflowingModel"/>, resumed from a checkpoint of the good one.</summary>
    [Fact]
    public void ADivergedRunStopsAndKeepsWhatItWrote()
    {
        var output = Path.Combine(dir.Path, "out");
        string[] Train(string model, int steps, params string[] extra) =>
            ["train", "--model", model, "--train", GoldenData, "--output", output, "--device", "cpu", "--steps", steps.ToString(System.Globalization.CultureInfo.InvariantCulture),
             "--prompt-length", "2", "--batch-size", "2", "--save-every", "1", .. extra];
        CliRun.Of(Train(GoldenModel, 2)).Succeeded();
        var kept = Directory.GetFiles(output).Where(f => !f.EndsWith(".png", StringComparison.Ordinal)).ToDictionary(f => f, File.ReadAllBytes);

        // The first step after the checkpoint is 3.
        var r = CliRun.Of(Train(OverflowingModel(), 4, "--resume"));
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        var line = Assert.Single(CliRun.Lines(r.Err));
        Assert.StartsWith("error: the training loss of step 3 is NaN: training diverged and stopped", line, StringComparison.Ordinal);
        foreach (var (file, bytes) in kept)
            Assert.True(bytes.AsSpan().SequenceEqual(File.ReadAllBytes(file)), $"{Path.GetFileName(file)} changed");
    }

    [Fact]
    public void MakeModelOverACheckpoint()
    {
        var model = CopyModel();
        var before = File.ReadAllBytes(Path.Combine(model, "model.safetensors"));
        var r = CliRun.Of("make-model", "--shape", "t5-small", "--output", model);
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        Assert.Equal($"error: {model} already holds a checkpoint (config.json); make-model writes random weights and would replace it: choose another --output",
                     Assert.Single(CliRun.Lines(r.Err)));
        Assert.Equal(before, File.ReadAllBytes(Path.Combine(model, "model.safetensors")));
    }

    [Theory]
    [InlineData("missing/grad.safetensors", "its directory does not exist")]
    [InlineData(".", "is a directory; it names the file to write")]
    public void GradOutputThatCannotBeWritten(string relative, string says)
    {
        var output = Path.Combine(dir.Path, relative);
        var prompt = Path.Combine(GoldenModel, "cases", "p5", "prompt0.safetensors");
        var r = CliRun.Of("grad", "--model", GoldenModel, "--data", GoldenData, "--prompt", prompt, "--output", output, "--device", "cpu");
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        Assert.Equal($"error: --output {output}{(says.StartsWith("its", StringComparison.Ordinal) ? ":" : "")} {says}", Assert.Single(CliRun.Lines(r.Err)));
        Assert.Equal("", r.Out);
    }

    [Fact]
    public void EvalTargetOutsideTheChoices()
    {
        var data = dir.File("data.jsonl");
        File.WriteAllLines(data, ["""{"input": "a", "target": "yes"}""", """{"input": "b", "target": "maybe"}"""]);
        var prompt = Path.Combine(GoldenModel, "cases", "p5", "prompt0.safetensors");
        FailsWith(data, "example 2: target 'maybe' is not one of the choices (yes, no)",
                  ["eval", "--model", GoldenModel, "--data", data, "--prompt", prompt, "--choices", "yes,no", "--device", "cpu"]);
    }

    [Fact]
    public void TrainOutputThatIsAFile()
    {
        var output = dir.File("adapter");
        File.WriteAllText(output, "keep me");
        var r = CliRun.Of("train", "--model", GoldenModel, "--train", GoldenData, "--output", output, "--device", "cpu", "--steps", "1");
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        Assert.Equal($"error: --output {output} is a file; it names the directory the adapter, checkpoint and metrics go to", Assert.Single(CliRun.Lines(r.Err)));
        Assert.Equal("", r.Out);
        Assert.Equal("keep me", File.ReadAllText(output));
    }

    /// <summary>A bad initialiser is refused before the run takes its output directory (an
    /// unknown name) or, found as the prompt is made, with the directory left as it was found:
    /// none where there was none (nor the parents it made), empty where it was empty.</summary>
    [Theory]
    [InlineData("bogus", "unknown --init 'bogus'")]
    [InlineData("text:", "--init text: needs a non-empty string")]
    [InlineData("file:missing.safetensors", "missing.safetensors: prompt file not found")]
    public void ABadInitIsAUserErrorAndLeavesNoOutput(string init, string says)
    {
        var empty = dir.File("empty");
        Directory.CreateDirectory(empty);
        foreach (var output in new[] { Path.Combine(dir.Path, "out", "deeper"), empty })
        {
            var r = CliRun.Of("train", "--model", GoldenModel, "--train", GoldenData, "--output", output,
                              "--device", "cpu", "--steps", "1", "--prompt-length", "2", "--init", init);
            Assert.Equal(CliConventions.UserError, r.ExitCode);
            var line = Assert.Single(CliRun.Lines(r.Err));
            Assert.StartsWith("error: ", line, StringComparison.Ordinal);
            Assert.Contains(says, line, StringComparison.Ordinal);
        }
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "out")), "the directory the failed run made is still there");
        Assert.Empty(Directory.EnumerateFileSystemEntries(empty));
    }

    /// <summary>A report or gradient file replaces only an earlier one of its kind (a rerun's),
    /// never an input nor a file the user made; and the refusal comes before any work.</summary>
    [Theory]
    [InlineData("bench")]
    [InlineData("bench matmul")]
    [InlineData("bench peak")]
    [InlineData("grad")]
    public void AnOutputFileNeverReplacesAnInputOrTheUsersFile(string command)
    {
        var model = CopyModel();
        var prompt = Path.Combine(GoldenModel, "cases", "p5", "prompt0.safetensors");
        string option = command == "grad" ? "--output" : "--json";
        string[] Args(string output) => command switch
        {
            "grad" => ["grad", "--model", model, "--data", GoldenData, "--prompt", prompt, "--output", output, "--device", "cpu"],
            "bench peak" => ["bench", "peak", "--json", output],
            _ => [.. command.Split(' '), "--shape", model, "--json", output],
        };
        var mine = dir.File("mine.txt");
        File.WriteAllText(mine, "keep me");
        var outputs = command == "bench peak" ? [mine] : new[] { mine, Path.Combine(model, "config.json") };
        foreach (var output in outputs)
        {
            var before = File.ReadAllBytes(output);
            var r = CliRun.Of(Args(output));
            Assert.Equal(CliConventions.UserError, r.ExitCode);
            var line = Assert.Single(CliRun.Lines(r.Err));
            Assert.StartsWith($"error: {option} {output} ", line, StringComparison.Ordinal);
            Assert.Contains(output == mine ? "exists and is not a" : $"is also an input (--{(command == "grad" ? "model" : "shape")} {model})", line, StringComparison.Ordinal);
            Assert.Equal(before, File.ReadAllBytes(output));
        }
        if (command == "bench peak")
        {
            // A "schema" that is not text is no report either (its transcoding throws).
            var notText = dir.File("not-text.json");
            File.WriteAllBytes(notText, [.. "{\"schema\": \""u8, 0xFF, 0xFE, .. "\"}"u8]);
            Assert.Equal(CliConventions.UserError, CliRun.Of(Args(notText)).ExitCode);
        }
        if (command != "grad") return;  // a bench's rerun over its report: BenchCommandTests' matter
        var gradient = dir.File("g.safetensors");
        var first = CliRun.Of(Args(gradient)).Succeeded();
        var again = CliRun.Of(Args(gradient)).Succeeded();
        Assert.Equal(first.Out, again.Out);
    }

    /// <summary>A write that fails midway (here past a file-size limit of 2 KiB, which fails the
    /// write as a full disk does, for any user) leaves neither the file nor the temporary one it
    /// was written under, and says so in one line naming the file: a gradient of 8 rows fails as
    /// the file's buffer is flushed, one of 2100 rows (1.05 MiB, past the 1 MiB buffer) in the
    /// write itself. In a child process: the limit is the whole process's.</summary>
    [Theory]
    [InlineData(8)]
    [InlineData(2100)]
    public async Task AWriteThatFailsLeavesNeitherTheFileNorATemporary(int rows)
    {
        var model = ModelTestFiles.TinyV11;
        var prompt = dir.File("prompt.npy");
        var rng = new Random(rows);
        PromptFile.SaveNpy(prompt, [.. Enumerable.Range(0, rows * 128).Select(_ => (float)(rng.NextDouble() - 0.5))], rows, 128);
        var output = Path.Combine(dir.Path, "limited");
        Directory.CreateDirectory(output);
        var gradient = Path.Combine(output, "g.safetensors");
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        // SIGXFSZ ignored, so the write fails with EFBIG instead of killing the process; W^X off,
        // as its double mapping of code through a file needs more than the limit.
        start.Environment["DOTNET_EnableWriteXorExecute"] = "0";
        foreach (var a in new[] { "-c", "ulimit -f 2; trap '' XFSZ; exec \"$0\" \"$@\"", Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet",
                                  Path.Combine(AppContext.BaseDirectory, "vkprompt.dll"), "grad", "--model", model, "--data", Path.Combine(model, "cases", "p8", "data.jsonl"),
                                  "--prompt", prompt, "--output", gradient, "--device", "cpu" })
            start.ArgumentList.Add(a);
        using var child = Process.Start(start)!;
        var stdout = child.StandardOutput.ReadToEndAsync();
        var stderr = child.StandardError.ReadToEndAsync();
        using (var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2)))
            await child.WaitForExitAsync(timeout.Token);
        Assert.True(child.ExitCode == CliConventions.UserError, $"exit code {child.ExitCode}; stderr: {await stderr}");
        Assert.Equal($"error: {gradient}: larger than the file system or the process's file-size limit allows", Assert.Single(CliRun.Lines(await stderr)));
        Assert.Equal("", await stdout);
        Assert.Empty(Directory.EnumerateFileSystemEntries(output));
    }

    /// <summary>An output that cannot be written is refused before any work, naming its option
    /// and the file (not the temporary file a write goes through).</summary>
    [Theory]
    [InlineData("grad", "--output", "cannot write it: Could not find file '{0}'.")]
    [InlineData("train", "--output", "cannot make or write the directory: Could not find file '{0}'.")]
    [InlineData("make-model", "--output", "cannot make the directory: Could not find file '{0}'.")]
    [InlineData("bench peak", "--json", "cannot write it: Could not find file '{0}'.")]
    public void AnOutputThatCannotBeWrittenNamesItsOption(string command, string option, string says)
    {
        // procfs refuses new entries whoever runs the tests, root included.
        const string output = "/proc/vkprompt-test-output";
        var prompt = Path.Combine(GoldenModel, "cases", "p5", "prompt0.safetensors");
        string[] args = command switch
        {
            "grad" => ["grad", "--model", GoldenModel, "--data", GoldenData, "--prompt", prompt, "--output", output, "--device", "cpu"],
            "train" => ["train", "--model", GoldenModel, "--train", GoldenData, "--output", output, "--device", "cpu", "--steps", "1", "--prompt-length", "2"],
            "make-model" => ["make-model", "--shape", "t5-small", "--output", output],
            _ => ["bench", "peak", "--json", output],
        };
        var r = CliRun.Of(args);
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        Assert.Equal($"error: {option} {output}: {string.Format(System.Globalization.CultureInfo.InvariantCulture, says, output)}",
                     Assert.Single(CliRun.Lines(r.Err)));
    }

    /// <summary>Issue 21 finding 7: "" for a path, a NAME= without one and file: without one are
    /// one-line errors naming the option, not .NET's "The value cannot be an empty string".</summary>
    [Theory]
    [InlineData("score-model", "error: --model is an empty string; it names a file or directory")]
    [InlineData("score-data", "error: --data is an empty string; it names a file or directory")]
    [InlineData("score-prompt", "error: --prompt a= names no file: expected NAME=PATH")]
    [InlineData("train-output", "error: --output is an empty string; it names a file or directory")]
    [InlineData("train-init", "error: --init file: needs the path of a prompt file")]
    [InlineData("score-device", "error: --device is an empty string; it names a device")]
    public void AnEmptyPathIsAUserError(string which, string says)
    {
        var output = Path.Combine(dir.Path, "out");
        string[] train = ["train", "--model", GoldenModel, "--train", GoldenData, "--device", "cpu", "--steps", "1"];
        string[] args = which switch
        {
            "score-model" => Score("", GoldenData),
            "score-data" => Score(GoldenModel, ""),
            "score-prompt" => Score(GoldenModel, GoldenData, "--prompt", "a="),
            "score-device" => ["score", "--model", GoldenModel, "--data", GoldenData, "--device", ""],
            "train-output" => [.. train, "--output", ""],
            _ => [.. train, "--output", output, "--init", "file:"],
        };
        var r = CliRun.Of(args);
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        Assert.Equal(says, Assert.Single(CliRun.Lines(r.Err)));
        Assert.False(Directory.Exists(output), "nothing is written");
    }

    /// <summary>Bytes that are not UTF-8 are refused naming the line, rather than read as U+FFFD
    /// (text the file does not hold); a byte-order mark is not such a byte.</summary>
    [Fact]
    public void DataThatIsNotUtf8IsRefusedNamingTheLine()
    {
        var lines = File.ReadAllLines(GoldenData);
        var data = dir.File("latin1.jsonl");
        File.WriteAllBytes(data, [.. Encoding.UTF8.GetBytes(lines[0] + "\n"), .. "{\"input\": \"caf"u8, 0xE9, .. "\", \"target\": \"a\"}\n"u8,
                                  .. Encoding.UTF8.GetBytes(string.Join("\n", lines) + "\n")]);
        FailsWith(data, "line 2: not valid UTF-8", Score(GoldenModel, data));
        var bom = dir.File("bom.jsonl");
        File.WriteAllText(bom, string.Join("\n", lines) + "\n", new UTF8Encoding(encoderShouldEmitUTF8Identifier: true));
        Assert.Equal(CliRun.Of(Score(GoldenModel, GoldenData)).Succeeded().Out, CliRun.Of(Score(GoldenModel, bom)).Succeeded().Out);
    }

    /// <summary>A value of the wrong type is said as the help would say it, not as a .NET type
    /// ("System.Nullable`1[System.Int32]"), and a recorded device list of nothing (or a
    /// directory) is refused naming the option.</summary>
    [Fact]
    public void ValuesOfTheWrongTypeAndEmptyListsAreSaidInTheUsersWords()
    {
        var model = CopyModel();
        var config = Path.Combine(model, "config.json");
        var json = JsonNode.Parse(File.ReadAllText(config))!.AsObject();
        json["d_model"] = "wide";
        File.WriteAllText(config, json.ToJsonString(new() { WriteIndented = true }));
        FailsWith(config, "not a valid T5 config: d_model (line ", Score(model, GoldenData));
        FailsWith(config, ") is not a whole number", Score(model, GoldenData));
        // A list's element type is no word for the list: "List`1[System.String]" is a list.
        json["d_model"] = 64;
        json["architectures"] = "T5ForConditionalGeneration";
        File.WriteAllText(config, json.ToJsonString(new() { WriteIndented = true }));
        FailsWith(config, ") is not a list", Score(model, GoldenData));

        var r = CliRun.Of(Score(GoldenModel, GoldenData, "--batch-size", "x"));
        Assert.Equal("error: Cannot parse argument 'x' for option '--batch-size' as a whole number (see 'vkprompt score --help')", Assert.Single(CliRun.Lines(r.Err)));

        var none = dir.File("none.json");
        File.WriteAllText(none, "[]");
        FailsWith(none, "--capabilities " + none + ": holds no devices", ["devices", "--capabilities", none]);
        FailsWith(dir.Path, "is a directory; it names the file 'vkprompt devices --json' wrote", ["devices", "--capabilities", dir.Path]);
    }

    /// <summary>Lengths and batches near int's range are refused by the element check, not
    /// wrapped by padding (an input of 2147483641 padded to a negative length, which passed as 8)
    /// nor thrown as an overflow.</summary>
    [Theory]
    [InlineData("plan", "--input-length", "2147483641")]
    [InlineData("plan", "--target-length", "2147483641")]
    [InlineData("plan", "--prompt-length", "2147483647")]
    [InlineData("bench matmul", "--target-length", "2147483640")]
    [InlineData("bench matmul", "--batch-size", "2147483647")]
    [InlineData("bench --devices 0,0", "--input-length", "2147483640")]
    [InlineData("bench --distributed mpi", "--input-length", "2147483640")]
    public void SizesNearIntsRangeAreRefusedNotWrapped(string command, string option, string value)
    {
        var sizes = new Dictionary<string, string> { ["--batch-size"] = "1", ["--input-length"] = "8", ["--target-length"] = "8", ["--prompt-length"] = "4" };
        sizes[option] = value;
        string[] args = [.. command.Split(' '), command == "plan" ? "--model" : "--shape", GoldenModel, .. sizes.SelectMany(s => new[] { s.Key, s.Value })];
        var r = CliRun.Of(args);
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        var line = Assert.Single(CliRun.Lines(r.Err));
        Assert.Matches(@"^error: .*needs activations of \d+ elements, more than the 2147483647 a buffer can index: make them smaller$", line);
    }

    /// <summary>make-model checks what it is given before it writes, and a failure leaves no
    /// directory behind: a tokenizer that is not a SentencePiece model (or has more tokens than
    /// the shape has embedding rows), an output that is a file, a shape it does not know.</summary>
    [Fact]
    public void MakeModelRefusesBeforeWritingAndLeavesNothingHalfMade()
    {
        var output = dir.File("made");
        FailsWith(GoldenData, "not a valid sentencepiece model", ["make-model", "--shape", "t5-small", "--output", output, "--tokenizer", GoldenData]);
        Assert.False(Directory.Exists(output), "the directory of a refused make-model is there");
        FailsWith(GoldenData, "is a file; it names the directory the checkpoint goes to", ["make-model", "--shape", "t5-small", "--output", GoldenData]);
        FailsWith("--shape 'bogus'", "is not a shape make-model knows: t5-small, ", ["make-model", "--shape", "bogus", "--output", output]);
        FailsWith(dir.Path, "is a directory; expected a SentencePiece model file", ["make-model", "--shape", "t5-small", "--output", output, "--tokenizer", dir.Path]);
        // No shape has fewer embedding rows than a tokenizer of this size: the library call.
        var spiece = Path.Combine(GoldenModel, "spiece.model");
        var e = Assert.Throws<ModelFormatException>(() => RandomT5.Write(output, T5Config.Named("t5-small") with { VocabSize = 100 }, 0, spiece));
        Assert.Contains("more than the 100 embedding rows (vocab_size) of the model", e.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(output), "the directory of a refused make-model is there");
    }

    /// <summary>Issue 21 finding 7: a prompt of 0 rows, to every command that reads one.</summary>
    [Fact]
    public void APromptOfZeroRowsIsAUserError()
    {
        var prompt = dir.File("empty.npy");
        PromptFile.SaveNpy(prompt, [], 0, 64);
        const string says = "prompt is [0, 64]; a prompt needs at least 1 row";
        FailsWith(prompt, says, Score(GoldenModel, GoldenData, "--prompt", prompt));
        FailsWith(prompt, says, ["grad", "--model", GoldenModel, "--data", GoldenData, "--prompt", prompt, "--output", dir.File("g.safetensors"), "--device", "cpu"]);
        Assert.False(File.Exists(dir.File("g.safetensors")));
        var output = Path.Combine(dir.Path, "out");
        var r = CliRun.Of("train", "--model", GoldenModel, "--train", GoldenData, "--output", output, "--device", "cpu", "--steps", "1", "--init", "file:" + prompt);
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        Assert.Equal($"error: {prompt}: {says}", Assert.Single(CliRun.Lines(r.Err)));
        Assert.False(Directory.Exists(output), "nothing is written");
    }

    /// <summary>Issue 21 finding 7: a batch whose activations no 32-bit index reaches is refused
    /// before anything is allocated or written, naming the options.</summary>
    [Fact]
    public void ABatchTooLargeToIndexIsRefusedFirst()
    {
        var output = Path.Combine(dir.Path, "out");
        var r = CliRun.Of("train", "--model", GoldenModel, "--train", GoldenData, "--output", output, "--device", "cpu", "--steps", "1", "--batch-size", "100000000");
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        Assert.StartsWith("error: --batch-size 100000000 with a 100-token prompt (--prompt-length) and up to 512 input tokens (--max-input-length) needs activations of ",
                          Assert.Single(CliRun.Lines(r.Err)), StringComparison.Ordinal);
        Assert.False(Directory.Exists(output), "nothing is written");

        // bench builds its synthetic batch only after the same check.
        var bench = CliRun.Of("bench", "--shape", GoldenModel, "--batch-size", "1073741824", "--device", CliRun.VulkanDevice);
        Assert.Equal(CliConventions.UserError, bench.ExitCode);
        Assert.StartsWith("error: --batch-size 1073741824 with --input-length 512, --target-length 8 and --prompt-length 100 needs activations of ", Assert.Single(CliRun.Lines(bench.Err)), StringComparison.Ordinal);
    }

    /// <summary>Issue 21 finding 7: a prompt so long that one buffer (here the attention scores
    /// of the reference backend) outgrows an array is work too large, said with the options that
    /// shrink it, and no earlier run is touched.</summary>
    [Fact]
    public void APromptTooLongForABufferIsAUserError()
    {
        var output = Path.Combine(dir.Path, "out");
        var r = CliRun.Of("train", "--model", GoldenModel, "--train", GoldenData, "--output", output, "--device", "cpu", "--steps", "1", "--prompt-length", "100000");
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        var line = Assert.Single(CliRun.Lines(r.Err), l => l.StartsWith("error: ", StringComparison.Ordinal));
        Assert.Contains("exceeds the largest array the cpu backend can hold", line, StringComparison.Ordinal);
        Assert.Contains("a smaller --batch-size, --max-input-length, --prompt-length", line, StringComparison.Ordinal);
    }

    /// <summary>Issue 21 findings 7 and 8: a checkpoint whose metadata or optimizer state is
    /// damaged, whose prompt holds an infinity, or a resume with another --seed: one line naming
    /// checkpoint.safetensors, exit 2, and every file of the run as it was. Before, these were a
    /// KeyNotFoundException, an ArgumentException, "training diverged", or silently accepted.</summary>
    [Theory]
    [InlineData("no-step", "has no metadata \"step\": not a VkPrompt training checkpoint")]
    [InlineData("no-best-metric", "has no metadata \"best_metric\"")]
    [InlineData("bad-step", "metadata \"step\" is \"one\"; expected a whole number of at least 0")]
    [InlineData("short-state", "optimizer_state is [5] but Adafactor's state for a [2, 64] prompt is [")]
    [InlineData("inf-prompt", "prompt value [1, 3] is")]
    [InlineData("other-seed", "was trained with --seed 0; resume with --seed 0 (now 7)")]
    [InlineData("zero-rows", "prompt is [0, 64]; a checkpoint's prompt has 1 to 2147483647 rows")]
    [InlineData("zero-rows-no-length", "prompt is [0, 64]; a checkpoint's prompt has 1 to 2147483647 rows")]
    public void ABadCheckpointIsAUserErrorAndChangesNothing(string damage, string says)
    {
        var output = Path.Combine(dir.Path, "out");
        string[] Train(int steps, params string[] extra) =>
            ["train", "--model", GoldenModel, "--train", GoldenData, "--output", output, "--device", "cpu", "--steps", steps.ToString(System.Globalization.CultureInfo.InvariantCulture),
             "--prompt-length", "2", "--batch-size", "2", "--save-every", "1", .. extra];
        CliRun.Of(Train(1)).Succeeded();
        var checkpoint = Path.Combine(output, "checkpoint.safetensors");
        var tensors = new List<(string, long[], ReadOnlyMemory<float>)>();
        Dictionary<string, string> metadata;
        using (var file = SafetensorsFile.Open(checkpoint))
        {
            metadata = file.Metadata.ToDictionary();
            foreach (var t in file.Tensors.Values)
            {
                var data = new float[t.ElementCount];
                file.ReadFloat32(t.Name, data);
                if (damage == "inf-prompt" && t.Name == "prompt") data[64 + 3] = float.PositiveInfinity;
                if (damage.StartsWith("zero-rows", StringComparison.Ordinal) && t.Name == "prompt")
                {
                    tensors.Add((t.Name, [0, 64], Array.Empty<float>()));
                    continue;
                }
                tensors.Add((t.Name, damage == "short-state" && t.Name == "optimizer_state" ? [5] : t.Shape, damage == "short-state" && t.Name == "optimizer_state" ? data[..5] : data));
            }
        }
        if (damage == "no-step") metadata.Remove("step");
        if (damage == "no-best-metric") metadata.Remove("best_metric");
        if (damage == "bad-step") metadata["step"] = "one";
        SafetensorsWriter.Write(checkpoint, tensors, metadata);
        var kept = Directory.GetFiles(output).Where(f => !Path.GetFileName(f).StartsWith('.')).ToDictionary(f => f, File.ReadAllBytes);

        string[] resume = ["--resume", .. damage == "other-seed" ? ["--seed", "7"] : Array.Empty<string>()];
        var args = Train(2, resume).ToList();
        // Without --prompt-length the run takes the checkpoint's, read by another path.
        if (damage == "zero-rows-no-length") args.RemoveRange(args.IndexOf("--prompt-length"), 2);
        var r = CliRun.Of([.. args]);
        Assert.Equal(CliConventions.UserError, r.ExitCode);
        var line = Assert.Single(CliRun.Lines(r.Err));
        Assert.StartsWith($"error: {checkpoint}", line, StringComparison.Ordinal);
        Assert.Contains(says, line, StringComparison.Ordinal);
        Assert.Equal(kept.Keys.Order(), Directory.GetFiles(output).Where(f => !Path.GetFileName(f).StartsWith('.')).Order());
        foreach (var (file, bytes) in kept)
            Assert.True(bytes.AsSpan().SequenceEqual(File.ReadAllBytes(file)), $"{Path.GetFileName(file)} changed");
    }

    /// <summary>Issue 21 finding 7: bytes that are not UTF-8 in a safetensors header (here a
    /// tensor name) are the file's fault, said before any JSON is read.</summary>
    [Fact]
    public void ASafetensorsHeaderOfInvalidUtf8()
    {
        var prompt = dir.File("bad.safetensors");
        var header = "{\"prompt_embeddings\":{\"dtype\":\"F32\",\"shape\":[1,64],\"data_offsets\":[0,256]},\"XX\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[256,260]}}"u8.ToArray();
        header[header.AsSpan().IndexOf("XX"u8)] = 0xFF; // a lone continuation byte in the second name
        Assert.False(System.Text.Unicode.Utf8.IsValid(header));
        using (var f = File.Create(prompt))
        {
            Span<byte> prefix = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
            f.Write(prefix);
            f.Write(header);
            f.Write(new byte[260]);
        }
        FailsWith(prompt, "header is not valid UTF-8", Score(GoldenModel, GoldenData, "--prompt", prompt));
    }

    /// <summary>Issue 21 finding 7: a data line whose string holds a lone surrogate escape is
    /// that line's error, not an InvalidOperationException.</summary>
    [Fact]
    public void ADataLineWithALoneSurrogate()
    {
        var data = dir.File("data.jsonl");
        File.WriteAllLines(data, ["""{"input": "a", "target": "yes"}""", """{"input": "a\ud800b", "target": "yes"}"""]);
        FailsWith(data, "line 2: Cannot read incomplete UTF-16 JSON text as string with missing low surrogate", Score(GoldenModel, data));
    }

    /// <summary>Issue 21 finding 7: stray lines in metrics.jsonl (one with a step but no loss, one
    /// not JSON, a step that is not a number, a torn last line as kill -9 during an append leaves)
    /// are dropped by the resumed run, which finishes and charts the steps it has; the steps
    /// before the checkpoint are kept byte for byte. Tolerated rather than refused: see MetricsLog.</summary>
    [Fact]
    public void StrayMetricsLinesAreDroppedOnResume()
    {
        var output = Path.Combine(dir.Path, "out");
        string[] Train(int steps, params string[] extra) =>
            ["train", "--model", GoldenModel, "--train", GoldenData, "--output", output, "--device", "cpu", "--steps", steps.ToString(System.Globalization.CultureInfo.InvariantCulture),
             "--prompt-length", "2", "--batch-size", "2", "--save-every", "1", .. extra];
        CliRun.Of(Train(1)).Succeeded();
        var metrics = Path.Combine(output, "metrics.jsonl");
        var first = Assert.Single(File.ReadAllLines(metrics));
        File.AppendAllText(metrics, "{\"step\": 1}\nnot json\n{\"step\": \"x\", \"loss\": 1, \"steps_per_s\": 1}\n{\"step\": 1, \"lo");

        CliRun.Of(Train(2, "--resume")).Succeeded();
        var lines = File.ReadAllLines(metrics);
        Assert.Equal(2, lines.Length);
        Assert.Equal(first, lines[0]);
        Assert.Equal(2, JsonNode.Parse(lines[1])!["step"]!.GetValue<int>());
        Assert.True(new FileInfo(Path.Combine(output, "training.png")).Length > 0);
    }

    /// <summary>Issue 21 finding 4: a tokenizer with more ids than the model has embedding rows is
    /// refused by every command that opens a model, generate and --device cpu included (all
    /// through PromptModel.Open), before an id can read past the embedding.</summary>
    [Fact]
    public void ATokenizerLargerThanTheVocabularyIsRefusedByEveryCommand()
    {
        var model = dir.File("model");
        Directory.CreateDirectory(model);
        RandomT5.Write(model, ModelTestFiles.Tiny(gated: true) with { VocabSize = 300, TokenizerClass = "ByT5Tokenizer" }, seed: 1);
        var config = Path.Combine(model, "config.json");
        const string says = "vocab_size is 300, but the tokenizer has 384 tokens";
        FailsWith(config, says, Score(model, GoldenData));
        FailsWith(config, says, ["generate", "--model", model, "--input", "hello", "--device", "cpu"]);
        FailsWith(config, says, ["generate", "--model", model, "--input", "hello", "--device", CliRun.VulkanDevice]);
        FailsWith(config, says, ["grad", "--model", model, "--data", GoldenData, "--prompt", Path.Combine(GoldenModel, "cases", "p5", "prompt0.safetensors"),
                                 "--output", dir.File("g.safetensors"), "--device", "cpu"]);
        Assert.False(File.Exists(dir.File("g.safetensors")));
    }
}
