using VkPrompt.Model.Backends;
using VkPrompt.Runtime;
using VkPrompt.Runtime.Kernels;
using VkPrompt.Tests.Model;
using Xunit;

namespace VkPrompt.Tests.Runtime;

/// <summary>A context is used by one thread at a time, and misuse is an exception naming the
/// contract, not corruption; tickets may be polled from any thread; two contexts on two threads
/// are independent.</summary>
public sealed class ThreadContractTests
{
    static readonly TimeSpan Patience = TimeSpan.FromMinutes(2);

    // Whether the queue lock stops the next submit (ASecondThreadInACallGetsTheContract).
    volatile bool hold;

    [Fact]
    public void TheGuardIsReentrantOnItsThreadAndRefusesAnother()
    {
        var guard = new ThreadGuard();
        using (guard.Enter())
        {
            using (guard.Enter()) { }
            // Still held by this thread after the nested scope closed.
            var e = Assert.Throws<InvalidOperationException>(() => OnOtherThread(() => { using var _ = guard.Enter(); }));
            Assert.Contains(ThreadGuard.Contract, e.Message);
        }
        // Free again: another thread takes it, and then this one.
        OnOtherThread(() => { using var _ = guard.Enter(); });
        using (guard.Enter()) { }
    }

    /// <summary>Runs <paramref name="action"/> on a new thread and rethrows what it threw.</summary>
    static void OnOtherThread(Action action)
    {
        Exception? thrown = null;
        var t = new Thread(() =>
        {
            try { action(); }
            catch (Exception e) { thrown = e; }
        });
        t.Start();
        Assert.True(t.Join(Patience), "the other thread did not finish");
        if (thrown is not null) throw thrown;
    }

    /// <summary>A real collision, made deterministic by the host's queue lock: a worker thread's
    /// submit stops inside the lock (so inside its call on the context) until the test has tried
    /// the context from its own thread, which gets the exception; polling the ticket of an
    /// earlier submit crosses threads freely, and once the worker's call returned the test's
    /// thread uses the context normally.</summary>
    [Fact]
    public async Task ASecondThreadInACallGetsTheContract()
    {
        using var inLock = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var queueLock = new QueueLock(() =>
        {
            if (!hold) return;
            inLock.Set();
            Assert.True(release.Wait(Patience));
        }, () => { });
        var host = new TestHost();
        try
        {
            using (var ctx = GpuContext.Adopt(host.Declared with { QueueLock = queueLock }))
            {
                var x = Check.Random(256, 1);
                using var gx = GpuBuffer.From<float>(ctx, x);
                using var gy = GpuBuffer.From<float>(ctx, x);
                using var g = new CommandGraph(ctx);
                AddKernel.Forward(g, gx, gy, 256, 1f);
                var earlier = g.Submit([]);
                earlier.Wait();

                hold = true;
                var worker = Task.Factory.StartNew(g.Run, TaskCreationOptions.LongRunning);
                try
                {
                    Assert.True(inLock.Wait(Patience), "the worker never reached the queue lock");
                    var e = Assert.Throws<InvalidOperationException>(() => new GpuBuffer(ctx, 16, "collides").Dispose());
                    Assert.Contains(ThreadGuard.Contract, e.Message);
                    e = Assert.Throws<InvalidOperationException>(() => gx.Download<float>());
                    Assert.Contains("one thread at a time", e.Message);
                    // A ticket may be polled and waited on from any thread.
                    Assert.True(earlier.IsComplete);
                    Assert.True(earlier.Wait(TimeSpan.Zero));
                }
                finally
                {
                    hold = false;
                    release.Set();
                    await worker.WaitAsync(Patience);
                }
                // Handed back between calls: this thread uses it again.
                var result = gx.Download<float>();
                Check.Close(x.Select(v => 3 * v).ToArray(), result, 1e-6, "x + x + x after two runs");
            }
        }
        finally { host.Dispose(); }
        Assert.True(host.Errors.IsEmpty, $"{host.Errors.Count} validation error(s):\n" + string.Join("\n", host.Errors));
    }

    /// <summary>Two contexts, each on its own host device, train the golden case on two threads at
    /// once to the same bits as each of them does one after the other.</summary>
    [Fact]
    public async Task TwoContextsOnTwoThreadsTrainToTheSameBits()
    {
        var hosts = new[] { new TestHost(), new TestHost() };
        try
        {
            using var g = GoldenCase.Load(TestPaths.Golden, "tiny-v11", "p8");
            var contexts = hosts.Select(h => GpuContext.Adopt(h.Declared)).ToArray();
            try
            {
                float[] Train(GpuContext ctx)
                {
                    using var backend = new GpuBackend(ctx);
                    using var weights = new VkPrompt.Model.T5Weights(g.Ckpt, backend);
                    return g.TrainAdafactorSteps(weights).Prompt;
                }
                var sequential = contexts.Select(Train).ToArray();
                Check.BitIdentical(sequential[0], sequential[1], "two contexts one after the other");
                var concurrent = new float[2][];
                // LongRunning: a thread of its own each, not the pool's.
                var threads = Enumerable.Range(0, 2).Select(i => Task.Factory.StartNew(() => concurrent[i] = Train(contexts[i]), TaskCreationOptions.LongRunning)).ToArray();
                await Task.WhenAll(threads).WaitAsync(Patience * 2);
                Check.BitIdentical(sequential[0], concurrent[0], "context 0 on its own thread beside context 1");
                Check.BitIdentical(sequential[0], concurrent[1], "context 1 on its own thread beside context 0");
            }
            finally
            {
                foreach (var c in contexts) c.Dispose();
            }
        }
        finally
        {
            foreach (var h in hosts) h.Dispose();
        }
        Assert.All(hosts, h => Assert.True(h.Errors.IsEmpty, string.Join("\n", h.Errors)));
    }
}
