#!/usr/bin/env bash
# On the GPU machine, in one go: every GPU test, compute-sanitizer (memcheck, racecheck) on the kernel tests, the
# attention benchmark beside the PyTorch anchors, end-to-end generation speed, and a short record of it all.
# Usage: tools/gpu-check.sh BIN_DIR OUT_DIR [PHASE...]
#        phases: tests sanitize bench model peer load sizes sizes-peer (default: all)
# BIN_DIR is what tools/pack-gpu.sh packed (.carry). The record goes to OUT_DIR/record-<phases>.md.
# Env: SWRUN_MODEL (the example model; the model phase needs it), ATTN_SANITIZE_FILTER (gtest filter for the
#      attention test under the sanitizers, which run it ~10x slower), NO_AB=1 (skip the 32K A/B, the slowest step),
#      LLAMA_BIN (llama.cpp's CUDA build/bin with llama-bench and llama-completion, shared/peer/llama-build.sh; the
#      peer phase needs it and SWRUN_MODEL), SWEEP_NS (lengths of the sweep's own rows, e.g. 8192,32768,131072),
#      LAYOUTS (the sizes phase: full-size files "layout:vocab ...", e.g. "qwen2.5-7b:qwen2 gemma3-27b:gemma3",
#      written by make_layout_model from VOCABS/<vocab>.gguf into LAYOUT_DIR, default /root/layouts; SIZES_PP,
#      SIZES_DEPTHS, SIZES_REPS and SIZES_CTX narrow its tests: defaults 512,8192,32768 / 0,32768 / 3 / "32768 131072").
set -u
bin=$1
out=$2
shift 2
phases=${*:-tests sanitize bench model peer load sizes sizes-peer}
has() { case " $phases " in *" $1 "*) return 0;; esac; return 1; }
mkdir -p "$out"
rec="$out/record-${phases// /-}.md"
commit=$(cat "$bin/COMMIT" 2>/dev/null | tr '\n' ' ')
export LD_LIBRARY_PATH="$bin/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
status=0
{
  echo "# GPU record"
  echo "- commit: $commit"
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "- device: $gpu"
  echo "- phases: $phases"
} >"$rec"

step() {  # step NAME CMD...: runs CMD, logs to $out/NAME.log, adds a pass/fail line to the record
  local name=$1; shift
  local t0=$(date +%s)
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  local summary=$(grep -E '^\[  (PASSED|FAILED)  \]|ERROR SUMMARY|tests? (passed|failed)' "$out/$name.log" | tr '\n' ' ' | cut -c1-200)
  if [ $rc -eq 0 ]; then echo "- PASS $name (${dt}s) $summary" >>"$rec"; else echo "- FAIL $name (rc $rc, ${dt}s) $summary" >>"$rec"; status=1; fi
  echo "$name rc=$rc ${dt}s"
}

# Python packages the device image lacks (cuDNN's frontend for the anchors, gguf for the peer comparison), carried
# as wheels in .whl/ (see the device notes in README).
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl &&
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

export SWRUN_MODEL=${SWRUN_MODEL:-}
if has tests; then
  echo >>"$rec"; echo "## GPU tests" >>"$rec"
  for t in "$bin"/test_cuda_*; do
    [ -x "$t" ] && step "$(basename "$t")" "$t"
  done
