using System.CommandLine;

namespace VkPrompt.Cli;

/// <summary>A model split across devices as <c>--pipeline</c> and <c>--micro-batches</c> ask
/// (<see cref="Training.PromptModel.OpenPipeline"/>): one device spec per stage, in order.</summary>
internal sealed record PipelineArgs(IReadOnlyList<string> Devices, int? MicroBatches)
{
    public static Option<string?> Option() => new("--pipeline")
    {
        HelpName = "SPEC,SPEC,...",
        Description = "Split the model across devices, for a model larger than one device: consecutive layers (the encoder's blocks, then the decoder's) " +
                      "on each listed device in order (specs as --device takes them, which --pipeline replaces; the same device may be listed twice: " +
                      "two logical devices on it). The layers are cut so the largest stage's weights are as small as they can be; each stage holds only " +
                      "its own layers (the first also the embedding and the prompt, the last the LM head). Activations and their gradients cross between " +
                      "stages through host memory; each batch is cut into --micro-batches so the stages work at once. The result is the one-device result " +
                      "(to float rounding). At least 2 devices and at most one per layer. Generation (generate, and eval or validation whose targets are not class labels) does not run on a pipeline yet.",
    };

    public static Option<int?> MicroBatchesOption() => new("--micro-batches")
    {
        Description = "With --pipeline: how many micro-batches each batch is cut into (as even as they come; fewer where the batch has fewer examples). " +
                      "More keep the stages busier; each keeps its own activations for the backward, while a stage's micro-batches share one scratch, so more need less memory. Default: one per stage.",
    };

    /// <summary>Refuses <paramref name="stages"/> beside data parallel over devices
    /// (<paramref name="devices"/> given): each worker of data parallel holds the whole model,
    /// and a worker made of a pipeline's stages is not built yet.</summary>
    public static void RefuseWithDataParallel(ParseResult parse, PipelineArgs? stages, Option<string?> pipeline, Option<string?> devices)
    {
        if (stages is not null && parse.GetValue(devices) is not null)
            throw new UsageException($"{pipeline.Name} and {devices.Name} do not combine yet: data parallel over pipelines is not built; give one of them");
    }

    /// <summary>The same beside data parallel over MPI's ranks (<paramref name="distributed"/> mpi).</summary>
    public static void RefuseWithMpi(ParseResult parse, PipelineArgs? stages, Option<string> distributed)
    {
        if (stages is not null && parse.GetValue(distributed) == Distributed.Mpi)
            throw new UsageException($"--pipeline and {distributed.Name} {Distributed.Mpi} do not combine yet: each rank holds the whole model; give one of them");
    }

    /// <summary>The pipeline the options ask for; null without --pipeline.</summary>
    public static PipelineArgs? Read(ParseResult parse, Option<string?> pipeline, Option<int?> microBatches, Option<string> device)
    {
        if (parse.GetValue(pipeline) is not null && parse.GetResult(device) is { Implicit: false })
            throw new UsageException($"{device.Name} and {pipeline.Name} name the devices twice: {pipeline.Name} lists every stage's device; give it alone");
        int? micro = parse.GetValue(microBatches);
        if (parse.GetValue(pipeline) is not string list)
            return micro is null ? null : throw new UsageException($"{microBatches.Name} cuts the batches of a pipeline: it needs {pipeline.Name}");
        var devices = list.Split(',', StringSplitOptions.TrimEntries);
        if (devices.Any(d => d.Length == 0)) throw new UsageException($"{pipeline.Name} {list}: an empty device spec");
        if (devices.Length < 2) throw new UsageException($"{pipeline.Name} {list}: a pipeline needs at least two devices (one model on one device is --device)");
        if (micro is < 1) throw new UsageException($"{microBatches.Name} must be positive, got {micro}");
        return new PipelineArgs(devices, micro);
    }
}
