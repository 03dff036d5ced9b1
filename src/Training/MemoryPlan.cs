using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;

namespace VkPrompt.Training;

/// <summary>What a memory plan is asked about: the model's shapes and the run's settings, as
/// <c>vkprompt train</c> and <c>score</c> take them.</summary>
/// <param name="Config">the model's shapes (a config.json, or <see cref="T5Config.Named"/>).</param>
/// <param name="Precision">how the frozen weights are stored; null: auto, per device as
/// <see cref="WeightPrecisions.Parse"/> takes it (bf16 where the device reads 16-bit weights).</param>
/// <param name="BatchSize">examples per batch, over all devices together.</param>
/// <param name="InputLength">input tokens per example (eos included, the prompt not); a batch pads
/// it to a multiple of <see cref="HostBatch.LengthQuantum"/>, as the run does.</param>
/// <param name="TargetLength">target tokens per example, padded likewise.</param>
/// <param name="PromptLength">soft prompt rows.</param>
/// <param name="Attention">how attention runs; <see cref="AttentionFusion.Auto"/> as each
/// device's plan decides (unfused where no device is known, the larger).</param>
/// <param name="Activations">training's activations: stored, or recomputed in the backward.</param>
/// <param name="Dropout">training's dropout rate; null: the config's.</param>
internal sealed record MemoryPlanSettings(T5Config Config, WeightPrecision? Precision, int BatchSize, int InputLength, int TargetLength, int PromptLength,
                                          AttentionFusion Attention = AttentionFusion.Auto, ActivationMode Activations = ActivationMode.Store, float? Dropout = null)
{
    /// <summary>The optimizer whose state the plan counts (its state's size depends on
    /// <see cref="AdafactorSettings.MinDimToFactor"/> alone).</summary>
    public AdafactorSettings Optimizer { get; init; } = new();

    /// <summary>The batch shape of <paramref name="rows"/> examples at these lengths, padded as
    /// <see cref="HostBatch.Build"/> pads them.</summary>
    public BatchShape Shape(int rows) => new(rows, HostBatch.Round(InputLength), HostBatch.Round(TargetLength), PromptLength);

    /// <exception cref="ArgumentException">A size is not positive, or the largest activation would
    /// exceed what a buffer can index (the run refuses it too).</exception>
    public void Validate()
    {
        if (BatchSize <= 0 || InputLength <= 0 || TargetLength <= 0 || PromptLength <= 0)
            throw new ArgumentException($"batch size, input, target and prompt lengths must be positive, got {BatchSize}, {InputLength}, {TargetLength}, {PromptLength}");
        if (Activations == ActivationMode.Inference) throw new ArgumentException("a training step stores or recomputes its activations", nameof(Activations));
        if (Dropout is { } d && !(d is >= 0 and < 1)) throw new ArgumentException($"dropout must be in [0, 1), got {d}", nameof(Dropout));
        var s = Shape(BatchSize);
        long elements = BatchShape.LargestActivation(s.Batch, s.EncoderLength, s.TargetLength, Config);
        if (elements > BatchShape.MaxElements)
            throw new ArgumentException($"batch {BatchSize} with a {PromptLength}-token prompt and {s.InputLength} input tokens needs activations of {elements} elements, more than the {BatchShape.MaxElements} a buffer can index: make them smaller");
        Optimizer.Validate();
    }
}

/// <summary>A device a plan is made for: what the user named (<c>--device</c>'s spec), and the
/// Vulkan device it names with its plan, or neither (the CPU backend, or no such device here:
/// the plan is then made without heap and without the device's choices).</summary>
internal sealed record PlanDevice(string Spec, DeviceCapabilities? Capabilities = null, DevicePlan? Plan = null)
{
    /// <summary>The largest heap of device-local memory, where the pool puts weights and
    /// activations (<see cref="MemoryPool.EnsureFits"/> checks work against it); null without a device.</summary>
    public long? HeapBytes => Capabilities?.Heaps.Where(h => h.DeviceLocal).Select(h => (long?)h.Size).Max()
                              ?? Capabilities?.Heaps.Select(h => (long?)h.Size).Max();

    /// <summary>The largest buffer a weight table's chunk may be here (<see cref="SplitTensor"/>).</summary>
    internal long? TableChunkBytes => Plan is null || Capabilities is null ? null : Math.Min(Plan.MaxBindingBytes, Capabilities.MaxMemoryAllocationSize);
}