fi
if has sanitize; then
echo >>"$rec"; echo "## compute-sanitizer" >>"$rec"
for t in "$bin"/test_cuda_attention "$bin"/test_cuda_dequant "$bin"/test_cuda_backend "$bin"/test_cuda_decode \
  "$bin"/test_cuda_program "$bin"/test_cuda_moe; do
  [ -x "$t" ] || continue
  n=$(basename "$t")
  filter='*'
  [ "$n" = test_cuda_attention ] && filter=${ATTN_SANITIZE_FILTER:-*}
  # the sampling test draws thousands of steps: minutes under the sanitizer, and no kernel of its own
  [ "$n" = test_cuda_decode ] && filter='-*Sampling*'
  # the persistent decode kernel (one shape: its steps are many small launches of one big kernel)
  [ "$n" = test_cuda_program ] && filter='*gemma3*'
  step "memcheck_$n" timeout 200 compute-sanitizer --tool memcheck --error-exitcode 1 "$t" --gtest_filter="$filter"
  # racecheck on our kernels' tests only: it reports hazards inside cuBLAS's own kernels, which the backend test
  # (and the decode test's all-position logits through cuBLAS) call
  [ "$n" = test_cuda_backend ] && continue
  [ "$n" = test_cuda_program ] && continue  # its CPU and op-by-op references run cuBLAS too
  # (nor the GEMV over a quarter million rows, whose shared-memory traffic could take minutes under racecheck)
  [ "$n" = test_cuda_decode ] && filter='-*Sampling*:*QuantizedOnlyTable*:*OverManyRows*'
  step "racecheck_$n" timeout 200 compute-sanitizer --tool racecheck --error-exitcode 1 "$t" --gtest_filter="$filter"
done
fi

if has bench; then
echo >>"$rec"; echo "## attention sweep (bench/sweep.py: swbench + PyTorch and cuDNN anchors)" >>"$rec"
if [ -x "$bin/swbench" ]; then
  anchors=${ANCHOR_NS:-32768,131072}
  [ -n "${NO_ANCHORS:-}" ] && anchors=none
  # SWEEP_NS narrows the lengths of our rows (default: 512 .. 131072, sliding also 262144)
  timeout 250 python3 bench/sweep.py --swbench "$bin/swbench" --out "$out/sweep" --commit "$commit" \
    ${SWEEP_NS:+--n "$SWEEP_NS" --sliding-extra-n 0} \
    --anchor-n "$anchors" --swbench-budget-s 100 --anchor-budget-s 130 >"$out/sweep.txt" 2>&1 || status=1
  { sed -n '/^## Headline/,/^## All rows/p' "$out/sweep/sweep.md" | sed '$d'; cat "$out/sweep.txt"; } >>"$rec"
fi
if [ -x "$bin/swbench" ]; then  # decode attention (split-K): K/V bytes per step against HBM bandwidth (issue 9)
  echo >>"$rec"; echo "## decode attention, one query against the cache (swbench decode rows, KV-GB/s)" >>"$rec"
  timeout 120 "$bin/swbench" --shapes gemma3,mistral,llama64 --impls decode-dense,decode-sliding \
    --n 8192,32768,131072 --csv "$out/decode.csv" >"$out/decode.txt" 2>&1 || status=1
  { echo '```'; cat "$out/decode.txt"; echo '```'; } >>"$rec"
fi
if [ -x "$bin/gemv_bench" ]; then  # a Gemma 3 270M decode step's GEMV shapes, isolated (bench/gemv_notes.md)
  echo >>"$rec"; echo "## decode GEMV shapes, isolated (gemv_bench; variants 1 warp, 2 warp-pipelined, 8 warp-split)" >>"$rec"
  timeout 120 "$bin/gemv_bench" --shapes 640x1024:Q4_K,640x2048:Q4_K,640x2048:Q6_K,2048x640:Q5_0,1536x640:Q5_0 \
    --variants 1,2,8 >"$out/gemv_bench.txt" 2>&1 || status=1
  { echo '```'; cat "$out/gemv_bench.txt"; echo '```'; } >>"$rec"
  # The 7B and 27B layers' wide rows (issue 21): variant 9 staged, 10 and 11 streamed into registers.
  echo >>"$rec"; echo "## decode GEMV, 7B/27B shapes (gemv_bench; variants 1, 9 wide, 10/11 wide-stream)" >>"$rec"
  timeout 240 "$bin/gemv_bench" --shapes 3584x3584:Q4_K,512x3584:Q4_K,18944x3584:Q4_K,3584x18944:Q4_K,3584x18944:Q6_K,152064x3584:Q6_K,21504x5376:Q4_K,5376x21504:Q4_K,5376x21504:Q6_K,262144x5376:Q6_K \
    --variants 1,9,10,11 >"$out/gemv_bench_wide.txt" 2>&1 || status=1
  { echo '```'; cat "$out/gemv_bench_wide.txt"; echo '```'; } >>"$rec"
