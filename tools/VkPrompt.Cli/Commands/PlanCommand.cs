using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Spectre.Console;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Training;

namespace VkPrompt.Cli.Commands;

/// <summary><c>vkprompt plan</c>: the device memory a training step and a scoring batch will
/// need on each device (each stage of a pipeline), before the run and without the weights
/// (<see cref="MemoryPlan"/>).</summary>
internal static class PlanCommand
{
    public const string Schema = "vkprompt-plan/1";

    public static Command Create()
    {
        var model = ModelOptions.Model();
        model.Required = false;
        model.Description = "A Hugging Face T5 directory; only its config.json is read. Give this or --shape.";
        var shape = new Option<string?>("--shape")
        {
            HelpName = "NAME",
            Description = $"A named shape instead of --model: {BenchCommand.ShapeNamesHelp}.",
        };
        var precision = ModelOptions.Precision();
        var batch = ModelOptions.BatchSize(32);
        batch.Description = "Examples per batch, as train's --batch-size (over all --devices together; scoring batches too). Default: 32.";
        var input = new Option<int>("--input-length")
        {
            Description = "Input tokens per example, eos included and the prompt not (train's --max-input-length: the longest input a batch can have); " +
                          "padded to a multiple of 8 as batches are. Default: 512.",
            DefaultValueFactory = _ => 512,
        };
        var target = new Option<int>("--target-length")
        {
            Description = "Target tokens per example (train's --max-target-length), padded likewise. Default: 128.",
            DefaultValueFactory = _ => 128,
        };
        var promptLength = new Option<int>("--prompt-length") { Description = "Soft prompt length P, as train's. Default: 100 (the paper's).", DefaultValueFactory = _ => 100 };
        var attention = ModelOptions.Attention();
        var activations = ModelOptions.Activations();
        var recompute = new Option<bool>("--recompute") { Description = "Plan train's --recompute: block activations recomputed in the backward instead of stored." };
        var dropout = new Option<float?>("--dropout") { Description = "Training's dropout rate, as train's (above 0 a step keeps its dropped branches). Default: the config's dropout_rate." };
        var device = Cli.DeviceOption();
        var devices = new Option<string?>("--devices")
        {
            HelpName = "SPEC,SPEC,...",
            Description = "Plan data parallelism over these devices (each as --device takes it; one may be listed twice, two contexts sharing its heap): " +
                          "each holds the whole model and takes its share of every batch, as even as can be, the first devices one more example. Instead of --device.",
        };
        var pipeline = PipelineArgs.Option();
        pipeline.Description = "Plan the model split across these devices, as train's --pipeline places it: consecutive layers on each, cut so the largest stage's weights " +
                               "are as small as can be; each stage holds its layers' weights (the first also the prompt and Adafactor's state) and, for every " +
                               "micro-batch, what a pass of its layers keeps for the backward and the tensors crossing its boundaries, beside one micro-batch's scratch and gradients, " +
                               "which its passes share; every stage computes every example. " +
                               "One table per stage, with its layers. Instead of --device; not with --devices.";
        var microBatches = PipelineArgs.MicroBatchesOption();
        var capabilities = new Option<string?>("--capabilities")
        {
            HelpName = "FILE",
            Description = "Plan for the devices recorded in FILE ('vkprompt devices --json' of another machine, e.g. docs/results/h100-2026-11-26c/devices.json) instead of this machine's.",
        };
        var memoryCap = Cli.MemoryCapOption();
        var json = new Option<bool>("--json") { Description = "Print the plan as one JSON object (schema " + Schema + ") instead of tables." };
        var cmd = new Command("plan",
            "Print the device memory a training step and a scoring batch will need on each device, and whether it fits the device's heap (and --memory-cap), " +
            "before any run and without loading the weights: the step and the pass are built through the run's own code on a backend that allocates " +
            "nothing and counts every buffer as the device's memory pool counts it, so the plan is the peak the run will measure (train's 'peak device memory'). " +
            "Rows: the weights, the prompt with Adafactor's state, the work (activations, gradients, the batch, logits) and the peak, for a training step, " +
            "a training step beside validation's scoring pass (a run with --validation keeps both), and a scoring batch (score, eval, classify). " +
            "The fp16 copies of activations that matrix-unit products read are counted as the device's plan makes them. " +
            "Not counted: the tuner's scratch (VKPROMPT_MATMUL_TUNE, freed before a step allocates) and the pool's block rounding " +
            "(it reserves 256 MiB blocks: up to one partly used block per memory type beyond the peak, fewer near a cap or the heap's end). " +
            "With --pipeline, each stage's numbers are its device's; with auto precision the stages store their weights alike (bf16 where every device reads it). " +
            "With --device cpu, or a device that is not here, the plan has no heap to compare with.")
        {
            model, shape, precision, batch, input, target, promptLength, attention, activations, recompute, dropout, device, devices, pipeline, microBatches, capabilities, memoryCap, json,
        };
        cmd.SetAction(parse =>
        {
            string? dir = parse.GetValue(model), name = parse.GetValue(shape);
            if ((dir is null) == (name is null)) throw new UsageException("give the model as exactly one of --model DIR and --shape NAME");
            if (name is not null && !T5Config.ShapeNames.Contains(name))
                throw new UsageException($"--shape '{name}' is not one of {string.Join(", ", T5Config.ShapeNames)}");
            var config = name is not null ? T5Config.Named(name) : T5Config.Load(Path.Combine(dir!, "config.json"));
            string text = parse.GetValue(precision)!;
            float? rate = parse.GetValue(dropout);
            if (rate is { } r && !(r is >= 0 and < 1)) throw new UsageException($"--dropout must be in [0, 1), got {r.ToString(CultureInfo.InvariantCulture)}");
            var settings = new MemoryPlanSettings(config, text.Equals("auto", StringComparison.OrdinalIgnoreCase) ? null : WeightPrecisions.Parse(text, null),
                ModelOptions.Positive(parse, batch), ModelOptions.Positive(parse, input), ModelOptions.Positive(parse, target), ModelOptions.Positive(parse, promptLength),
                ModelOptions.ReadAttention(parse, attention), parse.GetValue(recompute) ? ActivationMode.Recompute : ActivationMode.Store, rate,
                ModelOptions.ReadActivations(parse, activations));
            var stages = PipelineArgs.Read(parse, pipeline, microBatches, device);
            PipelineArgs.RefuseWithDataParallel(parse, stages, pipeline, devices);
            var specs = stages?.Devices ?? Specs(parse, device, devices);
            if (stages is null && specs.Count > settings.BatchSize)
                throw new UsageException($"--batch-size {settings.BatchSize} cannot give each of {specs.Count} devices an example");
            var (targets, notes) = Devices(specs, parse.GetValue(capabilities), settings.Activations);
            // auto resolved here as the run resolves it, so the report says what was planned.
            settings = settings with { Activations = settings.Activations ?? ActivationPrecisions.Resolve(targets.Select(t => t.Plan?.Activations ?? ActivationPrecision.Fp32)) };
            IReadOnlyList<PlannedDevice> plan;
            try { plan = stages is null ? MemoryPlan.DataParallel(settings, targets) : MemoryPlan.Pipeline(settings, targets, stages.MicroBatches); }
            catch (ArgumentException e) { throw new UsageException(e.Message); }
            // The run would refuse these before anything else; the plan says so beside its numbers.
            foreach (var p in plan)
                if (p.Device.Capabilities is { } caps && !p.Precision.IsSupported(caps))
                    notes.Add($"device {p.Device.Spec}: {p.Precision.Name()} weights need 16-bit storage buffers, which {caps.Name} does not support: a run would refuse them");
            long? cap = parse.GetValue(memoryCap);
            // A pipeline cuts a batch into its micro-batches as PipelineStep does: fewer where the batch has fewer examples.
            int? micro = stages is null ? null : Math.Min(stages.MicroBatches ?? specs.Count, settings.BatchSize);
            var report = Json(name ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir!))), settings, plan, micro, cap, notes);
            if (parse.GetValue(json)) Cli.Out(parse).WriteLine(report.ToJsonString(CliJson.Default.Options));
            else Print(Cli.Console(parse), report);
            return Cli.Ok;
        });
        return cmd;
    }

    /// <summary>The device specs: --devices' list, else --device's one.</summary>
    static List<string> Specs(ParseResult parse, Option<string> device, Option<string?> devices)
    {
        if (parse.GetValue(devices) is not { } list) return [parse.GetValue(device)!];
        if (parse.GetResult(device) is { Implicit: false }) throw new UsageException("give --device or --devices, not both");
        var specs = list.Split(',').Select(s => s.Trim()).ToList();
        if (specs.Any(s => s.Length == 0)) throw new UsageException($"--devices {list}: an empty device in the list");
        if (specs.Count > 1 && specs.Any(s => s.Equals("cpu", StringComparison.OrdinalIgnoreCase)))
            throw new UsageException($"--devices {list}: cpu computes alone, not among Vulkan devices");
        return specs;
    }

    /// <summary>Each spec's device and plan, from this machine's devices or a recorded list;
    /// where none is found, the spec alone (a plan without heap), with a note saying why.</summary>
    static (List<PlanDevice>, List<string>) Devices(IReadOnlyList<string> specs, string? recorded, ActivationPrecision? activations)
    {
        var notes = new List<string>();
        if (specs.All(s => s.Equals("cpu", StringComparison.OrdinalIgnoreCase)))
            return ([.. specs.Select(s => new PlanDevice(s))], notes);
        IReadOnlyList<DeviceCapabilities> found;
        try { found = recorded is not null ? DevicesCommand.Recorded(recorded) : GpuContext.ListDevices(); }
        catch (GpuException e)
        {
            notes.Add($"no Vulkan device here ({e.Message}): planned without heaps, attention auto taken as unfused");
            return ([.. specs.Select(s => new PlanDevice(s))], notes);
        }
        // As the run's contexts are made: with the activations asked for, which the fragments follow.
        var options = EnvironmentSettings.GpuOptions() with { Activations = activations };
        var targets = new List<PlanDevice>();
        foreach (var spec in specs)
        {
            try
            {
                var caps = found[found.Count == 0 ? throw new GpuException(GpuContext.NoDeviceMessage) : DeviceBringUp.Choose(found, spec)];
                targets.Add(new PlanDevice(spec, caps, DevicePlan.For(caps, options)));
            }
            catch (GpuException e)
            {
                notes.Add($"device {spec}: {e.Message}; planned without its heap, attention auto taken as unfused");
                targets.Add(new PlanDevice(spec));
            }
        }
        return (targets, notes);
    }

    /// <param name="microBatches">a pipeline's micro-batches per batch; null: data parallel (or one device).</param>
    static JsonObject Json(string model, MemoryPlanSettings s, IReadOnlyList<PlannedDevice> plan, int? microBatches, long? cap, List<string> notes)
    {
        var c = s.Config;
        var shape = s.Shape(s.BatchSize);
        long parameters = T5Names.All(c).Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b));
        JsonObject Work(int i, Func<PlannedDevice, PlannedMemory> work)
        {
            var m = work(plan[i]);
            return new JsonObject
            {
                ["weightsBytes"] = m.Weights,
                ["promptAndOptimizerBytes"] = m.PromptAndOptimizer,
                ["workBytes"] = m.Work,
                ["peakBytes"] = m.Peak,
                ["physicalDevicePeakBytes"] = MemoryPlan.PhysicalPeak(plan, i, work),
                ["fits"] = MemoryPlan.Fits(plan, i, work, cap),
            };
        }
        var devices = new JsonArray();
        for (int i = 0; i < plan.Count; i++)
        {
            var d = plan[i].Device;
            devices.Add((JsonNode)new JsonObject
            {
                ["spec"] = d.Spec,
                ["index"] = d.Capabilities?.Index,
                ["name"] = d.Capabilities?.Name ?? (d.Spec.Equals("cpu", StringComparison.OrdinalIgnoreCase) ? "CPU reference backend" : null),
                ["heapBytes"] = d.HeapBytes,
                ["precision"] = plan[i].Precision.Name(),
                ["layers"] = plan[i].Layers.ToString(),
                ["firstLayer"] = plan[i].Layers.First,
                ["endLayer"] = plan[i].Layers.End,
                ["rows"] = plan[i].Rows,
                ["training"] = Work(i, p => p.Training),
                ["trainingWithValidation"] = Work(i, p => p.TrainingWithValidation),
                ["scoring"] = Work(i, p => p.Scoring),
            });
        }
        return new JsonObject
        {
            ["schema"] = Schema,
            ["model"] = new JsonObject
            {
                ["name"] = model, ["parameters"] = parameters, ["dModel"] = c.DModel, ["dFf"] = c.DFf, ["numHeads"] = c.NumHeads, ["dKv"] = c.DKv,
                ["numLayers"] = c.NumLayers, ["numDecoderLayers"] = c.NumDecoderLayers, ["vocabSize"] = c.VocabSize,
            },
            ["precision"] = s.Precision?.Name() ?? "auto",
            ["batchSize"] = s.BatchSize,
            ["inputLength"] = s.InputLength,
            ["paddedInputLength"] = shape.InputLength,
            ["targetLength"] = s.TargetLength,
            ["paddedTargetLength"] = shape.TargetLength,
            ["promptLength"] = s.PromptLength,
            ["attention"] = s.Attention.Name(),
            ["recompute"] = s.Mode == ActivationMode.Recompute,
            ["activations"] = (s.Activations ?? ActivationPrecision.Fp32).Name(),
            ["dropout"] = s.Dropout ?? c.DropoutRate,
            ["placement"] = microBatches is null ? "dataParallel" : "pipeline",
            ["microBatches"] = microBatches,
            ["memoryCapBytes"] = cap,
            ["poolBlockBytes"] = MemoryPool.DefaultBlockBytes,
            ["devices"] = devices,
            ["notes"] = new JsonArray([.. notes.Select(n => (JsonNode)n)]),
        };
    }

    static void Print(IAnsiConsole console, JsonObject r)
    {
        string S(string key) => r[key]!.ToString();
        var m = r["model"]!;
        console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{m["name"]}: {Parameters((long)m["parameters"]!)} parameters; {S("precision")} weights; batch {S("batchSize")}, input {S("paddedInputLength")} + prompt {S("promptLength")}, " +
            $"target {S("paddedTargetLength")} tokens; attention {S("attention")}; {((bool)r["recompute"]! ? "recomputed" : "stored")} {S("activations")} activations; dropout {S("dropout")}"));
        int? micro = (int?)r["microBatches"];
        int stage = 0;
        foreach (var d in r["devices"]!.AsArray())
        {
            long? heap = (long?)d!["heapBytes"];
            string where = d["name"] is { } n ? $"{d["spec"]} ({n})" : $"{d["spec"]} (not found here)";
            int rows = (int)d["rows"]!;
            string part = micro is { } count
                ? $"stage {stage++} on device {where}: {d["layers"]}, every example of each batch in {count} micro-batch(es) of up to {(rows + count - 1) / count}"
                : $"device {where}: {rows} example(s) of each batch";
            console.WriteLine();
            console.WriteLine($"{part}, {d["precision"]} weights{(heap is { } h ? $", heap {Size(h)}" : "")}");
            var table = new Table().AddColumns("", "weights", "prompt + optimizer", "activations + work", "peak", "fits");
            foreach (var (label, key) in new[] { ("training step", "training"), ("training + validation", "trainingWithValidation"), ("scoring batch", "scoring") })
            {
                var w = d[key]!;
                bool? fits = (bool?)w["fits"];
                long peak = (long)w["peakBytes"]!, physical = (long)w["physicalDevicePeakBytes"]!;
                string fit = fits is null ? "no heap known" : (fits.Value ? "yes" : "NO") + (physical != peak ? $" ({Size(physical)} on the device)" : "");
                table.AddRow(label, Size((long)w["weightsBytes"]!), Size((long)w["promptAndOptimizerBytes"]!), Size((long)w["workBytes"]!), Size(peak), fit);
            }
            console.Write(table);
        }
        if (r["memoryCapBytes"] is { } cap) console.WriteLine($"memory cap: {Size((long)cap)} per device");
        console.WriteLine($"The pool reserves memory in blocks of {Size((long)r["poolBlockBytes"]!)}: up to one partly used block per memory type beyond the peak.");
        foreach (var note in r["notes"]!.AsArray()) console.WriteLine($"note: {note}");
    }

    static string Parameters(long n) => n >= 1_000_000_000
        ? string.Create(CultureInfo.InvariantCulture, $"{n / 1e9:0.###}B")
        : string.Create(CultureInfo.InvariantCulture, $"{n / 1e6:0.#}M");

    /// <summary>Bytes as people read them: GiB from one GiB, else MiB.</summary>
    internal static string Size(long bytes) => bytes >= 1L << 30
        ? string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):0.00} GiB")
        : string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):0.0} MiB");
}
