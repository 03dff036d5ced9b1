using VkPrompt.Cli;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Tests.Model;
using VkPrompt.Training;
using Xunit;
using Xunit.Sdk;

namespace VkPrompt.Tests.Training;

/// <summary>
/// Issue 20 item 3, data parallel: every golden case on several devices of one process (two or
/// three logical lavapipe devices, and a Vulkan device beside the CPU backend) within
/// docs/numerics.md's tolerances; batches that do not divide evenly, a worker with no rows,
/// padding rows; bit-identical runs (with dropout too); the one-device steps; and two processes
/// (threads through an in-memory <see cref="IProcessGroup"/>) giving the one-process bits.
/// </summary>
public sealed class DataParallelTests(GpuFixture f) : GpuTest(f)
{
    /// <summary>Worker lists: "vulkan" a context of its own on the test device (two are two
    /// logical devices on one physical device), "cpu" the CPU reference backend. Three workers
    /// on the golden batch of 2 leave the third without rows.</summary>
    static readonly string[] WorkerLists = ["vulkan,vulkan", "vulkan,vulkan,vulkan", "vulkan,cpu"];

    public static TheoryData<string, string, string> Cases() =>
        GoldenCase.Cases(TestPaths.Golden, Directory.GetDirectories(TestPaths.Golden).Order().Select(Path.GetFileName)!, WorkerLists);

    /// <summary>The model on each worker of a list, with each context's validation checked at the end.</summary>
    sealed class Workers : IDisposable
    {
        readonly List<GpuContext> contexts = [];
        readonly List<Backend> backends = [];
        public List<T5Weights> Replicas { get; } = [];

        public Workers(T5Checkpoint ckpt, string list)
        {
            foreach (var spec in list.Split(','))
            {
                Backend be;
                if (spec == "cpu") be = new CpuBackend();
                else
                {
                    var ctx = GpuContext.Create(EnvironmentSettings.GpuOptions() with { Validation = true, PipelineCacheDirectory = null });
                    contexts.Add(ctx);
                    be = new GpuBackend(ctx);
                }
                be.AttentionFusion = AttentionFusion.Unfused;
                // The golden tolerances are fp32 activations'; a GPU's plan would choose bf16.
                be.Activations = ActivationPrecision.Fp32;
                backends.Add(be);
                Replicas.Add(new T5Weights(ckpt, be, WeightPrecision.Fp32));
            }
        }

        public void Dispose()
        {
            foreach (var r in Replicas) r.Dispose();
            foreach (var b in backends) b.Dispose();
            var errors = contexts.SelectMany(c => c.Validation.Errors).ToList();
            foreach (var c in contexts) c.Dispose();
            if (errors.Count > 0) throw new XunitException($"{errors.Count} Vulkan validation error(s):\n" + string.Join("\n", errors));
        }
    }

    [Theory, MemberData(nameof(Cases))]
    public void AdafactorStepsMatchGolden(string model, string caseName, string workers)
    {
        using var g = GoldenCase.Load(TestPaths.Golden, model, caseName);
        using var w = new Workers(g.Ckpt, workers);
        g.AssertAdafactorSteps((prompt, settings) => new DataParallelTrainer(w.Replicas, new SingleProcess(), prompt, settings, dropout: 0, seed: 0));
    }

    [Theory, MemberData(nameof(Cases))]
    public void GradientAndScoresMatchGolden(string model, string caseName, string workers)
    {
        using var g = GoldenCase.Load(TestPaths.Golden, model, caseName);
        using var w = new Workers(g.Ckpt, workers);
        g.AssertGradientAndLoss(() =>
        {
            using var parallel = new DataParallelGradient(w.Replicas, new SingleProcess(), g.Prompt0, ActivationMode.Store, dropout: 0, seed: 0);
            var (loss, grad) = parallel.Compute(g.Examples, batchSize: null, step: 0);
            return (loss, grad.Select(v => (float)v).ToArray());
        });
        // Batches of 2 handed round the workers, results back in order.
        var scorers = w.Replicas.Select(r => new Scorer(r)).ToList();
        try
        {
            var batches = g.Examples.Chunk(2).Select(c => ((IReadOnlyList<EncodedExample>)c, (IReadOnlyList<int>?)null)).ToList();
            var scores = Scorer.ScoreAll(scorers, batches, PromptSet.Stack([g.Prompt0], g.DModel), batchSize: 2).SelectMany(r => r).ToList();
            GoldenCase.AssertLogLikelihoods(g.Scores, scores, "with prompt, data parallel");
        }
        finally { foreach (var s in scorers) s.Dispose(); }
    }

    [Fact]
    public void SharesSplitRowsEvenlyFirstWorkersTakingOneMore()
    {
        Assert.Equal([(0, 2), (2, 1)], Enumerable.Range(0, 2).Select(i => HostBatch.Share(3, 2, i)));
        Assert.Equal([(0, 1), (1, 1), (2, 0)], Enumerable.Range(0, 3).Select(i => HostBatch.Share(2, 3, i)));
        Assert.Equal([(0, 3), (3, 3), (6, 2), (8, 2)], Enumerable.Range(0, 4).Select(i => HostBatch.Share(10, 4, i)));
    }

