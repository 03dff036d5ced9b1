using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Silk.NET.Vulkan;
using VkPrompt.Model;
using VkPrompt.Runtime;
using VkPrompt.Training;

namespace VkPrompt.Native;

/// <summary>vkp_host_device of include/vkprompt.h, field for field.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct HostDeviceC
{
    public uint Size;
    public nint GetInstanceProcAddr;
    public nint Instance, PhysicalDevice, Device;
    public uint ApiVersion, QueueFamilyIndex, QueueIndex;
    public byte** EnabledDeviceExtensions;
    public uint EnabledDeviceExtensionCount;
    public void* EnabledFeatures;
    public nint LockQueue, UnlockQueue;
    public void* User;
    public ulong MemoryCapBytes;
}

/// <summary>The host's lock_queue/unlock_queue around each submit of the context.</summary>
internal sealed unsafe class HostQueueLock(nint lockQueue, nint unlockQueue, nint user)
{
    public void Acquire() => ((delegate* unmanaged[Cdecl]<nint, void>)lockQueue)(user);
    public void Release() => ((delegate* unmanaged[Cdecl]<nint, void>)unlockQueue)(user);
}

/// <summary>
/// The exports of include/vkprompt.h, each a thin layer over the C# API: a handle is a number in <see cref="NativeCall"/>'s table for
/// the C# object (<see cref="GpuContext"/>, <see cref="PromptModel"/>, <see cref="NativeTrainer"/>),
/// *out is written only once the object is whole, and <see cref="NativeCall.Run"/> turns whatever
/// is thrown into a return code and this thread's vkp_last_error.
/// </summary>
internal static unsafe class Exports
{
    [UnmanagedCallersOnly(EntryPoint = "vkp_last_error", CallConvs = [typeof(CallConvCdecl)])]
    public static byte* LastError() => NativeCall.LastError;

    [UnmanagedCallersOnly(EntryPoint = "vkp_free", CallConvs = [typeof(CallConvCdecl)])]
    public static void Free(void* p)
    {
        // vkp_last_error's text is the library's, freed by the thread's next failing call; freed
        // here too it would be freed twice.
        if (p != NativeCall.LastError) NativeMemory.Free(p);
    }

    [UnmanagedCallersOnly(EntryPoint = "vkp_context_adopt", CallConvs = [typeof(CallConvCdecl)])]
    public static int ContextAdopt(HostDeviceC* host, void** out_) => NativeCall.Run(() =>
    {
        NativeCall.RequireOut(out_, "out");
        *out_ = null;
        if (host == null) throw new NativeArgumentException("host is NULL");
        if (host->Size < sizeof(HostDeviceC))
            throw new NativeArgumentException($"host->size is {host->Size}, but vkp_host_device is {sizeof(HostDeviceC)} bytes: set it to sizeof(vkp_host_device)");
        if ((host->LockQueue == 0) != (host->UnlockQueue == 0))
            throw new NativeArgumentException("lock_queue and unlock_queue are set together or not at all");
        if (host->Instance == 0 || host->PhysicalDevice == 0 || host->Device == 0)
            throw new NativeArgumentException($"host->{(host->Instance == 0 ? "instance" : host->PhysicalDevice == 0 ? "physical_device" : "device")} is NULL: the context runs on the host's own Vulkan objects");
        if (host->MemoryCapBytes > long.MaxValue)
            throw new NativeArgumentException($"host->memory_cap_bytes is {host->MemoryCapBytes}, more than any device holds: give 0 for no cap");
        if (host->EnabledDeviceExtensionCount > 0 && host->EnabledDeviceExtensions == null)
            throw new NativeArgumentException($"enabled_device_extensions is NULL, but enabled_device_extension_count is {host->EnabledDeviceExtensionCount}");
        var extensions = new List<string>();
        for (uint i = 0; i < host->EnabledDeviceExtensionCount; i++)
            extensions.Add(NativeCall.Required(host->EnabledDeviceExtensions[i], $"enabled_device_extensions[{i}]"));
        var queueLock = host->LockQueue == 0 ? null : new HostQueueLock(host->LockQueue, host->UnlockQueue, (nint)host->User);
        var declared = new HostDevice
        {
            GetInstanceProcAddr = host->GetInstanceProcAddr,
            Instance = new Instance(host->Instance),
            PhysicalDevice = new PhysicalDevice(host->PhysicalDevice),
            Device = new Device(host->Device),
            ApiVersion = host->ApiVersion,
            QueueFamily = host->QueueFamilyIndex,
            QueueIndex = host->QueueIndex,
            EnabledExtensions = extensions,
            EnabledFeatures = HostFeatures.FromChain((nint)host->EnabledFeatures),
            QueueLock = queueLock is null ? null : new QueueLock(queueLock.Acquire, queueLock.Release),
        };
        var options = new GpuOptions { MemoryCapBytes = host->MemoryCapBytes == 0 ? null : (long)host->MemoryCapBytes };
        *out_ = NativeCall.Handle(GpuContext.Adopt(declared, options));
        return Code.Ok;
    });

