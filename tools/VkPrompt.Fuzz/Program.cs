using System.Diagnostics;
using System.Security.Cryptography;

// Why a mutation loop of our own and not SharpFuzz or CsCheck: SharpFuzz needs AFL++ (or
// libFuzzer) to drive it, which this machine does not have; CsCheck generates values from
// generators, so each format would need a grammar written first before anything got past a
// parser's first check. Mutating the real files (the golden models' headers, configs,
// tokenizers, prompts and data) keeps every input a few edits from valid, so the checks deep in
// each parser are reached; format-aware edits (JSON nodes, protobuf fields, the safetensors
// length prefix) get further still. Without coverage feedback, inputs that still parse are kept
// as further parents, which is the cheap half of what coverage guidance buys.
//
//   VkPrompt.Fuzz list
//   VkPrompt.Fuzz run TARGET SECONDS --repo DIR --golden DIR --corpus DIR --scratch DIR [--seed N]
//   VkPrompt.Fuzz replay TARGET FILE... --repo DIR --golden DIR --scratch DIR
// Exit codes: 0 done (findings or not), 2 usage, 3 stopped at a hang (the input is saved; its
// thread cannot be stopped, so tools/fuzz.sh starts a new process for the time left).

namespace VkPrompt.Fuzz;

// Not top-level statements: those make a global Program class, which the tests (referencing both
// this tool and the CLI) would see twice.
internal static class Fuzzer
{
    public static int Main(string[] args)
    {
        var options = new Dictionary<string, string>();
        var words = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i].StartsWith("--", StringComparison.Ordinal) && i + 1 < args.Length) options[args[i][2..]] = args[++i];
            else words.Add(args[i]);
        }

        if (words is ["list"])
        {
            foreach (var t in Target.All) Console.WriteLine($"{t.Name,-16} {t.FileName,-30} {t.What}");
            return 0;
        }
        if (words.Count < 2 || Target.Find(words[1]) is not { } target || !options.ContainsKey("repo") || !options.ContainsKey("golden") || !options.ContainsKey("scratch"))
        {
            Console.Error.WriteLine("usage: VkPrompt.Fuzz list | run TARGET SECONDS --repo DIR --golden DIR --corpus DIR --scratch DIR [--seed N] | replay TARGET FILE... --repo DIR --golden DIR --scratch DIR");
            return 2;
        }

        var fx = new Fixtures(options["repo"], options["golden"]);
        var scratch = Path.Combine(options["scratch"], target.Name);
        if (Directory.Exists(scratch)) Directory.Delete(scratch, recursive: true);
        Directory.CreateDirectory(scratch);
        target.Prepare?.Invoke(fx, scratch);
        var timeout = TimeSpan.FromSeconds(10);

        if (words[0] == "replay")
        {
            int bugs = 0;
            foreach (var file in words.Skip(2))
            {
                var outcome = Oracle.Run(target, fx, scratch, File.ReadAllBytes(file), timeout);
                Console.WriteLine($"{file}: {outcome.Verdict} {outcome.Signature}\n  {outcome.Detail.ReplaceLineEndings("\n  ")}");
                if (outcome.Verdict == Verdict.Bug) bugs++;
            }
            return bugs == 0 ? 0 : 1;
        }
        if (words[0] != "run" || words.Count != 3 || !int.TryParse(words[2], out int seconds) || !options.TryGetValue("corpus", out var corpusRoot))
        {
            Console.Error.WriteLine("usage: VkPrompt.Fuzz run TARGET SECONDS --repo DIR --golden DIR --corpus DIR --scratch DIR [--seed N]");
            return 2;
        }

        var corpus = Path.Combine(corpusRoot, target.Name);
        var rng = new Random(options.TryGetValue("seed", out var s) ? int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : Environment.TickCount);
        var seeds = target.MakeSeeds(fx).ToList();
        // Parents: the seeds, the findings kept from earlier runs, and inputs that parsed.
        var parents = new List<byte[]>(seeds);
        var known = new HashSet<string>();
        if (Directory.Exists(corpus))
        {
            foreach (var file in Directory.GetFiles(corpus).Order(StringComparer.Ordinal))
            {
                // A hang is not replayed (its thread could not be stopped) nor mutated further.
                if (Path.GetFileName(file).StartsWith("hang-", StringComparison.Ordinal))
                {
                    known.Add("hang");
                    continue;
                }
                var bytes = File.ReadAllBytes(file);
                parents.Add(bytes);
                var o = Oracle.Run(target, fx, scratch, bytes, timeout);
                if (o.Verdict == Verdict.Bug) known.Add(o.Signature);
                Console.WriteLine($"kept {Path.GetFileName(file)}: {(o.Verdict == Verdict.Bug ? "still fails: " + o.Signature : "passes now")}");
            }
        }
        foreach (var seed in seeds)
        {
            var o = Oracle.Run(target, fx, scratch, seed, timeout);
            if (o.Verdict == Verdict.Bug) Console.WriteLine($"warning: a seed fails: {o.Verdict} {o.Signature} {o.Detail.Split('\n')[0]}");
        }
        int fixedParents = parents.Count;
        const int GrownParents = 64;
        var mutator = new Mutator(rng, target.Format, () => parents[rng.Next(parents.Count)]);

        var clock = Stopwatch.StartNew();
        long execs = 0, parsed = 0, userErrors = 0;
        var found = new List<string>();
        var nextReport = TimeSpan.FromSeconds(60);
        Console.WriteLine($"fuzzing {target.Name} ({target.What}) for {seconds} s: {seeds.Count} seeds, {parents.Count - seeds.Count} kept inputs, corpus {corpus}");
        while (clock.Elapsed < TimeSpan.FromSeconds(seconds))
        {
            var input = mutator.Mutate(parents[rng.Next(parents.Count)]);
            var outcome = Oracle.Run(target, fx, scratch, input, timeout);
            execs++;
            switch (outcome.Verdict)
            {
                case Verdict.Parsed:
                    parsed++;
                    // Inputs that still parse are the ones that reach deepest; keep a rotating few.
                    if (rng.Next(8) == 0)
                    {
                        if (parents.Count < fixedParents + GrownParents) parents.Add(input);
                        else parents[fixedParents + rng.Next(GrownParents)] = input;
                    }
                    break;
                case Verdict.UserError:
                    userErrors++;
                    break;
                default:
                    if (!known.Add(outcome.Signature))
                    {
                        if (outcome.Signature != "hang") break;
                        Report();
                        return 3;
                    }
                    var small = outcome.Signature == "hang" ? input : Minimise(input, outcome.Signature);
                    var saved = Save(small, outcome.Signature);
                    found.Add($"{outcome.Signature} -> {saved ?? $"not saved ({small.Length} bytes after minimising)"}");
                    Console.WriteLine($"FOUND {outcome.Signature} ({small.Length} bytes) -> {saved}\n  {Oracle.Run(target, fx, scratch, small, timeout).Detail.Split('\n').Take(6).Aggregate((a, b) => a + "\n  " + b)}");
                    if (outcome.Signature == "hang")
                    {
                        Report();
                        return 3;
                    }
                    break;
            }
            if (clock.Elapsed >= nextReport)
            {
                Console.WriteLine($"  {clock.Elapsed.TotalMinutes:0.0} min: {execs} execs, {parsed} parsed, {userErrors} user errors, {found.Count} new findings");
                nextReport += TimeSpan.FromSeconds(60);
            }
        }
        Report();
        return 0;

        void Report()
        {
            Console.WriteLine($"{target.Name}: {clock.Elapsed.TotalMinutes:0.0} min, {execs} execs ({execs / Math.Max(clock.Elapsed.TotalSeconds, 1):0} /s), {parsed} parsed, {userErrors} user errors, {found.Count} unique failures");
            foreach (var f in found) Console.WriteLine($"  {f}");
        }

        // Delta debugging on bytes, bounded in time: chunks from half the input down to single bytes are
        // cut while the input still fails the same way.
        byte[] Minimise(byte[] input, string signature)
        {
            var budget = Stopwatch.StartNew();
            var best = input;
            for (int chunk = Math.Max(1, best.Length / 2); chunk >= 1 && budget.Elapsed < TimeSpan.FromSeconds(60); chunk /= 2)
            {
                for (int at = 0; at < best.Length && budget.Elapsed < TimeSpan.FromSeconds(60);)
                {
                    var candidate = (byte[])[.. best.AsSpan(0, at), .. best.AsSpan(Math.Min(best.Length, at + chunk))];
                    if (Oracle.Run(target, fx, scratch, candidate, timeout).Signature == signature) best = candidate;
                    else at += chunk;
                }
            }
            return best;
        }

        // Findings up to 64 KiB are kept as regression inputs, named by what failed and a hash of the bytes.
        string? Save(byte[] input, string signature)
        {
            if (input.Length > 64 << 10) return null;
            Directory.CreateDirectory(corpus);
            var hash = Convert.ToHexStringLower(SHA256.HashData(input))[..12];
            var path = Path.Combine(corpus, $"{signature}-{hash}{Path.GetExtension(target.FileName)}");
            File.WriteAllBytes(path, input);
            return path;
        }
    }
}
