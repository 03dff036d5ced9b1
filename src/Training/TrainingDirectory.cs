using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using VkPrompt.Model;
using VkPrompt.Model.Safetensors;
using VkPrompt.Runtime;

namespace VkPrompt.Training;

/// <summary>
/// The output directory of a training run and its policy (docs/reliability.md): a directory is a
/// run's only if it holds VkPrompt's <see cref="ManifestFile"/>, which lists the files the run
/// writes; an empty or new directory becomes one, any other is refused. An earlier run there needs
/// <see cref="TrainOptions.Resume"/> or <see cref="TrainOptions.Overwrite"/>; an overwrite removes
/// only the files the earlier manifest lists, and only once the new run has taken its first step
/// (<see cref="Begin"/>). One run at a time holds the directory's <see cref="LockFile"/>.
/// </summary>
internal sealed class TrainingDirectory(string path) : IDisposable
{
    /// <summary>The resumable state: prompt, optimizer state, step, best validation score.</summary>
    public const string CheckpointFile = "checkpoint.safetensors";
    /// <summary>One JSON object per step (<see cref="MetricsLog"/>).</summary>
    public const string MetricsFile = "metrics.jsonl";
    /// <summary>The adapter of the best prompt on validation so far.</summary>
    public const string BestDirectory = "best";
    /// <summary>What makes a directory a run's: the files its runs wrote, all an overwrite removes.</summary>
    public const string ManifestFile = "vkprompt-run.json";
    /// <summary>Held open exclusively (an OS lock the kernel drops when the process ends, crash
    /// included) by the run writing here.</summary>
    public const string LockFile = ".vkprompt.lock";
    /// <summary>The process id of the lock's holder, for the message a second run gets (the lock
    /// file itself cannot be read by another process while it is held).</summary>
    public const string LockHolderFile = ".vkprompt.lock.pid";

    readonly List<string> frontEndFiles = [];
    FileStream? held;
    // The earlier run an overwrite replaces, kept until the new run has started.
    IReadOnlyList<string>? replacing;
    IReadOnlyList<string> files = [];
    // Whether the run holds a directory that was empty but for its own lock when it took it, the
    // directories it made for it (the topmost first; none where it existed), and whether the run
    // got as far as Begin: one that fails before then leaves such a directory as it found it.
    bool claimedEmpty, begun;
    IReadOnlyList<string> made = [];

    /// <summary>The directory.</summary>
    public string Path => path;
    internal string Checkpoint => System.IO.Path.Combine(path, CheckpointFile);
    internal string Metrics => System.IO.Path.Combine(path, MetricsFile);
    internal string Best => System.IO.Path.Combine(path, BestDirectory);

    /// <summary>A file a front end writes here beside the run's own (the CLI's chart), listed in
    /// the manifest so an overwrite replaces it too. A name relative to the directory.</summary>
    internal void AlsoWrites(string file) => frontEndFiles.Add(file);

    /// <summary>The files (relative, '/'-separated) a run with <paramref name="options"/> writes.</summary>
    IReadOnlyList<string> RunFiles(TrainOptions options)
    {
        var adapter = new List<string> { Adapter.WeightsFile, Adapter.ConfigFile };
        if (options.ExportNpy) adapter.Add(Adapter.NpyFile);
        return [CheckpointFile, MetricsFile, .. adapter, .. adapter.Select(f => $"{BestDirectory}/{f}"), .. frontEndFiles];
    }

