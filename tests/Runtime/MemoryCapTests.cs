using Silk.NET.Vulkan;
using VkPrompt.Cli;
using VkPrompt.Model;
using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Tests.Model;
using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests.Runtime;

/// <summary>The memory cap (<see cref="GpuOptions.MemoryCapBytes"/>) and the heaps' budgets
/// (<see cref="DevicePlan.MemoryBudget"/>, faked here: lavapipe lacks VK_EXT_memory_budget): the
/// pool never reserves past them, and a training step, a scoring pass or a decoder that does not
/// fit is refused with a <see cref="DoesNotFitException"/> before it allocates anything, after
/// which smaller work runs (issue 18, point 4).</summary>
public sealed class MemoryCapTests(GpuFixture f) : GpuTest(f)
{
    const long MiB = 1 << 20;

    static MemoryPool.Allocation Take(MemoryPool pool, long bytes) =>
        pool.Allocate(new MemoryRequirements { Size = (ulong)bytes, Alignment = 256, MemoryTypeBits = ~0u }, hostVisible: false);

    /// <summary>Near the cap a block is just the buffer, a buffer larger than a block still gets
    /// one of its own, a buffer past the cap is refused, and empty blocks are given back before a
    /// buffer is refused.</summary>
    [Fact]
    public void ThePoolNeverReservesPastTheCap()
    {
        using var pool = new MemoryPool(Ctx, blockBytes: 2 * MiB, cap: 5 * MiB);
        var small = Take(pool, 2 * MiB);
        Assert.Equal((1, 2 * MiB), (pool.BlockCount, pool.BytesReserved));
        // Larger than a block: a block of its own, the cap leaving room for it.
        var large = Take(pool, 5 * MiB / 2);
        Assert.Equal((2, 9 * MiB / 2), (pool.BlockCount, pool.BytesReserved));
        // Half a MiB is left under the cap: so near it, a block is just the buffer.
        var tail = Take(pool, MiB / 4);
        Assert.Equal((3, 19 * MiB / 4), (pool.BlockCount, pool.BytesReserved));
        var refused = Assert.Throws<DoesNotFitException>(() => Take(pool, MiB));
        Assert.Equal((MemoryLimit.Cap, 5 * MiB, MiB, MiB / 4), (refused.Limit, refused.LimitBytes, refused.NeededBytes, refused.AvailableBytes));
        Assert.True(refused.DoesNotFit);
        Assert.Equal(19 * MiB / 4, pool.BytesReserved);

        // The emptied blocks are given back before the next buffer is refused, and it fits.
        pool.Release(large);
        pool.Release(tail);
        var again = Take(pool, 3 * MiB);
        Assert.Equal((2, 5 * MiB), (pool.BlockCount, pool.BytesReserved));
        Assert.Equal(5 * MiB, pool.PeakBytesReserved);
        pool.Release(again);
        pool.Release(small);
    }

    /// <summary>With a budget (a fake one: 10 MiB, of which the host uses some), the pool keeps
    /// the usage, the host's and its own, within the budget less the margin, asking before each
    /// block: blocks shrink to what is left, a buffer past it is refused naming the budget, and
    /// runs once the host has freed some of its memory.</summary>
    [Fact]
    public void ThePoolStaysInsideTheHeapBudgetLessTheMargin()
    {
        long host = 3 * MiB;
        MemoryPool? pool = null;
        var asked = new List<int>();
        HeapBudget Budget(int heap)
        {
            asked.Add(heap);
            return new HeapBudget(10 * MiB, host + pool!.BytesReserved);
        }
        pool = new MemoryPool(Ctx, blockBytes: 4 * MiB, budget: Budget, budgetMargin: 0.1);
        using var _ = pool;
        long limit = 9 * MiB; // 10 MiB less a tenth
        Take(pool, 3 * MiB);
        Assert.Equal(4 * MiB, pool.BytesReserved);
        Assert.Single(asked);
        // 2 MiB are left under the budget: the next block is just the buffer, not 4 MiB.
        Take(pool, 2 * MiB);
        Assert.Equal(6 * MiB, pool.BytesReserved);
        Take(pool, MiB); // into the first block's free MiB: nothing asked
        Assert.Equal(2, asked.Count);
        var refused = Assert.Throws<DoesNotFitException>(() => Take(pool, MiB));
        Assert.Equal((MemoryLimit.Budget, limit, 0L), (refused.Limit, refused.LimitBytes, refused.AvailableBytes));
        Assert.Contains("budget less its 0.1 margin (GpuOptions.MemoryBudgetMargin)", refused.Message, StringComparison.Ordinal);

        host = MiB;
        Take(pool, MiB);
        Assert.Equal(7 * MiB, pool.BytesReserved);
        Assert.True(host + pool.BytesReserved <= limit, $"the host's {host} bytes and the pool's {pool.BytesReserved} exceed the budget less the margin");

        // The check before work counts the room under the budget and the blocks' free bytes.
        pool.EnsureFits(() => 0, "nothing");
        var work = Assert.Throws<DoesNotFitException>(() => pool.EnsureFits(() => MiB + 1, "a training step"));
        Assert.Equal((MemoryLimit.Budget, MiB + 1, MiB), (work.Limit, work.NeededBytes, work.AvailableBytes));
    }