    [UnmanagedCallersOnly(EntryPoint = "vkp_context_create", CallConvs = [typeof(CallConvCdecl)])]
    public static int ContextCreate(byte* deviceSpec, void** out_) => NativeCall.Run(() =>
    {
        NativeCall.RequireOut(out_, "out");
        *out_ = null;
        *out_ = NativeCall.Handle(GpuContext.Create(new GpuOptions { Device = NativeCall.String(deviceSpec) ?? "auto" }));
        return Code.Ok;
    });

    [UnmanagedCallersOnly(EntryPoint = "vkp_context_destroy", CallConvs = [typeof(CallConvCdecl)])]
    public static void ContextDestroy(void* ctx) => NativeCall.Free<GpuContext>(ctx, "ctx");

    [UnmanagedCallersOnly(EntryPoint = "vkp_model_open", CallConvs = [typeof(CallConvCdecl)])]
    // Hosts built against the header before vkp_model_open2 got fp32 activations from this call, and
    // keep them: a library update must not move the scores of a program nobody rebuilt.
    public static int ModelOpen(void* ctx, byte* modelDir, byte* precision, void** out_) =>
        NativeCall.Run(() => OpenModel(ctx, modelDir, precision, ActivationPrecision.Fp32, out_));

    [UnmanagedCallersOnly(EntryPoint = "vkp_model_open2", CallConvs = [typeof(CallConvCdecl)])]
    public static int ModelOpen2(void* ctx, byte* modelDir, byte* precision, byte* activations, void** out_) => NativeCall.Run(() =>
    {
        NativeCall.RequireOut(out_, "out");
        *out_ = null;
        // NULL or "auto": the device plan's choice (DevicePlan.Activations), as PromptModel.Open's default.
        ActivationPrecision? kept = null;
        if (NativeCall.String(activations) is { } a)
        {
            try { kept = ActivationPrecisions.Parse(a); }
            catch (ArgumentException) { throw new NativeArgumentException($"activations is '{a}': expected NULL or one of {string.Join(", ", ActivationPrecisions.Names)}"); }
        }
        return OpenModel(ctx, modelDir, precision, kept, out_);
    });

    /// <summary>vkp_model_open2 and vkp_model_open. The settings are read and checked against the
    /// device before the model, so a bad one fails before any file work.</summary>
    static int OpenModel(void* ctx, byte* modelDir, byte* precision, ActivationPrecision? kept, void** out_)
    {
        NativeCall.RequireOut(out_, "out");
        *out_ = null;
        var context = NativeCall.Target<GpuContext>(ctx, "ctx");
        string dir = NativeCall.Required(modelDir, "model_dir");
        WeightPrecision? stored = NativeCall.String(precision) is { } p ? WeightPrecisions.Parse(p, context.Capabilities) : null;
        kept?.Require(context.Capabilities);
        *out_ = NativeCall.Handle(PromptModel.Open(dir, context, stored, activations: kept), parent: ctx);
        return Code.Ok;
    }

    [UnmanagedCallersOnly(EntryPoint = "vkp_model_close", CallConvs = [typeof(CallConvCdecl)])]
    public static void ModelClose(void* model) => NativeCall.Free<PromptModel>(model, "model");