    /// <summary>Throws unless a run may write here as <paramref name="options"/> ask: an existing
    /// directory must be empty or a run's (<see cref="ManifestFile"/>), and one that holds an
    /// earlier run needs Resume or Overwrite (not both). Cheap, so front ends call it before
    /// loading a model; <see cref="Prepare"/> calls it again under the lock.</summary>
    public void Check(TrainOptions options)
    {
        if (options.Resume && options.Overwrite)
            throw new TrainingOptionException($"{Setting.Resume} continues the run in the output directory and {Setting.Overwrite} replaces it: give one");
        if (File.Exists(path))
            throw new TrainingOptionException($"{Setting.OutputDirectory} {path} is a file; it names the directory the adapter, checkpoint and metrics go to");
        if (!Directory.Exists(path)) return;
        var manifest = ReadManifest();
        if (manifest is null)
        {
            // The lock and a manifest write a crash cut short are a run's first traces, not foreign.
            var foreign = Directory.EnumerateFileSystemEntries(path).Select(f => System.IO.Path.GetFileName(f))
                .Where(n => n is not (LockFile or LockHolderFile) && !AtomicFile.IsTemporaryOf(n, ManifestFile)).Order(StringComparer.Ordinal).ToList();
            if (foreign.Count > 0)
                throw new TrainingOptionException($"{Setting.OutputDirectory} {path} holds files VkPrompt did not write ({string.Join(", ", foreign.Take(3))}{(foreign.Count > 3 ? ", ..." : "")}) and no {ManifestFile}; a run writes only into a new or empty directory or one of its own: choose another {Setting.OutputDirectory}");
            return;
        }
        // A file by a run's name that no run here wrote is the user's (a prompt.npy of their own
        // beside a run that exported none): the run would replace it.
        if (RunFiles(options).Where(f => File.Exists(Full(f))).Except(manifest).FirstOrDefault() is { } users)
            throw new TrainingOptionException($"{Setting.OutputDirectory} {path} holds {users}, which no run there wrote ({ManifestFile} does not list it) and this run would replace: move it or choose another {Setting.OutputDirectory}");
        if (options.Resume || options.Overwrite) return;
        if (new[] { CheckpointFile, Adapter.WeightsFile }.FirstOrDefault(f => File.Exists(System.IO.Path.Combine(path, f))) is { } earlier)
            throw new TrainingOptionException($"{path} holds an earlier run ({earlier}); continue it with {Setting.Resume}, replace it with {Setting.Overwrite}, or choose another {Setting.OutputDirectory}");
    }