    /// <summary>What a refusal says: the work, its need, which limit and its size, and what the
    /// limit left, in bytes and readably; one refused buffer while building reports the whole
    /// work's need. Without a limit the need is never even counted.</summary>
    [Fact]
    public void TheRefusalNamesTheWorkTheLimitAndTheNeed()
    {
        using var pool = new MemoryPool(Ctx, blockBytes: 2 * MiB, cap: 3 * MiB);
        Take(pool, MiB);
        var e = Assert.Throws<DoesNotFitException>(() => pool.EnsureFits(() => 5 * MiB, "a training step of batch 6"));
        Assert.Equal("a training step of batch 6 needs 5242880 bytes (5.0 MiB) of device memory, more than the memory cap (GpuOptions.MemoryCapBytes) " +
                     "of 3145728 bytes (3.0 MiB) leaves it (2097152 bytes (2.0 MiB))", e.Message);
        Assert.Equal(("a training step of batch 6", 5 * MiB, 3 * MiB, 2 * MiB), (e.Work, e.NeededBytes, e.LimitBytes, e.AvailableBytes));

        var whole = e.For("scoring batch 6", 7 * MiB);
        Assert.Equal("scoring batch 6 needs 7340032 bytes (7.0 MiB) of device memory, and one of its buffers did not fit: " + e.Message, whole.Message);
        Assert.Same(e, whole.InnerException);
        Assert.Equal((MemoryLimit.Cap, 7 * MiB), (whole.Limit, whole.NeededBytes));

        using var unlimited = new MemoryPool(Ctx);
        unlimited.EnsureFits(() => throw new InvalidOperationException("counted without a limit"), "anything");
    }

    /// <summary>The acceptance of issue 18's point 4: with a cap of the weights plus 1 MiB, a
    /// training step of the golden case's whole batch is refused naming the cap and the need,
    /// having allocated nothing; a batch of one then runs, to the bits of the same step without a
    /// cap (and so do the loss and gradient of <c>vkprompt grad</c>); the pool never reserved past
    /// the cap, and the validation layer reports nothing, not even at the context's end (a leaked
    /// buffer would be named there).</summary>
    [Fact]
    public void AStepThatDoesNotFitIsRefusedAndASmallerOneRuns()
    {
        using var g = GoldenCase.Load(TestPaths.Golden, "tiny-v11", "p8");
        var one = new List<EncodedExample> { g.Examples.MinBy(e => e.InputIds.Length)! };
        var (uncappedLoss, uncappedPrompt) = OneStep(new GpuBackend(Ctx), g, one);
        using var uncappedWeights = new T5Weights(g.Ckpt, new GpuBackend(Ctx));

        long cap = WeightBytes(g) + MiB;
        var ctx = GpuContext.Create(EnvironmentSettings.GpuOptions() with { Validation = true, PipelineCacheDirectory = null, MemoryCapBytes = cap });
        try
        {
            Assert.Equal(cap, ctx.Plan.MemoryCapBytes);
            using var weights = new T5Weights(g.Ckpt, new GpuBackend(ctx));
            long weightsOnly = ctx.Memory.BytesInUse;
            using (var trainer = new PromptTrainer(weights, g.Prompt0, new AdafactorSettings(), dropout: 0, seed: 0))
            {
                long inUse = ctx.Memory.BytesInUse;
                var e = Assert.Throws<DoesNotFitException>(() => trainer.TrainStep(g.Examples, g.Examples.Count));
                Assert.Equal((MemoryLimit.Cap, cap), (e.Limit, e.LimitBytes));
                Assert.Null(e.InnerException); // refused before anything was allocated
                Assert.True(e.NeededBytes > MiB, $"the whole batch's step needs {e.NeededBytes} bytes");
                Assert.StartsWith("a training step of batch 6 x ", e.Message, StringComparison.Ordinal);
                Assert.Contains($" needs {e.NeededBytes} bytes (", e.Message, StringComparison.Ordinal);
                Assert.Contains($"the memory cap (GpuOptions.MemoryCapBytes) of {cap} bytes", e.Message, StringComparison.Ordinal);
                Assert.Equal(inUse, ctx.Memory.BytesInUse);
                Assert.Equal(0, trainer.Step);

                double loss = trainer.TrainStep(one, 1);
                Assert.Equal(uncappedLoss, loss);
                Assert.Equal(uncappedPrompt, trainer.Prompt());
            }

            // vkprompt grad's pass, the same way.
            var grad = Assert.Throws<DoesNotFitException>(() => PromptTrainer.Gradient(weights, g.Examples, g.Prompt0));
            Assert.StartsWith("the gradient of batch 6 x ", grad.Message, StringComparison.Ordinal);
            Assert.Equal(weightsOnly, ctx.Memory.BytesInUse);
            Assert.Equal(PromptTrainer.Gradient(uncappedWeights, one, g.Prompt0).Gradient, PromptTrainer.Gradient(weights, one, g.Prompt0).Gradient);
            Assert.InRange(ctx.Memory.PeakBytesReserved, 1, cap);
        }
        finally { ctx.Dispose(); }
        Assert.Empty(ctx.Validation.Errors);
    }

