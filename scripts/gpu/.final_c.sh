#!/bin/bash
pip install --no-index --no-deps --target /tmp/site .whl/*.whl > /dev/null 2>&1
export PYTHONPATH=/tmp/site
export LD_LIBRARY_PATH=$PWD/.bundle/b:$LD_LIBRARY_PATH
for r in 4 5; do
timeout 270 python3 scripts/gpu/gdr_check.py --lib .bundle/b/libengram_kernels.so --bench-only > $OUT/run$r.txt 2>&1; echo "run$r rc=$?"
grep -E "^\{" $OUT/run$r.txt | python3 -c "
import sys, json
for l in sys.stdin:
    r = json.loads(l); print(r['B'], r['T'], r['H'], r['K'], r['V'], 'fwd %.4f fla %.4f (%.2fx) fb %.4f fla %.4f (%.2fx)' % (r['ours_fwd'], r.get('fla_fwd', 0), r.get('fla_fwd', 0) / r['ours_fwd'], r['ours_fb'], r.get('fla_fb', 0), r.get('fla_fb', 0) / r['ours_fb']), 'sdpa', r.get('sdpa_fwd'))
"
done
