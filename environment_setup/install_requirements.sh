#!/usr/bin/env bash
# Installs the project and its dev dependencies into the current Python exactly as uv.lock
# holds them (every package's version and hashes, checked by pip), for build agents that do
# not run in the build-agent container (environment_setup/Dockerfile). A lock that
# pyproject.toml no longer matches is refused: run `make lock`. The project itself is
# installed editable, like `make`, so that the step scripts and the tests import the
# checked-out code.
#   bash environment_setup/install_requirements.sh      # uses `python` on PATH
#   PYTHON=python3.11 bash environment_setup/install_requirements.sh
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python}"
# The uv the Makefile installs (UV_VERSION there); tests/environment_setup/test_iac.py checks that they agree.
uv_version="0.13.8"

if ! "${python}" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "error: ${python} is not Python 3.11 (azureml-pipeline-steps does not install on 3.12);" \
        "set PYTHON=/path/to/python3.11" >&2
    exit 1
fi

requirements="$(mktemp)"
trap 'rm -f "${requirements}"' EXIT
"${python}" -m pip install --upgrade pip
"${python}" -m pip install "uv==${uv_version}"
"${python}" -m uv export --locked --extra dev --no-emit-project --no-header --quiet \
    --project "${repo_root}" --output-file "${requirements}"
"${python}" -m pip install --require-hashes -r "${requirements}"
"${python}" -m pip install --no-deps -e "${repo_root}"
