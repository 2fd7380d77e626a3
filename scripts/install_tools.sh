#!/usr/bin/env bash
# Installs the deployment tool chain (AWS SAM CLI and cfn-lint) into its own virtualenv,
# .venv-tools/, so that their pinned dependencies never fight the project's .venv; checkov
# gets a virtualenv of its own inside it, .venv-tools/checkov/ (its pins would downgrade
# boto3 under SAM).
# Idempotent: it re-installs only when this file's pins change.
#
#   bash scripts/install_tools.sh        # creates/updates .venv-tools/
#   .venv-tools/bin/sam --version
#   .venv-tools/bin/cfn-lint --version
#
# Override the interpreter with TOOLS_PYTHON=/path/to/python3.x (3.9+).
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS_VENV="${TOOLS_VENV:-.venv-tools}"
TOOLS_PYTHON="${TOOLS_PYTHON:-python3}"
# Pinned floors; bump deliberately. aws-sam-translator comes with both.
PACKAGES=("aws-sam-cli>=1.120" "cfn-lint>=1.20")

if [ ! -x "$TOOLS_VENV/bin/python" ]; then
    echo "install_tools: creating $TOOLS_VENV with $("$TOOLS_PYTHON" --version)"
    "$TOOLS_PYTHON" -m venv "$TOOLS_VENV"
fi
stamp="$TOOLS_VENV/.installed-$(printf '%s\n' "${PACKAGES[@]}" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ ! -x "$TOOLS_VENV/bin/sam" ] || [ ! -x "$TOOLS_VENV/bin/cfn-lint" ]; then
    echo "install_tools: installing ${PACKAGES[*]} into $TOOLS_VENV"
    "$TOOLS_VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip
    "$TOOLS_VENV/bin/pip" install -q --disable-pip-version-check "${PACKAGES[@]}"
    rm -f "$TOOLS_VENV"/.installed-*
    touch "$stamp"
fi
CHECKOV_VENV="$TOOLS_VENV/checkov"
CHECKOV=("checkov>=3.2,<4")
checkov_stamp="$CHECKOV_VENV/.installed-$(printf '%s\n' "${CHECKOV[@]}" | sha256sum | cut -c1-16)"
if [ ! -f "$checkov_stamp" ] || [ ! -x "$CHECKOV_VENV/bin/checkov" ]; then
    echo "install_tools: installing ${CHECKOV[*]} into $CHECKOV_VENV"
    [ -x "$CHECKOV_VENV/bin/python" ] || "$TOOLS_PYTHON" -m venv "$CHECKOV_VENV"
    "$CHECKOV_VENV/bin/pip" install -q --disable-pip-version-check "${CHECKOV[@]}"
    rm -f "$CHECKOV_VENV"/.installed-*
    touch "$checkov_stamp"
fi
"$TOOLS_VENV/bin/sam" --version
"$TOOLS_VENV/bin/cfn-lint" --version
# `sam local invoke` (make sam-invoke) needs a container engine and debootstrap for its image:
# the Debian packages docker.io and debootstrap, installed if missing (scripts/lambda_docker.sh).
bash scripts/lambda_docker.sh install
"$CHECKOV_VENV/bin/checkov" --version
