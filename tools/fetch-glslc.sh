#!/usr/bin/env bash
# Fetches a glslc that compiles GL_KHR_cooperative_matrix, and the spirv-val that validates it,
# into .tools/ (ignored by git), where the Runtime project's build finds them
# (.tools/bin/glslc, used for shaders/*_khr.comp only; test.sh uses .tools/bin/spirv-val).
#
# Why: Debian 12's glslc (glslang 11) predates GL_KHR_cooperative_matrix, and no newer build is
# packaged for it. Debian 13's is (glslang 15), but needs Debian 13's C and C++ libraries, and
# installing those would replace the system's. So its packages are unpacked here instead, and
# the wrappers run the tools through Debian 13's own dynamic loader and libraries; nothing is
# installed into the system. Needs apt-get (no root) and deb.debian.org.
# Does nothing where the system's glslc compiles it already (Ubuntu 24.04's does) or .tools/bin/glslc
# works. Exits non-zero on failure.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/.tools"
khr_ok() { # glslc
  printf '#version 450\n#extension GL_KHR_cooperative_matrix : require\nvoid main() {}\n' | "$1" -fshader-stage=comp -o /dev/null - 2>/dev/null
}
if [[ -x $dir/bin/glslc ]] && khr_ok "$dir/bin/glslc"; then exit 0; fi
if [[ ! -e $dir/bin/glslc ]] && command -v glslc >/dev/null && khr_ok glslc; then exit 0; fi
if [[ $(uname -m) != x86_64 ]]; then
  echo "fetch-glslc: only x86-64 is handled (this is $(uname -m))" >&2
  exit 1
fi

rm -rf "$dir" && mkdir -p "$dir/apt/lists/partial" "$dir/apt/archives/partial" "$dir/debs" "$dir/root" "$dir/bin"
echo "deb http://deb.debian.org/debian trixie main" >"$dir/apt/sources.list"
o=(-oDir::Etc::SourceList="$dir/apt/sources.list" -oDir::Etc::SourceParts=/dev/null -oDir::State::Lists="$dir/apt/lists"
   -oDir::Cache="$dir/apt" -oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDebug::NoLocking=1)
echo "fetch-glslc: fetching Debian 13's glslc and spirv-tools into $dir" >&2
apt-get "${o[@]}" update -qq >&2
(cd "$dir/debs" && apt-get "${o[@]}" download -qq glslc libshaderc1 spirv-tools libc6 libstdc++6 libgcc-s1 2>&1 | grep -v "unsandboxed" >&2 || true)
for f in "$dir"/debs/*.deb; do dpkg-deb -x "$f" "$dir/root"; done
lib="$dir/root/usr/lib/x86_64-linux-gnu"
for tool in glslc spirv-val; do
  cat >"$dir/bin/$tool" <<WRAP
#!/bin/sh
# Debian 13's $tool through Debian 13's loader and libraries (tools/fetch-glslc.sh).
exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib" "$dir/root/usr/bin/$tool" "\$@"
WRAP
  chmod +x "$dir/bin/$tool"
done
rm -rf "$dir/debs" "$dir/apt"
# sed reads to the end: head would close the pipe early, and glslc, killed by SIGPIPE, would fail
# the script under pipefail (it did, now and then, on a fresh clone).
"$dir/bin/glslc" --version | sed -n 1,3p >&2
khr_ok "$dir/bin/glslc"