fi
if [ -x "$bin/gemm_bench" ]; then  # the prefill projections' cuBLAS GEMMs (bench/prefill_notes.md)
  echo >>"$rec"; echo "## prefill GEMM shapes through cuBLAS (gemm_bench)" >>"$rec"
  timeout 120 "$bin/gemm_bench" --rows 4096,16384,32768 --reps 20 >"$out/gemm_bench.txt" 2>&1 || status=1
  cat "$out/gemm_bench.txt" >>"$rec"
fi
fi

if has model && [ -n "$SWRUN_MODEL" ] && [ -x "$bin/swrun" ]; then
  echo >>"$rec"; echo "## generation (swrun, Gemma 3 270M)" >>"$rec"
  text="The river runs past the old mill and under the stone bridge, where children count the boats in summer. In the autumn the fishermen mend their nets on the bank, and the baker sends bread to the village school."
  for len in 512 8192 32768; do
    for attn in model dense sliding:512; do
      line=$("$bin/swrun" -m "$SWRUN_MODEL" -p "$text" --prompt-len "$len" -n 64 --temp 0 --attn "$attn" \
             -b 4096 2>&1 >/dev/null | grep -E '^swrun: load' | sed 's/^swrun: //')
      echo "- N=$len attn=$attn: $line" >>"$rec"
    done
  done
  for attn in model dense; do
    "$bin/swrun" -m "$SWRUN_MODEL" -p "$text" --prompt-len 32768 --profile --attn "$attn" --repeat 5 \
      --profile-json "$out/profile-$attn.json" --profile-svg "$out/profile-$attn.svg" >"$out/profile-$attn.txt" 2>"$out/profile-$attn.err"
    { echo; echo "### profile, 32768 tokens, --attn $attn"; echo '```'; cat "$out/profile-$attn.txt"; grep 'op timers' "$out/profile-$attn.err"; echo '```'; } >>"$rec"
  done
  "$bin/swrun" -m "$SWRUN_MODEL" -p "$text" --prompt-len 131072 --profile --repeat 1 >"$out/profile-131072.txt" 2>&1
  { echo; echo "### profile, 131072 tokens, --attn model"; echo '```'; grep -E '^(total|prefill|throughput|time to|peak|KV)' "$out/profile-131072.txt"; echo '```'; } >>"$rec"
  if [ -z "${NO_AB:-}" ]; then
    "$bin/swrun" -m "$SWRUN_MODEL" -p "$text" --prompt-len 32768 --ab dense model -n 32 -b 2048 --repeat 3 \
      --profile-json "$out/ab.json" --profile-svg "$out/ab.svg" >"$out/ab.txt" 2>"$out/ab.err"
    { echo; echo "### A/B dense vs model, 32768 tokens"; echo '```'; cat "$out/ab.txt"; echo '```'; } >>"$rec"
  fi
  line=$("$bin/swrun" -m "$SWRUN_MODEL" -p "The capital of France is" -n 128 --temp 0 --no-graph 2>&1 >/dev/null | grep '^swrun: load')
  echo "- no CUDA graph, short prompt: ${line#swrun: }" >>"$rec"
  line=$("$bin/swrun" -m "$SWRUN_MODEL" -p "The capital of France is" -n 128 --temp 0 2>&1 >/dev/null | grep '^swrun: load')
  echo "- CUDA graph, short prompt: ${line#swrun: }" >>"$rec"
  if [ -f "$bin/lib/libkernel_trace.so" ]; then  # what each kernel adds to a decode step as its graph runs it
    CUDA_INJECTION64_PATH="$bin/lib/libkernel_trace.so" KERNEL_TRACE_OUT="$out/kernel-trace.txt" \
      "$bin/swrun" bench -m "$SWRUN_MODEL" -p 0 -n 32 -r 1 >/dev/null 2>&1 || status=1
    python3 tools/decode_step_trace.py "$out/kernel-trace.txt" --kernels 12 >"$out/decode-step-trace.txt" 2>&1 || status=1
    gzip -f "$out/kernel-trace.txt"
    { echo; echo "### a decode step's kernels in its CUDA graph (kernel_trace, tg32 at depth 0)"; echo '```';
      cat "$out/decode-step-trace.txt"; echo '```'; } >>"$rec"
  fi
  # What `swrun -p` does by default: temperature 0.8, top-k 40 (reduced on the GPU), top-p 0.95; EOS may end it early.
  for seed in 1 2 3; do
    line=$("$bin/swrun" -m "$SWRUN_MODEL" -p "The capital of France is" -n 128 --seed $seed 2>&1 >/dev/null | grep '^swrun: load')
    echo "- default sampling, seed $seed, short prompt: ${line#swrun: }" >>"$rec"
  done
