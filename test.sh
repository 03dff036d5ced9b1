#!/usr/bin/env bash
# The full check, as CI runs it: system packages, a Release build of the whole solution,
# spirv-val on every compiled shader, then every test with the Vulkan validation layer on.
# Tests run on lavapipe unless VKPROMPT_DEVICE names another device.
# Exits non-zero on any failure; the last line is "N passed, M failed".
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
export DOTNET_NOLOGO=1
started=$SECONDS
# Which tests run again on the matrix units of lavapipe 26.1 (after the main pass, below).
case ${VKPROMPT_TEST_LAVAPIPE_KHR:-quick} in
  quick | 0 | 1) ;;
  *) echo "error: VKPROMPT_TEST_LAVAPIPE_KHR=$VKPROMPT_TEST_LAVAPIPE_KHR: expected 0 (none), 1 (all), or unset (a quick part)" >&2
     exit 2 ;;
esac

if ! command -v dotnet >/dev/null; then
  echo "error: 'dotnet' was not found; install the .NET 10 SDK: https://learn.microsoft.com/dotnet/core/install/linux" >&2
  exit 2
fi
tools/install-deps.sh || exit $?
# The KHR cooperative-matrix kernels need a newer glslc than Debian 12's; without one the build
# leaves them out, which the summary says.
if tools/fetch-glslc.sh; then khr="built"; else khr="NOT built: tools/fetch-glslc.sh failed"; fi

summary=()
finish() { # $1: exit code
  echo
  echo "== summary ($((SECONDS - started)) s)"
  printf '  %s\n' "${summary[@]}"
  [[ -n ${counts:-} ]] && echo "$counts"
  exit "$1"
}

echo "== build"
t=$SECONDS
if ! dotnet build VkPrompt.sln -c Release -nologo -v minimal; then
  summary+=("build: FAILED ($((SECONDS - t)) s)")
  finish 1
fi
summary+=("build: ok ($((SECONDS - t)) s)")

