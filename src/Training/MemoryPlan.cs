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
/// <param name="Mode">training's activations: stored, or recomputed in the backward.</param>
/// <param name="Dropout">training's dropout rate; null: the config's.</param>
/// <param name="Activations">how the block activations are stored; null: auto, as
/// <see cref="ActivationPrecisions.Resolve"/> resolves it over the devices.</param>
internal sealed record MemoryPlanSettings(T5Config Config, WeightPrecision? Precision, int BatchSize, int InputLength, int TargetLength, int PromptLength,
                                          AttentionFusion Attention = AttentionFusion.Auto, ActivationMode Mode = ActivationMode.Store, float? Dropout = null,
                                          ActivationPrecision? Activations = null)
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
        if (Mode == ActivationMode.Inference) throw new ArgumentException("a training step stores or recomputes its activations", nameof(Mode));
        if (Dropout is { } d && !(d is >= 0 and < 1)) throw new ArgumentException($"dropout must be in [0, 1), got {d}", nameof(Dropout));
        // Padded in longs: the shape's ints would wrap for lengths near int's range and pass.
        long input = HostBatch.Padded(InputLength), target = HostBatch.Padded(TargetLength);
        long elements = BatchShape.LargestActivation(BatchSize, PromptLength + input, target, Config);
        if (elements > BatchShape.MaxElements)
            throw new ArgumentException($"batch {BatchSize} with a {PromptLength}-token prompt, {input} input and {target} target tokens needs activations of {elements} elements, more than the {BatchShape.MaxElements} a buffer can index: make them smaller");
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

/// <summary>One device's part of a plan: the layers it holds, the examples of each batch it
/// takes, and the memory of a training step, of a training step beside validation's scoring
/// pass, and of a scoring batch.</summary>
/// <param name="Device">the device.</param>
/// <param name="Precision">how the weights are stored there.</param>
/// <param name="Layers">the layers it holds: all, or a pipeline's stage.</param>
/// <param name="Rows">the examples of every batch this device computes (a pipeline's stage: all,
/// in micro-batches).</param>
/// <param name="Training">a training step (<see cref="PromptTrainer"/>).</param>
/// <param name="TrainingWithValidation">a training step and validation's scoring pass, which a run
/// with validation data keeps beside it (both of <paramref name="Rows"/> rows).</param>
/// <param name="Scoring">a scoring batch (<c>score</c>, <c>eval</c>, <c>classify</c>).</param>
internal sealed record PlannedDevice(PlanDevice Device, WeightPrecision Precision, LayerRange Layers, int Rows, PlannedMemory Training, PlannedMemory TrainingWithValidation, PlannedMemory Scoring);

