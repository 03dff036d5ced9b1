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
fuzz() { dotnet "$work/bin/VkPrompt.Fuzz.dll" "$@"; }
if [[ "${1:-}" == list ]]; then fuzz list; exit; fi
if [[ $# -lt 2 ]]; then echo "usage: tools/fuzz.sh TARGET SECONDS [SEED] | tools/fuzz.sh list" >&2; exit 2; fi
target="$1" seconds="$2"
file="$(fuzz list | awk -v t="$target" '$1 == t { print $2 }')"
[[ -n "$file" ]] || { echo "unknown target $target; tools/fuzz.sh list names them" >&2; exit 2; }
end=$((SECONDS + seconds)) runs=0 rc=0
: > "$work/log"
# A hang (exit 3) or a dead process ends a run; the next one fuzzes on for the time left.
while (( SECONDS < end - 5 )); do
    runs=$((runs + 1))
    set +e
    # A heap limit turns an allocation sized by a corrupt length into an OutOfMemoryException the
    # oracle reports, instead of the machine swapping.
    DOTNET_GCHeapHardLimit=0x80000000 nice -n 19 dotnet "$work/bin/VkPrompt.Fuzz.dll" run "$target" $((end - SECONDS)) \
        --repo "$root" --golden "$golden" --corpus "$root/tests/FuzzCorpus" --scratch "$work/scratch" ${3:+--seed "$3"} | tee -a "$work/log"
    rc=${PIPESTATUS[0]}
    set -e
    [[ $rc -eq 0 || $rc -eq 2 ]] && break
    if [[ $rc -ne 3 && -f "$work/scratch/$target/$file" ]]; then
        # The process died (a stack overflow cannot be caught): its last input is the finding.
        mkdir -p "$root/tests/FuzzCorpus/$target"
        hash="$(sha256sum "$work/scratch/$target/$file" | cut -c1-12)"
        dest="$root/tests/FuzzCorpus/$target/crash-$hash.${file##*.}"
        cp "$work/scratch/$target/$file" "$dest"
        echo "FOUND the process died (exit $rc) on its last input -> $dest" | tee -a "$work/log"
    fi
done
awk -v t="$target" -v runs="$runs" '
    $1 == t":" { min += $2; execs += $4 }
    /^FOUND/ { found++ }
    END { printf "%s total: %.1f min in %d run(s), %d execs, %d unique failures (tests/FuzzCorpus/%s)\n", t, min, runs, execs, found, t }' "$work/log"
[[ $rc -eq 2 ]] && exit 2 || exit 0
