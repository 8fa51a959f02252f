#!/usr/bin/env bash
# bench_train.py on an offline GPU machine that has torch, accelerate and peft but not trl or datasets
# (the device tool's machines). Two steps:
#   bash benchmarks/bench_train_offline_gpu.sh prepare      # here (PyPI reachable): fills .bench/ (git-ignored)
#   bash benchmarks/bench_train_offline_gpu.sh run OUT_DIR  # there, with .bench/ copied beside the checkout
# The wheels are the versions this checkout's venv runs, for the GPU machine's Python (DEVICE_PYTHON).
# SmolLM2's 538 MB of weights stay here: the run builds random weights from its config (--random-init).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=.bench
PY=${PY:-.venv/bin/python}
DEVICE_PYTHON=${DEVICE_PYTHON:-3.12}
# The options each variant adds to the recipe (recipes/smollm2-135m/sft/config_full.yaml).
VARIANTS=(
  "grouped-32=--per_device_train_batch_size 32 --gradient_accumulation_steps 4"
  "packed-sdpa=--packing true --packing_strategy bfd --per_device_train_batch_size 4 --gradient_accumulation_steps 5"
  "packed-flex=--packing true --packing_strategy bfd --per_device_train_batch_size 8 --gradient_accumulation_steps 3 --attn_implementation flex_attention"
)

prepare() {
  local pins
  pins=$("$PY" -c 'from importlib.metadata import version
print(" ".join(f"{name}=={version(name)}" for name in ("trl", "datasets", "transformers", "dill", "multiprocess", "fsspec")))')
  mkdir -p "$BENCH/whl" "$BENCH/smollm2-config"
  # shellcheck disable=SC2086
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$DEVICE_PYTHON" --implementation cp \
    --platform manylinux_2_28_x86_64 --dest "$BENCH/whl" $pins
  local model
  model=$("$PY" -c 'from hf_divsft.models import resolve_model; print(resolve_model("smollm2"))')
  find "$model" -maxdepth 1 -type f ! -name '*.safetensors' -exec cp {} "$BENCH/smollm2-config/" \;
  if [ ! -f outputs/response-micro/manifest.json ]; then
    "$(dirname "$PY")/divsft" build --pool ../shared/data/open-sft-pool --strategy response-micro --size 10000 \
      --num-proc 2 --out outputs/response-micro --no-metrics
  fi
  rm -rf "$BENCH/tmp" && mkdir -p "$BENCH/tmp"
  cp -r outputs/response-micro/response_micro_d100 "$BENCH/tmp/subset"
  tar czf "$BENCH/subset.tar.gz" -C "$BENCH/tmp" subset && rm -rf "$BENCH/tmp"
  du -sh "$BENCH"
}

run() {
  local out=${1:?usage: run OUT_DIR}
  python3 -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$BENCH"/whl/*.whl
  mkdir -p /tmp/bench "$out"
  tar xzf "$BENCH/subset.tar.gz" -C /tmp/bench
  export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TQDM_DISABLE=1 \
    PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.csv"
  local variants=()
  for variant in "${VARIANTS[@]}"; do variants+=(--variant "$variant"); done
  python3 benchmarks/bench_train.py --dataset /tmp/bench/subset --model "$BENCH/smollm2-config" --random-init \
    --out "$out/train.json" "${variants[@]}" 2>&1 | tee "$out/log"
}

case "${1:-}" in
  prepare) prepare ;;
  run) shift && run "$@" ;;
  *) echo "usage: $0 prepare | run OUT_DIR" >&2 && exit 2 ;;
esac
