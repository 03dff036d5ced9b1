// PREVIEW ONLY, DELETE AT MERGE. The sliced training API of issue 18 (PromptModel.Trainer,
// PromptTrainer.BeginStep, TrainingStep : Submission) is being written in main; until it lands,
// this file gives the sample exactly those names, built by reflection on this branch's internals
// (PromptTrainer, T5Pass, HostBatch, CommandGraph.Advance), so the sample runs and measures now.
// Program.cs and HostRenderer.cs use only the names below and compile unchanged against the real
// API once this file is deleted.
using System.Reflection;
using VkPrompt.Model;
using VkPrompt.Runtime;

namespace VkPrompt.Model
{
    /// <summary>Preview of a recorded pass that can be submitted whole or in budgeted slices.</summary>
    public abstract class Submission
    {
        /// <summary>Submits the next ops fitting <paramref name="budget"/> and returns at once.</summary>
        public abstract SliceReport Advance(TimeSpan budget, params GpuWait[] waits);
        /// <summary>Submits the rest at once.</summary>
        public abstract GpuTicket Submit(params GpuWait[] waits);
        /// <summary>Whether every op has been submitted.</summary>
        public abstract bool IsSubmitted { get; }
        /// <summary>Whether every op has been submitted and completed.</summary>
        public bool IsComplete => IsSubmitted && Ticket.IsComplete;
        /// <summary>The ticket of the last submit.</summary>
        public abstract GpuTicket Ticket { get; }
        /// <summary>Submits what is left and waits for it.</summary>
        public void Wait() { if (!IsSubmitted) Submit(); Ticket.Wait(); }
        /// <summary>The slices' measured GPU times (after completion).</summary>
        public abstract IReadOnlyList<SliceTiming> SliceTimings { get; }
    }

    /// <summary>Preview of one optimizer step of a <see cref="VkPrompt.Training.PromptTrainer"/>.</summary>
    public sealed class TrainingStep : Submission
    {
        delegate SliceReport AdvanceFn(double budgetMs, ReadOnlySpan<GpuWait> waits);
        delegate GpuTicket SubmitFn(ReadOnlySpan<GpuWait> waits);

        readonly object graph, pass;
        readonly int targetTokens;
        readonly AdvanceFn advance;
        readonly SubmitFn submit;
        bool submitted;
        double? loss;

        internal TrainingStep(object graph, object pass, int targetTokens)
        {
            (this.graph, this.pass, this.targetTokens) = (graph, pass, targetTokens);
            var t = graph.GetType();
            advance = (AdvanceFn)Delegate.CreateDelegate(typeof(AdvanceFn), graph, t.GetMethod("Advance")!);
            submit = (SubmitFn)Delegate.CreateDelegate(typeof(SubmitFn), graph, t.GetMethod("Submit")!);
        }

        /// <inheritdoc/>
        public override SliceReport Advance(TimeSpan budget, params GpuWait[] waits)
        {
            var r = advance(budget.TotalMilliseconds, waits);
            submitted = r.Submitted;
            return r;
        }

        /// <inheritdoc/>
        public override GpuTicket Submit(params GpuWait[] waits)
        {
            var t = submit(waits);
            submitted = true;
            return t;
        }

        /// <inheritdoc/>
        public override bool IsSubmitted => submitted;
        /// <inheritdoc/>
        public override GpuTicket Ticket => (GpuTicket)graph.GetType().GetProperty("Ticket")!.GetValue(graph)!;
        /// <inheritdoc/>
        public override IReadOnlyList<SliceTiming> SliceTimings => (IReadOnlyList<SliceTiming>)graph.GetType().GetProperty("SliceTimings")!.GetValue(graph)!;

        /// <summary>The step's mean token loss, once complete.</summary>
        public double Loss
        {
            get
            {
                if (!IsComplete) throw new InvalidOperationException("the step is not complete");
                return loss ??= -((float[])pass.GetType().GetMethod("ReadLogProbs")!.Invoke(pass, null)!).Sum(v => (double)v) / targetTokens;
            }
        }
    }
}

namespace VkPrompt.Training
{
    /// <summary>Preview of <c>PromptModel.Trainer</c>.</summary>
    public static class TrainerPreview
    {
        /// <summary>A trainer of <paramref name="initialPrompt"/> on <paramref name="model"/>.</summary>
        public static PromptTrainer Trainer(this PromptModel model, float[] initialPrompt, AdafactorSettings? optimizer = null) =>
            new(model, initialPrompt, optimizer ?? new AdafactorSettings());
    }

    /// <summary>Preview of the public prompt trainer: wraps the internal one.</summary>
    public sealed class PromptTrainer : IDisposable
    {
        const BindingFlags Any = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static;
        readonly object inner;
        readonly int promptLength, decoderStart;
        readonly MethodInfo stepFor, build;

        internal PromptTrainer(PromptModel model, float[] initialPrompt, AdafactorSettings optimizer)
        {
            var weights = typeof(PromptModel).GetProperty("Weights", Any)!.GetValue(model)!;
            var type = typeof(PromptModel).Assembly.GetType("VkPrompt.Training.PromptTrainer", true)!;
            inner = type.GetConstructors(Any)[0].Invoke([weights, initialPrompt, optimizer, 0f, 0, ActivationMode.Store, null, 0, 0]);
            stepFor = type.GetMethod("StepFor", Any)!;
            build = typeof(EncodedExample).Assembly.GetType("VkPrompt.Model.HostBatch", true)!.GetMethod("Build", Any)!;
            promptLength = initialPrompt.Length / model.DModel;
            decoderStart = model.Config.DecoderStartTokenId;
        }

        /// <summary>Optimizer steps begun so far.</summary>
        public int Step { get; private set; }

        /// <summary>Uploads <paramref name="batch"/> and returns its step, nothing submitted.</summary>
        public TrainingStep BeginStep(IReadOnlyList<EncodedExample> batch)
        {
            var host = build.Invoke(null, [batch, promptLength, 1, null, batch.Count, decoderStart, null, null])!;
            var shape = host.GetType().GetProperty("Shape")!.GetValue(host)!;
            var tuple = stepFor.Invoke(inner, [shape])!;
            var pass = tuple.GetType().GetField("Item1")!.GetValue(tuple)!;
            var recording = tuple.GetType().GetField("Item2")!.GetValue(tuple)!;
            pass.GetType().GetMethod("Load", Any)!.Invoke(pass, [host]);
            var graph = recording.GetType().GetFields(Any).Single(f => f.FieldType.Name == "CommandGraph").GetValue(recording)!;
            Step++;
            return new TrainingStep(graph, pass, (int)host.GetType().GetProperty("TargetTokens")!.GetValue(host)!);
        }

        /// <summary>One whole step, blocking; returns its loss.</summary>
        public double TrainStep(IReadOnlyList<EncodedExample> batch)
        {
            var step = BeginStep(batch);
            step.Wait();
            return step.Loss;
        }

        /// <summary>The prompt now.</summary>
        public float[] Prompt() => (float[])inner.GetType().GetMethod("Prompt")!.Invoke(inner, null)!;

        /// <inheritdoc/>
        public void Dispose() => ((IDisposable)inner).Dispose();
    }
}