fi
if has peer && [ -n "$SWRUN_MODEL" ] && [ -x "$bin/swrun" ] && [ -x "${LLAMA_BIN:-}/llama-bench" ]; then
  # The same tests, the same file, one call: llama-bench's flags as issue 8 gives them, swrun bench in its terms.
  echo >>"$rec"; echo "## generation speed beside llama.cpp (same file, same GPU)" >>"$rec"
  pp="-p 512,8192,32768 -n 0"
  tg="-p 0 -n 128 -d 0,8192,32768"
  {
    echo; echo "### llama.cpp (llama-bench, CUDA, flash attention on)"; echo
    "$LLAMA_BIN/llama-bench" -m "$SWRUN_MODEL" -ngl 99 -fa 1 $pp -ub 512,4096 -b 4096 -r 3 2>"$out/llama-bench-pp.err"
    "$LLAMA_BIN/llama-bench" -m "$SWRUN_MODEL" -ngl 99 -fa 1 $tg -r 3 2>"$out/llama-bench-tg.err" | tail -n +3
    echo; echo "### swrun bench"; echo
    # the default ubatch (32768 on a GPU with 75 GiB or more), llama-bench's 4096, and 16384
    "$bin/swrun" bench -m "$SWRUN_MODEL" $pp -r 3 2>"$out/swrun-bench-pp.err"
    for b in 4096 16384; do  # a table each: with -b given, swrun bench adds an n_ubatch column as llama-bench does
      echo; "$bin/swrun" bench -m "$SWRUN_MODEL" $pp -r 3 -b $b 2>>"$out/swrun-bench-pp.err"
    done
    echo
    "$bin/swrun" bench -m "$SWRUN_MODEL" $tg -r 3 2>"$out/swrun-bench-tg.err" | tail -n +3
  } >>"$rec" 2>&1 || status=1
  # Start-up: load time and a fresh process's first 512-token prefill against a warm one.
  text="The river runs past the old mill and under the stone bridge, where children count the boats in summer."
  echo >>"$rec"; echo "### start-up (fresh processes)" >>"$rec"
  for i in 1 2; do
    line=$("$bin/swrun" -m "$SWRUN_MODEL" -p "$text" --prompt-len 512 -n 1 --temp 0 2>&1 >/dev/null | grep '^swrun: load')
    echo "- swrun fresh process $i, 512-token prompt: ${line#swrun: }" >>"$rec"
  done
  line=$("$bin/swrun" -m "$SWRUN_MODEL" -p "$text" --prompt-len 512 --profile --repeat 5 2>&1 | grep -E '^(prefill|time to)' | tr '\n' ' ')
  echo "- swrun warm (profile median of 5), 512-token prompt: $line" >>"$rec"
  line=$("$LLAMA_BIN/llama-completion" -m "$SWRUN_MODEL" -ngl 99 -fa on -p "$text" -n 1 -no-cnv 2>&1 </dev/null | grep -E 'load time|prompt eval time' | tr '\n' ' ')
  echo "- llama.cpp llama-completion: $line" >>"$rec"
fi

