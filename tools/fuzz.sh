#!/usr/bin/env bash
# Fuzzes one parser: tools/fuzz.sh TARGET SECONDS [SEED], or tools/fuzz.sh list.
# Prints execs, unique failures and where each was saved (tests/FuzzCorpus/TARGET/, replayed by
# ./test.sh through FuzzRegressionTests). Runs at the lowest CPU priority from a copy of the
# build, so rebuilding while it runs is safe. VKPROMPT_GOLDEN overrides ../shared/golden.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
golden="${VKPROMPT_GOLDEN:-$(cd "$root/.." && pwd)/shared/golden}"
dotnet build "$root/tools/VkPrompt.Fuzz/VkPrompt.Fuzz.csproj" -c Release -nologo -v quiet >&2
work="$(mktemp -d "${TMPDIR:-/dev/shm}/vkprompt-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cp -r "$root/tools/VkPrompt.Fuzz/bin/Release/net10.0" "$work/bin"
if [[ "${1:-}" == list ]]; then exec dotnet "$work/bin/VkPrompt.Fuzz.dll" list; fi
if [[ $# -lt 2 ]]; then echo "usage: tools/fuzz.sh TARGET SECONDS [SEED] | tools/fuzz.sh list" >&2; exit 2; fi
target="$1" seconds="$2"
# A heap limit turns an allocation sized by a corrupt length into an OutOfMemoryException the
# oracle reports, instead of the machine swapping.
set +e
DOTNET_GCHeapHardLimit=0x80000000 nice -n 19 dotnet "$work/bin/VkPrompt.Fuzz.dll" run "$target" "$seconds" \
    --repo "$root" --golden "$golden" --corpus "$root/tests/FuzzCorpus" --scratch "$work/scratch" ${3:+--seed "$3"}
rc=$?
set -e
# A process that died (a stack overflow cannot be caught) leaves its last input in the scratch
# directory: keep it as a finding.
if [[ $rc -ne 0 && $rc -ne 2 && $rc -ne 3 ]]; then
    file="$(dotnet "$work/bin/VkPrompt.Fuzz.dll" list | awk -v t="$target" '$1 == t { print $2 }')"
    if [[ -f "$work/scratch/$target/$file" ]]; then
        mkdir -p "$root/tests/FuzzCorpus/$target"
        hash="$(sha256sum "$work/scratch/$target/$file" | cut -c1-12)"
        dest="$root/tests/FuzzCorpus/$target/crash-$hash.${file##*.}"
        cp "$work/scratch/$target/$file" "$dest"
        echo "FOUND the process died (exit $rc) on its last input -> $dest"
    fi
fi
exit $rc
