using System.CommandLine;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Training;

namespace VkPrompt.Cli;

/// <summary>The library's <see cref="PromptModel"/> opened as a command's options say, checkpoint
/// and tokenizer before any device work, and closed with the CLI's rule for the validation layer.</summary>
internal sealed class ModelSession : IDisposable
{
    public PromptModel Model { get; }

    /// <param name="session">Where and how (<see cref="SessionArgs"/>): a pipeline's stages replace the devices.</param>
    public ModelSession(string modelDir, SessionSettings session, Action<string>? log)
    {
        var stored = session.Precision.Equals("auto", StringComparison.OrdinalIgnoreCase) ? (WeightPrecision?)null : WeightPrecisions.Parse(session.Precision, null);
        // The cap is each device's own: every device holds the whole model and its share's work, or
        // its stage. The activations asked for go to the device plan too, which picks the matrix
        // units' fragments by them.
        var options = EnvironmentSettings.GpuOptions() with { Log = log, MemoryCapBytes = session.MemoryCap, Activations = session.Activations };
        Func<Backend> Open(string spec) => () => BackendFactory.Open(spec, options);
        Model = session.Pipeline is not { } pipeline
            ? PromptModel.Open(modelDir, session.Devices.Select(Open).ToList(), stored, session.Attention, log, session.Activations)
            : PromptModel.OpenPipeline(modelDir, pipeline.Devices.Select(Open).ToList(), stored, session.Attention, pipeline.MicroBatches, log, activations: session.Activations);
    }

    public void Dispose()
    {
        // With VKPROMPT_VALIDATION=1 a validation error is a bug in vkprompt, not a warning: the
        // command fails (exit 1), so the CLI tests catch what the kernel tests catch.
        var errors = Model.Backends.OfType<GpuBackend>().SelectMany(b => b.Context.Validation.Errors).ToList();
        Model.Dispose();
        if (errors.Count > 0)
            throw new InvalidOperationException($"{errors.Count} Vulkan validation error(s); the first: {errors[0]}");
    }
}

/// <summary>Options several model commands share, each created per command (an option has one parent).</summary>
internal static class ModelOptions
{
    public static Option<string> Model() => new("--model", "-m")
    {
        HelpName = "DIR",
        Description = "A Hugging Face T5 directory: config.json, model.safetensors (or an index with shards) and spiece.model or tokenizer.json (ByT5: none, its tokenizer_class selects bytes), e.g. a local copy of google/t5-base-lm-adapt.",
        Required = true,
    };

    public const string DefaultPrecision = "fp32";

    public static Option<string> Precision()
    {
        var option = new Option<string>("--precision")
        {
            HelpName = "fp32|fp16|bf16|int8|auto",
            Description = "How the frozen weights are stored on the device. fp16 and bf16 halve the weight memory; they are widened to fp32 as they are read, " +
                          "so products still sum in fp32 and activations stay fp32 (T5's feed-forward activations overflow fp16). " +
                          "fp16 keeps 3 more bits of each weight, bf16 fp32's range. Both need 16-bit storage buffers on the device; " +
                          "auto takes bf16 where the device has them and fp32 elsewhere. " +
                          "int8 quarters the weight memory: each row of a weight matrix keeps one fp32 scale (its largest magnitude / 127) and each weight " +
                          "the nearest multiple of it, -127..127 (docs/numerics.md); it needs no device feature. The cpu device emulates fp16/bf16/int8 by rounding the weights. " +
                          "Where the device has matrix units this build can use (through VK_KHR_ or VK_NV_cooperative_matrix; 'vkprompt devices' says), " +
                          "products with 16-bit weights (int8: those of the forward, its values exact there) run on the matrix units instead: their activation operand is rounded to fp16, saturating at ±65504, and sums stay fp32 " +
                          "(VKPROMPT_MATRIX_UNITS=0 turns that off); where the device multiplies bf16 fragments (VK_KHR_shader_bfloat16) and activations are bf16, " +
                          "the operands go to the units as bf16 instead, fp32's range and no saturation (VKPROMPT_MATRIX_UNITS_OPERANDS=fp16 forces fp16 fragments, to compare). Default: fp32.",
            DefaultValueFactory = _ => DefaultPrecision,
        };
        option.AcceptOnlyFromAmong([.. WeightPrecisions.Names]);
        return option;
    }

