using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Model.Tokenization;
using VkPrompt.Runtime;

namespace VkPrompt.Training;

/// <summary>
/// The entry point for library users: a frozen T5 opened from a Hugging Face directory (its
/// config, tokenizer and weights on a backend), with soft prompts to score, classify, generate
/// and train. Open it on a <see cref="GpuContext"/> the host owns, or on the CPU reference
/// backend; each call is a thin layer over <see cref="Scorer"/>, <see cref="RankClassifier"/>,
/// <see cref="GreedyDecoder"/>, <see cref="PromptTrainer"/> and <see cref="TrainingRun"/>,
/// which remain there for finer control.
/// </summary>
/// <example>
/// <code>
/// using var ctx = GpuContext.Create(new GpuOptions());
/// using var model = PromptModel.Open("t5-base-lm-adapt", ctx, WeightPrecision.Bf16);
/// var prompt = model.Prompts([model.LoadPrompt("rte-prompt")]);
/// var inputs = new[] { "hypothesis: ... premise: ..." }.Select(t => model.Tokenizer.Encode(t)).ToList();
/// int[] labels = model.Classify(inputs, ["entailment", "not_entailment"], prompt)[0];
/// </code>
/// </example>
public sealed class PromptModel : IDisposable
{
    /// <summary>The checkpoint the weights were read from (its directory and tensors).</summary>
    public T5Checkpoint Checkpoint { get; }
    /// <summary>The model's T5 configuration.</summary>
    public T5Config Config => Checkpoint.Config;
    /// <summary>The model width, the length of one prompt row.</summary>
    public int DModel => Config.DModel;
    /// <summary>The checkpoint's tokenizer: SentencePiece, or ByT5's bytes.</summary>
    public T5Tokenizer Tokenizer { get; }
    /// <summary>Where the model computes: its first device where it has several (<see cref="Backends"/>),
    /// a pipeline's first stage.</summary>
    public Backend Backend => Backends[0];
    /// <summary>Every device the model is on: each holding the whole frozen model (training,
    /// gradients and scoring split over them, data parallel, with the one-device result), or each
    /// holding a pipeline's stage (<see cref="Pipeline"/>).</summary>
    public IReadOnlyList<Backend> Backends { get; }
    /// <summary>The frozen weights on <see cref="Backend"/> (a pipeline's: its first stage's).</summary>
    internal T5Weights Weights => Replicas[0];
    /// <summary>The whole frozen model on each device of a data-parallel placement, in order; a
    /// pipeline's first stage alone.</summary>
    internal IReadOnlyList<T5Weights> Replicas { get; }
    /// <summary>The model split across devices, where it was opened so (<see cref="OpenPipeline"/>); null otherwise.</summary>
    internal ModelPipeline? Pipeline { get; }

    /// <summary>The processes a training run and a gradient are split over besides this process's
    /// devices (an MPI job's ranks; <see cref="SingleProcess"/>: this process alone). The model
    /// does not own it: whoever made the group disposes it after the model.</summary>
    internal IProcessGroup ProcessGroup
    {
        get => processGroup;
        // Every rank of a group holds the whole model; a pipeline's stages are one worker.
        set => processGroup = Pipeline is null || value.Size == 1 ? value
            : throw new TrainingOptionException($"a model split across devices ({Setting.PipelineStages}) does not run over several processes yet; each rank must hold the whole model");
    }
    IProcessGroup processGroup = new SingleProcess();

    PromptModel(T5Checkpoint checkpoint, T5Tokenizer tokenizer, IReadOnlyList<T5Weights> replicas) =>
        (Checkpoint, Tokenizer, Replicas, Backends) = (checkpoint, tokenizer, replicas, replicas.Select(r => r.Backend).ToList());

    PromptModel(T5Checkpoint checkpoint, T5Tokenizer tokenizer, ModelPipeline pipeline, IReadOnlyList<Backend> backends) =>
        (Checkpoint, Tokenizer, Replicas, Backends, Pipeline) = (checkpoint, tokenizer, [pipeline.Stages[0]], backends, pipeline);