    [UnmanagedCallersOnly(EntryPoint = "vkp_score", CallConvs = [typeof(CallConvCdecl)])]
    public static int Score(void* model, byte* promptPath, byte* jsonl, byte** outJsonl) => NativeCall.Run(() =>
    {
        NativeCall.RequireOut(outJsonl, "out_jsonl");
        *outJsonl = null;
        var m = NativeCall.Target<PromptModel>(model, "model");
        var examples = DataFile.ReadText(NativeCall.Required(jsonl, "jsonl"), "jsonl");
        // As vkprompt score does with its defaults (--max-input-length, --max-target-length, --batch-size).
        var enc = m.Encoder();
        var prompts = NativeCall.String(promptPath) is { } path ? m.Prompts([m.LoadPrompt(path)]) : null;
        var results = m.Score(examples.Select(enc.Encode).ToList(), prompts);
        *outJsonl = NativeCall.Allocate(string.Concat(results.Select((r, i) => r.JsonLine(i) + "\n")));
        return Code.Ok;
    });

    [UnmanagedCallersOnly(EntryPoint = "vkp_trainer_create", CallConvs = [typeof(CallConvCdecl)])]
    public static int TrainerCreate(void* model, byte* optionsJson, byte* trainJsonl, void** out_) => NativeCall.Run(() =>
    {
        NativeCall.RequireOut(out_, "out");
        *out_ = null;
        var m = NativeCall.Target<PromptModel>(model, "model");
        *out_ = NativeCall.Handle(NativeTrainer.Create(m, NativeCall.String(optionsJson), NativeCall.Required(trainJsonl, "train_jsonl")), parent: model);
        return Code.Ok;
    });

    [UnmanagedCallersOnly(EntryPoint = "vkp_trainer_begin_step", CallConvs = [typeof(CallConvCdecl)])]
    public static int TrainerBeginStep(void* t) => NativeCall.Run(() =>
    {
        NativeCall.Target<NativeTrainer>(t, "t").BeginStep();
        return Code.Ok;
    });

    [UnmanagedCallersOnly(EntryPoint = "vkp_trainer_advance", CallConvs = [typeof(CallConvCdecl)])]
    public static int TrainerAdvance(void* t, double gpuBudgetMs, ulong* timeline, ulong* value) => NativeCall.Run(() =>
    {
        NativeCall.RequireOut(timeline, "timeline");
        NativeCall.RequireOut(value, "value");
        var (submitted, semaphore, v) = NativeCall.Target<NativeTrainer>(t, "t").Advance(gpuBudgetMs);
        (*timeline, *value) = (semaphore, v);
        return submitted ? Code.Ok : Code.NotReady;
    });

    [UnmanagedCallersOnly(EntryPoint = "vkp_trainer_poll", CallConvs = [typeof(CallConvCdecl)])]
    public static int TrainerPoll(void* t, double* loss) => NativeCall.Run(() =>
    {
        NativeCall.RequireOut(loss, "loss");
        if (NativeCall.Target<NativeTrainer>(t, "t").Poll() is not double l) return Code.NotReady;
        *loss = l;
        return Code.Ok;
    });

    [UnmanagedCallersOnly(EntryPoint = "vkp_trainer_step", CallConvs = [typeof(CallConvCdecl)])]
    public static int TrainerStep(void* t, double* loss) => NativeCall.Run(() =>
    {
        NativeCall.RequireOut(loss, "loss");
        *loss = NativeCall.Target<NativeTrainer>(t, "t").Step();
        return Code.Ok;
    });

    [UnmanagedCallersOnly(EntryPoint = "vkp_trainer_save_adapter", CallConvs = [typeof(CallConvCdecl)])]
    public static int TrainerSaveAdapter(void* t, byte* dir) => NativeCall.Run(() =>
    {
        var trainer = NativeCall.Target<NativeTrainer>(t, "t");
        trainer.SaveAdapter(NativeCall.Required(dir, "dir"));
        return Code.Ok;
    });

    [UnmanagedCallersOnly(EntryPoint = "vkp_trainer_destroy", CallConvs = [typeof(CallConvCdecl)])]
    public static void TrainerDestroy(void* t) => NativeCall.Free<NativeTrainer>(t, "t");
}
