using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests.Training;

/// <summary>eval's metrics against values worked by hand.</summary>
public sealed class MetricsTests
{
    static readonly int[] Gold = [0, 0, 1, 2, 2, 2];
    static readonly int[] Predicted = [0, 1, 1, 2, 2, 0];

    [Fact]
    public void AccuracyIsTheShareOfExactPredictions() => Assert.Equal(4 / 6.0, RankClassifier.Accuracy(Predicted, Gold), 12);

    /// <summary>Class 0: precision 1/2, recall 1/2, F1 1/2. Class 1: 1/2 and 1, F1 2/3. Class 2: 1
    /// and 2/3, F1 4/5. A fourth class, never predicted nor present, scores 0 and counts.</summary>
    [Theory, InlineData(3, (0.5 + 2 / 3.0 + 0.8) / 3), InlineData(4, (0.5 + 2 / 3.0 + 0.8) / 4)]
    public void MacroF1AveragesEachClassesF1(int numClasses, double expected) =>
        Assert.Equal(expected, RankClassifier.MacroF1(Predicted, Gold, numClasses), 12);
}