    public static Option<string> Attention()
    {
        var option = new Option<string>("--attention")
        {
            HelpName = "auto|fused|unfused",
            Description = "How attention runs. fused: one kernel per attention that streams the keys, keeping a running softmax, and never stores the [queries x keys] " +
                          "score matrix of a head in device memory, so long inputs need far less activation memory; unfused: two matrix products and a softmax " +
                          "through that matrix. auto: fused on GPUs from 1024x1024 scores per head, where storing them starts to decide what fits (below that " +
                          "unfused is faster), unfused on CPU Vulkan devices such as lavapipe, where the fused kernels are slower, and on --device cpu; " +
                          "fused on any Vulkan device where the scores of an attention would not fit the largest buffer a kernel can bind. " +
                          "Both give the same results up to float rounding. With VKPROMPT_MATRIX_UNITS=all, fused attention runs on the matrix units too " +
                          "(d_kv a multiple of 16), its operands rounded to fp16 as all's products are. Default: $VKPROMPT_ATTENTION if set, else auto.",
            DefaultValueFactory = _ => EnvironmentSettings.AttentionText,
        };
        option.AcceptOnlyFromAmong([.. AttentionFusions.Names]);
        return option;
    }

    /// <summary>The setting <paramref name="option"/> (from <see cref="Attention"/>) names. The
    /// parser has checked a value given on the command line; a default from VKPROMPT_ATTENTION
    /// is checked here.</summary>
    public static AttentionFusion ReadAttention(ParseResult parse, Option<string> option)
    {
        string text = parse.GetValue(option)!;
        return AttentionFusions.Parse(text) ?? throw new UsageException(AttentionFusions.Invalid(EnvironmentSettings.AttentionVariable, text));
    }

    public static Option<string> Activations()
    {
        var option = new Option<string>("--activations")
        {
        HelpName = "fp32|bf16|fp16|auto",
        Description = "How the activations each transformer block keeps between kernels are stored: its normed input, q, k, v, the attention context and the " +
                      "feed-forward's activations. bf16 and fp16 halve what a stored block keeps (the memory of a training step's activations) and the bytes " +
                      "its kernels move; they are widened to fp32 as they are read, so every sum, norm statistic, softmax and the loss stay fp32, and the " +
                      "residual stream, the encoder and decoder outputs, the logits and all gradients stay fp32 whatever is chosen (docs/numerics.md, section 7). " +
                      "bf16 keeps fp32's range; fp16 keeps 3 more bits but ends at 65504, where it saturates, and T5 v1.1's feed-forward activations can exceed that. " +
                      "Both need 16-bit storage buffers on the device; the cpu device emulates them by rounding. generate's incremental decoder keeps its " +
                      "key/value caches and block activations so too, as the full forward does. Under --distributed mpi, auto resolves on each rank's own devices: " +
                      "give the setting where the ranks' devices differ. " +
                      "auto: bf16 on GPUs with 16-bit storage, fp32 on CPU Vulkan devices such as lavapipe and on --device cpu ('vkprompt devices --json' shows each device's choice). Default: auto.",
        DefaultValueFactory = _ => "auto",
        };
        option.AcceptOnlyFromAmong([.. ActivationPrecisions.Names]);
        return option;
    }

    /// <summary>The setting an <see cref="Activations"/> option names; null for auto.</summary>
    public static ActivationPrecision? ReadActivations(ParseResult parse, Option<string> option) => ActivationPrecisions.Parse(parse.GetValue(option)!);

    public static Option<string?> Prompt(bool required = false) => new("--prompt", "-p")
    {
        HelpName = "PATH",
        Description = "A soft prompt: a PEFT adapter directory, a .safetensors file with key prompt_embeddings, or a T5X .npy [P, d_model]." + (required ? "" : " Default: no prompt."),
        Required = required,
    };

    /// <summary>--prompt for commands that serve several tasks from one file (score, generate).</summary>
    public static Option<string[]> TaskPrompts() => new("--prompt", "-p")
    {
        HelpName = "[NAME=]PATH",
        Description = PromptArg.TasksHelp,
        AllowMultipleArgumentsPerToken = false,
        DefaultValueFactory = _ => [],
    };

    public static Option<int> BatchSize(int fallback) => new("--batch-size", "-b")
    {
        Description = $"Examples per batch. Default: {fallback}.",
        DefaultValueFactory = _ => fallback,
    };

    public static Option<int> MaxInputLength() => new("--max-input-length")
    {
        Description = "Input tokens kept per example (eos included); longer inputs are truncated keeping the final eos, and the count is reported. Default: 512.",
        DefaultValueFactory = _ => 512,
    };

