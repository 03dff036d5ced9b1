#!/usr/bin/env python3
"""The training step of `vkprompt bench`, done with Hugging Face transformers + PEFT prompt tuning.

Same random-weight T5 shape, batch, lengths, dropout and Adafactor settings, and the same JSON
fields (docs/benchmarks.md), so tools/bench-table.py puts the two side by side. Needs torch,
transformers and peft: where one is missing it says so and exits 3. Runs on CUDA when there is a
GPU, else on the CPU.

The prompt goes on the encoder only, as in Lester et al. and VkPrompt: the PEFT config says
num_transformer_submodules=1 (PEFT's default for seq2seq is 2, a prompt of 2P rows), and before
anything is timed one forward checks that the prompt has P rows, the encoder input P + input
length positions and the decoder input target length positions; where not, the report carries
the error and the script exits 1; --check-only stops there (the device script's check before it
times anything). --compile times torch.compile of the PEFT model (its compile reported apart as
compileSeconds; a compile that fails is reported with "compiled": false and its error); --tf32
lets fp32 products run as TF32, a row of its own; --profile adds a torch.profiler breakdown of a
few steps after the timed ones, by phase and by op category, in the categories of VkPrompt's
breakdown (CATEGORIES; tools/bench-table.py --breakdown sets the two side by side).

  python3 tools/peer/peer_bench.py --shape t5-base --batch-size 32 --input-length 512 \
      --target-length 8 --prompt-length 100 --precision bf16 --json peer.json
"""
import argparse
import contextlib
import datetime
import json
import os
import statistics
import sys
import time
import traceback

# T5Config.Named (src/Model/T5Config.cs): t5-small is T5 v1.0, t5-base to t5-xl T5 v1.1
# LM-adapted, ul2 google/ul2's shape and umt5-base google/umt5-base's (UMT5's classes).
V11 = dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False)
SHAPES = {
    "t5-small": dict(d_model=512, d_ff=2048, num_heads=8, num_layers=6, feed_forward_proj="relu", tie_word_embeddings=True),
    "t5-base": dict(d_model=768, d_ff=2048, num_heads=12, num_layers=12, **V11),
    "t5-large": dict(d_model=1024, d_ff=2816, num_heads=16, num_layers=24, **V11),
    "t5-xl": dict(d_model=2048, d_ff=5120, num_heads=32, num_layers=24, **V11),
    "ul2": dict(d_model=4096, d_kv=256, d_ff=16384, num_heads=16, num_layers=32, feed_forward_proj="gated-silu", tie_word_embeddings=False),
    "umt5-base": dict(model_type="umt5", d_model=768, d_ff=2048, num_heads=12, num_layers=12, vocab_size=256384, **V11),
}


