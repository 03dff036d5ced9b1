namespace VkPrompt.Tests;

/// <summary>Where the repository and the shared golden files are, wherever the tests run from.</summary>
public static class TestPaths
{
    public static string RepoRoot { get; } = FindRoot();

    /// <summary>../shared/golden beside the checkout (as CI lays it out); VKPROMPT_GOLDEN overrides.</summary>
    public static string Golden { get; } =
        Environment.GetEnvironmentVariable("VKPROMPT_GOLDEN") is { Length: > 0 } g ? g : Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "golden"));

    /// <summary>../shared/golden-variants beside the checkout: the golden cases of the other T5
    /// family members (UL2, umT5, ByT5); VKPROMPT_GOLDEN_VARIANTS overrides.</summary>
    public static string GoldenVariants { get; } =
        Environment.GetEnvironmentVariable("VKPROMPT_GOLDEN_VARIANTS") is { Length: > 0 } g ? g : Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "golden-variants"));

    static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "VkPrompt.sln"))) return d.FullName;
        throw new DirectoryNotFoundException("VkPrompt.sln not found above " + AppContext.BaseDirectory);
    }
}
