using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using VkPrompt.Model;
using VkPrompt.Runtime;
using VkPrompt.Training;

namespace VkPrompt.Native;

/// <summary>The return codes of include/vkprompt.h.</summary>
internal static class Code
{
    public const int Ok = 0, NotReady = 1, Argument = -1, DoesNotFit = -2, Device = -3, File = -4;
}

/// <summary>A bad argument the C side passed (a null handle or pointer, an unknown option):
/// VKP_ERROR_ARGUMENT with its message.</summary>
internal sealed class NativeArgumentException(string message) : Exception(message);

/// <summary>
/// The boundary of every export: no exception crosses into C (unwinding through a native frame
/// kills the process), each is turned into a return code and this thread's last error.
/// </summary>
internal static unsafe class NativeCall
{
    // vkp_last_error's text, one per thread as errno is, so threads with handles of their own
    // never read each other's errors; the host reads it before its next failing call.
    [ThreadStatic] static byte* lastError;
    static readonly byte* Empty = (byte*)NativeMemory.AllocZeroed(1);

    public static byte* LastError => lastError != null ? lastError : Empty;

    /// <summary>Runs <paramref name="body"/>, returning its code, or the code of what it threw
    /// with the message kept as this thread's last error.</summary>
    public static int Run(Func<int> body)
    {
        try { return body(); }
        catch (Exception e) { return Fail(e); }
    }

    public static int Fail(Exception e)
    {
        var (code, message) = Classify(e);
        SetLastError(message);
        return code;
    }

    static (int Code, string Message) Classify(Exception e) => e switch
    {
        DoesNotFitException => (Code.DoesNotFit, e.Message),
        GpuException => (Code.Device, e.Message),
        ModelFormatException or IOException or UnauthorizedAccessException => (Code.File, e.Message),
        // Settings named as the options JSON names them, not as the C# API does.
        TrainingException t => (Code.Argument, t.Describe(TrainerOptions.NameOf)),
        NativeArgumentException or ArgumentException or InvalidOperationException or JsonException or NonFiniteOutputException => (Code.Argument, e.Message),
        // Nothing the library throws on purpose: a defect, reported rather than crashing the host.
        _ => (Code.Device, $"internal error ({e.GetType().Name}): {e.Message}"),
    };

    static void SetLastError(string message)
    {
        // One line, as the header promises: messages with an inner detail may hold newlines.
        var p = Allocate(message.ReplaceLineEndings(" "));
        if (lastError != null) NativeMemory.Free(lastError);
        lastError = p;
    }

    /// <summary>A NUL-terminated UTF-8 copy of <paramref name="text"/> the host frees with vkp_free.</summary>
    public static byte* Allocate(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var p = (byte*)NativeMemory.Alloc((nuint)bytes.Length + 1);
        bytes.CopyTo(new Span<byte>(p, bytes.Length));
        p[bytes.Length] = 0;
        return p;
    }

    /// <summary>A C string argument; null where the C side passed NULL.</summary>
    public static string? String(byte* s) => s == null ? null : Marshal.PtrToStringUTF8((nint)s);

    /// <summary>A C string argument that must be given.</summary>
    public static string Required(byte* s, string name) =>
        String(s) ?? throw new NativeArgumentException($"{name} is NULL");

    public static void RequireOut(void* p, string name)
    {
        if (p == null) throw new NativeArgumentException($"{name} is NULL");
    }

    /// <summary>A handle for <paramref name="target"/>, which the C side holds as an opaque
    /// pointer until it frees it with <see cref="Free{T}"/>.</summary>
    public static void* Handle(object target) => (void*)GCHandle.ToIntPtr(GCHandle.Alloc(target));

    /// <summary>The object behind a handle of type <typeparamref name="T"/>.</summary>
    public static T Target<T>(void* handle, string name) where T : class
    {
        if (handle == null) throw new NativeArgumentException($"{name} is NULL");
        return GCHandle.FromIntPtr((nint)handle).Target as T
               ?? throw new NativeArgumentException($"{name} is not a {typeof(T).Name} handle (or was destroyed)");
    }

    /// <summary>Frees a handle and disposes its object; NULL is a no-op, as free(NULL) is.</summary>
    public static void Free<T>(void* handle) where T : class, IDisposable
    {
        if (handle == null) return;
        try
        {
            var h = GCHandle.FromIntPtr((nint)handle);
            var target = h.Target as T;
            h.Free();
            target?.Dispose();
        }
        catch (Exception e) { Fail(e); }
    }
}