def step_flops(d_model, d_kv, num_heads, d_ff, num_layers, num_decoder_layers, vocab_size, gated,
               batch, input_length, target_length, prompt_length):
    """(forward, backward) matrix-product FLOPs of one step: StepFlops in src/Training/StepFlops.cs,
    which docs/benchmarks.md derives; both implementations divide this same count by their time."""
    inner, le, ld = num_heads * d_kv, prompt_length + input_length, target_length
    enc_rows, dec_rows = batch * le, batch * ld

    def linear(rows, n_in, n_out):
        return 2 * rows * n_in * n_out

    def products(lq, lk):  # Q·Kᵀ or P·V over all heads
        return 2 * batch * lq * lk * inner

    def self_attention(rows, length, backward):
        return 4 * linear(rows, d_model, inner) + (4 if backward else 2) * products(length, length)

    def cross_attention(backward):
        return (2 * linear(dec_rows, d_model, inner) + 2 * linear(enc_rows, d_model, inner)
                + (4 if backward else 2) * products(ld, le))

    def feed_forward(rows):
        return ((2 if gated else 1) + 1) * linear(rows, d_model, d_ff)

    def encoder_layer(backward):
        return self_attention(enc_rows, le, backward) + feed_forward(enc_rows)

    def decoder_layer(backward):
        return self_attention(dec_rows, ld, backward) + cross_attention(backward) + feed_forward(dec_rows)

    lm_head = linear(dec_rows, d_model, vocab_size)
    forward = num_layers * encoder_layer(False) + num_decoder_layers * decoder_layer(False) + lm_head
    # The decoder's bottom self-attention and the query side of its bottom cross-attention are
    # on no path from the prompt to the loss, so neither autograd nor the formula counts them.
    bottom = self_attention(dec_rows, ld, True) + linear(dec_rows, d_model, inner) + products(ld, le)
    backward = num_layers * encoder_layer(True) + num_decoder_layers * decoder_layer(True) - bottom + lm_head
    return forward, backward


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", required=True, help="t5-small, t5-base, t5-large, t5-xl (random weights) or a Hugging Face T5 directory")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--input-length", type=int, default=512)
    p.add_argument("--target-length", type=int, default=8)
    p.add_argument("--prompt-length", type=int, default=100)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="fp32: strict float32 (no TF32 unless --tf32); bf16: the frozen model in bfloat16, the prompt kept in float32 by PEFT")
    p.add_argument("--tf32", action="store_true", help="fp32 only: products in TF32, the peer's fastest fp32")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the PEFT model; the first (compiling) step is timed apart, not among the steps "
                        "(compileSeconds); a compile that fails is reported (\"compiled\": false, compileError), not timed eager")
    p.add_argument("--profile", action="store_true",
                   help="after the timed steps, profile --profile-steps more with torch.profiler: CUDA time by phase and op "
                        "category into the report's breakdown (the timed steps run without the profiler)")
    p.add_argument("--profile-steps", type=int, default=2, help="steps --profile records (default 2)")
    p.add_argument("--check-only", action="store_true",
                   help="build the model, check that the prompt is on the encoder only (P rows, decoder input of target "
                        "length), report and exit (0 if it is), timing nothing")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--recompute", action="store_true", help="gradient checkpointing (as vkprompt bench --recompute)")
    p.add_argument("--device", help="a torch device; default: cuda if available, else cpu")
    p.add_argument("--json", help="also write the report to this file")
    args = p.parse_args()
    if args.tf32 and args.precision != "fp32":
        p.error("--tf32 is a setting of --precision fp32")
    if args.profile_steps < 1:
        p.error("--profile-steps must be at least 1")
    return args


def prompt_layout(model):
    """(num_transformer_submodules, rows of the prompt embedding) of the PEFT model's adapter."""
    adapter = model.active_adapter
    return model.peft_config[adapter].num_transformer_submodules, model.prompt_encoder[adapter].embedding.weight.shape[0]


def check_prompt_on_encoder_only(model, encoder, decoder, prompt_length, input_length, target_length):
    """Raises unless the PEFT model puts a prompt of P rows before the encoder input and nothing
    before the decoder's: the step VkPrompt and the paper take. `encoder` and `decoder` are the
    lengths one forward saw."""
    submodules, rows = prompt_layout(model)
    if (submodules, rows, encoder, decoder) != (1, prompt_length, prompt_length + input_length, target_length):
        raise RuntimeError(f"the peer does not take VkPrompt's step: num_transformer_submodules {submodules} (expected 1), "
                           f"prompt rows {rows} (expected {prompt_length}), encoder length {encoder} (expected "
                           f"{prompt_length + input_length}), decoder length {decoder} (expected {target_length})")


# The op categories of a breakdown, shared with tools/bench-table.py (which maps VkPrompt's
# kernels into them): products, attention fused into one kernel (the peer's T5 attention is
# products and a softmax, as VkPrompt's unfused one is), softmax, RMSNorm, other elementwise work
# (dropout, GELU, residual adds, scaling), copies and casts, the loss, the optimizer, the rest.
CATEGORIES = ("matmul", "attention", "softmax", "norm", "elementwise", "copy", "loss", "optimizer", "other")
# The phases of VkPrompt's breakdown, in the order a step runs them. The peer labels its
# encoder and decoder (eager only: torch.compile would trace the labels' hooks), and forward work
# outside both as lm_head_loss (the LM head and loss, and PEFT's prompt concatenation before the
# encoder, microseconds); a compiled forward is one phase, "forward".
PHASES = ("encoder_forward", "decoder_forward", "lm_head_loss", "forward", "backward", "optimizer", "other")
MATMUL_OPS = {"mm", "bmm", "addmm", "baddbmm", "addbmm", "matmul", "linear", "_scaled_mm", "addmv", "mv"}
COPY_OPS = {"copy_", "_to_copy", "to", "contiguous", "clone", "cat", "fill_", "zero_", "zeros", "zeros_like",
            "ones_like", "empty_like", "full", "stack", "_unsafe_view", "index_put_"}