/// <summary>
/// The device memory a run will need, before the run: the training step and scoring batch are
/// built, through the very code that builds them for a run (<see cref="PromptTrainer.StepFor"/>,
/// <see cref="Scorer.PassFor"/>, over <see cref="T5Weights.Unloaded"/> weights; for a pipeline
/// <see cref="PipelineTrainer.StepFor"/> and <see cref="PipelineScorer.StepFor"/> over
/// <see cref="ModelPipeline.Unloaded"/>), on a <see cref="TraceBackend"/> per device, which
/// allocates nothing and counts every buffer as the device's pool would count it in use. So the
/// plan is the run's own allocation sequence, not a formula beside it, and changes with it.
/// Nothing large is allocated on the host either: the weights are shapes without values.
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
    /// <exception cref="ArgumentException">Bad settings (<see cref="MemoryPlanSettings.Validate"/>), or
    /// more devices than examples in a batch.</exception>
    public static IReadOnlyList<PlannedDevice> DataParallel(MemoryPlanSettings settings, IReadOnlyList<PlanDevice> devices)
    {
        settings.Validate();
        if (devices.Count == 0) throw new ArgumentException("a plan needs at least one device", nameof(devices));
        if (devices.Count > settings.BatchSize)
            throw new ArgumentException($"batch {settings.BatchSize} cannot give each of {devices.Count} devices an example");
        var rows = Shares(settings.BatchSize, devices.Count);
        // One precision for every device, as PromptModel.Open picks it for all its replicas.
        var precision = settings.Precision ?? WeightPrecisions.Auto(devices.Select(d => d.Capabilities));
        return [.. devices.Select((d, i) => ForDevice(settings with { Precision = precision }, d, rows[i], validates: i == 0))];
    }

    /// <summary>The examples of a batch of <paramref name="batch"/> each of <paramref name="devices"/>
    /// devices takes, as a run shares them (<see cref="HostBatch.Share"/>).</summary>
    public static int[] Shares(int batch, int devices) => [.. Enumerable.Range(0, devices).Select(i => HostBatch.Share(batch, devices, i).Count)];

    /// <summary>The memory of <paramref name="rows"/> examples of each training batch on
    /// <paramref name="device"/>, which holds the whole model; scoring hands each device whole
    /// batches (<see cref="Scorer.ScoreAll"/>), and a run validates on its first device alone
    /// (<paramref name="validates"/>).</summary>
    public static PlannedDevice ForDevice(MemoryPlanSettings settings, PlanDevice device, int rows, bool validates = true)
    {
        var precision = settings.Precision ?? WeightPrecisions.Parse("auto", device.Capabilities);
        var (training, withValidation, scoring) = Work(settings, [device], settings.Shape(rows), settings.Shape(settings.BatchSize), validates,
            b => T5Weights.Unloaded(settings.Config, b[0], precision),
            (w, prompt) =>
            {
                var trainer = new PromptTrainer(w, prompt, settings.Optimizer, Dropout(settings), seed: 0, settings.Mode);
                return (trainer, shape => trainer.StepFor(shape));
            },
            (w, shape) =>
            {
                var scorer = new Scorer(w);
                scorer.PassFor(shape);
                return scorer;
            });
        return new PlannedDevice(device, precision, LayerRange.All(settings.Config), rows, training[0], withValidation[0], scoring[0]);
    }

    /// <summary>The plan of a model split across <paramref name="devices"/> (<c>--pipeline</c>),
    /// one stage on each in order, its layers cut as a run cuts them (<see cref="ModelPipeline.Balance"/>):
    /// each stage holds its layers' weights and, for every micro-batch, a pass of its layers with
    /// the tensors crossing its boundaries (<see cref="PipelineStep"/>); the first stage also the
    /// prompt and the optimizer state. Every stage computes every example of a batch.</summary>
    /// <param name="settings">the run's settings; the precision under auto is one for all stages
    /// (<see cref="WeightPrecisions.Auto"/>), as <see cref="PromptModel.OpenPipeline"/> picks it.</param>
    /// <param name="devices">one per stage, in the order the data flows.</param>
    /// <param name="microBatches">micro-batches a batch is cut into; null: one per stage.</param>
    /// <exception cref="ArgumentException">Bad settings, fewer than two stages, more stages than
    /// the model has layers, or fewer than one micro-batch.</exception>
    public static IReadOnlyList<PlannedDevice> Pipeline(MemoryPlanSettings settings, IReadOnlyList<PlanDevice> devices, int? microBatches = null)
    {
        settings.Validate();
        var c = settings.Config;
        int layers = c.NumLayers + c.NumDecoderLayers;
        if (devices.Count < 2 || devices.Count > layers)
            throw new ArgumentException($"a pipeline of {devices.Count} stages: it needs 2 to {layers}, one stage per device and at least one of the model's {layers} layers ({c.NumLayers} encoder, {c.NumDecoderLayers} decoder) per stage");
        if (microBatches is < 1) throw new ArgumentException($"a pipeline needs at least one micro-batch, got {microBatches}", nameof(microBatches));
        var precision = settings.Precision ?? WeightPrecisions.Auto(devices.Select(d => d.Capabilities));
        var ranges = ModelPipeline.Balance(c, precision, devices.Count);
        var (training, withValidation, scoring) = Work(settings, devices, settings.Shape(settings.BatchSize), settings.Shape(settings.BatchSize), validates: true,
            b => ModelPipeline.Unloaded(c, b, precision, microBatches, ranges),
            (p, prompt) =>
            {
                var trainer = new PipelineTrainer(p, prompt, settings.Optimizer, Dropout(settings), seed: 0, settings.Mode);
                return (trainer, shape => trainer.StepFor(shape));
            },
            (p, shape) =>
            {
                var scorer = new PipelineScorer(p);
                scorer.StepFor(shape);
                return scorer;
            });
        return [.. devices.Select((d, i) => new PlannedDevice(d, precision, ranges[i], settings.BatchSize, training[i], withValidation[i], scoring[i]))];
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

    static float Dropout(MemoryPlanSettings s) => s.Dropout ?? (float)s.Config.DropoutRate;

    /// <summary>The memory of a training step of <paramref name="trainShape"/>, of one beside
    /// validation's scoring pass where the devices validate (else the step alone), and of a
    /// scoring batch, both of <paramref name="scoreShape"/>, on each of <paramref name="devices"/>,
    /// with the model placed on them by <paramref name="open"/>; <paramref name="trainer"/> makes
    /// the run's trainer (what it keeps for the whole run) and how it builds a step,
    /// <paramref name="scorer"/> the run's scorer with its pass built.</summary>
    static (PlannedMemory[] Training, PlannedMemory[] WithValidation, PlannedMemory[] Scoring) Work<TModel>(
        MemoryPlanSettings s, IReadOnlyList<PlanDevice> devices, BatchShape trainShape, BatchShape scoreShape, bool validates, Func<IReadOnlyList<TraceBackend>, TModel> open,
        Func<TModel, float[], (IDisposable Trainer, Action<BatchShape> Step)> trainer, Func<TModel, BatchShape, IDisposable> scorer) where TModel : IDisposable
    {
        PlannedMemory[] Training(bool validation) => Count(s, devices, open, (model, counted) =>
        {
            var (kept, step) = trainer(model, new float[(long)s.PromptLength * s.Config.DModel]);
            using (kept)
            {
                counted();
                step(trainShape);
                // Validation scores with its own pass while the step is kept (TrainingRun).
                if (validation) scorer(model, scoreShape).Dispose();
            }
        });
        var training = Training(validation: false);
        return (training, validates ? Training(validation: true) : training, Count(s, devices, open, (model, _) => scorer(model, scoreShape).Dispose()));
    }

    /// <summary>Runs <paramref name="work"/> on a model of the plan's shapes placed by
    /// <paramref name="open"/> on counting backends, one standing for each of
    /// <paramref name="devices"/>; the work calls its second argument once what it keeps for the
    /// whole run (the prompt and optimizer state) is made. Each device's memory, in order.</summary>
    static PlannedMemory[] Count<TModel>(MemoryPlanSettings s, IReadOnlyList<PlanDevice> devices, Func<IReadOnlyList<TraceBackend>, TModel> open, Action<TModel, Action> work)
        where TModel : IDisposable
    {
        var backends = new List<TraceBackend>();
        try
        {
            var activations = s.Activations ?? ActivationPrecisions.Resolve(devices.Select(d => d.Plan?.Activations ?? ActivationPrecision.Fp32));
            foreach (var d in devices) backends.Add(new TraceBackend(FusesAttention(s.Attention, d), d.TableChunkBytes, d.Plan) { Activations = activations });
            long[] InUse() => [.. backends.Select(b => b.MemoryUse.Current)];
            using var model = open(backends);
            long[] weights = InUse(), kept = weights;
            work(model, () => kept = InUse());
            return [.. backends.Select((be, i) => new PlannedMemory(weights[i], kept[i] - weights[i], be.MemoryUse.Peak - kept[i], be.MemoryUse.Peak,
                                                                    be.RequestedMemoryUse.Peak, be.BuffersMade))];
        }
        finally
        {
            foreach (var b in backends) b.Dispose();
        }
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
