using VkPrompt.Model;
using Xunit;

namespace VkPrompt.Tests.Model;

public sealed class BatchTests
{
    [Fact]
    public void ShortestFirstOrdersByLengthKeepingFileOrderAmongEqualLengths() =>
        Assert.Equal([3, 1, 4, 0, 2], HostBatch.ShortestFirst([9, 4, 12, 2, 4]));
}