    /// <summary>Scoring and greedy decoding refuse a batch that does not fit up front too, and
    /// run a smaller one (the golden score; the tokens of the same decode without a cap). A
    /// build whose buffers are refused while it is built (the count said it fits) frees what it
    /// had made and reports the whole build's need.</summary>
    [Fact]
    public void ScoringAndDecodingAreRefusedUpFrontAndABuildFailingHalfwayFreesItsBuffers()
    {
        using var g = GoldenCase.Load(TestPaths.Golden, "tiny-v11", "p8");
        int shortest = g.Examples.IndexOf(g.Examples.MinBy(e => e.InputIds.Length)!);
        var one = new List<EncodedExample> { g.Examples[shortest] };
        var prompts = PromptSet.Stack([g.Prompt0], g.DModel);
        List<int> uncappedTokens;
        using (var weights = new T5Weights(g.Ckpt, new GpuBackend(Ctx)))
            uncappedTokens = GreedyDecoder.Run(weights, one, prompts, null, 1, 8).Single().Ids;

        long cap = WeightBytes(g) + MiB;
        var ctx = GpuContext.Create(EnvironmentSettings.GpuOptions() with { Validation = true, PipelineCacheDirectory = null, MemoryCapBytes = cap });
        try
        {
            using var weights = new T5Weights(g.Ckpt, new GpuBackend(ctx));
            long inUse = ctx.Memory.BytesInUse;
            using (var scorer = new Scorer(weights))
            {
                var e = Assert.Throws<DoesNotFitException>(() => scorer.Score(g.Examples, prompts));
                Assert.StartsWith("scoring batch 6 x ", e.Message, StringComparison.Ordinal);
                Assert.Equal((MemoryLimit.Cap, cap), (e.Limit, e.LimitBytes));
                Assert.Equal(inUse, ctx.Memory.BytesInUse);
                GoldenCase.AssertLogLikelihoods([g.Scores[shortest]], scorer.Score(one, prompts), "one example under the cap");
            }

            var refused = Assert.Throws<DoesNotFitException>(() => GreedyDecoder.Run(weights, g.Examples, prompts, null, g.Examples.Count, 8).ToList());
            Assert.StartsWith("greedy decoding of batch 6 x ", refused.Message, StringComparison.Ordinal);
            Assert.Equal(inUse, ctx.Memory.BytesInUse);
            Assert.Equal(uncappedTokens, GreedyDecoder.Run(weights, one, prompts, null, 1, 8).Single().Ids);
            Assert.Equal(inUse, ctx.Memory.BytesInUse);

            // Counted on the trace backend as 1 KiB, built as more than the cap: the first
            // buffer is freed again, and the refusal reports the counted need for the whole.
            var halfway = Assert.Throws<DoesNotFitException>(() => WorkMemory.Build(weights, "a build", w =>
                (w.Backend.Floats(256, "first"), w.Backend.Floats(w.Backend is TraceBackend ? 1 : cap, "second"))));
            Assert.Equal(1024 + TraceBackend.BufferAlignment, halfway.NeededBytes);
            Assert.IsType<DoesNotFitException>(halfway.InnerException);
            Assert.StartsWith("a build needs 1280 bytes (1.3 KiB) of device memory, and one of its buffers did not fit: a buffer needs ", halfway.Message, StringComparison.Ordinal);
            Assert.Equal(inUse, ctx.Memory.BytesInUse);
            Assert.InRange(ctx.Memory.PeakBytesReserved, 1, cap);
        }
        finally { ctx.Dispose(); }
        Assert.Empty(ctx.Validation.Errors);
    }

    /// <summary>What the golden model's weights take in the pool, measured on the fixture's context.</summary>
    long WeightBytes(GoldenCase g)
    {
        long before = Ctx.Memory.BytesInUse;
        using var weights = new T5Weights(g.Ckpt, new GpuBackend(Ctx));
        return Ctx.Memory.BytesInUse - before;
    }

    static (double Loss, float[] Prompt) OneStep(Backend be, GoldenCase g, List<EncodedExample> batch)
    {
        using var weights = new T5Weights(g.Ckpt, be);
        using var trainer = new PromptTrainer(weights, g.Prompt0, new AdafactorSettings(), dropout: 0, seed: 0);
        return (trainer.TrainStep(batch, batch.Count), trainer.Prompt());
    }
}
