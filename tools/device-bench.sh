#!/usr/bin/env bash
# The GPU benchmark of docs/benchmarks.md in two halves.
#
#   tools/device-bench.sh            here (x86-64 or not): fetches a glslc that compiles the
#                                    VK_KHR_cooperative_matrix kernels (tools/fetch-glslc.sh), publishes
#                                    vkprompt self-contained for linux-x64 into .publish/, checks
#                                    the trimmed binary on lavapipe,
#                                    downloads the Vulkan loader packages into .gl/, and prints the
#                                    command and carry list for the device tool's `run`.
#   tools/device-bench.sh device     on the device machine (what the printed command runs): first
#                                    tools/check-golden.py on the device (.golden, copied from
#                                    ../shared/golden), then `vkprompt bench peak` (the matrix
#                                    units' own rate) and `vkprompt bench matmul` on the default
#                                    kernels and the matrix units through VK_KHR_cooperative_matrix
#                                    and VK_NV_cooperative_matrix2's workgroup scope (every product
#                                    checked against fp64, each against the golden references),
#                                    then vkprompt bench and the PyTorch + PEFT peer for
#                                    t5-base and t5-large at batch 32, input 512, target 8, prompt
#                                    100, in fp32 and bf16 (vkprompt: bf16 weights, fp32 activations;
#                                    the peer: all bf16), then t5-base fp32 with the tilings tuned
#                                    (VKPROMPT_MATMUL_TUNE=1), the matrix units and tiling sweeps
#                                    while the budget lasts; BENCH_PLAN=matrix-units runs only the
#                                    golden check, a sweep of the matrix units' tilings (with the
#                                    driver's register counts of their pipelines; MATRIX_UNITS_SWEEP
#                                    names them) and bf16 steps at the default, with every product
#                                    on the matrix units, tuned, at the sweep's best tiling and with
#                                    fp32 activation operands; BENCH_PLAN=nv2 the golden check and
#                                    products of VKPROMPT_MATRIX_UNITS=nv2, and bf16 steps with it beside
#                                    the default and the peer; BENCH_PLAN=attention the attention
#                                    fused on the matrix units (VKPROMPT_MATRIX_UNITS=all,
#                                    VKPROMPT_ATTENTION=fused) beside the default and the peer, with a
#                                    sweep of its tilings (FUSED_SWEEP); BENCH_PLAN=peer the golden check and
#                                    the peer at its best beside VkPrompt's defaults: t5-base and
#                                    t5-large bf16 eager and torch.compile'd, t5-base fp32 strict and
#                                    TF32 (the full plan runs the same peer rows); BENCH_PLAN=round3 issue 22's
#                                    acceptance in one call: the golden check, the peer's
#                                    construction check, bench peak, t5-base and t5-large bf16
#                                    with 16-bit and fp32 activations beside the peer eager
#                                    (profiled) and compiled, their products (bench matmul), t5-xl,
#                                    and fp32 beside the peer strict and TF32. Writes $OUT/table.md,
#                                    $OUT/breakdown.md (GPU time by op category and phase, VkPrompt
#                                    beside the profiled peer), $OUT/results.json (every run's exit
#                                    and time with every report, and the summary printed at the end,
#                                    tools/bench-summary.py), $OUT/sweep.md, $OUT/log.txt and
#                                    $OUT/results.tar (every report and log). No run starts after
#                                    BENCH_BUDGET_S seconds (default 480), so the command ends inside
#                                    the tool's 10 minutes; the runs are ordered so that those left
#                                    out, if any, matter least.
#
# Run it from the checkout the device tool sends (the one the session started in): .publish, .gl
# and .golden must be in that checkout's root.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# The shape issue 5 compares at.
shape_args=(--batch-size 32 --input-length 512 --target-length 8 --prompt-length 100)

prepare() {
  set -e
  echo "== a glslc that compiles GL_KHR_cooperative_matrix (tools/fetch-glslc.sh), so the publish has the KHR kernels"
  tools/fetch-glslc.sh
  echo "== publish vkprompt (self-contained, trimmed, single file, linux-x64) into .publish/"
  rm -rf .publish
  dotnet publish tools/VkPrompt.Cli -c Release -r linux-x64 --self-contained -p:PublishTrimmed=true -p:PublishSingleFile=true \
    -o .publish/ -nologo -v quiet
  if [[ $(uname -m) == x86_64 ]]; then
    echo "== check the published binary on lavapipe"
    local lavapipe tmp
    lavapipe=$(compgen -G '/usr/share/vulkan/icd.d/lvp_icd.*.json' | head -n1)
    tmp=$(mktemp -d)
    # A trimmed build must still find its embedded SPIR-V (bench dispatches every kernel of a
    # step, with bf16 weights where lavapipe has 16-bit storage: the half twins too), its
    # source-generated JSON and the demo files beside it.
    VK_DRIVER_FILES=$lavapipe .publish/vkprompt devices --json >"$tmp/devices.json"
    VK_DRIVER_FILES=$lavapipe .publish/vkprompt bench --shape t5-small --batch-size 1 --input-length 8 --target-length 8 \
      --prompt-length 4 --precision auto --warmup 0 --steps 1 --json "$tmp/smoke.json" >/dev/null
    python3 tools/bench-table.py "$tmp/smoke.json" >/dev/null
    # 16-bit activations, which BENCH_PLAN=round3 times (--activations bf16), through the trimmed binary.
    VK_DRIVER_FILES=$lavapipe .publish/vkprompt bench --shape t5-small --batch-size 1 --input-length 8 --target-length 8 \
      --prompt-length 4 --precision bf16 --activations bf16 --warmup 0 --steps 1 --json "$tmp/smoke-bf16.json" >/dev/null
    python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); assert r["activationPrecision"] == "bf16", r["activationPrecision"]' "$tmp/smoke-bf16.json"
    # bench matmul: every product of that step alone, checked against its fp64 reference (exit 1
    # if one is wrong), its report through the source-generated JSON.
    VK_DRIVER_FILES=$lavapipe .publish/vkprompt bench matmul --shape t5-small --batch-size 1 --input-length 8 --target-length 8 \
      --prompt-length 4 --precision auto --reps 1 --json "$tmp/matmul.json" >/dev/null
    local check='import json, sys; r = json.load(open(sys.argv[1])); bad = [p["name"] for p in r["products"] if not p["ok"]]
