using System.CommandLine;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;

namespace VkPrompt.Cli;

/// <summary>Where and how a command opens its model, as its options say: the device or devices
/// (data parallel), a pipeline's stages, the memory cap, how weights and activations are stored
/// and how attention runs. A <see cref="ModelSession"/> opens it.</summary>
internal sealed record SessionSettings(IReadOnlyList<string> Devices, AttentionFusion Attention, string Precision = ModelOptions.DefaultPrecision, long? MemoryCap = null,
                                       PipelineArgs? Pipeline = null, ActivationPrecision? Activations = null);

/// <summary>The options every command that opens a model shares, read into a
/// <see cref="SessionSettings"/> in one place, so an option of the session is added (and
/// refused in combination) once for all of them. One instance per command: an option has one
/// parent.</summary>
internal sealed class SessionArgs
{
    readonly Option<string> device = Cli.DeviceOption();
    readonly Option<string?>? devices;
    readonly Option<string?>? pipeline;
    readonly Option<int?>? microBatches;
    readonly Option<long?> memoryCap = Cli.MemoryCapOption();
    readonly Option<string> precision = ModelOptions.Precision();
    readonly Option<string> attention = ModelOptions.Attention();
    readonly Option<string> activations = ModelOptions.Activations();

    /// <param name="spread">Whether the command runs over several devices: data parallel
    /// (--devices) and on a pipeline (--pipeline, --micro-batches). generate runs on one.</param>
    public SessionArgs(bool spread = true)
    {
        if (!spread) return;
        devices = Cli.DevicesOption();
        pipeline = PipelineArgs.Option();
        microBatches = PipelineArgs.MicroBatchesOption();
    }

    /// <summary>The options, in the order --help lists them.</summary>
    public IEnumerable<Option> Options =>
        devices is null ? [device, memoryCap, precision, attention, activations]
                        : [device, devices, pipeline!, microBatches!, memoryCap, precision, attention, activations];

    /// <summary>The settings the options give, refusing what does not combine (--device with
    /// --devices or --pipeline; --devices with --pipeline; --micro-batches without --pipeline).
    /// Commands call it before they read a file, so options that cannot work together are named
    /// before any data is read (grad used to read its data first).</summary>
    public SessionSettings Read(ParseResult parse)
    {
        PipelineArgs? stages = null;
        IReadOnlyList<string> specs = [parse.GetValue(device)!];
        if (devices is not null)
        {
            stages = PipelineArgs.Read(parse, pipeline!, microBatches!, device);
            PipelineArgs.RefuseWithDataParallel(parse, stages, pipeline!, devices);
            specs = Cli.ReadDevices(parse, device, devices);
        }
        return new SessionSettings(specs, ModelOptions.ReadAttention(parse, attention), parse.GetValue(precision)!, parse.GetValue(memoryCap), stages,
                                   ModelOptions.ReadActivations(parse, activations));
    }
}
