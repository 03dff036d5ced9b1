using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;

namespace VkPrompt.Training;

/// <summary>
/// The training step: forward, prompt-only backward and Adafactor, recorded as one unit for the
/// batch shape and replayed while batches keep that shape. The prompt and the optimizer state
/// stay on the device between steps; only the batch's ids go up and the per-token
/// log-probabilities come back. A step runs blocking (<see cref="TrainStep"/>) or as a
/// <see cref="TrainingStep"/> the host submits whole or advances in slices of a frame's GPU
/// budget (<see cref="BeginStep"/>); both compute the same bits.
/// </summary>
public sealed class PromptTrainer : IStepTrainer
{
    readonly T5Weights weights;
    readonly Backend be;
    readonly AdafactorSettings optimizer;
    readonly float dropout;
    readonly ActivationMode activations;
    readonly int seed;
    readonly Tensor prompt, state, update;
    // One shape's step is kept: each holds every activation of a training step, so keeping several
    // multiplied the peak memory on data whose lengths vary (a 4-step cache held up to four steps'
    // activations), while such data changes shape on most steps anyway. Re-recording a step costs
    // the CPU a few milliseconds against a step of hundreds.
    (T5Pass Pass, IRecording Run)? last;
    TrainingStep? current;

    /// <summary>The prompt's length in rows.</summary>
    public int PromptLength { get; }
    /// <summary>The model width, the length of a prompt row.</summary>
    public int Dim { get; }
    /// <summary>Optimizer steps taken so far, the one begun included (the next batch is batch number Step).</summary>
    public int Step { get; private set; }

    /// <summary>Per-op GPU times of the last step, tagged with <see cref="T5Pass.Phases"/> and
    /// <see cref="OptimizerPhase"/>, where the device profiles; empty otherwise.</summary>
    internal IReadOnlyList<DispatchTiming> LastStepTimings => last?.Run.Timings ?? [];

    /// <summary>Which attentions the last step ran fused (<see cref="T5Pass.FusedAttention"/>);
    /// null before the first step.</summary>
    internal (bool EncoderSelf, bool DecoderSelf, bool Cross)? LastStepFusedAttention => last?.Pass.FusedAttention;

    internal const string OptimizerPhase = "optimizer";

    internal PromptTrainer(T5Weights weights, float[] initialPrompt, AdafactorSettings optimizer, float dropout, int seed,
                         ActivationMode activations = ActivationMode.Store, float[]? optimizerState = null, int step = 0, int stepOffset = 0)
    {
        this.weights = weights;
        be = weights.Backend;
        this.optimizer = optimizer;
        this.dropout = dropout;
        this.seed = seed;
        this.activations = activations;
        Dim = weights.Config.DModel;
        if (initialPrompt.Length % Dim != 0) throw new ArgumentException("prompt size is not a multiple of d_model");
        PromptLength = initialPrompt.Length / Dim;
        Step = step;
        var s = StartState(optimizer, dropout, PromptLength, Dim, optimizerState, step, stepOffset);
        // All three or none: a state or update that does not fit must not leave the prompt behind.
        (prompt, state, update) = be.AllOrNothing(() => (be.Floats(initialPrompt.Length, "prompt"), be.Floats(s.Length, "adafactor_state"),
                                                         be.Floats(initialPrompt.Length, "adafactor_update")));
        be.Upload(prompt, initialPrompt);
        be.Upload(state, s);
    }

    /// <summary>Checks a trainer's settings and gives Adafactor's state to start from: <paramref name="optimizerState"/>
    /// (a checkpoint's), or a fresh one whose step count is <paramref name="step"/> + <paramref name="stepOffset"/>.</summary>
    internal static float[] StartState(AdafactorSettings optimizer, float dropout, int promptLength, int dim, float[]? optimizerState, int step, int stepOffset)
    {
        optimizer.Validate();
        if (!(dropout is >= 0 and < 1)) throw new ArgumentOutOfRangeException(nameof(dropout), dropout, "dropout must be in [0, 1)");
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        ArgumentOutOfRangeException.ThrowIfNegative(stepOffset);
        long stateLength = optimizer.StateLength(promptLength, dim);
        var s = optimizerState ?? new float[stateLength];
        if (s.Length != stateLength) throw new ArgumentException($"optimizer state has {s.Length} floats, expected {stateLength}");
        if (optimizerState is null) s[0] = BitConverter.UInt32BitsToSingle((uint)(step + stepOffset));
        return s;
    }

    /// <summary>One optimizer step on <paramref name="batch"/>, blocking until it is done;
    /// returns the mean token loss (computed in the same forward, with dropout as configured).</summary>
    /// <param name="batch">The examples of the step.</param>
    /// <param name="batchSize">Pads the batch to this many rows (a fixed shape); null: the batch's own count.</param>
    public double TrainStep(IReadOnlyList<EncodedExample> batch, int? batchSize = null)
    {
        var step = BeginStep(batch, batchSize);
        step.Wait();
        return step.Loss;
    }

    /// <summary>Prepares one optimizer step on <paramref name="batch"/> and returns it unsubmitted:
    /// the host then submits it whole or advances it in slices (<see cref="Submission"/>), and
    /// reads <see cref="TrainingStep.Loss"/> once it is complete. The step before must be complete
    /// (the two share their buffers); the batch's ids go to host-visible memory, so nothing here
    /// waits for the GPU, unless <see cref="GpuOptions.TuneMatMul"/> asks for the tuner, which times
    /// candidate kernels for each new shape.</summary>
    /// <inheritdoc cref="TrainStep"/>
    public TrainingStep BeginStep(IReadOnlyList<EncodedExample> batch, int? batchSize = null)
    {
        RequireIdle("begin another step");
        current?.Finish();
        var host = HostBatch.Build(batch, PromptLength, batchSize: batchSize, decoderStart: weights.Config.DecoderStartTokenId);
        var (pass, run) = StepFor(host.Shape);
        pass.Load(host);
        if (pass.DropoutSeed is not null) be.Upload(pass.DropoutSeed, [DropoutSeed(seed, Step)]);
        current = new TrainingStep(run, pass, host, Step);
        Step++;
        return current;
    }

