#!/bin/bash
pip install --no-index --no-deps --target /tmp/site .whl/*.whl > /dev/null 2>&1
export PYTHONPATH=/tmp/site
export LD_LIBRARY_PATH=$PWD/.bundle/b:$LD_LIBRARY_PATH
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
timeout 200 python3 scripts/gpu/gdr_check.py --lib .bundle/b/libengram_kernels.so --bench-only --shapes "8,2048,16,128,128;4,2048,8,64,128" > $OUT/run3.txt 2>&1; echo "run3 rc=$?"
grep -E "^\{" $OUT/run3.txt | cut -c1-300
SKIP_NSYS=1 bash scripts/gpu/suite.sh .bundle/b $OUT 2>&1