if has load && [ -n "$SWRUN_MODEL" ] && [ -x "$bin/swrun" ]; then
  # Where the load time goes (swrun -v), fresh processes, under each upload path and eager module loading; then
  # the -v output's own test with CUDA (tests/cli_load_log.py) and the first prompt of a fresh process.
  echo >>"$rec"; echo "## load time (swrun -v, fresh processes)" >>"$rec"
  root=$(cd "$(dirname "$0")/.." && pwd)
  for variant in SWRUN_UPLOAD=pageable SWRUN_UPLOAD=pinned SWRUN_UPLOAD=register CUDA_MODULE_LOADING=EAGER; do
    for i in 1 2 3; do
      env "$variant" "$bin/swrun" -m "$SWRUN_MODEL" -p "The capital of France is" -n 16 --temp 0 -v \
        >/dev/null 2>"$out/load-$variant-$i.err" || status=1
    done
    totals=$(grep -h '^load: total' "$out"/load-"$variant"-*.err | awk '{print $3}' | tr '\n' ' ')
    { echo; echo "### $variant: totals $totals ms (the third run below)"; echo '```'
      grep -E '^(load|swrun: load)' "$out/load-$variant-3.err"; echo '```'; } >>"$rec"
  done
  text="The river runs past the old mill and under the stone bridge, where children count the boats in summer."
  for i in 1 2 3; do
    line=$("$bin/swrun" -m "$SWRUN_MODEL" -p "$text" --prompt-len 512 -n 1 --temp 0 2>&1 >/dev/null | grep '^swrun: load')
    echo "- fresh process $i, 512-token prompt: ${line#swrun: }" >>"$rec"
  done
  line=$("$bin/swrun" -m "$SWRUN_MODEL" -p "$text" --prompt-len 512 --profile --repeat 5 2>&1 | grep -E '^(prefill|time to)' | tr '\n' ' ')
  echo "- warm (profile median of 5), 512-token prompt: $line" >>"$rec"
  if [ -x "${LLAMA_BIN:-}/llama-completion" ]; then
    line=$("$LLAMA_BIN/llama-completion" -m "$SWRUN_MODEL" -ngl 99 -fa on -p "The capital of France is" -n 16 -no-cnv 2>&1 </dev/null | grep -E 'load time' | tr '\n' ' ')
    echo "- llama.cpp llama-completion, same prompt: $line" >>"$rec"
  fi
  python3 "$root/tests/cli_load_log.py" "$bin/swrun" "$bin/make_synthetic_model" "$out/cli_load_log" \
    >"$out/cli_load_log.txt" 2>&1 || status=1
  echo "- tests/cli_load_log.py (CPU and CUDA): $(tail -1 "$out/cli_load_log.txt")" >>"$rec"
fi

