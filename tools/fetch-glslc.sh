#!/usr/bin/env bash
# Fetches a glslc that compiles GL_KHR_cooperative_matrix and GL_EXT_bfloat16, and the spirv-val
# that validates them, into .tools/ (ignored by git), where the Runtime project's build finds them
# (.tools/bin/glslc, used for shaders/*_khr.comp, *_khr_bf16.comp and *_nv2.comp only; test.sh
# uses .tools/bin/spirv-val).
#
# Why: Debian 12's glslc (glslang 11) predates GL_KHR_cooperative_matrix, and no newer build is
# packaged for it. Debian 13's (trixie, glslang 15) has it but lacks GL_EXT_bfloat16, which the
# bf16-fragment kernels (matmul_coopmat*_khr_bf16.comp) need; Debian testing's (forky, glslang 16)
# has both. Testing rather than unstable (sid, the same versions today): packages reach it only
# after their days in sid without release-critical bugs, so the compiler CI fetches moves less.
# Either needs its release's C and C++ libraries, and installing those would replace
# the system's. So the packages are unpacked here instead, and the wrappers run the tools through
# that release's own dynamic loader and libraries; nothing is installed into the system. Needs
# apt-get (no root) and deb.debian.org. forky first; where its fetch or its glslc fails, trixie's
# (then the bf16 kernels are left out of the build, which says so).
# Does nothing where .tools/bin/glslc, or else the system's glslc, compiles both already. Exits
# non-zero where no glslc that compiles GL_KHR_cooperative_matrix can be had.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/.tools"
. "$root/tools/lib/debian-unpack.sh"
compiles() { # glslc extension
  printf '#version 450\n#extension %s : require\nvoid main() {}\n' "$2" | "$1" -fshader-stage=comp --target-env=vulkan1.2 -o /dev/null - 2>/dev/null
}
khr_ok() { compiles "$1" GL_KHR_cooperative_matrix; }
bf16_ok() { khr_ok "$1" && compiles "$1" GL_EXT_bfloat16; }
if [[ -x $dir/bin/glslc ]] && bf16_ok "$dir/bin/glslc"; then exit 0; fi
if [[ ! -e $dir/bin/glslc ]] && command -v glslc >/dev/null && bf16_ok glslc; then exit 0; fi
if [[ $(uname -m) != x86_64 ]]; then
  echo "fetch-glslc: only x86-64 is handled (this is $(uname -m))" >&2
  exit 1
fi

# Unpacks Debian $1's glslc and spirv-tools into $2 with wrappers in $2/bin that find them
# relative to themselves, so the directory works wherever it is moved to.
fetch() { # suite dir
  local d=$2
  echo "fetch-glslc: fetching Debian $1's glslc and spirv-tools" >&2
  debian_unpack "$1" "$d" glslc libshaderc1 spirv-tools libc6 libstdc++6 libgcc-s1 || return 1
  mkdir -p "$d/bin"
  local tool
  for tool in glslc spirv-val; do
    cat >"$d/bin/$tool" <<WRAP
#!/bin/sh
# Debian $1's $tool through Debian $1's loader and libraries (tools/fetch-glslc.sh).
d="\$(cd "\$(dirname "\$0")/.." && pwd)"
lib="\$d/root/usr/lib/x86_64-linux-gnu"
exec "\$lib/ld-linux-x86-64.so.2" --library-path "\$lib" "\$d/root/usr/bin/$tool" "\$@"
WRAP
    chmod +x "$d/bin/$tool"
  done
  # sed reads to the end: head would close the pipe early, and glslc, killed by SIGPIPE, would
  # fail the script under pipefail (it did, now and then, on a fresh clone).
  "$d/bin/glslc" --version | sed -n 1,3p >&2
}

# Fetched beside .tools and moved there only once it works, so a failed fetch leaves the
# current tools as they were (and what else .tools holds: tools/fetch-lavapipe-khr.sh's).
staging="$root/.tools.fetch"
trap 'rm -rf "$staging"' EXIT
install() { mkdir -p "$dir" && rm -rf "$dir/bin" "$dir/root" && mv "$staging/bin" "$staging/root" "$dir/"; }
rm -rf "$staging"
if fetch forky "$staging" && bf16_ok "$staging/bin/glslc"; then install; exit 0; fi
echo "fetch-glslc: Debian forky's glslc could not be fetched or cannot compile GL_EXT_bfloat16; the bf16-fragment kernels will not be built" >&2
# A KHR-capable glslc at hand serves as well as trixie's would.
if [[ -x $dir/bin/glslc ]] && khr_ok "$dir/bin/glslc"; then exit 0; fi
if [[ ! -e $dir/bin/glslc ]] && command -v glslc >/dev/null && khr_ok glslc; then exit 0; fi
rm -rf "$staging"
if fetch trixie "$staging" && khr_ok "$staging/bin/glslc"; then install; exit 0; fi
echo "fetch-glslc: Debian trixie's glslc could not be fetched or cannot compile GL_KHR_cooperative_matrix either" >&2
exit 1