LOSS_OPS = {"_log_softmax", "log_softmax", "_log_softmax_backward_data", "nll_loss", "nll_loss_forward",
            "nll_loss_backward", "nll_loss_nd", "cross_entropy_loss"}
NORM_OPS = {"rms_norm", "_fused_rms_norm", "_fused_rms_norm_backward", "layer_norm", "native_layer_norm",
            "native_layer_norm_backward"}


def op_category(op, kernel, in_norm, in_optimizer):
    """The category of one GPU kernel: `op` is the innermost profiler op that launched it ("aten::mm",
    or a record like "CompiledFunction" around torch.compile's own kernels), `kernel` its name;
    `in_norm` whether a T5 layer norm's forward (or the backward of one of its ops) launched it,
    `in_optimizer` whether the optimizer step did. Standard library only, so it is tested here."""
    if in_optimizer:
        return "optimizer"
    if in_norm:
        return "norm"
    name, k = op.split("::")[-1].lower(), kernel.lower()
    if name in LOSS_OPS or "nll_loss" in k or "log_softmax" in k:
        return "loss"
    if name in MATMUL_OPS or any(w in k for w in ("gemm", "gemv", "cutlass", "xmma", "wgmma", "nvjet", "cublas")) \
            or k.startswith(("triton_tem_fused_mm", "triton_tem_fused_bmm", "triton_tem_fused_addmm")):
        return "matmul"
    if "scaled_dot_product" in name or any(w in k for w in ("flash", "fmha", "efficient_attention")):
        return "attention"
    if "softmax" in name or "softmax" in k:
        return "softmax"
    if name in NORM_OPS or "rms_norm" in k or "layer_norm" in k or ("triton" in k and "rsqrt" in k):
        return "norm"
    if name in COPY_OPS or k.startswith(("memcpy", "memset")) or "copy" in k:
        return "copy"
    if name.startswith("embedding") or name in {"index_select", "gather", "scatter", "scatter_add_"}:
        return "other"
    if op.startswith("aten::") or k.startswith("triton_"):
        return "elementwise"  # add, mul, dropout, gelu, tanh, pow, mean, where: one pass over a tensor each
    return "other"


def phase_of(labels, compiled):
    """The phase of a kernel from the names of the profiler records around its op, nearest first."""
    for name in labels:
        if name.startswith("autograd::engine::evaluate_function") or name == "backward":
            return "backward"
        if name in ("optimizer", "encoder_forward", "decoder_forward"):
            return name
        if name == "forward":
            return "forward" if compiled else "lm_head_loss"
    return "other"