    public static Option<int> MaxTargetLength() => new("--max-target-length")
    {
        Description = "Target tokens kept per example (eos included), truncated and reported like inputs. Default: 128.",
        DefaultValueFactory = _ => 128,
    };

    public static Option<string?> Data(bool required) => new("--data", "-d")
    {
        HelpName = "FILE",
        Description = "JSONL data: one {\"input\": \"...\", \"target\": \"...\"} object per line.",
        Required = required,
    };

    /// <summary>Checks, before any work, that <paramref name="path"/> can be written as the file
    /// <paramref name="option"/> names: found out now rather than after minutes of computing. It
    /// must not be one of the command's <paramref name="inputs"/> (option and path: a file, or a
    /// directory whose existing files are all inputs, as a model's), which the write would destroy;
    /// an existing file is replaced only where it is <paramref name="kind"/>'s, written by an
    /// earlier run (a rerun replaces its report), never a file the user made; and its directory
    /// must take a new file, tried with the temporary file the write itself will use.</summary>
    public static string OutputFile(string option, string path, OutputKind kind, params (string Option, string? Path)[] inputs)
    {
        var full = Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new UsageException($"{option} {path} is a directory; it names the file to write");
        if (!Directory.Exists(Path.GetDirectoryName(full))) throw new UsageException($"{option} {path}: its directory does not exist");
        if (File.Exists(full))
        {
            foreach (var (inputOption, input) in inputs)
            {
                if (string.IsNullOrEmpty(input)) continue;
                var inputFull = Path.GetFullPath(input);
                bool same = File.Exists(inputFull) ? SameFile(full, inputFull)
                          : Directory.Exists(inputFull) && Directory.EnumerateFiles(inputFull, "*", SearchOption.AllDirectories).Any(f => SameFile(full, f));
                if (same) throw new UsageException($"{option} {path} is also an input ({inputOption} {input}); writing it would destroy it: choose another {option}");
            }
            if (!kind.IsEarlierOutput(full))
                throw new UsageException($"{option} {path} exists and is not {kind.What}, so it is left as it is: remove it or choose another {option}");
        }
        try { using (AtomicFile.Create(full)) { } }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"{option} {path}: cannot write it: {e.Message}");
        }
        return path;
    }

    /// <summary>Two paths of one file, through symbolic links too.</summary>
    static bool SameFile(string a, string b) => string.Equals(Resolved(a), Resolved(b), OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal);

    static string Resolved(string path) => new FileInfo(path).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? Path.GetFullPath(path);

    public static int Positive(ParseResult parse, Option<int> option)
    {
        int v = parse.GetValue(option);
        if (v <= 0) throw new UsageException($"{option.Name} must be positive, got {v}");
        return v;
    }

    public static Action<string>? Log(ParseResult parse) => Cli.Verbose(parse) ? m => parse.InvocationConfiguration.Error.WriteLine($"[vkprompt] {m}") : null;
}

/// <summary>The kind of file a command writes to one path, and how to tell one written by an
/// earlier run (which a rerun may replace) from anything else found there (which it must not).</summary>
internal sealed record OutputKind(string What, Func<string, bool> IsEarlierOutput)
{
    /// <summary>A JSON report of vkprompt's benches, whose "schema" starts "vkprompt-bench": a
    /// bench may replace any of them (one over several devices and one over a single device share
    /// a default name), and the peer's, which reports in the same schema.</summary>
    public static readonly OutputKind Report = new("a bench report (a JSON object whose \"schema\" is vkprompt-bench's)", path =>
    {
        try
        {
            // A report is kilobytes; a large file is something else, and is not read whole.
            if (new FileInfo(path).Length > (64 << 20)) return false;
            using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(path));
            return json.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object
                && json.RootElement.TryGetProperty("schema", out var s) && s.ValueKind == System.Text.Json.JsonValueKind.String
                && s.GetString()!.StartsWith("vkprompt-bench", StringComparison.Ordinal);
        }
        // InvalidOperationException: a "schema" whose text is not UTF-8.
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Text.Json.JsonException or InvalidOperationException) { return false; }
    });

    /// <summary><c>vkprompt grad</c>'s safetensors file: one tensor, prompt_gradient.</summary>
    public static readonly OutputKind Gradient = new("a gradient file vkprompt wrote (safetensors holding prompt_gradient alone)", path =>
    {
        try
        {
            using var file = Model.Safetensors.SafetensorsFile.Open(path);
            return file.Tensors.Keys.SequenceEqual(["prompt_gradient"]);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ModelFormatException) { return false; }
    });
}
