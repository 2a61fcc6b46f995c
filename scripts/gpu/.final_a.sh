#!/bin/bash
# final benchmark call A: correctness + benchmark with fla, then a second benchmark run
pip install --no-index --no-deps --target /tmp/site .whl/*.whl > /dev/null 2>&1
export PYTHONPATH=/tmp/site
export LD_LIBRARY_PATH=$PWD/.bundle/b:$LD_LIBRARY_PATH
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
timeout 330 python3 scripts/gpu/gdr_check.py --lib .bundle/b/libengram_kernels.so --out $OUT > $OUT/run1.txt 2>&1; echo "run1 rc=$?"
grep -E "correctness|FAIL|^\{" $OUT/run1.txt | cut -c1-400
timeout 230 python3 scripts/gpu/gdr_check.py --lib .bundle/b/libengram_kernels.so --bench-only > $OUT/run2.txt 2>&1; echo "run2 rc=$?"
grep -E "^\{" $OUT/run2.txt | cut -c1-400