    /// <summary>Throws while a step is submitted (in part or whole) and not yet complete: its
    /// buffers are in use on the device.</summary>
    void RequireIdle(string what)
    {
        if (current is { IsStarted: true, IsComplete: false })
            throw new InvalidOperationException($"cannot {what} while step {current.Number} is in flight: wait for its ticket (or Wait()) first");
    }

    /// <summary>Mixes the run seed and the step so every step draws fresh masks, and a resumed
    /// run draws exactly the masks the uninterrupted one would have.</summary>
    internal static int DropoutSeed(int seed, int step) => (int)(((uint)seed * 0x9E3779B9u) ^ ((uint)step * 0x85EBCA6Bu));

    internal static double MeanLoss(T5Pass pass, HostBatch host) => -pass.ReadLogProbs().Sum(v => (double)v) / host.TargetTokens;

    internal (T5Pass, IRecording) StepFor(BatchShape shape)
    {
        if (last is { } kept && kept.Pass.Shape == shape) return kept;
        DisposeStep();
        last = RecordStep(weights, shape, activations, prompt, dropout, (b, pass) =>
        {
            using var phase = b.Phase(OptimizerPhase);
            b.Adafactor(prompt, pass.PromptGradient!, state, update, PromptLength, Dim, optimizer);
        });
        return last.Value;
    }

    /// <summary>The forward and prompt backward of <paramref name="shape"/> on <paramref name="weights"/>,
    /// reading <paramref name="prompt"/>, recorded with <paramref name="after"/> (the optimizer, or
    /// nothing where the gradient is combined elsewhere, as a data-parallel worker's) behind them.</summary>
    internal static (T5Pass Pass, IRecording Run) RecordStep(T5Weights weights, BatchShape shape, ActivationMode activations, Tensor prompt,
                                                             float dropout, Action<Backend, T5Pass>? after)
    {
        var be = weights.Backend;
        // The step's products as the pass below will emit them, traced before it allocates its
        // activations, so that the tuner's scratch operands come and go while the most memory is
        // free; traced only where a tuner will use them, since shapes change on most steps of real data.
        if (be.TunesMatMul) be.TuneMatMul(T5Pass.Trace(weights.Config, shape, activations, dropout, weights.Precision, be.FusesAttention, activations: be.Activations));
        return WorkMemory.Build(weights, $"a training step of {shape}", w =>
        {
            var pass = new T5Pass(w, shape, activations, prompt, dropout);
            return (pass, w.Backend.Record(() =>
            {
                pass.EmitForward();
                pass.EmitBackward();
                after?.Invoke(w.Backend, pass);
            }));
        });
    }

    /// <summary>A copy of the prompt, as of the last complete step. A blocking call: the prompt
    /// is in device memory, read through a copy the queue runs where the host cannot map it.</summary>
    public float[] Prompt()
    {
        RequireIdle("read the prompt");
        return be.Download(prompt);
    }

    /// <summary>A copy of Adafactor's state (step count, factored second moments), as of the last
    /// complete step. A blocking call, as <see cref="Prompt"/> is.</summary>
    public float[] OptimizerState()
    {
        RequireIdle("read the optimizer state");
        return be.Download(state);
    }

    /// <summary>The device buffer holding the prompt, for a host's own copy out of it chained on a
    /// step's ticket; the prompt is [PromptLength x Dim] float32, row-major. GPU backend only.</summary>
    public GpuBufferRange PromptBuffer => be is GpuBackend
        ? GpuBackend.Range(prompt)
        : throw new NotSupportedException($"the prompt lives in device memory only on the Vulkan backend, not on {be.Name}");

    void DisposeStep()
    {
        if (last is { } kept) { kept.Run.Dispose(); kept.Pass.Dispose(); }
        last = null;
    }

    /// <summary>Frees the step's recording and the prompt's and optimizer's buffers, after the
    /// context's own work in flight (none of a host's) completes.</summary>
    public void Dispose()
    {
        DisposeStep();
        prompt.Dispose();
        state.Dispose();
        update.Dispose();
    }

    /// <summary>Loss and prompt gradient of <paramref name="examples"/> taken as one batch
    /// (<c>vkprompt grad</c>): no optimizer step, no dropout.</summary>
    internal static (double Loss, float[] Gradient) Gradient(T5Weights weights, IReadOnlyList<EncodedExample> examples, float[] promptData, ActivationMode mode = ActivationMode.Store)
    {
        var be = weights.Backend;
        int d = weights.Config.DModel;
        using var prompt = be.Floats(promptData.Length, "prompt");
        be.Upload(prompt, promptData);
        var host = HostBatch.Build(examples, promptData.Length / d, decoderStart: weights.Config.DecoderStartTokenId);
        var built = WorkMemory.Build(weights, $"the gradient of {host.Shape}", w =>
        {
            var p = new T5Pass(w, host.Shape, mode, prompt);
            return (Pass: p, Run: w.Backend.Record(() => { p.EmitForward(); p.EmitBackward(); }));
        });
        using var pass = built.Pass;
        using var rec = built.Run;
        pass.Load(host);
        rec.Run();
        var grad = new float[promptData.Length];
        be.Download(pass.PromptGradient!, grad);
        double loss = MeanLoss(pass, host);
        if (!double.IsFinite(loss)) throw new NonFiniteOutputException("the loss", loss);
        return (loss, grad);
    }
}
