using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Silk.NET.Core;
using Silk.NET.Vulkan;

namespace VkPrompt.Runtime;

/// <summary>Collects what the Khronos validation layer reports for one context. Messages are
/// stored rather than thrown because the layer calls back from inside native Vulkan calls,
/// where a managed exception cannot unwind safely; tests read <see cref="Errors"/> instead.</summary>
internal sealed class ValidationLog
{
    readonly ConcurrentQueue<string> errors = new();

    public IReadOnlyCollection<string> Errors => errors;
    public int ErrorCount => errors.Count;

    internal void Add(string error) => errors.Enqueue(error);

    internal static unsafe DebugUtilsMessengerCreateInfoEXT CreateInfo(GCHandle self) => new()
    {
        SType = StructureType.DebugUtilsMessengerCreateInfoExt,
        // Errors alone: nothing reads warnings, and a run with validation on would keep every one.
        MessageSeverity = DebugUtilsMessageSeverityFlagsEXT.ErrorBitExt,
        MessageType = DebugUtilsMessageTypeFlagsEXT.GeneralBitExt | DebugUtilsMessageTypeFlagsEXT.ValidationBitExt | DebugUtilsMessageTypeFlagsEXT.PerformanceBitExt,
        PfnUserCallback = new PfnDebugUtilsMessengerCallbackEXT((delegate* unmanaged[Cdecl]<DebugUtilsMessageSeverityFlagsEXT, DebugUtilsMessageTypeFlagsEXT, DebugUtilsMessengerCallbackDataEXT*, void*, Bool32>)&Callback),
        PUserData = (void*)GCHandle.ToIntPtr(self),
    };

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static unsafe Bool32 Callback(DebugUtilsMessageSeverityFlagsEXT severity, DebugUtilsMessageTypeFlagsEXT type, DebugUtilsMessengerCallbackDataEXT* data, void* user)
    {
        if (GCHandle.FromIntPtr((nint)user).Target is ValidationLog log)
        {
            // A performance message is advice, whatever its severity: not an error of ours.
            if (type != DebugUtilsMessageTypeFlagsEXT.PerformanceBitExt)
                log.Add(Marshal.PtrToStringUTF8((nint)data->PMessage) ?? "");
        }
        return false;
    }
}