    /// <summary>Takes the directory for a run: creates it, locks it, checks it (under the lock,
    /// so no other process changes it in between), removes temporary files an interrupted write
    /// left, and claims it in the manifest. An earlier run an overwrite replaces stays until
    /// <see cref="Begin"/>.</summary>
    internal void Prepare(TrainOptions options)
    {
        Check(options);
        made = Missing(System.IO.Path.GetFullPath(path));
        // .NET's own message names the path but not the setting: "Could not find file '/proc/x'".
        try
        {
            Directory.CreateDirectory(path);
            Lock();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TrainingOptionException($"{Setting.OutputDirectory} {path}: cannot make or write the directory: {e.Message}");
        }
        try
        {
            // Decided under the lock: a run that finished here since the check above is no
            // empty directory to leave as it was.
            claimedEmpty = Directory.EnumerateFileSystemEntries(path).Select(f => System.IO.Path.GetFileName(f)).All(n => n is LockFile or LockHolderFile);
            Check(options);
            var earlier = ReadManifest();
            files = RunFiles(options);
            RemoveTemporaries([.. earlier ?? [], .. files]);
            if (options.Overwrite && earlier is not null) replacing = earlier;
            else WriteManifest([.. earlier ?? [], .. files]);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Called once the run has started (its first step done) and before it writes
    /// anything: an overwrite removes the earlier run's files now, so a run that fails to start
    /// (a bad option, too little memory) leaves the earlier one whole. Idempotent.</summary>
    internal void Begin()
    {
        begun = true;
        if (replacing is null) return;
        foreach (var f in replacing.Select(Full).Where(File.Exists)) File.Delete(f);
        if (Directory.Exists(Best) && !Directory.EnumerateFileSystemEntries(Best).Any()) Directory.Delete(Best);
        WriteManifest(files);
        replacing = null;
    }

    /// <summary>Whether the run holds the directory and may write: prepared, and past an
    /// overwrite's <see cref="Begin"/>.</summary>
    internal bool Begun => held is not null && replacing is null;

    /// <summary>The manifest's files; null where there is no manifest. A manifest that cannot be
    /// read, or names a file outside the directory, is refused rather than trusted.</summary>
    internal IReadOnlyList<string>? ReadManifest()
    {
        var manifest = System.IO.Path.Combine(path, ManifestFile);
        if (!File.Exists(manifest)) return null;
        try
        {
            var list = JsonNode.Parse(File.ReadAllText(manifest))?["files"]?.AsArray().Select(n => n!.GetValue<string>()).ToList();
            if (list is not null && list.All(IsRunFileName)) return list;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or NullReferenceException or FormatException) { }
        throw new TrainingOptionException($"{manifest} is not a VkPrompt run manifest (a JSON object whose \"files\" lists the names a run wrote in {path}); choose another {Setting.OutputDirectory}");
    }

    /// <summary>A relative name inside the directory: no root, no empty, '.' or '..' part, so an
    /// edited manifest cannot make an overwrite delete anything elsewhere.</summary>
    static bool IsRunFileName(string name) =>
        name.Length > 0 && !name.Contains('\\') && !System.IO.Path.IsPathRooted(name) && name.Split('/').All(p => p is not ("" or "." or ".."));

    string Full(string runFile) => System.IO.Path.Combine([path, .. runFile.Split('/')]);

    void WriteManifest(IEnumerable<string> runFiles)
    {
        var list = new JsonArray([.. runFiles.Distinct().Select(f => JsonValue.Create(f))]);
        AtomicFile.WriteAllText(System.IO.Path.Combine(path, ManifestFile),
            new JsonObject { ["vkprompt"] = "training run", ["files"] = list }.ToJsonString(new() { WriteIndented = true }) + "\n");
    }

    /// <summary>Deletes the temporary files of interrupted writes (<see cref="AtomicFile"/>) of the
    /// run's files: a crash mid-write leaves them, and nothing else ever would.</summary>
    void RemoveTemporaries(IEnumerable<string> runFiles)
    {
        foreach (var f in runFiles.Append(ManifestFile).Distinct())
        {
            var full = Full(f);
            var dir = System.IO.Path.GetDirectoryName(full)!;
            if (!Directory.Exists(dir)) continue;
            var name = System.IO.Path.GetFileName(full);
            foreach (var temp in Directory.EnumerateFiles(dir, $".{name}.*"))
                if (AtomicFile.IsTemporaryOf(System.IO.Path.GetFileName(temp), name)) File.Delete(temp);
        }
    }

    /// <summary>The directories of <paramref name="full"/> that do not exist yet, the topmost first.</summary>
    static List<string> Missing(string full)
    {
        var missing = new List<string>();
        for (string? d = full; d is not null && !Directory.Exists(d); d = System.IO.Path.GetDirectoryName(d)) missing.Insert(0, d);
        return missing;
    }

    /// <summary>Holds <see cref="LockFile"/> open with no sharing (flock(LOCK_EX) on Linux and
    /// macOS, a share-mode lock on Windows) until <see cref="Dispose"/> or the process ends.</summary>
    void Lock()
    {
        if (held is not null) return;
        var lockPath = System.IO.Path.Combine(path, LockFile);
        var pidPath = System.IO.Path.Combine(path, LockHolderFile);
        string InUse()
        {
            string holder = "";
            try { holder = File.ReadAllText(pidPath).Trim(); }
            catch (IOException) { }
            return $"{path} is in use by another run ({(int.TryParse(holder, CultureInfo.InvariantCulture, out int pid) ? $"process {pid}" : "process unknown")})";
        }
        try { held = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None); }
        catch (IOException) when (File.Exists(lockPath))
        {
            throw new TrainingOptionException($"{Setting.OutputDirectory} {InUse()}; wait for it to end or choose another {Setting.OutputDirectory}");
        }
        try
        {
            // A run that failed before its first step unlinks its lock file as it lets go
            // (Dispose): one that opened the file just before and locked it just after holds a
            // file no longer there, which a third run would not see. It lets go and is refused.
            if (!File.Exists(lockPath))
                throw new TrainingOptionException($"{Setting.OutputDirectory} {path} was just let go by another run; try again");
            // The holder's process id, which a second run names in its refusal: not configuration.
            File.WriteAllText(pidPath, Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n");
        }
        catch
        {
            held.Dispose();
            held = null;
            throw;
        }
    }

    /// <summary>Releases the lock. A run that took a new or empty directory and ended before
    /// <see cref="Begin"/> (a bad initialiser, too little memory, a first step that diverged)
    /// wrote nothing of its own there: its claim (manifest and lock) goes too, and the
    /// directories it made are removed, so the failure leaves nothing behind. Best effort: a
    /// file another process holds stays, and never hides the failure being unwound.</summary>
    public void Dispose()
    {
        if (held is not null && !begun && claimedEmpty)
        {
            try
            {
                File.Delete(System.IO.Path.Combine(path, ManifestFile));
                File.Delete(System.IO.Path.Combine(path, LockHolderFile));
                // Unlinked while still held where the OS allows it (POSIX; Lock refuses a lock on
                // a file no longer there); Windows cannot delete a file open without sharing.
                var lockPath = System.IO.Path.Combine(path, LockFile);
                if (!OperatingSystem.IsWindows()) File.Delete(lockPath);
                held.Dispose();
                held = null;
                if (OperatingSystem.IsWindows()) File.Delete(lockPath);
                foreach (var d in made.Reverse())
                {
                    if (Directory.EnumerateFileSystemEntries(d).Any()) break;
                    Directory.Delete(d);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
        held?.Dispose();
        held = null;
    }

    /// <summary>The prompt length of the checkpoint here, if there is one: what a resumed run
    /// trains unless told otherwise.</summary>
    internal int? CheckpointPromptLength()
    {
        if (!File.Exists(Checkpoint)) return null;
        using var f = SafetensorsFile.Open(Checkpoint);
        if (!f.Tensors.TryGetValue("prompt", out var info) || info.Shape.Length != 2) return null;
        CheckPromptRows(info.Shape);
        return (int)info.Shape[0];
    }

    /// <summary>The checkpoint here, checked against the run that would continue it; null where
    /// there is none.</summary>
    internal TrainingCheckpoint? ReadCheckpoint(int dModel, int promptLength, WeightPrecision precision, AdafactorSettings optimizer, int seed)
    {
        if (!File.Exists(Checkpoint)) return null;
        using var f = SafetensorsFile.Open(Checkpoint);
        foreach (var name in new[] { "prompt", "optimizer_state" })
            if (!f.Tensors.ContainsKey(name)) throw new ModelFormatException(Checkpoint, $"has no tensor {name}: not a VkPrompt training checkpoint");
        // A checkpoint of another model or prompt length would be read as a prompt of the wrong
        // shape (its floats regrouped into other rows) and saved over the adapter.
        var shape = f.Tensors["prompt"].Shape;
        if (shape.Length == 2) CheckPromptRows(shape);
        if (shape.Length != 2 || shape[1] != dModel)
            throw new TrainingOptionException($"{Checkpoint} holds a prompt of shape [{string.Join(", ", shape)}] but the model's d_model is {dModel}: it was trained on another model");
        if (shape[0] != promptLength)
            throw new TrainingOptionException($"{Checkpoint} holds a {shape[0]}-token prompt; resume with {Setting.PromptLength} {shape[0]} (now {promptLength})");
        // Another weight precision computes other numbers: the promise of a bit-identical
        // continuation only holds with the one the run started with.
        if (f.Metadata.TryGetValue("precision", out var p) && p != precision.Name())
            throw new TrainingOptionException($"{Checkpoint} was trained with {Setting.WeightPrecision} {p}; resume with the same precision (now {precision.Name()})");
        // Dropout masks and the shuffle follow the seed: continuing with another would not be the
        // run the checkpoint belongs to, so it is refused rather than silently mixed.
        if (f.Metadata.TryGetValue("seed", out var s) && s != seed.ToString(CultureInfo.InvariantCulture))
            throw new TrainingOptionException($"{Checkpoint} was trained with {Setting.Seed} {s}; resume with {Setting.Seed} {s} (now {seed})");
        CheckMetadata(f.Metadata);
        long stateLength = optimizer.StateLength(promptLength, dModel);
        var stateShape = f.Tensors["optimizer_state"].Shape;
        if (stateShape.Length != 1 || stateShape[0] != stateLength)
            throw new ModelFormatException(Checkpoint, $"optimizer_state is [{string.Join(", ", stateShape)}] but Adafactor's state for a [{promptLength}, {dModel}] prompt is [{stateLength}]: the file is damaged or was written with another min_dim_to_factor");
        var prompt = ReadAll(f, "prompt");
        PromptFile.CheckFinite(Checkpoint, prompt, dModel);
        return new TrainingCheckpoint(prompt, ReadAll(f, "optimizer_state"),
                                      int.Parse(f.Metadata["step"], CultureInfo.InvariantCulture), BestPrompt.Read(f.Metadata));
    }

    /// <summary>A prompt of 0 rows, or more than an int counts, is no run's: the file is damaged.</summary>
    void CheckPromptRows(long[] shape)
    {
        if (shape[0] is < 1 or > int.MaxValue)
            throw new ModelFormatException(Checkpoint, $"prompt is [{string.Join(", ", shape)}]; a checkpoint's prompt has 1 to {int.MaxValue} rows");
    }

    /// <summary>The metadata <see cref="WriteCheckpoint"/> writes, each field there (the optional
    /// ones only checked where present, for checkpoints written before they were kept) and a
    /// number in its range, so a damaged checkpoint is named instead of failing as a parse error.</summary>
    void CheckMetadata(IReadOnlyDictionary<string, string> meta)
    {
        (string Key, bool Required, bool Integer)[] fields =
            [("step", true, true), ("best_step", true, true), ("best_metric", true, false), ("best_loss", false, false), ("evaluations_since_best", false, true)];
        foreach (var (key, required, integer) in fields)
        {
            if (!meta.TryGetValue(key, out var text))
            {
                if (required) throw new ModelFormatException(Checkpoint, $"has no metadata \"{key}\": not a VkPrompt training checkpoint, or a damaged one");
                continue;
            }
            bool ok = integer
                ? int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int n) && n >= (key == "best_step" ? -1 : 0)
                : double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out _);
            if (!ok) throw new ModelFormatException(Checkpoint, $"metadata \"{key}\" is \"{text}\"; expected {(integer ? "a whole number of at least " + (key == "best_step" ? "-1" : "0") : "a number")}");
        }
    }

    internal void WriteCheckpoint(IStepTrainer trainer, BestPrompt best, int seed, WeightPrecision precision)
    {
        var prompt = trainer.Prompt();
        var state = trainer.OptimizerState();
        SafetensorsWriter.Write(Checkpoint,
            [("prompt", [trainer.PromptLength, trainer.Dim], prompt), ("optimizer_state", [state.Length], state)],
            new Dictionary<string, string>(best.Metadata())
            {
                ["step"] = trainer.Step.ToString(CultureInfo.InvariantCulture),
                ["seed"] = seed.ToString(CultureInfo.InvariantCulture),
                ["precision"] = precision.Name(),
            });
    }

    static float[] ReadAll(SafetensorsFile f, string name)
    {
        var info = f.Tensors[name];
        var data = new float[info.Shape.Aggregate(1L, (a, b) => a * b)];
        f.ReadFloat32(name, data);
        return data;
    }
}

/// <summary>What a checkpoint holds for the run that continues it.</summary>
internal sealed record TrainingCheckpoint(float[] Prompt, float[] OptimizerState, int Step, BestPrompt Best);
