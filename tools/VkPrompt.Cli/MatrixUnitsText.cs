using VkPrompt.Runtime;

namespace VkPrompt.Cli;

/// <summary>How reports name the cooperative-matrix extensions.</summary>
internal static class MatrixUnitsText
{
    public static string Extension(this MatrixUnits units) => units switch
    {
        MatrixUnits.Khr => "VK_KHR_cooperative_matrix",
        MatrixUnits.Nv => "VK_NV_cooperative_matrix",
        MatrixUnits.Nv2 => "VK_NV_cooperative_matrix2 at workgroup scope, VK_KHR_cooperative_matrix for products it cannot address",
        MatrixUnits.Emulated => "emulated",
        _ => "none",
    };

    /// <summary>The extensions through which the device runs the matrix-unit product: "KHR and NV", "KHR", "NV" or "no".</summary>
    public static string CooperativeMatrixExtensions(this DeviceCapabilities c) =>
        (c.CooperativeMatrixKhr, c.CooperativeMatrixNv) switch
        {
            (true, true) => "KHR and NV",
            (true, false) => "KHR",
            (false, true) => "NV",
            _ => "no",
        };
}
