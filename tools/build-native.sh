#!/usr/bin/env bash
# Builds libvkprompt, the C ABI of VkPrompt, with Native AOT: writes OUTDIR/libvkprompt.so
# (.dylib on macOS) and OUTDIR/include/vkprompt.h. Nothing of .NET is needed where the library is
# used: link it (-lvkprompt) beside the Vulkan loader; docs/embedding.md (from C) shows how.
# Building needs the .NET 10 SDK and, for the native link, clang and zlib's headers, which
# tools/install-deps.sh installs with apt (clang, zlib1g-dev) along with the Vulkan headers
# (libvulkan-dev) that vkprompt.h includes. The ILCompiler package comes from NuGet by itself.
# Usage: tools/build-native.sh OUTDIR
set -euo pipefail
if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$1"
out="$(cd "$1" && pwd)"

case "$(uname -s)" in
  Linux) os=linux; ext=so ;;
  Darwin) os=osx; ext=dylib ;;
  *) echo "error: $(uname -s) is not supported by this script" >&2; exit 2 ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "error: unsupported architecture $(uname -m)" >&2; exit 2 ;;
esac

if [[ $os == linux ]]; then
  # Says what it installs (and installs it as root; otherwise prints the apt-get line and stops).
  "$root/tools/install-deps.sh"
fi
command -v dotnet >/dev/null || { echo "error: 'dotnet' was not found; install the .NET 10 SDK" >&2; exit 2; }

# A publish of its own under OUTDIR/obj, apart from the solution's Release build.
publish="$out/obj/publish"
# --artifacts-path keeps every project's bin and obj there too: a publish beside a running
# test never rewrites the assemblies it has loaded.
dotnet publish "$root/src/Native/VkPrompt.Native.csproj" -c Release -r "$os-$arch" -nologo -v minimal \
  --artifacts-path "$out/obj/artifacts" -o "$publish" >&2
cp "$publish/libvkprompt.$ext" "$out/libvkprompt.$ext"
mkdir -p "$out/include"
cp "$root/src/Native/include/vkprompt.h" "$out/include/vkprompt.h"
echo "$out/libvkprompt.$ext ($(du -k "$out/libvkprompt.$ext" | cut -f1) KiB), $out/include/vkprompt.h"
