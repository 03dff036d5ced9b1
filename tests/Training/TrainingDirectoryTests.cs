using VkPrompt.Tests.Model;
using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests.Training;

/// <summary>The output directory's lock within one process (library use): the CLI test of two
/// processes is TrainCliOutputDirectoryTests.ASecondConcurrentRunIsRefusedAndTheFirstCompletesUntouched.</summary>
public sealed class TrainingDirectoryTests : IDisposable
{
    readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    [Fact]
    public void TheLockExcludesASecondRunInTheSameProcessUntilReleased()
    {
        var path = dir.File("run");
        using var first = new TrainingDirectory(path);
        first.Prepare(new TrainOptions());
        Assert.True(File.Exists(Path.Combine(path, TrainingDirectory.ManifestFile)), "a fresh run claims the directory at once");

        using var second = new TrainingDirectory(path);
        var refused = Assert.Throws<TrainingOptionException>(() => second.Prepare(new TrainOptions { Resume = true }));
        Assert.Equal($"output directory {path} is in use by another run (process {Environment.ProcessId}); wait for it to end or choose another output directory", refused.Message);

        first.Dispose();
        second.Prepare(new TrainOptions { Resume = true });
    }
}
