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

    // The handles the C side holds: numbers from a counter, never reused, looked up here. A
    // GCHandle's address would not do: one the library never issued (a stray pointer) makes
    // GCHandle.FromIntPtr kill the process, and a freed one's slot goes to the next object, so a
    // stale handle (a double destroy) would reach that one. Process-wide, as the handles the C
    // side holds are; guarded by its own lock.
    static readonly Dictionary<nint, Entry> handles = [];
    static nint lastHandle;

    /// <summary>A handle's object, the handle it was made from (its model, its context) and how
    /// many handles made from it are still open.</summary>
    sealed class Entry(object target, nint parent)
    {
        public readonly object Target = target;
        public readonly nint Parent = parent;
        public int Children;
    }

    /// <summary>A handle for <paramref name="target"/>, which the C side holds as an opaque
    /// pointer until it frees it with <see cref="Free{T}"/>; made from <paramref name="parent"/>
    /// (its context, its model), which cannot be freed before it.</summary>
    public static void* Handle(object target, void* parent = null)
    {
        lock (handles)
        {
            // Steps of 16: handles look like the aligned pointers hosts expect, and are never 0.
            var h = lastHandle += 16;
            handles.Add(h, new Entry(target, (nint)parent));
            if (parent != null && handles.TryGetValue((nint)parent, out var p)) p.Children++;
            return (void*)h;
        }
    }

    /// <summary>The object behind a handle of type <typeparamref name="T"/>.</summary>
    public static T Target<T>(void* handle, string name) where T : class
    {
        if (handle == null) throw new NativeArgumentException($"{name} is NULL");
        lock (handles)
            return handles.TryGetValue((nint)handle, out var e) && e.Target is T t ? t
                   : throw new NativeArgumentException($"{name} is not a {Described<T>()} handle (or was destroyed)");
    }

    /// <summary>Frees a handle and disposes its object; NULL is a no-op, as free(NULL) is. A
    /// handle the library did not issue, of another type, or with handles made from it still
    /// open is refused (this thread's last error says why) and its object left alone.</summary>
    public static void Free<T>(void* handle, string name) where T : class, IDisposable
    {
        if (handle == null) return;
        try
        {
            T target;
            lock (handles)
            {
                if (!handles.TryGetValue((nint)handle, out var e) || e.Target is not T t)
                    throw new NativeArgumentException($"{name} is not a {Described<T>()} handle (or was destroyed): nothing was freed");
                if (e.Children > 0)
                    throw new NativeArgumentException($"{name} still has {e.Children} handle(s) made from it open (models of a context, trainers of a model): free those first; nothing was freed");
                handles.Remove((nint)handle);
                if (handles.TryGetValue(e.Parent, out var parent)) parent.Children--;
                target = t;
            }
            target.Dispose();
        }
        catch (Exception e) { Fail(e); }
    }

    static string Described<T>() => typeof(T).Name switch
    {
        nameof(GpuContext) => "vkp_context",
        nameof(PromptModel) => "vkp_model",
        _ => "vkp_trainer",
    };
}
