#!/usr/bin/env bash
# engram's GPU tests and training/kernel benchmarks from a bundle, beside the PyTorch+fla peer,
# in one device call. On the GPU host, from the repository root:
#   bash scripts/gpu/suite.sh .bundle/b "$OUT"      (fla wheels installed on PYTHONPATH first)
# Each step has its own time limit and writes under OUT, so a slow step loses only itself.
# SKIP_NSYS=1 leaves out the two Nsight Systems traces.
set -u
B="$(cd "${1:-.bundle/b}" && pwd)"
O="${2:-${OUT:-.}}"
R="$(pwd)"
step() { local name="$1" lim="$2"; shift 2; local t0=$SECONDS; timeout "$lim" "$@" > "$O/$name.txt" 2>&1; \
  echo "== $name rc=$? $((SECONDS - t0))s"; grep -v -i warn "$O/$name.txt" | tail -n "${TAILN:-6}"; }
step info 30 "$B/run.sh" engram info
for t in delta_rule_cuda fused_adamw clip_grad_norm; do
  bin=$(ls "$B"/tests/$t-* | head -1)
  TAILN=4 step "test_$t" 150 "$B/run.sh" "$bin" --test-threads 1
done
TAILN=8 step bench_gdn 150 "$B/run.sh" engram bench gdn --device cuda --warmup 3 --steps 10 --json "$O/gdn.json"
TAILN=8 step bench_gdn_torch 200 python3 "$R/scripts/gpu/hybrid_torch.py" --warmup 3 --steps 10 --json "$O/gdn_torch.json"
TAILN=12 step bench_delta_rule 120 "$B/run.sh" engram bench delta-rule --device cuda --backends kernel --json "$O/dr.json"
if [ -z "${SKIP_NSYS:-}" ] && command -v nsys > /dev/null; then
  TAILN=30 step nsys_engram 120 nsys profile -o /tmp/engram_gdn --force-overwrite true --stats=true \
    "$B/run.sh" engram bench gdn --device cuda --shapes 4x2048 --warmup 2 --steps 5
  TAILN=30 step nsys_torch 150 nsys profile -o /tmp/torch_gdn --force-overwrite true --stats=true \
    python3 "$R/scripts/gpu/hybrid_torch.py" --shapes 4x2048 --warmup 2 --steps 5
fi