    /// <summary>tiny-v11 p8's six examples in steps of 3 rows, padded to 4: on two workers (2 + 1
    /// real rows, 2 + 2 padded), on four (1 + 1 + 1 + 0: the last has none), against one device.
    /// The differences are the rounding of combining the shares (measured below 1e-6).</summary>
    [Theory]
    [InlineData("vulkan,vulkan")]
    [InlineData("vulkan,vulkan,vulkan,vulkan")]
    public void UnevenPaddedBatchesGiveTheOneDeviceSteps(string workers)
    {
        using var g = GoldenCase.Load(TestPaths.Golden, "tiny-v11", "p8");
        var settings = new AdafactorSettings();
        (double[] Losses, float[] Prompt) Train(IStepTrainer trainer)
        {
            using (trainer)
            {
                var losses = new double[2];
                for (int s = 0; s < 2; s++) losses[s] = trainer.TrainStep(g.Examples.Skip(3 * s).Take(3).ToList(), batchSize: 4);
                return (losses, trainer.Prompt());
            }
        }
        (double[] Losses, float[] Prompt) one;
        using (var be = new GpuBackend(Ctx) { AttentionFusion = AttentionFusion.Unfused, Activations = ActivationPrecision.Fp32 })
        using (var weights = new T5Weights(g.Ckpt, be, WeightPrecision.Fp32))
            one = Train(new PromptTrainer(weights, g.Prompt0, settings, dropout: 0, seed: 0));
        using var w = new Workers(g.Ckpt, workers);
        var parallel = Train(new DataParallelTrainer(w.Replicas, new SingleProcess(), g.Prompt0, settings, dropout: 0, seed: 0));
        for (int s = 0; s < 2; s++)
            Assert.True(Math.Abs(parallel.Losses[s] - one.Losses[s]) <= 1e-5 * one.Losses[s], $"step {s} loss {parallel.Losses[s]} vs one device {one.Losses[s]}");
        double err = Check.NormRelativeError(one.Prompt, parallel.Prompt);
        Assert.True(err <= 1e-5, $"prompt after 2 steps: relative error {err:E3} to one device > 1e-5");
        Assert.NotEqual(g.Prompt0, parallel.Prompt);
    }

    /// <summary>Two runs of the same data-parallel steps give the same bits, with dropout too
    /// (each worker draws its own masks, the same in every run), and dropout does act.</summary>
    [Fact]
    public void RunsAreBitIdenticalWithDropoutToo()
    {
        using var g = GoldenCase.Load(TestPaths.Golden, "tiny-v11", "p8");
        using var w = new Workers(g.Ckpt, "vulkan,vulkan");
        (double[], float[]) Run(float dropout)
        {
            using var trainer = new DataParallelTrainer(w.Replicas, new SingleProcess(), g.Prompt0, new AdafactorSettings(), dropout, seed: 7);
            var losses = Enumerable.Range(0, 3).Select(s => trainer.TrainStep(g.Examples.Skip(2 * s).Take(2).ToList(), batchSize: 2)).ToArray();
            return (losses, trainer.Prompt());
        }
        var (lossesA, promptA) = Run(0.1f);
        var (lossesB, promptB) = Run(0.1f);
        Assert.Equal(lossesA, lossesB);
        Assert.Equal(promptA, promptB);
        var (lossesNone, _) = Run(0f);
        Assert.NotEqual(lossesNone, lossesA);
    }

    /// <summary>Two processes of one device each, as an MPI job runs (threads here, through an
    /// in-memory group), give every rank the bits of one process with both devices: the same
    /// shares, combined in the same order.</summary>
    [Fact]
    public void TwoProcessesThroughAGroupGiveTheOneProcessBits()
    {
        using var g = GoldenCase.Load(TestPaths.Golden, "tiny-v11", "p8");
        var settings = new AdafactorSettings();
        (double[] Losses, float[] Prompt) Train(IReadOnlyList<T5Weights> replicas, IProcessGroup group)
        {
            using var trainer = new DataParallelTrainer(replicas, group, g.Prompt0, settings, dropout: 0, seed: 0);
            var losses = Enumerable.Range(0, 2).Select(s => trainer.TrainStep(g.Examples.Skip(3 * s).Take(3).ToList(), batchSize: 3)).ToArray();
            return (losses, trainer.Prompt());
        }
        (double[] Losses, float[] Prompt) together;
        using (var w = new Workers(g.Ckpt, "vulkan,vulkan")) together = Train(w.Replicas, new SingleProcess());
        var ranks = ThreadGroup.Of(2);
        var results = new (double[] Losses, float[] Prompt)[2];
        var threads = Enumerable.Range(0, 2).Select(r => new Thread(() =>
        {
            using var w = new Workers(g.Ckpt, "vulkan");
            results[r] = Train(w.Replicas, ranks[r]);
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        foreach (var (losses, prompt) in results)
        {
            Assert.Equal(together.Losses, losses);
            Assert.Equal(together.Prompt, prompt);
        }
    }

    /// <summary>The ranks of one in-memory process group, each used by a thread of its own.</summary>
    internal sealed class ThreadGroup(int size)
    {
        readonly Barrier barrier = new(size);
        readonly object?[] slots = new object?[size];

        public static IProcessGroup[] Of(int size)
        {
            var shared = new ThreadGroup(size);
            return Enumerable.Range(0, size).Select(r => (IProcessGroup)new Member(shared, r)).ToArray();
        }

        /// <summary>Every rank posts its part, all read all of them, and none posts again before every rank has read.</summary>
        T[] Exchange<T>(int rank, T mine)
        {
            slots[rank] = mine;
            barrier.SignalAndWait();
            var all = slots.Select(s => (T)s!).ToArray();
            barrier.SignalAndWait();
            return all;
        }

        sealed class Member(ThreadGroup group, int rank) : IProcessGroup
        {
            public int Rank => rank;
            public int Size => group.slots.Length;
            public void AllGather(ReadOnlySpan<double> mine, Span<double> all) => group.Exchange(rank, mine.ToArray()).SelectMany(p => p).ToArray().CopyTo(all);
            public void Broadcast(Span<float> data, int root) => group.Exchange(rank, data.ToArray())[root].CopyTo(data);
            public bool Any(bool mine) => group.Exchange(rank, mine).Any(b => b);
            public void Dispose() { }
        }
    }
}