assert r["schema"] == "vkprompt-bench-matmul/1" and r["step"]["measuredProductsPerStep"] > 0 and not bad, bad
assert sys.argv[2] in {p["kernel"] for p in r["products"]}, sys.argv[2]'
    python3 -c "$check" "$tmp/matmul.json" matmul
    # The matrix-units kernel's own code, emulated: what the device run's matrix units run.
    VKPROMPT_MATRIX_UNITS=emulate VK_DRIVER_FILES=$lavapipe .publish/vkprompt bench matmul --shape t5-small --batch-size 1 --input-length 8 \
      --target-length 8 --prompt-length 4 --precision bf16 --reps 1 --json "$tmp/matmul-matrix-units.json" >/dev/null
    python3 -c "$check" "$tmp/matmul-matrix-units.json" matmul_coopmat_emulated
    # The bf16 fragments' emulation, and the KHR bf16 build the device's plan chooses where its
    # driver offers the bf16 shape: a publish without it would time fp16 fragments unsaid.
    VKPROMPT_MATRIX_UNITS=emulate VKPROMPT_MATRIX_UNITS_OPERANDS=bf16 VK_DRIVER_FILES=$lavapipe .publish/vkprompt bench matmul --shape t5-small \
      --batch-size 1 --input-length 8 --target-length 8 --prompt-length 4 --precision bf16 --reps 1 --json "$tmp/matmul-bf16-fragments.json" >/dev/null
    python3 -c "$check" "$tmp/matmul-bf16-fragments.json" matmul_coopmat_emulated_bf16
    grep -q matmul_coopmat_khr_bf16 .publish/vkprompt || { echo "error: the publish lacks matmul_coopmat_khr_bf16 (tools/fetch-glslc.sh found no glslc with GL_EXT_bfloat16)" >&2; exit 1; }
    # bench peak, emulated: the matrix units' rate probe the device run starts with.
    VK_DRIVER_FILES=$lavapipe .publish/vkprompt bench peak --matrix-units emulate --iterations 4 --workgroups 2 --reps 1 --json "$tmp/peak.json" >/dev/null
    # The fused attention on the (emulated) matrix units, which VKPROMPT_MATRIX_UNITS=all with fused
    # attention selects on the device.
    VKPROMPT_MATRIX_UNITS=emulate,all VKPROMPT_ATTENTION=fused VK_DRIVER_FILES=$lavapipe .publish/vkprompt bench --shape t5-small --batch-size 1 \
      --input-length 8 --target-length 8 --prompt-length 4 --precision bf16 --warmup 0 --steps 1 --json "$tmp/fused.json" >/dev/null
    python3 -c 'import json, sys; ops = {o["name"] for p in json.load(open(sys.argv[1]))["breakdown"]["phases"] for o in p["ops"]}
assert {"fused_attention_coopmat_emulated", "fused_attention_coopmat_backward_emulated"} <= ops, ops' "$tmp/fused.json"
    # The KHR kernels must be in the binary: the device run asks for them by name.
    for k in matmul_coopmat_khr matmul_coopmat_nv2 fused_attention_coopmat_khr fused_attention_coopmat_backward_khr; do
      grep -q "$k.spv" .publish/vkprompt || { echo "error: the published binary lacks $k.spv" >&2; exit 1; }
    done
    for f in spiece.model train.jsonl validation.jsonl; do [[ -s .publish/demo/$f ]]; done
    rm -rf "$tmp"
    echo "ok: devices, a one-step bench (fp32 and 16-bit activations), bench matmul (portable and emulated matrix units), bench peak (emulated), a step with the fused attention on the emulated matrix units, the KHR and workgroup-scope kernels and the demo files"
  else
    echo "== $(uname -m) here: the linux-x64 binary cannot be checked on this machine"
  fi

  echo "== golden references for tools/check-golden.py into .golden/"
  local golden="$root/../shared/golden"
  if [[ -d $golden ]]; then
    rm -rf .golden && cp -r "$golden" .golden && chmod -R u+w .golden
    # --git-path: in a linked worktree .git is a file, and the exclude file is the main checkout's.
    local exclude
    exclude=$(git rev-parse --git-path info/exclude)
    grep -qx '/.golden/' "$exclude" 2>/dev/null || echo '/.golden/' >>"$exclude"
  else
    echo "warning: no $golden: the device run will skip its golden check"
  fi

  echo "== Vulkan loader packages for the device machine into .gl/"
  if ! compgen -G '.gl/*.deb' >/dev/null; then
    mkdir -p .gl /tmp/amd64/partial
    local o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
    apt-get "${o[@]}" update -qq
    (cd .gl && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  fi
  ls .gl

  local tree carried
  tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -n1 | cut -f1)
  carried=$(du -cb .publish .gl .golden 2>/dev/null | tail -n1 | cut -f1)
  echo "== what travels: $(( (tree + carried) >> 20 )) MiB of the device tool's 64 MiB (working tree $(( tree >> 20 )), .publish, .gl and .golden $(( carried >> 20 )))"
  echo
  echo "Device tool run for issue 22 (one call; about 11 of the session's 15 minutes with the machine's start;"
  echo "kind nvidia-h200, whose 139 GiB give t5-xl room; the 2026-11-27 bf16 numbers are from one too):"
  echo "  command:   for f in .gl/*.deb; do dpkg -x \$f /; done; ldconfig; BENCH_PLAN=round3 BENCH_BUDGET_S=540 bash tools/device-bench.sh device"
  echo '  carry:     [".publish", ".gl", ".golden"]'
  echo "  timeout_s: 590"
  echo "(Other plans: the same command with BENCH_PLAN=full, attention, nv2, matrix-units or peer and timeout_s 560.)"
  echo "Then: unpack <files_at>/results.tar into docs/results/CARD-DATE/, put <files_at>/table.md and breakdown.md in"
  echo "docs/benchmarks.md, and the summary printed at the end of the output (also in results.json) in its text."
}