echo "== spirv-val"
shopt -s nullglob
# The Runtime project compiles shaders/*.comp here (SpvDir in VkPrompt.Runtime.csproj).
modules=(src/Runtime/obj/spv/*.spv)
# Debian 12's spirv-val predates SPV_KHR_cooperative_matrix; tools/fetch-glslc.sh brings a newer one.
validator=spirv-val
[[ -x .tools/bin/spirv-val ]] && validator=.tools/bin/spirv-val
invalid=0
for m in "${modules[@]}"; do
  # The workgroup-scope kernels (*_nv2) are SPIR-V 1.6, which Vulkan 1.3 takes; the rest 1.2,
  # the bf16-fragment ones (*_khr_bf16, SPV_KHR_bfloat16) among them.
  env=vulkan1.2
  [[ $m == *_nv2.spv ]] && env=vulkan1.3
  "$validator" --target-env "$env" "$m" || { echo "invalid SPIR-V: $m"; invalid=$((invalid + 1)); }
done
if [[ ${#modules[@]} -eq 0 ]]; then
  summary+=("spirv-val: FAILED, no SPIR-V modules in src/Runtime/obj/spv")
  finish 1
fi
# The bf16-fragment kernels need GL_EXT_bfloat16 besides (glslang 16), which the build says it lacked.
bf16="built"
[[ -e src/Runtime/obj/spv/matmul_coopmat_khr_bf16.spv ]] || bf16="NOT built: the glslc lacks GL_EXT_bfloat16"
summary+=("spirv-val ($validator): $((${#modules[@]} - invalid)) of ${#modules[@]} modules valid; KHR cooperative-matrix kernels $khr; bf16-fragment kernels $bf16")

echo "== tests"
# The suite's bounds for the matrix units are fp16 fragments'; on a GPU that multiplies bf16 ones
# (their default there) the tests of bf16 fragments ask for them (GpuFixture.MatrixUnitsBf16), and
# everything else keeps fp16 unless this variable is set otherwise.
export VKPROMPT_MATRIX_UNITS_OPERANDS=${VKPROMPT_MATRIX_UNITS_OPERANDS:-fp16}
device="VKPROMPT_DEVICE=${VKPROMPT_DEVICE:-}"
if [[ -z ${VKPROMPT_DEVICE:-} ]]; then
  lavapipe=(/usr/share/vulkan/icd.d/lvp_icd.*.json)
  if [[ ${#lavapipe[@]} -gt 0 ]]; then
    export VK_DRIVER_FILES=${lavapipe[0]} VK_ICD_FILENAMES=${lavapipe[0]}
    device="lavapipe (${lavapipe[0]})"
  else
    device="auto (no lavapipe driver found)"
  fi
fi
results="$root/TestResults/test.sh"
rm -rf "$results"
t=$SECONDS
VKPROMPT_VALIDATION=1 dotnet test VkPrompt.sln -c Release --no-build --nologo --logger trx --results-directory "$results"
test_rc=$?

# Sum one counter over the TRX files in $1 (one per test project); the leading space keeps
# " passed=" from matching "passedButRunAborted=".
count() { # dir counter
  cat "$1"/*.trx </dev/null 2>/dev/null | grep -o '<Counters [^>]*>' |
    awk -v key=" $2=" '{ i = index($0, key); if (i) n += substr($0, i + length(key) + 1) + 0 } END { print n + 0 }'
}
# Adds a pass's counts to the summary and the totals; $1 its results, $2 dotnet test's exit code, $3 what ran.
tally() {
  local p f s
  p=$(count "$1" passed)
  f=$(( $(count "$1" failed) + $(count "$1" error) + $(count "$1" timeout) + $(count "$1" aborted) ))
  # Skipped tests (devices without a feature) are in "total" but not "executed"; "notExecuted" stays 0.
  s=$(( $(count "$1" total) - $(count "$1" executed) ))
  summary+=("$3: $p passed, $f failed, $s skipped ($((SECONDS - t)) s)")
  if [[ $2 -ne 0 && $f -eq 0 ]]; then
    # The test host died or no result file was written: count the run itself as a failure.
    summary+=("dotnet test exited $2 without reporting a failed test (crashed test host?)")
    f=1
  fi
  if [[ $((p + f)) -eq 0 ]]; then
    summary+=("no test ran")
    f=1
  fi
  passed=$((passed + p))
  failed=$((failed + f))
}
passed=0
failed=0
tally "$results" "$test_rc" "tests on $device, validation on"

# The matrix units' own instructions: Debian 12's lavapipe has none, so above the KHR kernels ran
# only as their emulation; Mesa 26.1's lavapipe multiplies through VK_KHR_cooperative_matrix
# (8x8x8 fragments, which the kernels compose their 16x16x16 of), so tests of the matrix-unit
# products, fused attention and golden checks on 16-bit and int8 weights run again there, on the
# real instructions (tools/fetch-lavapipe-khr.sh says why it is fetched and run as it is).
# VKPROMPT_TEST_LAVAPIPE_KHR: unset, the quick part (tests/matrix-units-on-lavapipe-quick.filter,
# about a minute with Mesa's shader cache cold, as on a fresh CI machine); 1, all of them
# (tests/matrix-units-on-lavapipe.filter: with the cache cold, each distinct pipeline of the
# composed instructions compiles for up to minutes, far past the suite's budget; about 2 minutes
# once warm); 0, neither.
khr_pass=${VKPROMPT_TEST_LAVAPIPE_KHR:-quick}
case $khr_pass in
  quick) khr_filter=tests/matrix-units-on-lavapipe-quick.filter ;;
  1) khr_filter=tests/matrix-units-on-lavapipe.filter ;;
  *) khr_filter= ;;
esac
khr_name="matrix units on lavapipe 26.1 ($([[ $khr_pass == quick ]] && echo "quick part; VKPROMPT_TEST_LAVAPIPE_KHR=1 runs all" || echo all))"
if [[ -n ${VKPROMPT_DEVICE:-} ]]; then
  summary+=("matrix units on lavapipe 26.1: not run (the tests ran on VKPROMPT_DEVICE=$VKPROMPT_DEVICE)")
elif [[ -z $khr_filter ]]; then
  summary+=("matrix units on lavapipe 26.1: not run (VKPROMPT_TEST_LAVAPIPE_KHR=$khr_pass)")
else
  echo "== tests on the matrix units of Mesa 26.1's lavapipe"
  if [[ $khr != built ]]; then
    summary+=("$khr_name: NOT run (the KHR kernels were not built)")
  elif ! tools/fetch-lavapipe-khr.sh; then
    summary+=("$khr_name: NOT run (tools/fetch-lavapipe-khr.sh failed)")
  else
    khr_results="$root/TestResults/test.sh-khr"
    rm -rf "$khr_results"
    t=$SECONDS
    # A driver from a release still in testing: should it hang, the pass fails after 10 minutes
    # on one test rather than holding CI to its limit. (Filter terms may hold spaces, as a
    # theory's display name does: only the line breaks go.)
    VKPROMPT_VALIDATION=1 .tools/lavapipe-khr/dotnet test tests/VkPrompt.Tests.csproj -c Release --no-build --nologo --blame-hang-timeout 10m \
      --filter "$(grep -v '^#' "$khr_filter" | tr -d '\n')" --logger trx --results-directory "$khr_results"
    tally "$khr_results" $? "$khr_name (VK_KHR_cooperative_matrix, 8x8x8 fragments), validation on"
  fi
fi
counts="$passed passed, $failed failed"

[[ $invalid -eq 0 && $failed -eq 0 && $test_rc -eq 0 ]] && finish 0
finish 1