    /// <summary>Opens <paramref name="directory"/> on a Vulkan device the host owns (and disposes):
    /// the model borrows <paramref name="context"/>.</summary>
    /// <param name="directory">A Hugging Face T5 directory: config.json, model.safetensors (or a
    /// sharded index) and spiece.model or tokenizer.json (none for ByT5, whose tokenizer_class
    /// selects bytes).</param>
    /// <param name="context">The device to compute on.</param>
    /// <param name="precision">How the frozen weights are stored: fp16 and bf16 halve their memory
    /// (sums stay fp32). null: bf16 where the device can read 16-bit weights, else fp32.</param>
    /// <param name="attention">Whether attention runs fused; the results agree to rounding.</param>
    /// <param name="log">Where to say what was opened, if anywhere.</param>
    /// <param name="activations">How the block activations are kept between kernels
    /// (<see cref="Backend.Activations"/>); null: each device's plan's choice
    /// (<see cref="DevicePlan.Activations"/>: bf16 on GPUs with 16-bit storage, fp32 on CPU
    /// devices and the CPU backend), resolved once for a model on several devices.</param>
    public static PromptModel Open(string directory, GpuContext context, WeightPrecision? precision = WeightPrecision.Fp32,
                                   AttentionFusion attention = AttentionFusion.Auto, Action<string>? log = null, ActivationPrecision? activations = null) =>
        Open(directory, () => new GpuBackend(context), precision, attention, log, activations);

    /// <summary>Opens <paramref name="directory"/> on the CPU reference backend (no Vulkan), which
    /// emulates 16-bit weights by rounding them.</summary>
    /// <inheritdoc cref="Open(string, GpuContext, WeightPrecision?, AttentionFusion, Action{string}?, ActivationPrecision?)"/>
    public static PromptModel OpenOnCpu(string directory, WeightPrecision precision = WeightPrecision.Fp32,
                                        AttentionFusion attention = AttentionFusion.Auto, Action<string>? log = null, ActivationPrecision? activations = null) =>
        Open(directory, () => new CpuBackend(), precision, attention, log, activations);

    /// <summary>Opens <paramref name="directory"/> on the backend <paramref name="openBackend"/>
    /// makes, which the model then owns. The checkpoint and tokenizer are read first, so a bad
    /// file fails before any device work.</summary>
    /// <inheritdoc cref="Open(string, GpuContext, WeightPrecision?, AttentionFusion, Action{string}?, ActivationPrecision?)"/>
    public static PromptModel Open(string directory, Func<Backend> openBackend, WeightPrecision? precision = WeightPrecision.Fp32,
                                   AttentionFusion attention = AttentionFusion.Auto, Action<string>? log = null, ActivationPrecision? activations = null) =>
        Open(directory, [openBackend], precision, attention, log, activations);

    /// <summary>Opens <paramref name="directory"/> on several Vulkan devices the host owns, the
    /// whole frozen model on each, for data parallel work: training steps, gradients and scoring
    /// are split over them and give the one-device result (docs/numerics.md's tolerance; training
    /// at dropout 0). Two contexts may be two logical devices of one physical device. The
    /// contexts are in worker order; the first also runs the optimizer and validation, and what
    /// is not split (<see cref="Generate"/>, <see cref="BeginScore"/>, <see cref="Trainer"/>) runs
    /// on it alone.</summary>
    /// <inheritdoc cref="Open(string, GpuContext, WeightPrecision?, AttentionFusion, Action{string}?, ActivationPrecision?)"/>
    public static PromptModel Open(string directory, IReadOnlyList<GpuContext> contexts, WeightPrecision? precision = WeightPrecision.Fp32,
                                   AttentionFusion attention = AttentionFusion.Auto, Action<string>? log = null, ActivationPrecision? activations = null) =>
        Open(directory, contexts.Select(c => (Func<Backend>)(() => new GpuBackend(c))).ToList(), precision, attention, log, activations);

