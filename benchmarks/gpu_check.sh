#!/usr/bin/env bash
# Every GPU check of the harness in one command, for a machine with one NVIDIA GPU that has torch
# and nvidia-ml-py but may lack PyAV, PyNvVideoCodec and pydantic: wheels in ./.whl are installed
# first (see docs/gpu-results.md for how to fetch them). Writes into $OUT (default ./gpu-check):
# the log, the self-check's table (selfcheck.json), its report and the run summaries.
set -uo pipefail
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
nproc; free -g | head -2; df -h . | tail -1
python3 -c "import torch, av, pydantic; print('torch', torch.__version__, 'av', av.__version__, 'pydantic', pydantic.__version__)"
python3 -m harness datagen scenarios/gpu/video_decoded.yaml
timeout 120 python3 benchmarks/gpu_probe.py data/gpu/videos/videos/cam000.mkv
timeout "${SELFCHECK_TIMEOUT:-420}" python3 -m harness selfcheck --gpu --results /tmp/gpu-results \
  --report /tmp/gpu-report ${SELFCHECK_ARGS:-}
echo "selfcheck exit code $?"
cp /tmp/gpu-report/selfcheck.json /tmp/gpu-report/report.html /tmp/gpu-report/report.pdf "$OUT"/ 2>/dev/null
tar czf "$OUT/results.tar.gz" -C /tmp gpu-results --exclude='series_*' 2>/dev/null
ls -la "$OUT"