device() {
  # A plan it does not know, or a switch under its old name, would otherwise silently run the full plan.
  case ${BENCH_PLAN:-full} in
    full | round3 | attention | nv2 | matrix-units | peer) ;;
    coopmat) echo "error: BENCH_PLAN=coopmat was renamed BENCH_PLAN=matrix-units" >&2; return 2 ;;
    *) echo "error: BENCH_PLAN=$BENCH_PLAN: expected full, round3, attention, nv2, matrix-units or peer" >&2; return 2 ;;
  esac
  if [[ -n ${COOPMAT_SWEEP:-} ]]; then echo "error: COOPMAT_SWEEP was renamed MATRIX_UNITS_SWEEP" >&2; return 2; fi
  # BENCH_RESULTS and BENCH_MODELS move the scratch folders (the tests do).
  local budget=${BENCH_BUDGET_S:-480} started=$SECONDS res=${BENCH_RESULTS:-/tmp/bench-results} models=${BENCH_MODELS:-/tmp/bench-models}
  rm -rf "$res" && mkdir -p "$res" "$models"
  export PYTHONUNBUFFERED=1
  if [[ -z ${VK_DRIVER_FILES:-} ]]; then
    for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
      if [[ -f $icd ]]; then export VK_DRIVER_FILES=$icd; break; fi
    done
  fi
  echo "== $(date -u +%FT%TZ) VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"
  ldconfig -p | grep -F 'libvulkan.so.1 ' || echo "warning: no libvulkan.so.1: was .gl unpacked (dpkg -x) and ldconfig run first?"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$res/nvidia-smi.csv"
  python3 -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)'
  .publish/vkprompt devices --json >"$res/devices.json" && grep -m1 '"name"' "$res/devices.json"

  # Each run gets its own limit, cut to what is left of the budget; a run that fails (a peer out of
  # memory writes its JSON with the error) or times out is logged and the next one starts.
  # runs.tsv gets a line per run (name, exit status or "skipped", seconds, limit), which
  # tools/bench-summary.py reads; bench returns the run's exit status.
  bench() { # name limit_s command...
    local name=$1 limit=$2 left=$(( budget - (SECONDS - started) ))
    shift 2
    if (( left < 30 )); then
      echo "== $name: skipped, $left s of the budget left"
      printf '%s\tskipped\t0\t0\n' "$name" >>"$res/runs.tsv"
      return 1
    fi
    (( limit > left )) && limit=$left
    echo "== $name (limit ${limit} s, $(( SECONDS - started )) s in)"
    local t=$SECONDS rc
    timeout "$limit" "$@"
    rc=$?
    echo "== $name: exit $rc, $(( SECONDS - t )) s"
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( SECONDS - t ))" "$limit" >>"$res/runs.tsv"
    return $rc
  }
  # The random-weight checkpoint vkprompt's runs of a shape share: made here, or waited for where
  # make_models_behind started it (a random t5-xl takes minutes to write).
  declare -A making=()
  model() {
    if [[ -n ${making[$1]:-} ]]; then
      # Waited for within the budget only: past it, the write is stopped and its part removed,
      # so that the summary and the reports still come back.
      local pid=${making[$1]}
      while kill -0 "$pid" 2>/dev/null && (( SECONDS - started < budget )); do sleep 1; done
      kill "$pid" 2>/dev/null
      if ! wait "$pid"; then
        echo "== make $1 failed or was stopped (its log: $res/make-$1.txt)"
        rm -rf "${models:?}/$1"
      fi
      unset "making[$1]"
    fi
    [[ -f $models/$1/model.safetensors ]] || bench "make $1" 90 .publish/vkprompt make-model --shape "$1" --output "$models/$1"
  }
  make_models_behind() { # shape...: make-model for each in the background, all at once
    local s
    for s in "$@"; do
      .publish/vkprompt make-model --shape "$s" --output "$models/$s" >"$res/make-$s.txt" 2>&1 &
      making[$s]=$!
    done
  }
  vk() { # name shape extra...; $VKENV: VAR=value words for vkprompt's environment
    local name=$1 shape=$2
    shift 2
    model "$shape"
    # shellcheck disable=SC2086 # VKENV is split into words on purpose
    bench "$name" 180 env ${VKENV:-} .publish/vkprompt bench --shape "$models/$shape" "${shape_args[@]}" --json "$res/$name.json" "$@"
  }
  peer_ok=1 # 0 once the peer's construction check failed: its timings would be void
  peer() { # name shape precision extra...
    local name=$1 shape=$2 precision=$3 limit=180
    shift 3
    if (( ! peer_ok )); then
      echo "== $name: skipped, the peer's construction check (check-peer) did not pass"
      printf '%s\tskipped\t0\t0\n' "$name" >>"$res/runs.tsv"
      return 1
    fi
    # torch.compile's first step compiles the forward and backward of every layer: 300 s for that.
    [[ " $* " == *" --compile "* ]] && limit=300
    bench "$name" "$limit" python3 tools/peer/peer_bench.py --shape "$shape" "${shape_args[@]}" --precision "$precision" --json "$res/$name.json" "$@"
  }
  # The peer at its best (issue 22): a bf16 peer eager and torch.compile'd (bench-table.py compares
  # the faster), and for fp32 strict and TF32. Each peer run checks, before timing, that its prompt
  # is on the encoder only (P rows, decoder input of target length). The eager runs take 30-40 s
  # (mostly torch's import and the model's construction); the compiled ones an estimated 1.5 to 3
  # minutes more each, not yet measured: the compile is in their log and their JSON's compileSeconds.
  peers_bf16() { # shape steps
    peer "peer-$1-bf16" "$1" bf16 --warmup 1 --steps "$2"
    peer "peer-$1-bf16-compile" "$1" bf16 --compile --warmup 1 --steps "$2"
  }
  peers_fp32() { # shape steps
    peer "peer-$1-fp32" "$1" fp32 --warmup 1 --steps "$2"
    peer "peer-$1-fp32-tf32" "$1" fp32 --tf32 --warmup 1 --steps "$2"
  }

  # Before anything is timed: the kernels this device selects against the golden references,
  # and each distinct product of a t5-base step alone, checked against fp64 and timed, on the
  # portable kernels and on the matrix units through each extension (VKPROMPT_MATRIX_UNITS=khr, nv).
  mm() { # name precision [VAR=value...]; MM_SHAPE: the model whose products (default t5-base)
    local name=$1 precision=$2
    shift 2
    bench "$name" 40 env "$@" .publish/vkprompt bench matmul --shape "${MM_SHAPE:-t5-base}" "${shape_args[@]}" --precision "$precision" \
      --reps 5 --json "$res/$name.json"
  }
  sweep_summary() {
    python3 - "$res" <<'PY' | tee "$OUT/sweep.md"
import json, pathlib, sys
print("| run | activations | products ms per step | TFLOP/s | all checked ok |\n|---|---|---|---|---|")
for f in sorted(pathlib.Path(sys.argv[1]).glob("mm-*.json")):
    r = json.loads(f.read_text())
    ok = all(p.get("ok", False) or p.get("skipped") for p in r["products"])
    # Reports from before bench matmul took --activations timed fp32 operands.
    print(f"| {f.stem} | {r.get('activations', 'fp32')} | {r['step']['msPerStep']:.1f} | {r['step']['tflops']:.1f} | {'yes' if ok else 'NO'} |")
# What the driver compiled the products' kernels into, where VKPROMPT_PIPELINE_STATS=1 asked.
for f in sorted(pathlib.Path(sys.argv[1]).glob("mm-*.json")):
    for p in json.loads(f.read_text()).get("pipelines") or []:
        stats = ", ".join(f"{s['name']} {s['value']:g}" for s in p["statistics"])
        print(f"\n{f.stem}: {p['shader']} [{','.join(map(str, p['specialization']))}]: {stats}")
PY
  }
  # The matrix-unit tiling whose products summed least in the mm-bf16-cm-* runs so far, all
  # checked ok (empty if none): the steps below run it beside the default.
  best_matrix_units_tiling() {
    python3 - "$res" <<'PY'
import json, pathlib, sys
runs = []
for f in pathlib.Path(sys.argv[1]).glob("mm-bf16-cm-*.json"):
    r = json.loads(f.read_text())
    if r["switches"].get("coopMatTiling") and all(p.get("ok") or p.get("skipped") for p in r["products"]):
        runs.append((r["step"]["msPerStep"], r["switches"]["coopMatTiling"]))
print(min(runs)[1] if runs else "")
PY
  }
  golden() { # name [VAR=value...] [--precision LIST]: the golden references through the kernels the environment selects
    local name=$1 vars=() args=()
    shift
    while (( $# )); do if [[ $1 == *=* ]]; then vars+=("$1"); else args+=("$1"); fi; shift; done
    if [[ -d .golden ]]; then
      # The default checks are 88 since int8 and the activation storages joined them (66 vkprompt
      # processes of a second or so each, mostly start-up: 36 checks took 26-38 s one at a time on
      # the GPUs of 2026-11-26/27, and 88 took 87 s on lavapipe one at a time, 61 s two at a
      # time). check-golden.py runs 8 at once here; a process still going after 60 s has hung and
      # fails its case, and the run's limit of 120 s stops a check that hangs everywhere.
      bench "$name" 120 env "${vars[@]}" python3 tools/check-golden.py --vkprompt .publish/vkprompt --golden .golden --jobs 8 --timeout 60 \
        "${args[@]}" | tee "$res/$name.txt"
    else
      echo "== no .golden folder (prepare copies ../shared/golden there): $name skipped"
      printf '%s\tskipped\t0\t0\n' "$name" >>"$res/runs.tsv"
    fi
  }
  # A sweep of the matrix units' tile shapes on t5-base's products (MATRIX_UNITS_SWEEP: tilings, each
  # as VKPROMPT_MATRIX_UNITS_TILING spells it), then t5-base and t5-large steps in bf16 at the default,
  # with every product on the matrix units, tuned, and at the sweep's best tiling, beside the peer.
  matrix_units_sweep_and_steps() {
    local t best
    for t in ${MATRIX_UNITS_SWEEP:-4x2x2x4x32 4x4x2x2x32}; do
      mm "mm-bf16-cm-khr-$t" bf16 VKPROMPT_MATRIX_UNITS=khr VKPROMPT_MATRIX_UNITS_TILING=$t VKPROMPT_PIPELINE_STATS=1
    done
    best=$(best_matrix_units_tiling)
    echo "== best matrix-unit tiling of the sweep: ${best:-none}"
    vk vk-t5-base-bf16 t5-base --precision bf16 --warmup 1 --steps 3
    VKENV=VKPROMPT_MATRIX_UNITS=all vk vk-t5-base-bf16-all t5-base --precision bf16 --warmup 1 --steps 3
    peer peer-t5-base-bf16 t5-base bf16 --warmup 1 --steps 5
    vk vk-t5-large-bf16 t5-large --precision bf16 --warmup 1 --steps 2
    VKENV=VKPROMPT_MATRIX_UNITS=all vk vk-t5-large-bf16-all t5-large --precision bf16 --warmup 1 --steps 2
    peer peer-t5-large-bf16 t5-large bf16 --warmup 1 --steps 3
    # The tuner among the matrix units' candidate tilings, per product (its times in log.txt).
    VKENV=VKPROMPT_MATMUL_TUNE=1 vk vk-t5-large-bf16-tuned t5-large --precision bf16 --warmup 1 --steps 2 --verbose
    VKENV=VKPROMPT_MATMUL_TUNE=1 vk vk-t5-base-bf16-tuned t5-base --precision bf16 --warmup 1 --steps 3 --verbose
    [[ -n $best ]] && VKENV=VKPROMPT_MATRIX_UNITS_TILING=$best vk "vk-t5-large-bf16-cm-$best" t5-large --precision bf16 --warmup 1 --steps 2
    VKENV=VKPROMPT_MATRIX_UNITS_HALF_A=0 vk vk-t5-large-bf16-fp32a t5-large --precision bf16 --warmup 1 --steps 2
    # The softmax kernels (65 ms of a t5-large step at a workgroup of 256 a row) with a workgroup a
    # row, at 256 and at 64 invocations, against the default's subgroup a row.
    VKENV=VKPROMPT_ROW_SUBGROUP=0 vk vk-t5-large-bf16-rowswg t5-large --precision bf16 --warmup 1 --steps 2
    VKENV="VKPROMPT_ROW_SUBGROUP=0 VKPROMPT_ROW_LOCAL_SIZE=64" vk vk-t5-large-bf16-rowswg64 t5-large --precision bf16 --warmup 1 --steps 2
  }

  # The workgroup-scope kernel of VK_NV_cooperative_matrix2 (VKPROMPT_MATRIX_UNITS=nv2), not yet run on
  # a GPU: its results against the golden references and every product against fp64 first, then
  # steps beside the default and the peer.
  nv2_checks() {
    golden check-golden-nv2 VKPROMPT_MATRIX_UNITS=nv2 --precision fp16,bf16
    mm mm-bf16-cm-nv2 bf16 VKPROMPT_MATRIX_UNITS=nv2 VKPROMPT_PIPELINE_STATS=1
  }

  # Attention fused on the matrix units (fused_attention_coopmat*), which VKPROMPT_MATRIX_UNITS=all
  # selects where attention is fused; not yet run on a GPU.
  FUSED_ALL="VKPROMPT_MATRIX_UNITS=all VKPROMPT_ATTENTION=fused"

  if [[ ${BENCH_PLAN:-full} == round3 ]]; then
    # BENCH_PLAN=round3: issue 22's acceptance in one call on one card, the most needed first, so
    # that what the budget cuts (the log and bench-summary say what) matters least. Costs are
    # those of the 2026-11-27 calls where measured; the compiles are not yet measured (1 to 3
    # minutes each expected). Run with BENCH_BUDGET_S=540 and timeout_s 590.
    #
    # The checkpoints first, in the background while the checks run (about 10, 30 and 120 s of
    # CPU and disk; t5-xl's may still be writing during the t5-base steps, one core of sixteen).
    make_models_behind t5-base t5-large t5-xl
    # 1. Correctness before speed: the golden references through the kernels this device selects,
    #    with the activations the device plan chooses (under 40 s expected, 8 at once). The
    #    plan's bf16 fragments on the matrix units (VK_KHR_shader_bfloat16, where the driver offers
    #    them) have never run on a GPU: if the check fails, the rest of the call runs on fp16
    #    fragments, checked again, so that its timings are of kernels that compute right (the log
    #    says so).
    #    (A check the budget skipped is no failure.)
    #    The matrix units' pipelines are also pinned to full subgroups of 32 (VK_EXT_subgroup_size_control,
    #    new on 2026-12-07, never on a GPU): if fp16 fragments fail too, the rest runs unpinned, checked again.
    if ! golden check-golden && grep -q $'^check-golden\t[0-9]' "$res/runs.tsv"; then
      echo "== check-golden failed: the rest of the plan runs with VKPROMPT_MATRIX_UNITS_OPERANDS=fp16"
      export VKPROMPT_MATRIX_UNITS_OPERANDS=fp16
      if ! golden check-golden-fp16-fragments && grep -q $'^check-golden-fp16-fragments\t[0-9]' "$res/runs.tsv"; then
        echo "== check-golden failed with fp16 fragments too: the rest of the plan runs with VKPROMPT_MATRIX_UNITS_PIN=0"
        export VKPROMPT_MATRIX_UNITS_PIN=0
        golden check-golden-unpinned
      fi
    fi
    # 2. The peer's construction, before any peer is timed: prompt of P rows on the encoder only,
    #    a decoder input of T (t5-small at the same batch and lengths: the check is PEFT's, not the
    #    shape's; 15 s). Every timed peer checks itself again, and bench-summary voids any report
    #    that does not say numTransformerSubmodules 1, promptRows P, decoderLength T.
    bench check-peer 90 python3 tools/peer/peer_bench.py --shape t5-small "${shape_args[@]}" --precision bf16 --check-only \
      --json "$res/check-peer.json" || peer_ok=0
    # 3. The matrix units' own rate, which the products are measured against (10 s).
    bench peak-khr 30 .publish/vkprompt bench peak --matrix-units khr --json "$res/peak-khr.json"
    # 4. t5-base and t5-large bf16, the goal's steps: VkPrompt with 16-bit activations (its report
    #    also measures the step's peak with fp32 activations, one more step in the same run) and
    #    the peer eager with its profile (one step, after the timed ones); t5-base's peer compiled
    #    too, whose compile time says what t5-large's will cost. About 60 s and 80 s, plus the
    #    compile (1 to 3 minutes expected, never measured).
    local shape steps
    for shape in t5-base t5-large; do
      steps=5
      [[ $shape == t5-large ]] && steps=3
      vk "vk-$shape-bf16-act-bf16" "$shape" --precision bf16 --activations bf16 --warmup 1 --steps 3
      peer "peer-$shape-bf16" "$shape" bf16 --warmup 1 --steps "$steps" --profile --profile-steps 1
      [[ $shape == t5-base ]] && peer "peer-$shape-bf16-compile" "$shape" bf16 --compile --warmup 1 --steps "$steps"
    done
    # 5. Each distinct product of those steps alone against bench peak (8 s each).
    mm mm-t5-base-bf16 bf16
    MM_SHAPE=t5-large mm mm-t5-large-bf16 bf16
    # 6. t5-xl, "measured too": VkPrompt with 16-bit activations and the eager peer (which may
    #    run out of memory at batch 32; its report then says so). About 60 s once made.
    vk vk-t5-xl-bf16-act-bf16 t5-xl --precision bf16 --activations bf16 --warmup 1 --steps 2
    peer peer-t5-xl-bf16 t5-xl bf16 --warmup 1 --steps 2
    # 7. t5-large's peer compiled, the last run the goal needs. Its compile, twice t5-base's layers,
    #    is the largest unknown of the call: placed before 5 and 6, a long one would have cut both,
    #    where here it can only cut the runs after it, which the acceptance does not ask for.
    peer peer-t5-large-bf16-compile t5-large bf16 --compile --warmup 1 --steps 3
    # 8. What 16-bit activations save in time: the same steps with fp32 activations (25 s).
    for shape in t5-base t5-large; do vk "vk-$shape-bf16-act-fp32" "$shape" --precision bf16 --activations fp32 --warmup 1 --steps 3; done
    # 9. fp32: VkPrompt (strict fp32 throughout) beside the peer strict and with TF32, a row the
    #    ratio leaves out (60 s).
    vk vk-t5-base-fp32-act-fp32 t5-base --precision fp32 --activations fp32 --warmup 1 --steps 3
    peers_fp32 t5-base 5
    # 10. The fragments' type: the bf16 checks, steps and products above ran bf16 fragments where
    #    the device has them (DevicePlan.MatrixUnitsOperands; never run on a GPU before), so
    #    t5-base bf16 with fp16 fragments forced, as before them, for the comparison (15 s; last,
    #    the first cut).
    VKENV=VKPROMPT_MATRIX_UNITS_OPERANDS=fp16 vk vk-t5-base-bf16-act-bf16-fp16-fragments t5-base --precision bf16 --activations bf16 --warmup 1 --steps 3
  elif [[ ${BENCH_PLAN:-full} == peer ]]; then
    # BENCH_PLAN=peer: the re-measure of issue 22 (the peer with its prompt on the encoder only, at
    # its best). The golden check (under 40 s); t5-base: make 10 s, vk 5 s, peer eager 30 s, compiled 30 s
    # plus its compile; t5-large: make 30 s, vk 10 s, peer eager 40 s, compiled 40 s plus its
    # compile; t5-base fp32: vk 5 s, the peer strict and TF32 70 s. About 5 minutes plus the two
    # compiles (not yet measured; 1 to 3 minutes each expected), so the default budget of 480 s
    # may cut the fp32 rows, last as the least needed (the log says so); BENCH_BUDGET_S=540 with
    # the run's timeout_s at 590 gives them room.
    golden check-golden
    vk vk-t5-base-bf16 t5-base --precision bf16 --warmup 1 --steps 3
    peers_bf16 t5-base 5
    vk vk-t5-large-bf16 t5-large --precision bf16 --warmup 1 --steps 2
    peers_bf16 t5-large 3
    vk vk-t5-base-fp32 t5-base --precision fp32 --warmup 1 --steps 3
    peers_fp32 t5-base 5
  elif [[ ${BENCH_PLAN:-full} == attention ]]; then
    # BENCH_PLAN=attention: the fused attention on the matrix units (about 5 minutes), for a call
    # after a full one: its golden check, then bf16 steps with every product on the matrix units,
    # unfused and fused, beside the default and the peer, tuned, a sweep of its tilings, and fp32
    # fused on the portable kernels.
    golden check-golden
    golden check-golden-all-fused $FUSED_ALL --precision fp16,bf16
    vk vk-t5-base-bf16 t5-base --precision bf16 --warmup 1 --steps 3
    VKENV="$FUSED_ALL" vk vk-t5-base-bf16-all-fused t5-base --precision bf16 --warmup 1 --steps 3
    peer peer-t5-base-bf16 t5-base bf16 --warmup 1 --steps 5
    vk vk-t5-large-bf16 t5-large --precision bf16 --warmup 1 --steps 2
    VKENV=VKPROMPT_MATRIX_UNITS=all vk vk-t5-large-bf16-all t5-large --precision bf16 --warmup 1 --steps 2
    VKENV="$FUSED_ALL" vk vk-t5-large-bf16-all-fused t5-large --precision bf16 --warmup 1 --steps 2
    peer peer-t5-large-bf16 t5-large bf16 --warmup 1 --steps 3
    VKENV="$FUSED_ALL VKPROMPT_MATMUL_TUNE=1" vk vk-t5-large-bf16-all-fused-tuned t5-large --precision bf16 --warmup 1 --steps 2 --verbose
    # Its tilings (VKPROMPT_MATRIX_UNITS_FUSED_TILING, forward[,backward]; FUSED_SWEEP names them)
    # beside the default's 4x64 forward and 4x32 backward.
    local t
    for t in ${FUSED_SWEEP:-4x64,2x64 2x64 4x32}; do
      VKENV="$FUSED_ALL VKPROMPT_MATRIX_UNITS_FUSED_TILING=$t" vk "vk-t5-large-bf16-all-fused-${t/,/-}" t5-large --precision bf16 --warmup 1 --steps 2
    done
    VKENV=VKPROMPT_ATTENTION=fused vk vk-t5-base-fp32-fused t5-base --precision fp32 --warmup 1 --steps 3
  elif [[ ${BENCH_PLAN:-full} == nv2 ]]; then
    # BENCH_PLAN=nv2: the workgroup-scope kernel alone (about 5 minutes), for a call after a full one.
    golden check-golden
    nv2_checks
    golden check-golden-nv2-all VKPROMPT_MATRIX_UNITS=nv2,all --precision fp16,bf16
    mm mm-bf16-cm-khr bf16 VKPROMPT_MATRIX_UNITS=khr
    VKENV=VKPROMPT_MATRIX_UNITS=nv2 vk vk-t5-base-bf16-nv2 t5-base --precision bf16 --warmup 1 --steps 3
    vk vk-t5-base-bf16 t5-base --precision bf16 --warmup 1 --steps 3
    peer peer-t5-base-bf16 t5-base bf16 --warmup 1 --steps 5
    VKENV=VKPROMPT_MATRIX_UNITS=nv2 vk vk-t5-large-bf16-nv2 t5-large --precision bf16 --warmup 1 --steps 2
    vk vk-t5-large-bf16 t5-large --precision bf16 --warmup 1 --steps 2
    peer peer-t5-large-bf16 t5-large bf16 --warmup 1 --steps 3
    # The portable fused attention at the default products: its position bias now reads one
    # bucket per diagonal, contiguous across a subgroup's queries, where it read a row of
    # [Lq, Lk] per query (1.46x the unfused step on the H100 on 2026-11-26, before that).
    VKENV=VKPROMPT_ATTENTION=fused vk vk-t5-large-bf16-fused t5-large --precision bf16 --warmup 1 --steps 2
    VKENV=VKPROMPT_MATRIX_UNITS=nv2,all vk vk-t5-large-bf16-nv2-all t5-large --precision bf16 --warmup 1 --steps 2
    VKENV="VKPROMPT_MATRIX_UNITS=nv2 VKPROMPT_MATMUL_TUNE=1" vk vk-t5-large-bf16-nv2-tuned t5-large --precision bf16 --warmup 1 --steps 2 --verbose
    VKENV=VKPROMPT_MATRIX_UNITS_FP16_WEIGHTS=0 vk vk-t5-large-bf16-bf16w t5-large --precision bf16 --warmup 1 --steps 2
  elif [[ ${BENCH_PLAN:-full} == matrix-units ]]; then
    # BENCH_PLAN=matrix-units: the matrix units alone (about 5 minutes), for a call after a full one.
    golden check-golden
    golden check-golden-all VKPROMPT_MATRIX_UNITS=all --precision fp16,bf16
    # The products at the defaults and with every product on the matrix units, with the driver's
    # statistics of their pipelines (registers per invocation).
    mm mm-bf16-cm-khr bf16 VKPROMPT_MATRIX_UNITS=khr VKPROMPT_PIPELINE_STATS=1
    mm mm-bf16-cm-all bf16 VKPROMPT_MATRIX_UNITS=all VKPROMPT_PIPELINE_STATS=1
    matrix_units_sweep_and_steps
  else
    golden check-golden
    nv2_checks
    # The matrix units' own rate: the ceiling for the products below.
    bench peak-khr 30 .publish/vkprompt bench peak --matrix-units khr --json "$res/peak-khr.json"
    mm mm-fp32-auto fp32
    for x in khr all; do mm "mm-bf16-cm-$x" bf16 VKPROMPT_MATRIX_UNITS=$x; done
    golden check-golden-all VKPROMPT_MATRIX_UNITS=all --precision fp16,bf16
    golden check-golden-all-fused VKPROMPT_MATRIX_UNITS=all VKPROMPT_ATTENTION=fused --precision fp16,bf16

    # Then whole steps at the defaults (bf16 on the matrix units where the device has them),
    # each precision beside the peer, t5-base first; then the portable product and NV's
    # extension for bf16, the tuner, and, while time is left, more products and tilings.
    # The peers at their best (peers_bf16, peers_fp32) cost about 4 minutes more than the eager
    # peers alone did, so fewer of the variants at the end fit in the budget.
    vk vk-t5-base-fp32 t5-base --precision fp32 --warmup 1 --steps 3
    peers_fp32 t5-base 5
    vk vk-t5-base-bf16 t5-base --precision bf16 --warmup 1 --steps 3
    VKENV=VKPROMPT_MATRIX_UNITS=nv2 vk vk-t5-base-bf16-nv2 t5-base --precision bf16 --warmup 1 --steps 3
    VKENV=VKPROMPT_MATRIX_UNITS=all vk vk-t5-base-bf16-all t5-base --precision bf16 --warmup 1 --steps 3
    VKENV="$FUSED_ALL" vk vk-t5-base-bf16-all-fused t5-base --precision bf16 --warmup 1 --steps 3
    peers_bf16 t5-base 5
    vk vk-t5-large-fp32 t5-large --precision fp32 --warmup 1 --steps 2
    vk vk-t5-large-bf16 t5-large --precision bf16 --warmup 1 --steps 2
    VKENV=VKPROMPT_MATRIX_UNITS=nv2 vk vk-t5-large-bf16-nv2 t5-large --precision bf16 --warmup 1 --steps 2
    VKENV=VKPROMPT_MATRIX_UNITS=all vk vk-t5-large-bf16-all t5-large --precision bf16 --warmup 1 --steps 2
    VKENV="$FUSED_ALL" vk vk-t5-large-bf16-all-fused t5-large --precision bf16 --warmup 1 --steps 2
    peers_bf16 t5-large 3
    # The portable fused attention at the default products: its position bias now reads one
    # bucket per diagonal, contiguous across a subgroup's queries, where it read a row of
    # [Lq, Lk] per query (1.46x the unfused step on the H100 on 2026-11-26, before that).
    VKENV=VKPROMPT_ATTENTION=fused vk vk-t5-large-bf16-fused t5-large --precision bf16 --warmup 1 --steps 2
    VKENV=VKPROMPT_MATRIX_UNITS=nv2,all vk vk-t5-large-bf16-nv2-all t5-large --precision bf16 --warmup 1 --steps 2
    # bf16 weights kept bf16 (converted in every tile) against the fp16 copies the default stores.
    VKENV=VKPROMPT_MATRIX_UNITS_FP16_WEIGHTS=0 vk vk-t5-large-bf16-bf16w t5-large --precision bf16 --warmup 1 --steps 2
    # The softmax kernels with a workgroup of 256 invocations a row, as before subgroup rows (65 ms
    # of a t5-large step in call c of 2026-11-27).
    VKENV=VKPROMPT_ROW_SUBGROUP=0 vk vk-t5-large-bf16-rowswg t5-large --precision bf16 --warmup 1 --steps 2
    VKENV=VKPROMPT_MATRIX_UNITS=0 vk vk-t5-base-bf16-portable t5-base --precision bf16 --warmup 1 --steps 3
    # The tuner (VKPROMPT_MATMUL_TUNE=1) against the rule of vk-t5-base-fp32; --verbose puts its
    # per-product times into log.txt.
    VKENV=VKPROMPT_MATMUL_TUNE=1 vk vk-t5-base-fp32-tuned t5-base --precision fp32 --warmup 1 --steps 3 --verbose
    VKENV=VKPROMPT_MATMUL_TUNE=1 vk vk-t5-base-bf16-tuned t5-base --precision bf16 --warmup 1 --steps 3 --verbose
    for t in 16x16x8x8x16 8x16x8x8x8; do mm "mm-fp32-$t" fp32 VKPROMPT_MATMUL_TILING=$t; done
    peer peer-t5-large-fp32 t5-large fp32 --warmup 1 --steps 2
  fi

  # A checkpoint still being written when the budget ran out is not waited for.
  (( ${#making[@]} > 0 )) && kill "${making[@]}" 2>/dev/null
  sweep_summary
  shopt -s nullglob
  local reports=("$res"/vk-*.json "$res"/peer-*.json)
  if (( ${#reports[@]} > 0 )); then
    python3 tools/bench-table.py "${reports[@]}" | tee "$OUT/table.md"
    # Where each step's GPU time goes, VkPrompt's and the profiled peer's side by side.
    python3 tools/bench-table.py --breakdown "${reports[@]}" >"$OUT/breakdown.md"
  fi
  echo "== summary"
  python3 tools/bench-summary.py "$res" --json "$OUT/results.json"
  tar -C "$res" -cf "$OUT/results.tar" .
  echo "== done in $(( SECONDS - started )) s"
}

case "${1:-prepare}" in
  prepare) prepare ;;
  device)
    : "${OUT:?device mode writes its results under \$OUT, the output folder of the device tool}"
    device 2>&1 | tee "$OUT/log.txt" ;;
  *) echo "usage: tools/device-bench.sh [prepare|device]" >&2; exit 2 ;;
esac
