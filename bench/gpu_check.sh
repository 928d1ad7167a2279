#!/usr/bin/env bash
# The CUDA path and the GPU figures of issues 17-19, for a lent GPU machine (the device tool: 15 minutes in all,
# 10 a call). First, here: `bash bench/gpu_wheels.sh` (the web stack's wheels, in .whl/). Then two calls, each
# carrying .whl, run from the repository's root there:
#     bash bench/gpu_check.sh agree index batching     # about 5 minutes
#     bash bench/gpu_check.sh dictionary dissect       # about 5 minutes
# Each step runs under its own time limit and writes to the terminal and to $OUT/gpu-check.log; one that fails
# or runs out of time does not stop the next. On a machine without a GPU every step runs on the CPU (a dry run:
# IMAGES=200 bash bench/gpu_check.sh agree, with PYTHON=.venv/bin/python).
#   agree       bench/cuda_agreement.py: index build, CAMs and SAE codes on the GPU against the CPU
#   index       bench/index_throughput.py demo: the build against the bare forward, preloaded and from disk (19)
#   batching    bench/batching.py: 16 concurrent clients batched against unbatched (19; goal 3x), and renders
#   dictionary  bench/dictionary.py on shapes-cnn: 2x and 8x SAEs, their pass against the channels' (18; 1.3x)
#   dissect     bench/dissect.py: the dissected build against the plain one (17; 0.25), search latency
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
log="$OUT/gpu-check.log"
PY=${PYTHON:-python3}
IMAGES=${IMAGES:-2000}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

step() {  # step SECONDS COMMAND...: its output kept, its exit status and time said
  local limit=$1 started=$SECONDS
  shift
  echo "== $* (at most ${limit} s)" | tee -a "$log"
  timeout "$limit" "$@" 2>&1 | tee -a "$log"
  echo "== exit ${PIPESTATUS[0]} after $((SECONDS - started)) s" | tee -a "$log"
}

step 30 "$PY" -c "import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"
for name in "${@:-agree}"; do
  case "$name" in
    agree) step 150 "$PY" bench/cuda_agreement.py --images 300 ;;
    index) step 200 "$PY" bench/index_throughput.py demo --images "$IMAGES" --repeats 2 ;;
    batching) step 200 "$PY" bench/batching.py --requests 128 --renders 16 ;;
    dictionary) step 240 "$PY" bench/dictionary.py --models shapes-cnn --dictionaries sae:2 sae:8 --images "$IMAGES" \
      --repeats 2 ;;
    dissect) step 200 "$PY" bench/dissect.py --images "$IMAGES" --repeats 2 --queries 100 ;;
    *) echo "unknown step $name (agree, index, batching, dictionary, dissect)" | tee -a "$log" ;;
  esac
done
echo "log: $log"
