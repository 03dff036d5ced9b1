using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests.Training;

/// <summary>Which evaluation's prompt a run keeps, and what --patience counts.</summary>
public sealed class BestPromptTests
{
    [Fact]
    public void HigherAccuracyWinsAndEqualAccuracyFallsToTheLowerLoss()
    {
        var best = new BestPrompt();
        Assert.True(best.Offer(2, 0.5, 1.0));
        Assert.True(best.Offer(4, 0.5, 0.9));
        Assert.False(best.Offer(6, 0.5, 0.9));
        Assert.False(best.Offer(8, 0.4, 0.1));
        Assert.Equal((4, 2), (best.Step, best.EvaluationsSince));
        Assert.True(best.Offer(10, 0.75, 2.0));
        Assert.Equal((10, 0, 0.75), (best.Step, best.EvaluationsSince, best.Metric));
    }

    [Fact]
    public void WithoutAccuracyTheLowerLossWins()
    {
        var best = new BestPrompt();
        Assert.True(best.Offer(1, null, 3.0));
        Assert.False(best.Offer(2, null, 3.5));
        Assert.True(best.Offer(3, null, 2.5));
        Assert.Equal((3, -2.5), (best.Step, best.Metric));
    }

    [Fact]
    public void TheCheckpointMetadataReadsBackExactly()
    {
        var best = new BestPrompt();
        best.Offer(5, 1.0 / 3, 0.1 + 0.2);
        best.Offer(10, 0.25, 0.1);
        var read = BestPrompt.Read(best.Metadata());
        Assert.Equal((best.Step, best.Metric, best.Loss, best.EvaluationsSince), (read.Step, read.Metric, read.Loss, read.EvaluationsSince));
        Assert.Equal(1, read.EvaluationsSince);
        Assert.False(read.Offer(15, 1.0 / 3, 0.1 + 0.2), "an exact tie is not an improvement");
    }
}