/// <summary>The device memory one piece of work needs, in bytes as the device's pool counts them
/// in use (<see cref="Backend.MemoryUse"/>), each buffer rounded up to 256 bytes
/// (<see cref="TraceBackend.BufferAlignment"/>).</summary>
/// <param name="Weights">the frozen weights this device holds.</param>
/// <param name="PromptAndOptimizer">the prompt, Adafactor's state and its update (training only).</param>
/// <param name="Work">what the step or pass allocates on top: activations, their gradients,
/// the batch's inputs, logits (and, for training with validation, the scoring pass beside the step).</param>
/// <param name="Peak">the most in use at once: weights + prompt and optimizer + work.</param>
/// <param name="RequestedPeak">the peak with each buffer as many bytes as asked for, unrounded
/// (what a driver that sizes buffers as asked, such as lavapipe, counts).</param>
/// <param name="Buffers">device buffers made, so at most Buffers × 255 bytes of the peak are rounding.</param>
internal sealed record PlannedMemory(long Weights, long PromptAndOptimizer, long Work, long Peak, long RequestedPeak, int Buffers);

/// <summary>One device's part of a plan: the examples of each batch it takes, and the memory of
/// a training step, of a training step beside validation's scoring pass, and of a scoring batch.</summary>
/// <param name="Device">the device.</param>
/// <param name="Precision">how the weights are stored there.</param>
/// <param name="Rows">the examples of every batch this device computes.</param>
/// <param name="Training">a training step (<see cref="PromptTrainer"/>).</param>
/// <param name="TrainingWithValidation">a training step and validation's scoring pass, which a run
/// with validation data keeps beside it (both of <paramref name="Rows"/> rows).</param>
/// <param name="Scoring">a scoring batch (<c>score</c>, <c>eval</c>, <c>classify</c>).</param>
internal sealed record PlannedDevice(PlanDevice Device, WeightPrecision Precision, int Rows, PlannedMemory Training, PlannedMemory TrainingWithValidation, PlannedMemory Scoring);

/// <summary>
/// The device memory a run will need, before the run: the training step and scoring batch are
/// built, through the very code that builds them for a run (<see cref="PromptTrainer.StepFor"/>,
/// <see cref="Scorer.PassFor"/>, over <see cref="T5Weights.Unloaded"/> weights), on a
/// <see cref="TraceBackend"/>, which allocates nothing and counts every buffer as the device's
/// pool would count it in use. So the plan is the run's own allocation sequence, not a formula
/// beside it, and changes with it. Nothing large is allocated on the host either: the weights
/// are shapes without values.
/// </summary>
/// <remarks>
/// The fp16 copies of activations that a device's matrix-unit products read
/// (<see cref="HalfCopies"/>) are counted from its plan (for a weight table split across
/// bindings, as for the whole table). Not counted: the tuner's scratch operands
/// (<see cref="GpuOptions.TuneMatMul"/>, freed before the step allocates) and the staging
/// buffers of uploads (freed at once). The pool reserves its memory in blocks of
/// <see cref="MemoryPool.DefaultBlockBytes"/>, which the peak in use does not include: up to one
/// partly used block per memory type, fewer near a cap or a heap's end, where blocks shrink to
/// the buffer.
/// </remarks>
internal static class MemoryPlan
{
    /// <summary>The plan of data parallelism over <paramref name="devices"/> (one device: the plain
    /// run): every device holds the whole model, its own prompt and optimizer state, and
    /// <see cref="Shares"/> of each batch.</summary>
    /// <remarks>The seam for other placements: a pipeline places consecutive layers on each device,
    /// so its plan builds each device's part of the model (its layers' weights, their activations
    /// and those crossing its boundaries) and returns the same <see cref="PlannedDevice"/> per device.</remarks>
    /// <exception cref="ArgumentException">Bad settings (<see cref="MemoryPlanSettings.Validate"/>), or
    /// more devices than examples in a batch.</exception>
    public static IReadOnlyList<PlannedDevice> DataParallel(MemoryPlanSettings settings, IReadOnlyList<PlanDevice> devices)
    {
        settings.Validate();
        if (devices.Count == 0) throw new ArgumentException("a plan needs at least one device", nameof(devices));
        if (devices.Count > settings.BatchSize)
            throw new ArgumentException($"batch {settings.BatchSize} cannot give each of {devices.Count} devices an example");
        var rows = Shares(settings.BatchSize, devices.Count);
        return [.. devices.Select((d, i) => ForDevice(settings, d, rows[i]))];
    }

