using System.Text.RegularExpressions;
using VkPrompt.Model;
using VkPrompt.Runtime;
using VkPrompt.Training;
using Xunit;

namespace VkPrompt.Tests;

/// <summary>docs/architecture.md's "The public surface" names every public type of the three
/// library assemblies and states how many there are, so a type made public without a word there
/// (or one made internal and still listed in the count) fails here rather than drifting.</summary>
public sealed class PublicSurfaceTests
{
    [Fact]
    public void TheArchitectureDocNamesEveryPublicTypeAndCountsThem()
    {
        var doc = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "docs", "architecture.md"));
        var section = Regex.Match(doc, @"^## The public surface\n(.*?)^## ", RegexOptions.Singleline | RegexOptions.Multiline);
        Assert.True(section.Success, "docs/architecture.md has no '## The public surface' section followed by another");
        string text = section.Groups[1].Value;

        var types = new[] { typeof(GpuContext), typeof(PromptFile), typeof(PromptModel) }
            .SelectMany(t => t.Assembly.GetExportedTypes()).ToList();
        Assert.True(types.Count > 30, $"only {types.Count} exported types found: the assemblies are not the library's");
        var unnamed = types.Where(t => !text.Contains($"`{t.Name}`", StringComparison.Ordinal)).Select(t => t.FullName).ToList();
        Assert.True(unnamed.Count == 0, $"public but not named in docs/architecture.md's public surface: {string.Join(", ", unnamed)}");

        var count = Regex.Match(text, @"(\d+) public types");
        Assert.True(count.Success, "the section does not say how many public types there are ('N public types')");
        Assert.Equal(types.Count, int.Parse(count.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
    }
}