if has sizes && [ -x "$bin/swrun" ] && [ -x "$bin/make_layout_model" ] && [ -n "${LAYOUTS:-}" ]; then
  # Real-size models (issue 21): full-size random-weight Q4_K_M files of published layouts, swrun bench beside
  # llama-bench on the same file, peak memory against the plan (swrun fit), 32K and 128K contexts with default flags.
  echo >>"$rec"; echo "## real-size layouts (make_layout_model, Q4_K_M, random weights)" >>"$rec"
  dir=${LAYOUT_DIR:-/root/layouts}
  mkdir -p "$dir"
  text="The river runs past the old mill and under the stone bridge, where children count the boats in summer."
  for spec in $LAYOUTS; do
    layout=${spec%%:*} vocab=${spec#*:}
    file="$dir/$layout.gguf"
    [ -s "$file" ] || "$bin/make_layout_model" --layout "$layout" --type q4_k_m --vocab "$VOCABS/$vocab.gguf" \
      -o "$file" 2>"$out/make-$layout.err" || { status=1; continue; }
    echo >>"$rec"; echo "### $layout ($(du -h "$file" | cut -f1))" >>"$rec"
    {
      echo; echo '```'
      "$bin/swrun" fit -m "$file" -c 32768
      echo '```'
      echo; echo "swrun bench (default ubatch from the plan):"; echo
      "$bin/swrun" bench -m "$file" -p "${SIZES_PP:-512,8192,32768}" -n 0 -r "${SIZES_REPS:-3}" -o json \
        >"$out/bench-$layout-pp.json" 2>"$out/bench-$layout-pp.err"
      "$bin/swrun" bench -m "$file" -p 0 -n 128 -d "${SIZES_DEPTHS:-0,32768}" -r "${SIZES_REPS:-3}" -o json \
        >"$out/bench-$layout-tg.json" 2>"$out/bench-$layout-tg.err"
      # The wide GEMV kernels a decode step can take (SWRUN_GEMV_WIDE, kernels/gemv/gemv_wide.cu), step for step.
      for kernel in staged stream8 stream4; do
        SWRUN_GEMV_WIDE=$kernel "$bin/swrun" bench -m "$file" -p 0 -n 128 -r "${SIZES_REPS:-3}" 2>/dev/null |
          grep -E '^\| .*tg' | sed "s/^/SWRUN_GEMV_WIDE=$kernel /" >>"$out/bench-$layout-wide.txt"
      done
      python3 - "$out/bench-$layout-pp.json" "$out/bench-$layout-tg.json" <<'PY'
import json, sys
print("| test | ubatch | t/s | peak GiB | load ms |")
print("| --- | ---: | ---: | ---: | ---: |")
for path in sys.argv[1:]:
    for r in json.load(open(path)):
        test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
        if r["n_depth"]: test += f" @ d{r['n_depth']}"
        print(f"| {test} | {r['n_ubatch']} | {r['avg_ts']:.1f} ± {r['stddev_ts']:.1f} | "
              f"{r['peak_memory_bytes'] / 2**30:.2f} | {r['load_ms']:.0f} |")
PY
      echo; echo "tg128 by wide GEMV kernel:"; echo '```'; cat "$out/bench-$layout-wide.txt"; echo '```'
      for ctx in ${SIZES_CTX:-32768 131072}; do  # default flags: the plan picks the ubatch
        line=$("$bin/swrun" -m "$file" -p "$text" --prompt-len $ctx -n 16 --temp 0 2>&1 >/dev/null |
               grep -E '^swrun: (load|error)|^swrun:.*(does not fit|error)' | head -2 | tr '\n' ' ')
        echo "- swrun, $ctx-token prompt, default flags: ${line#swrun: }"
      done
    } >>"$rec" 2>&1 || status=1
  done
fi

if has sizes-peer && [ -x "${LLAMA_BIN:-}/llama-bench" ] && [ -n "${LAYOUTS:-}" ]; then
  # llama.cpp on the same full-size files (written by the sizes phase, in the same session).
  echo >>"$rec"; echo "## real-size layouts beside llama.cpp" >>"$rec"
  dir=${LAYOUT_DIR:-/root/layouts}
  text="The river runs past the old mill and under the stone bridge, where children count the boats in summer."
  for spec in $LAYOUTS; do
    layout=${spec%%:*}
    file="$dir/$layout.gguf"
    [ -s "$file" ] || continue
    {
      echo; echo "### $layout: llama-bench (CUDA, flash attention on)"; echo
      "$LLAMA_BIN/llama-bench" -m "$file" -ngl 99 -fa 1 -p 512,8192,32768 -n 0 -ub 2048 -b 2048 -r 2 \
        2>"$out/llama-bench-$layout-pp.err"
      "$LLAMA_BIN/llama-bench" -m "$file" -ngl 99 -fa 1 -p 0 -n 128 -d 0,32768 -r 2 \
        2>"$out/llama-bench-$layout-tg.err" | tail -n +3
      echo; echo "llama.cpp's own memory report at -c 32768 (llama-completion):"; echo '```'
      "$LLAMA_BIN/llama-completion" -m "$file" -ngl 99 -fa on -c 32768 -p "$text" -n 1 -no-cnv </dev/null 2>&1 |
        grep -E "buffer size|memory breakdown|CUDA0" | head -12
      echo '```'
    } >>"$rec" 2>&1 || status=1
  done
fi

cat "$rec"
exit $status
