#!/usr/bin/env bash
# Installs the system packages VkPrompt builds and tests with: the Vulkan loader, Mesa's drivers
# (lavapipe is the device every machine has), the validation layer, glslc and spirv-val, and for
# libvkprompt (tools/build-native.sh and its C test host) clang, zlib's and Vulkan's headers, and
# for the tests of --distributed mpi MPICH (mpiexec and libmpich.so.12, bound at run time).
# Idempotent: when every package is installed it touches neither apt nor the network.
# As root it installs what is missing; otherwise it prints the command to run and exits 2.
set -euo pipefail

packages=(mesa-vulkan-drivers libvulkan1 glslc vulkan-validationlayers vulkan-tools spirv-tools clang zlib1g-dev libvulkan-dev mpich)

missing=()
for p in "${packages[@]}"; do
  [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "error: missing system packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install -y ${packages[*]}" >&2
  exit 2
fi

echo "installing ${missing[*]} ..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q "${missing[@]}" >&2