    /// <summary>Opens <paramref name="directory"/> on each backend of <paramref name="openBackends"/>
    /// (several: data parallel, as above; they may mix Vulkan devices and the CPU backend), which
    /// the model then owns. The checkpoint and tokenizer are read first, so a bad file fails
    /// before any device work. precision null resolves once for all devices: bf16 only where
    /// every device reads 16-bit weights, since every replica must hold the same values.</summary>
    /// <inheritdoc cref="Open(string, GpuContext, WeightPrecision?, AttentionFusion, Action{string}?, ActivationPrecision?)"/>
    public static PromptModel Open(string directory, IReadOnlyList<Func<Backend>> openBackends, WeightPrecision? precision = WeightPrecision.Fp32,
                                   AttentionFusion attention = AttentionFusion.Auto, Action<string>? log = null, ActivationPrecision? activations = null)
    {
        if (openBackends.Count == 0) throw new ArgumentException("a model needs at least one device", nameof(openBackends));
        return Place(directory, log, (checkpoint, tokenizer) =>
        {
            var backends = new List<Backend>();
            var replicas = new List<T5Weights>();
            try
            {
                foreach (var open in openBackends)
                {
                    var backend = open();
                    backends.Add(backend);
                    log?.Invoke($"backend: {backend.Name}");
                    backend.AttentionFusion = attention;
                }
                var chosen = SetActivations(backends, activations);
                log?.Invoke($"attention: {attention.Name()}; activations: {chosen.Name()}");
                var stored = precision ?? WeightPrecisions.Auto(backends.Select(b => (b as GpuBackend)?.Context.Capabilities));
                log?.Invoke($"weights: {stored.Name()}");
                foreach (var backend in backends) replicas.Add(new T5Weights(checkpoint, backend, stored));
                return new PromptModel(checkpoint, tokenizer, replicas);
            }
            catch
            {
                foreach (var r in replicas) r.Dispose();
                foreach (var b in backends) b.Dispose();
                throw;
            }
        });
    }

    /// <summary>Sets every backend's <see cref="Backend.Activations"/> to <paramref name="asked"/>,
    /// or where null to the one their own choices resolve to (<see cref="ActivationPrecisions.Resolve"/>):
    /// every replica and stage must compute the same values. Returns what was set.</summary>
    static ActivationPrecision SetActivations(IReadOnlyList<Backend> backends, ActivationPrecision? asked)
    {
        var chosen = asked ?? ActivationPrecisions.Resolve(backends.Select(b => b.Activations));
        foreach (var b in backends) b.Activations = chosen;
        return chosen;
    }

    /// <summary>Reads the checkpoint and tokenizer of <paramref name="directory"/>, so a bad file
    /// fails before any device work, and hands them to <paramref name="place"/>, which puts the
    /// weights on devices; the checkpoint is closed again if it fails.</summary>
    static PromptModel Place(string directory, Action<string>? log, Func<T5Checkpoint, T5Tokenizer, PromptModel> place)
    {
        var checkpoint = T5Checkpoint.Open(directory);
        try
        {
            foreach (var notice in checkpoint.Notices) log?.Invoke(notice);
            var tokenizer = T5Tokenizer.Load(directory);
            // An id past the embedding would read outside it; every id the tokenizer can give must have a row.
            if (tokenizer.VocabSize > checkpoint.Config.VocabSize)
                throw new ModelFormatException(Path.Combine(checkpoint.Directory, "config.json"),
                    $"vocab_size is {checkpoint.Config.VocabSize}, but the tokenizer has {tokenizer.VocabSize} tokens");
            return place(checkpoint, tokenizer);
        }
        catch { checkpoint.Dispose(); throw; }
    }

