using BenchmarkDotNet.Running;
using VkPrompt.Bench;

// Without a --job of its own, a run takes BenchConfig's short in-process job, which finishes
// the whole suite in a few minutes on lavapipe; `--job default` (or medium, long) measures
// longer in a separate process.
bool jobGiven = args.Any(a => a is "--job" or "-j" || a.StartsWith("--job=", StringComparison.Ordinal));
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, BenchConfig.Create(shortJob: !jobGiven));
