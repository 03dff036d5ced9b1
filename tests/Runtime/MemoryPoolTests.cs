using Silk.NET.Vulkan;
using VkPrompt.Runtime;
using Xunit;

namespace VkPrompt.Tests.Runtime;

/// <summary>The pool's blocks: kept for reuse while anything lives in them, given back when a
/// buffer fits nowhere and they hold nothing (as when a batch of another shape needs larger
/// activations than the last one freed).</summary>
public sealed class MemoryPoolTests(GpuFixture f) : GpuTest(f)
{
    const long MiB = 1 << 20;

    [Fact]
    public void EmptyBlocksTooSmallForABufferAreGivenBackBeforeANewOneIsTaken()
    {
        using var pool = new MemoryPool(Ctx, blockBytes: MiB);
        MemoryPool.Allocation Take(long bytes) =>
            pool.Allocate(new MemoryRequirements { Size = (ulong)bytes, Alignment = 256, MemoryTypeBits = ~0u }, hostVisible: false);

        var small = Take(MiB / 2);
        var big = Take(2 * MiB);
        Assert.Equal((2, 3 * MiB), (pool.BlockCount, pool.BytesReserved));

        pool.Release(big);
        var freedBlockReused = Take(MiB + MiB / 2);
        Assert.Equal((2, 3 * MiB), (pool.BlockCount, pool.BytesReserved));

        pool.Release(freedBlockReused);
        var larger = Take(3 * MiB);
        Assert.Equal((2, 4 * MiB), (pool.BlockCount, pool.BytesReserved));

        // A block still holding a buffer stays, however little it holds.
        pool.Release(larger);
        Take(4 * MiB);
        Assert.Equal((2, 5 * MiB), (pool.BlockCount, pool.BytesReserved));
        pool.Release(small);
        Assert.Equal(4 * MiB, pool.BytesInUse);
    }
}