    /// <summary>Opens <paramref name="directory"/> split across devices (<c>--pipeline</c>):
    /// consecutive layers on each backend <paramref name="openStages"/> makes, which the model
    /// then owns (<see cref="ModelPipeline.Balance"/>'s cut unless <paramref name="ranges"/> gives one).
    /// Training (<see cref="CreateTrainer"/>), <see cref="Gradient"/>, <see cref="Score"/> and
    /// <see cref="Classify"/> run through the stages; generation does not yet, and says so.</summary>
    /// <param name="directory">A Hugging Face T5 directory.</param>
    /// <param name="openStages">one per stage, in the order the data flows (at least two, at most the model's layers).</param>
    /// <param name="precision">How the frozen weights are stored; null: bf16 where every stage's device reads 16-bit weights, else fp32.</param>
    /// <param name="attention">Whether attention runs fused.</param>
    /// <param name="microBatches">micro-batches a batch is cut into; null: one per stage.</param>
    /// <param name="log">Where to say what was opened, if anywhere.</param>
    /// <param name="ranges">each stage's layers; null: balanced by their weights' bytes.</param>
    /// <param name="activations">how the block activations are stored; null: as <see cref="Open(string, GpuContext, WeightPrecision?, AttentionFusion, Action{string}?, ActivationPrecision?)"/> resolves it.</param>
    internal static PromptModel OpenPipeline(string directory, IReadOnlyList<Func<Backend>> openStages, WeightPrecision? precision = WeightPrecision.Fp32,
                                             AttentionFusion attention = AttentionFusion.Auto, int? microBatches = null, Action<string>? log = null,
                                             IReadOnlyList<LayerRange>? ranges = null, ActivationPrecision? activations = null) =>
        Place(directory, log, (checkpoint, tokenizer) =>
        {
            var c = checkpoint.Config;
            int layers = c.NumLayers + c.NumDecoderLayers;
            if (openStages.Count < 2 || openStages.Count > layers)
                throw new TrainingOptionException($"{Setting.PipelineStages} lists {openStages.Count} devices: a pipeline needs 2 to {layers}, one stage per device and at least one of the model's {layers} layers ({c.NumLayers} encoder, {c.NumDecoderLayers} decoder) per stage");
            if (microBatches is < 1) throw new ArgumentOutOfRangeException(nameof(microBatches), microBatches, "a pipeline needs at least one micro-batch");
            var backends = new List<Backend>();
            ModelPipeline? pipeline = null;
            try
            {
                foreach (var open in openStages)
                {
                    var backend = open();
                    backends.Add(backend);
                    backend.AttentionFusion = attention;
                }
                var stored = precision ?? WeightPrecisions.Auto(backends.Select(b => (b as GpuBackend)?.Context.Capabilities));
                pipeline = new ModelPipeline(checkpoint, backends, stored, microBatches, ranges);
                for (int s = 0; s < backends.Count; s++) log?.Invoke($"stage {s}: {pipeline.Stages[s].Layers} on {backends[s].Name}");
                var chosen = SetActivations(backends, activations);
                log?.Invoke($"attention: {attention.Name()}; activations: {chosen.Name()}; weights: {stored.Name()}; {pipeline.MicroBatches} micro-batches per batch");
                return new PromptModel(checkpoint, tokenizer, pipeline, backends);
            }
            catch
            {
                pipeline?.Dispose();
                foreach (var b in backends) b.Dispose();
                throw;
            }
        });

    /// <summary>An encoder with T5's truncation rule for this model's tokenizer.</summary>
    public ExampleEncoder Encoder(int maxInputLength = 512, int maxTargetLength = 128) => new(Tokenizer, maxInputLength, maxTargetLength);

    /// <summary>A prompt from a PEFT adapter directory, a .safetensors file (prompt_embeddings) or
    /// a T5X .npy, checked against this model's width.</summary>
    public float[] LoadPrompt(string path) => PromptFile.Load(path, DModel, out _);

    /// <summary>Prompts to compute with in one batch (an ensemble, or several tasks), of any lengths.</summary>
    public PromptSet Prompts(IReadOnlyList<float[]> prompts) => PromptSet.Stack(prompts, DModel);

    /// <summary>The log-likelihood of each example's target given its input, in input order;
    /// example i takes prompt promptIndex[i] of <paramref name="prompts"/> (null: no prompt; null
    /// index: prompt 0). Batches are cut shortest first, so they pad least.</summary>
    public ScoreResult[] Score(IReadOnlyList<EncodedExample> examples, PromptSet? prompts = null, IReadOnlyList<int>? promptIndex = null, int batchSize = 8)
    {
        // A set smaller than a batch is one batch of its own size: padding it out would spend
        // the memory and time of examples that are not there.
        if (examples.Count == 0) return [];
        batchSize = Math.Min(batchSize, examples.Count);
        var order = HostBatch.ShortestFirst(examples.Select(e => e.InputIds.Length).ToList());
        var chunks = order.Chunk(batchSize).ToList();
        var scores = ScoreAll(chunks.Select(chunk => (
            (IReadOnlyList<EncodedExample>)chunk.Select(i => examples[i]).ToList(),
            promptIndex is null ? null : (IReadOnlyList<int>?)chunk.Select(i => promptIndex[i]).ToList())).ToList(), prompts, batchSize);
        var results = new ScoreResult[examples.Count];
        for (int c = 0; c < chunks.Count; c++)
            for (int i = 0; i < chunks[c].Length; i++) results[chunks[c][i]] = scores[c][i];
        return results;
    }

    /// <summary><see cref="Scorer.ScoreAll"/> over a scorer on each device of the model.</summary>
    ScoreResult[][] ScoreAll(IReadOnlyList<(IReadOnlyList<EncodedExample> Batch, IReadOnlyList<int>? PromptIndex)> batches, PromptSet? prompts, int batchSize) =>
        WithScorers(scorers => Scorer.ScoreAll(scorers, batches, prompts, batchSize));

