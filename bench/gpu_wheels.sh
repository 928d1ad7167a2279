#!/usr/bin/env bash
# Run here, before a lent GPU machine's first call (the device tool; its README): the wheels its Python 3.12 lacks
# for `app` (the web stack; torch, torchvision, numpy, numba and the rest are there), saved in .whl/, which git
# ignores through .git/info/exclude. Pinned to the versions this project is tested with; bench/gpu_check.sh
# installs them there. Usage: bash bench/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  fastapi==0.165.0 starlette==1.10.0 pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 \
  python-dotenv==1.2.4 typing-inspection==0.4.5 typing-extensions==4.16.0 annotated-types==0.8.0 \
  anyio==4.16.0 uvicorn==0.55.0 python-multipart==0.0.34 httpx==0.29.0 h11==0.16.0
ls .whl
du -sh .whl
