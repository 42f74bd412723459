#!/usr/bin/env bash
# Download, here, the wheels that benchmarks/gpu_check.py needs on a GPU machine without network access, for that
# machine's Python (CPython 3.12, manylinux x86_64), into the git-ignored folder .whl/ (or $1).
#
#   bash benchmarks/gpu_wheels.sh            # writes .whl/ (40 MiB) and prints what a device call carries
#
# What it holds: motif-video built as a wheel (without the shipped small model, which the check does not use), the
# versions installed here of diffusers, transformers, accelerate, peft, safetensors, tokenizers and huggingface_hub
# (the versions the test suite runs with) and every package they need except torch, its CUDA libraries, triton,
# numpy and pillow (the GPU image has those); torchao (FP8) and sageattention (SageAttention 1, Triton) for the
# speed options. .whl/requirements.txt pins the packages to install; the others are there for pip's resolver.
# gpu_check.py --wheels .whl installs them with `pip install --no-index --find-links .whl -r .whl/requirements.txt`
# (plus motif-video with --no-deps) and starts itself again.
#
# Then, through the device tool, one call (carry .whl; the Markdown table comes back as $OUT/gpu_check.md):
#   command: PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --wheels .whl --out $OUT/gpu_check.md
#   carry: [".whl"]    timeout_s: 600
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$(realpath -m "${1:-$root/.whl}")"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    for candidate in "$root/.venv/bin/python" /work/main/.venv/bin/python python3; do
        if command -v "$candidate" >/dev/null 2>&1; then python="$candidate"; break; fi
    done
fi
# The GPU machine's interpreter (see the device notes): CPython 3.12 on manylinux x86_64 ($GPU_PYTHON to change).
gpu_python="${GPU_PYTHON:-3.12}"
target=(--python-version "$gpu_python" --implementation cp
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# Optional speed-option libraries, pinned for the GPU image's torch 2.11.
extra=(torchao==0.17.0 sageattention==1.0.6)

rm -rf "$dest"
mkdir -p "$dest"

# 1. motif-video as a wheel, from a copy of the sources without assets/ (the shipped small model, 11 MB).
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp "$root/pyproject.toml" "$root/README.md" "$stage/"
mkdir -p "$stage/src"
cp -r "$root/src/motif_video" "$stage/src/"
rm -rf "$stage/src/motif_video/assets"
find "$stage" -name __pycache__ -prune -exec rm -rf {} +
"$python" -m pip wheel -q --no-deps --no-build-isolation "$stage" -w "$dest"

# 2. The packages to install (pinned to the versions installed here) and everything they need, markers evaluated
#    for the GPU machine's Python. Prints "pin NAME==VERSION" for the named ones, "need NAME==VERSION" for the rest.
plan="$("$python" - "$gpu_python" "${extra[@]}" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, distribution

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOTS = ["diffusers", "transformers", "accelerate", "peft", "safetensors", "tokenizers", "huggingface_hub"]
# On the GPU image already, and large: never carried.
PRESENT = {"torch", "triton", "numpy", "pillow", "setuptools", "pip"}
gpu_python, extra = sys.argv[1], sys.argv[2:]
env = {**default_environment(), "python_version": gpu_python, "python_full_version": f"{gpu_python}.0", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython", "os_name": "posix",
       "extra": ""}
seen: dict[str, str] = {}
todo = list(ROOTS)
while todo:
    name = canonicalize_name(todo.pop())
    if name in seen or name in PRESENT or name.startswith(("nvidia-", "cuda-")):
        continue
    try:
        dist = distribution(name)
    except PackageNotFoundError:
        sys.exit(f"{name} is needed but not installed here; install it in {sys.prefix} first")
    seen[name] = dist.version
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate(env):
            todo.append(req.name)
roots = {canonicalize_name(r) for r in ROOTS}
for name, version in sorted(seen.items()):
    print(f"{'pin' if name in roots else 'need'} {name}=={version}")
for spec in extra:
    print(f"pin {spec}")
EOF
)"
echo "$plan" | awk '$1 == "pin" {print $2}' > "$dest/requirements.txt"

# 3. Download each, alone (--no-deps: the plan above is the whole closure), for the GPU machine's interpreter.
echo "$plan" | awk '{print $2}' | while read -r spec; do
    "$python" -m pip download -q --no-deps --only-binary=:all: "${target[@]}" -d "$dest" "$spec"
done

echo "wheels in $dest:"
ls -1 "$dest"
# What a device call carries: the tracked working tree plus this folder, 64 MiB at most.
wheels=$(du -sb "$dest" | cut -f1)
tree=$(cd "$root" && git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
awk -v w="$wheels" -v t="$tree" 'BEGIN {
    printf "wheels %.1f MiB + tracked working tree %.1f MiB = %.1f MiB of the 64 MiB a device call carries\n",
        w / 2^20, t / 2^20, (w + t) / 2^20
    if (w + t > 60 * 2^20) { print "warning: close to or over the limit"; exit 1 }
}'