    /// <summary>What <paramref name="work"/> gives with a scorer on each device, freed after.</summary>
    T WithScorers<T>(Func<IReadOnlyList<IBatchScorer>, T> work)
    {
        // A pipeline is one scorer, through its stages.
        var scorers = Pipeline is not null ? [OpenScorer()] : Replicas.Select(r => (IBatchScorer)new Scorer(r)).ToList();
        try { return work(scorers); }
        finally { foreach (var s in scorers) s.Dispose(); }
    }

    /// <summary>Prepares the scoring of one batch (example i with prompt promptIndex[i] of
    /// <paramref name="prompts"/>; null: no prompt) and returns it unsubmitted: submit it whole or
    /// advance it in slices of a frame's GPU budget, then read <see cref="ScoringBatch.Results"/>.
    /// The model keeps one scoring pass for this; the batch before must be complete.</summary>
    public ScoringBatch BeginScore(IReadOnlyList<EncodedExample> batch, PromptSet? prompts = null, IReadOnlyList<int>? promptIndex = null) =>
        (asyncScorer ??= new Scorer(OneDevice("scoring in slices (BeginScore)"))).Begin(batch, prompts, promptIndex);

    Scorer? asyncScorer;

    /// <summary>A trainer of <paramref name="initialPrompt"/> ([prompt length x d_model], row-major)
    /// with Adafactor (<paramref name="optimizer"/>; null: the paper's settings): its steps run
    /// blocking (<see cref="PromptTrainer.TrainStep"/>) or in slices (<see cref="PromptTrainer.BeginStep"/>).
    /// <see cref="Train"/> runs a whole training loop with data, checkpoints and validation instead,
    /// data parallel where the model is on several devices; this trainer is on the first device.
    /// Making it is a blocking call: the prompt and the optimizer's state are uploaded to device
    /// memory, through a copy the queue runs where the host cannot map that memory.</summary>
    /// <param name="initialPrompt">The prompt to start from.</param>
    /// <param name="optimizer">Adafactor's settings.</param>
    /// <param name="dropout">The model's dropout rate during training (0: none).</param>
    /// <param name="seed">Seeds the dropout masks.</param>
    public PromptTrainer Trainer(float[] initialPrompt, AdafactorSettings? optimizer = null, float dropout = 0, int seed = 0)
    {
        if (initialPrompt.Length == 0 || initialPrompt.Length % DModel != 0)
            throw new ArgumentException($"a prompt is a whole number of rows of d_model {DModel}; got {initialPrompt.Length} floats", nameof(initialPrompt));
        return new PromptTrainer(OneDevice("a PromptTrainer"), initialPrompt, optimizer ?? new AdafactorSettings(), dropout, seed);
    }

    /// <summary>The trainer <see cref="TrainingRun"/> drives, for where this model lives:
    /// <see cref="PromptTrainer"/> on one device of one process, <see cref="PipelineTrainer"/>
    /// through the stages of a pipeline, else a <see cref="DataParallelTrainer"/> over
    /// <see cref="Replicas"/> and <see cref="ProcessGroup"/>.</summary>
    internal IStepTrainer CreateTrainer(float[] prompt, AdafactorSettings optimizer, float dropout, int seed, ActivationMode activations,
                                        float[]? optimizerState, int step, int stepOffset) =>
        Pipeline is not null ? new PipelineTrainer(Pipeline, prompt, optimizer, dropout, seed, activations, optimizerState, step, stepOffset)
        : Replicas.Count == 1 && ProcessGroup.Size == 1
            ? new PromptTrainer(Weights, prompt, optimizer, dropout, seed, activations, optimizerState, step, stepOffset)
            : new DataParallelTrainer(Replicas, ProcessGroup, prompt, optimizer, dropout, seed, activations, optimizerState, step, stepOffset);

    /// <summary>A scorer of batches for where this model lives: on its (first) device, or through the stages of its pipeline.</summary>
    internal IBatchScorer OpenScorer() => Pipeline is not null ? new PipelineScorer(Pipeline) : new Scorer(Weights);

    /// <summary>The weights, for the work that runs on one device only.</summary>
    T5Weights OneDevice(string work) => Pipeline is null ? Weights : throw OnOneDeviceOnly(work);

    /// <summary>The refusal of <paramref name="work"/> on a pipeline, naming the setting to change.</summary>
    internal static TrainingOptionException OnOneDeviceOnly(string work) =>
        new($"{work} does not run on a model split across devices ({Setting.PipelineStages}) yet; open the model on one device for it");

