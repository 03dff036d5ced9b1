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
    readonly ConcurrentQueue<string> warnings = new();

    public IReadOnlyCollection<string> Errors => errors;
    public IReadOnlyCollection<string> Warnings => warnings;
    public int ErrorCount => errors.Count;
    public event Action<string>? Message;

    internal void Add(bool isError, string text)
    {
        (isError ? errors : warnings).Enqueue(text);
        Message?.Invoke(text);
    }

    internal static unsafe DebugUtilsMessengerCreateInfoEXT CreateInfo(GCHandle self) => new()
    {
        SType = StructureType.DebugUtilsMessengerCreateInfoExt,
        MessageSeverity = DebugUtilsMessageSeverityFlagsEXT.ErrorBitExt | DebugUtilsMessageSeverityFlagsEXT.WarningBitExt,
        MessageType = DebugUtilsMessageTypeFlagsEXT.GeneralBitExt | DebugUtilsMessageTypeFlagsEXT.ValidationBitExt | DebugUtilsMessageTypeFlagsEXT.PerformanceBitExt,
        PfnUserCallback = new PfnDebugUtilsMessengerCallbackEXT((delegate* unmanaged[Cdecl]<DebugUtilsMessageSeverityFlagsEXT, DebugUtilsMessageTypeFlagsEXT, DebugUtilsMessengerCallbackDataEXT*, void*, Bool32>)&Callback),
        PUserData = (void*)GCHandle.ToIntPtr(self),
    };

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static unsafe Bool32 Callback(DebugUtilsMessageSeverityFlagsEXT severity, DebugUtilsMessageTypeFlagsEXT type, DebugUtilsMessengerCallbackDataEXT* data, void* user)
    {
        if (GCHandle.FromIntPtr((nint)user).Target is ValidationLog log)
        {
            string msg = Marshal.PtrToStringUTF8((nint)data->PMessage) ?? "";
            bool perfOnly = type == DebugUtilsMessageTypeFlagsEXT.PerformanceBitExt;
            log.Add(severity.HasFlag(DebugUtilsMessageSeverityFlagsEXT.ErrorBitExt) && !perfOnly, msg);
        }
        return false;
    }
}