    /// <summary>The examples of a batch of <paramref name="batch"/> each of <paramref name="devices"/>
    /// devices takes: as even as can be, the first devices one more.</summary>
    public static int[] Shares(int batch, int devices) =>
        [.. Enumerable.Range(0, devices).Select(i => batch / devices + (i < batch % devices ? 1 : 0))];

    /// <summary>The memory of <paramref name="rows"/> examples a batch on <paramref name="device"/>,
    /// which holds the whole model.</summary>
    public static PlannedDevice ForDevice(MemoryPlanSettings settings, PlanDevice device, int rows)
    {
        var shape = settings.Shape(rows);
        var precision = settings.Precision ?? WeightPrecisions.Parse("auto", device.Capabilities);
        return new PlannedDevice(device, precision, rows, Training(settings, device, precision, shape, validation: false),
                                 Training(settings, device, precision, shape, validation: true),
                                 Count(settings, device, precision, (w, _) => { using var scorer = new Scorer(w); scorer.PassFor(shape); }));
    }

    /// <summary>Bytes in use on the physical device behind entry <paramref name="index"/> of
    /// <paramref name="plan"/> at <paramref name="work"/>'s peak: its own, and those of the other
    /// entries on the same Vulkan device (listed twice: two contexts, one heap).</summary>
    public static long PhysicalPeak(IReadOnlyList<PlannedDevice> plan, int index, Func<PlannedDevice, PlannedMemory> work)
    {
        var caps = plan[index].Device.Capabilities;
        return caps is null ? work(plan[index]).Peak
            : plan.Where(p => p.Device.Capabilities?.Index == caps.Index).Sum(p => work(p).Peak);
    }

    /// <summary>Whether <paramref name="work"/> fits entry <paramref name="index"/>: its peak
    /// within <paramref name="memoryCap"/> (a cap is per context), and the peak of its physical
    /// device (<see cref="PhysicalPeak"/>) within its heap; null where neither is known.</summary>
    public static bool? Fits(IReadOnlyList<PlannedDevice> plan, int index, Func<PlannedDevice, PlannedMemory> work, long? memoryCap)
    {
        long? heap = plan[index].Device.HeapBytes;
        if (heap is null && memoryCap is null) return null;
        return (memoryCap is not { } cap || work(plan[index]).Peak <= cap) && (heap is not { } h || PhysicalPeak(plan, index, work) <= h);
    }

    static PlannedMemory Training(MemoryPlanSettings s, PlanDevice device, WeightPrecision precision, BatchShape shape, bool validation) =>
        Count(s, device, precision, (w, counted) =>
        {
            var prompt = new float[(long)s.PromptLength * s.Config.DModel];
            using var trainer = new PromptTrainer(w, prompt, s.Optimizer, s.Dropout ?? (float)s.Config.DropoutRate, seed: 0, s.Activations);
            counted();
            trainer.StepFor(shape);
            // Validation scores with its own pass while the step is kept (TrainingRun).
            if (validation)
            {
                using var scorer = new Scorer(w);
                scorer.PassFor(shape);
            }
        });

    /// <summary>Runs <paramref name="work"/> on weights of the plan's model on a counting backend
    /// standing for <paramref name="device"/>; the work calls its second argument once what it
    /// keeps for the whole run (the prompt and optimizer state) is made.</summary>
    static PlannedMemory Count(MemoryPlanSettings s, PlanDevice device, WeightPrecision precision, Action<T5Weights, Action> work)
    {
        using var be = new TraceBackend(FusesAttention(s.Attention, device), device.TableChunkBytes, device.Plan);
        using var weights = T5Weights.Unloaded(s.Config, be, precision);
        long w = be.MemoryUse.Current;
        long kept = w;
        work(weights, () => kept = be.MemoryUse.Current);
        long peak = be.MemoryUse.Peak;
        return new PlannedMemory(w, kept - w, peak - kept, peak, be.RequestedMemoryUse.Peak, be.BuffersMade);
    }

    /// <summary>Which attentions run fused: as asked, or under auto as the device's plan decides
    /// (<see cref="DevicePlan.FusesAttentionByDefault"/>); without a Vulkan device as the CPU
    /// backend runs them, unfused.</summary>
    static Func<AttentionShape, bool> FusesAttention(AttentionFusion fusion, PlanDevice device) => fusion switch
    {
        AttentionFusion.Fused => _ => true,
        AttentionFusion.Unfused => _ => false,
        _ => device.Plan is { } plan ? plan.FusesAttentionByDefault : _ => false,
    };
}