    /// <summary>Rank classification: for each input (token ids), the index of the choice the model
    /// finds most likely, under each prompt of <paramref name="prompts"/> (null: no prompt):
    /// result[prompt][input]. <see cref="RankClassifier.MajorityVote"/> combines an ensemble's.</summary>
    public int[][] Classify(IReadOnlyList<int[]> inputs, IReadOnlyList<string> choices, PromptSet? prompts = null, int batchSize = 8)
    {
        var choiceIds = choices.Select(c => Tokenizer.Encode(c)).ToList();
        return WithScorers(scorers => RankClassifier.Predict(scorers, inputs, choiceIds, prompts, batchSize));
    }

    /// <summary>Greedy decoding with a key/value cache, yielded as each batch finishes: example i
    /// with prompt promptIndex[i] of <paramref name="prompts"/> (null: no prompt; null index:
    /// prompt 0), at most <paramref name="maxNewTokens"/> tokens.</summary>
    public IEnumerable<(int Index, string Text, int[] Ids)> Generate(IReadOnlyList<EncodedExample> examples, PromptSet? prompts = null,
                                                                     IReadOnlyList<int>? promptIndex = null, int batchSize = 8, int maxNewTokens = 32) =>
        GreedyDecoder.Run(OneDevice("generation"), examples, prompts, promptIndex, batchSize, maxNewTokens).Select(r => (r.Index, Tokenizer.Decode(r.Ids), r.Ids.ToArray()));

    /// <summary>Prepares greedy decoding of one batch (example i with prompt promptIndex[i] of
    /// <paramref name="prompts"/>; null: no prompt) and returns it unsubmitted: advance it in
    /// slices of a frame's GPU budget and take its tokens as they complete, or Wait for all.
    /// Dispose it to free its key/value cache.</summary>
    public Decoding BeginGenerate(IReadOnlyList<EncodedExample> batch, PromptSet? prompts = null, IReadOnlyList<int>? promptIndex = null, int maxNewTokens = 32)
    {
        int lin = HostBatch.Round(batch.Max(e => e.InputIds.Length));
        var shape = new BatchShape(batch.Count, lin, 1, prompts?.Length ?? 0, prompts?.Count ?? 1);
        var generator = WorkMemory.Build(OneDevice("generation"), $"greedy decoding of {shape with { TargetLength = maxNewTokens }}", w => new Generator(w, shape, maxNewTokens));
        try { return generator.Begin(batch, prompts, promptIndex, ownsGenerator: true); }
        catch { generator.Dispose(); throw; }
    }

    /// <summary>Loss and prompt gradient of <paramref name="examples"/> taken as one batch: no
    /// optimizer step, no dropout. On several devices (or processes) the examples are split over
    /// them and the parts combined as a data-parallel step combines them; on a pipeline they go
    /// through the stages.</summary>
    public (double Loss, float[] Gradient) Gradient(IReadOnlyList<EncodedExample> examples, float[] prompt, ActivationMode activations = ActivationMode.Store)
    {
        if (Pipeline is not null) return PipelineTrainer.Gradient(Pipeline, examples, prompt, activations);
        if (Replicas.Count == 1 && ProcessGroup.Size == 1) return PromptTrainer.Gradient(Weights, examples, prompt, activations);
        using var parallel = new DataParallelGradient(Replicas, ProcessGroup, prompt, activations, dropout: 0, seed: 0);
        var (loss, g) = parallel.Compute(examples, batchSize: null, step: 0);
        if (!double.IsFinite(loss)) throw new NonFiniteOutputException("the loss", loss);
        return (loss, g.Select(v => (float)v).ToArray());
    }

    /// <summary>A prompt-tuning run on <paramref name="train"/>, validated on
    /// <paramref name="validation"/> (null: none), writing to <paramref name="outputDirectory"/>;
    /// nothing runs until <see cref="TrainingRun.Run"/>.</summary>
    public TrainingRun Train(IReadOnlyList<Example> train, IReadOnlyList<Example>? validation, TrainOptions options, string outputDirectory) =>
        new(this, train, validation, options, outputDirectory);

    /// <summary>Frees the weights, then the backends (a borrowed context stays), then the checkpoint.</summary>
    public void Dispose()
    {
        asyncScorer?.Dispose();
        if (Pipeline is not null) Pipeline.Dispose();
        else foreach (var r in Replicas) r.Dispose();
        foreach (var b in Backends) b.Dispose();
        Checkpoint.Dispose();
    }
}