def shares(groups, steps, total_us):
    """[{name, count, ms, share}] per step, from {name: [kernel count, microseconds]}, largest first."""
    rows = [{"name": n, "count": c // steps, "ms": us / steps / 1e3, "share": us / total_us if total_us else 0.0}
            for n, (c, us) in groups.items()]
    return sorted(rows, key=lambda r: -r["ms"])


def summarize_profile(events, steps, compiled):
    """A breakdown in VkPrompt's form (steps, gpuMs, phases with their ops, ops) plus categories,
    from a torch.profiler event list: each CUDA kernel (copies and fills too) charged to the
    innermost op that launched it, as the profiler links them, its phase and category read off
    the records around that op; gpuMs is their sum. The GPU spans the profiler adds for each
    labelled record (gpu_user_annotation) launch nothing and are not counted."""
    norm_sequence = {e.sequence_nr for e in events if e.sequence_nr >= 0 and "norm" in ancestor_names(e)}
    phases, ops, categories = {}, {}, {}
    phase_ops = {p: {} for p in PHASES}
    total = 0.0

    def add(table, key, us):
        entry = table.setdefault(key, [0, 0.0])
        entry[0] += 1
        entry[1] += us

    for e in events:
        if not e.kernels:
            continue
        labels = ancestor_names(e)
        phase = phase_of(labels, compiled)
        # A backward op is a layer norm's when the autograd node running it was made by one of the
        # norm's forward ops (the same sequence number).
        in_norm = "norm" in labels or any(a.sequence_nr in norm_sequence for a in ancestors(e) if "Backward" in a.name)
        for k in e.kernels:
            category = op_category(e.name, k.name, in_norm, phase == "optimizer")
            add(phases, phase, k.duration)
            add(phase_ops[phase], e.name if e.name.startswith("aten::") else k.name[:80], k.duration)
            add(ops, e.name if e.name.startswith("aten::") else k.name[:80], k.duration)
            add(categories, category, k.duration)
            total += k.duration
    phase_rows = [dict(row, ops=shares(phase_ops[row["name"]], steps, total)[:15])
                  for row in sorted(shares(phases, steps, total), key=lambda r: PHASES.index(r["name"]))]
    return {"steps": steps, "gpuMs": total / steps / 1e3, "phases": phase_rows, "ops": shares(ops, steps, total)[:40],
            "categories": sorted(shares(categories, steps, total), key=lambda r: CATEGORIES.index(r["name"]))}


def ancestors(event):
    """The event and the records around it on its thread, nearest first."""
    while event is not None:
        yield event
        event = event.cpu_parent


def ancestor_names(event):
    return [a.name for a in ancestors(event)]


def describe(error):
    """An exception in one line, for the report."""
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def label_modules(torch, modules):
    """Wraps each (module, name)'s forward in a profiler record of that name; returns the hooks' handles."""
    handles, open_records = [], []

    def enter(name):
        def hook(module, args):
            record = torch.profiler.record_function(name)
            record.__enter__()
            open_records.append(record)
        return hook

    def leave(module, args, output):
        open_records.pop().__exit__(None, None, None)

    for module, name in modules:
        handles += [module.register_forward_pre_hook(enter(name)), module.register_forward_hook(leave)]
    return handles


def main():
    args = parse_args()
    # torch only here, so that --help and the FLOP formula work where it is missing (the tests).
    try:
        import torch
        import transformers
        import peft
    except ImportError as e:
        print(f"peer_bench: the Python package '{e.name}' is missing; the peer needs torch, transformers and peft "
              f"(pip install torch transformers peft)", file=sys.stderr)
        return 3
    from peft import PromptTuningConfig, TaskType, get_peft_model
    try:
        from transformers.optimization import Adafactor
    except ImportError:
        from transformers import Adafactor

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    # Set explicitly, so that a strict fp32 row is strict whatever this torch defaults to: "highest"
    # keeps fp32 products in fp32, "high" lets them run as TF32. This legacy switch alone, not
    # torch 2.9's per-backend fp32_precision, since inductor still reads the legacy one and a mix
    # of the two makes torch raise; cuDNN's is left alone, since T5's step has no convolution.
    torch.set_float32_matmul_precision("high" if args.tf32 else "highest")
    torch.manual_seed(0)
    # Built on the device: the random initialisation of t5-large on the CPU takes longer than the
    # steps it is timed for.
    with torch.device(device):
        if args.shape in SHAPES:
            shape = {"vocab_size": 32128, "d_kv": 64, **SHAPES[args.shape]}
            umt5 = shape.pop("model_type", "t5") == "umt5"
            config_class = transformers.UMT5Config if umt5 else transformers.T5Config
            config = config_class(dropout_rate=0.1, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, **shape)
            model = (transformers.UMT5ForConditionalGeneration if umt5 else transformers.T5ForConditionalGeneration)(config)
            shape_name = args.shape
        else:
            model = transformers.AutoModelForSeq2SeqLM.from_pretrained(args.shape)
            config = model.config
            shape_name = os.path.basename(os.path.normpath(args.shape))
    config.use_cache = False  # a training step keeps no decoder cache (nor does VkPrompt)
    parameters = sum(p.numel() for p in model.parameters())
    model.to(device=device, dtype=dtype)
    if args.recompute:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, PromptTuningConfig(task_type=TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=args.prompt_length,
                                                     num_transformer_submodules=1))
    model.to(device)
    model.train()
    weight_bytes = torch.cuda.memory_allocated(device) if cuda else 0
    prompt_dtype = next(p.dtype for p in model.parameters() if p.requires_grad)

    b, l, t = args.batch_size, args.input_length, args.target_length
    g = torch.Generator().manual_seed(0)  # as SyntheticBatch: ids past pad and eos, each row ending in eos
    input_ids = torch.randint(2, config.vocab_size, (b, l), generator=g)
    labels = torch.randint(2, config.vocab_size, (b, t), generator=g)
    input_ids[:, -1] = labels[:, -1] = config.eos_token_id
    input_ids, labels = input_ids.to(device), labels.to(device)
    attention_mask = torch.ones_like(input_ids)
    # The settings of vkprompt's AdafactorSettings, in transformers' terms (decay_rate is negated there).
    optimizer = Adafactor([p for p in model.parameters() if p.requires_grad], lr=0.3, eps=(1e-30, 1e-3), clip_threshold=1.0,
                          decay_rate=-0.8, beta1=None, weight_decay=1e-5, scale_parameter=False, relative_step=False, warmup_init=False)

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    step_model = model  # torch.compile's wrapper, once the check has run on the eager model

    def step(label=lambda name: contextlib.nullcontext()):
        """One training step; `label` names its phases for the profiler."""
        with label("forward"):
            loss = step_model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        with label("backward"):
            loss.backward()
        with label("optimizer"):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return loss.item()

    def probe():
        with torch.no_grad():
            return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)

    def profile():
        """--profile-steps steps under torch.profiler, summarized (summarize_profile)."""
        base = model.get_base_model()
        # Module labels only where the step is eager: hooks added to a compiled model would make it
        # recompile, and the profile would time another graph.
        labelled = [] if step_model is not model else \
            [(base.encoder, "encoder_forward"), (base.decoder, "decoder_forward")] + \
            [(m, "norm") for m in base.modules() if type(m).__name__.endswith("LayerNorm")]
        handles = label_modules(torch, labelled)
        activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
        try:
            with torch.profiler.profile(activities=activities) as prof:
                for _ in range(args.profile_steps):
                    step(torch.profiler.record_function)
                sync()
        finally:
            for h in handles:
                h.remove()
        return summarize_profile(prof.events(), args.profile_steps, compiled=step_model is not model)

    times, losses, error, compile_seconds, compile_error, breakdown, seen = [], [], None, None, None, None, {}
    try:
        out = probe()
        seen = {"encoderLength": out.encoder_last_hidden_state.shape[1], "decoderLength": out.logits.shape[1]}
        del out  # the logits and the encoder's output: memory the steps should have
        check_prompt_on_encoder_only(model, seen["encoderLength"], seen["decoderLength"], args.prompt_length, l, t)
        if not args.check_only:
            if args.compile:
                # torch.compile compiles on the first call (forward and, through AOTAutograd, backward):
                # that step is timed alone and reported, and the warmup and timed steps follow. A
                # compile that fails ends the run here: timed eager, the row would pass for compiled.
                try:
                    step_model = torch.compile(model)
                    sync()
                    start = time.perf_counter()
                    step()
                    sync()
                    compile_seconds = time.perf_counter() - start
                except Exception as e:
                    compile_error = describe(e)
                    raise
            if cuda:
                # The peak of the steps themselves, with the weights and the optimizer state resident.
                torch.cuda.reset_peak_memory_stats(device)
            for _ in range(args.warmup):
                step()
            for _ in range(args.steps):
                sync()
                start = time.perf_counter()
                losses.append(step())
                sync()
                times.append((time.perf_counter() - start) * 1e3)
    except torch.cuda.OutOfMemoryError as e:
        error = "out of memory: " + str(e).split("\n")[0]
    except Exception as e:  # reported in the JSON like out-of-memory, so the table shows why a row is empty
        traceback.print_exc()
        error = "torch.compile failed: " + compile_error if compile_error else describe(e)
    # Read before the profile, whose own allocations are not the step's.
    peak_bytes = torch.cuda.max_memory_allocated(device) if cuda else None
    reserved_bytes = torch.cuda.max_memory_reserved(device) if cuda else None
    profile_error = None
    if args.profile and times:
        try:
            breakdown = profile()
        except Exception as e:  # a failed profile leaves the timing standing
            traceback.print_exc()
            profile_error = "profile failed: " + describe(e)

    forward, backward = step_flops(config.d_model, config.d_kv, config.num_heads, config.d_ff, config.num_layers,
                                   config.num_decoder_layers, config.vocab_size, config.is_gated_act, b, l, t, args.prompt_length)
    median = statistics.median(times) if times else None
    tokens = b * (l + t)
    props = torch.cuda.get_device_properties(device) if cuda else None
    submodules, rows = prompt_layout(model)
    report = {
        "schema": "vkprompt-bench/1",
        "implementation": f"pytorch {torch.__version__} + transformers {transformers.__version__} + peft {peft.__version__}",
        "command": " ".join(["peer_bench.py"] + sys.argv[1:]),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": {"name": props.name if cuda else "cpu", "driver": f"CUDA {torch.version.cuda}" if cuda else "cpu",
                   "api": device.type},
        "capabilities": {"totalMemory": props.total_memory, "multiProcessorCount": props.multi_processor_count,
                         "computeCapability": f"{props.major}.{props.minor}",
                         "float32MatmulPrecision": torch.get_float32_matmul_precision(),
                         "promptDtype": str(prompt_dtype)} if cuda else None,
        "model": {"shape": shape_name, "parameters": parameters, "dModel": config.d_model, "dFf": config.d_ff,
                  "numHeads": config.num_heads, "dKv": config.d_kv, "numLayers": config.num_layers,
                  "numDecoderLayers": config.num_decoder_layers, "vocabSize": config.vocab_size,
                  "feedForward": config.feed_forward_proj if config.is_gated_act else "relu", "tiedEmbeddings": config.tie_word_embeddings},
        "batch": {"batchSize": b, "inputLength": l, "targetLength": t, "promptLength": args.prompt_length},
        # Weights and activations alike: a bf16 model computes in bf16 (matmuls accumulate in fp32).
        "precision": args.precision, "activationPrecision": args.precision, "recompute": args.recompute, "dropout": config.dropout_rate,
        # tf32: whether fp32 products may run as TF32 (float32MatmulPrecision "high"), else strict ("highest").
        "tf32": args.tf32, "compile": args.compile,
        # compiled: whether the timed steps ran torch.compile's code; false with compileError where it failed.
        "compiled": args.compile and compile_error is None and compile_seconds is not None,
        "compileError": compile_error,
        # The compiling first step, less a step's median: the compile's own time.
        "compileSeconds": (compile_seconds - median / 1e3 if times else compile_seconds) if compile_seconds is not None else None,
        # What the check before timing saw (the error says so where it failed): 1 submodule, P
        # rows and a decoder input of the target length put the prompt on the encoder only.
        "numTransformerSubmodules": submodules, "promptRows": rows, **seen,
        "checkOnly": args.check_only,
        "warmupSteps": args.warmup, "steps": len(times),
        # The timed steps ran without the profiler; --profile's steps came after them.
        "profiled": False, "profileSteps": args.profile_steps if breakdown else 0,
        "stepMs": {"median": median, "min": min(times), "max": max(times)} if times else None,
        "stepTimesMs": times,
        "examplesPerSecond": b / (median / 1e3) if times else None,
        "tokensPerSecond": tokens / (median / 1e3) if times else None,
        "tokensPerStep": tokens,
        "forwardFlops": forward, "backwardFlops": backward, "flopsPerStep": forward + backward,
        "tflops": (forward + backward) / (median / 1e3) / 1e12 if times else None,
        "peakMemoryBytes": peak_bytes,
        "reservedMemoryBytes": reserved_bytes,
        "weightMemoryBytes": weight_bytes if cuda else None,
        "loss": {"first": losses[0], "last": losses[-1]} if losses else None,
        "breakdown": breakdown,
        "notes": [n for n in (error, profile_error) if n],
    }
    if error:
        report["error"] = error
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    if error:
        print(f"peer_bench: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
