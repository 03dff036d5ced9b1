#!/usr/bin/env bash
# Fetches a lavapipe that runs the matrix units' instructions (VK_KHR_cooperative_matrix) into
# .tools/lavapipe-khr/ (ignored by git), and writes .tools/lavapipe-khr/dotnet, a dotnet that
# runs on it: `.tools/lavapipe-khr/dotnet test ...` then runs the KHR kernels' real
# coopMatLoad/MulAdd/Store on the CPU (test.sh's "matrix units on lavapipe" pass does).
#
# Why: Debian 12's lavapipe (Mesa 22) lacks the extension, so CI's tests reach the KHR kernels
# only through their emulation, which shares all but the matrix instructions. Mesa 26.1's
# lavapipe (Debian testing, forky) lists it with 8x8x8 shapes at its subgroup of 8, which the
# kernels compose their 16x16x16 of (DevicePlan.MatrixUnitsFragment). Its driver needs forky's C
# and C++ libraries and LLVM, and installing those would replace the system's, so as
# tools/fetch-glslc.sh does, the packages are unpacked here (tools/lib/debian-unpack.sh) and nothing is installed. The Vulkan
# loader, the driver and the validation layers must share those libraries with the process that
# loads them, so the dotnet host is copied and patched (patchelf) to start through forky's
# dynamic loader, and its children (the test host, the CLI the tests start) start the same way;
# tools the tests start outside dotnet (mpiexec, clang) would not, so the pass runs only the
# tests of the matrix units. (Lavapipe 26.1 crashed in the first KHR product at its subgroup of
# 16, LP_NATIVE_VECTOR_WIDTH=512, so the wrapper leaves that unset.)
# The patched host and the wrapper hold this directory's absolute path and copy the system's
# dotnet: the script fetches again where either changed since (its stamp says), else does nothing.
# Needs apt-get (no root) and deb.debian.org; x86-64 only.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
d="$root/.tools/lavapipe-khr"
. "$root/tools/lib/debian-unpack.sh"
host="$(readlink -f "$(command -v dotnet)")"
stamp="$d $host $(stat -c '%s %Y' "$host")"
if [[ -x $d/dotnet && $(cat "$d/stamp" 2>/dev/null) == "$stamp" ]]; then exit 0; fi
if [[ $(uname -m) != x86_64 ]]; then
  echo "fetch-lavapipe-khr: only x86-64 is handled (this is $(uname -m))" >&2
  exit 1
fi
rm -rf "$d.partial"
trap 'rm -rf "$d.partial"' EXIT
echo "fetch-lavapipe-khr: fetching Debian forky's lavapipe, Vulkan loader and validation layers" >&2
# Everything they depend on, forky's C library included: the unpacked tree must be whole.
debian_unpack forky "$d.partial" --closure mesa-vulkan-drivers libvulkan1 vulkan-validationlayers patchelf
lib="$d/root/usr/lib/x86_64-linux-gnu"
[[ -e $d.partial/root/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so ]] || { echo "fetch-lavapipe-khr: forky's lavapipe was not fetched" >&2; exit 1; }

# The host: its directory hard-linked where it can be (copied where not: the SDK finds the dotnet
# its children start beside itself, not through symbolic links), with a patched copy of the dotnet
# executable (never patched through a link, which would patch the system's).
cp -al "$(dirname "$host")" "$d.partial/host" 2>/dev/null || { rm -rf "$d.partial/host"; cp -a "$(dirname "$host")" "$d.partial/host"; }
rm "$d.partial/host/dotnet"
cp "$host" "$d.partial/host/dotnet"
plib="$d.partial/root/usr/lib/x86_64-linux-gnu"
"$plib/ld-linux-x86-64.so.2" --library-path "$plib" "$d.partial/root/usr/bin/patchelf" --set-interpreter "$lib/ld-linux-x86-64.so.2" "$d.partial/host/dotnet"

printf '{"file_format_version": "1.0.1", "ICD": {"library_path": "%s/libvulkan_lvp.so", "api_version": "1.4.0"}}\n' "$lib" >"$d.partial/lvp_icd.json"
cat >"$d.partial/dotnet" <<WRAP
#!/bin/sh
# dotnet on Debian forky's lavapipe (tools/fetch-lavapipe-khr.sh): its loader, driver, validation
# layers and libraries, for this process and the dotnet processes it starts.
d="$d"
lib="\$d/root/usr/lib/x86_64-linux-gnu"
exec env -u LP_NATIVE_VECTOR_WIDTH LD_LIBRARY_PATH="\$lib" VK_DRIVER_FILES="\$d/lvp_icd.json" VK_ICD_FILENAMES="\$d/lvp_icd.json" \\
  VK_LAYER_PATH="\$d/root/usr/share/vulkan/explicit_layer.d" DOTNET_ROOT="\$d/host" "\$d/host/dotnet" "\$@"
WRAP
chmod +x "$d.partial/dotnet"
echo "$stamp" >"$d.partial/stamp"
rm -rf "$d"
mv "$d.partial" "$d"
echo "fetch-lavapipe-khr: $d/dotnet runs on forky's lavapipe" >&2
