#!/usr/bin/env bash
# Installs the project and its dev dependencies (pyproject.toml, the one dependency
# declaration) into the current Python, for build agents that do not run in the
# build-agent container (environment_setup/Dockerfile). Editable, like `make`, so that the
# step scripts and the tests import the checked-out code.
#   bash environment_setup/install_requirements.sh      # uses `python` on PATH
#   PYTHON=python3.11 bash environment_setup/install_requirements.sh
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python}"

if ! "${python}" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "error: ${python} is not Python 3.11 (azureml-pipeline-steps does not install on 3.12);" \
        "set PYTHON=/path/to/python3.11" >&2
    exit 1
fi

"${python}" -m pip install --upgrade pip
"${python}" -m pip install -e "${repo_root}[dev]"
