#!/usr/bin/env bash
# Builds the SAM application (template.yaml) without Docker:
#   - the two Lambda functions with BuildMethod python3.12 (needs a python3.12 on PATH),
#   - the SharedLayer with layers/shared/Makefile (the `shared` package plus its runtime
#     dependencies from pyproject.toml as manylinux aarch64 wheels),
#   - then the DMS table mappings of the pipeline spec into the built template.
# Output: .aws-sam/build/ (then `sam deploy`, or `sam package`).
#
#   bash scripts/sam_build.sh                 # build the repository's template
#   bash scripts/sam_build.sh --cached        # extra arguments go to `sam build`
#   APP_DIR=/tmp/copy bash scripts/sam_build.sh   # build a copy of the app elsewhere
#   LAMBDA_ARCHITECTURE=x86_64 bash scripts/sam_build.sh   # functions + layer for x86_64
#   PIPELINE_SPEC=shared/specs/mine.toml bash scripts/sam_build.sh   # DMS selects its tables
#
# LAMBDA_ARCHITECTURE (arm64 by default, as the template) becomes the template parameter
# LambdaArchitecture and the layer build's wheel platform: SAM does not tell a makefile build
# the architecture, so both must come from here to agree.
#
# Uses .venv-tools/bin/sam (scripts/install_tools.sh) if present, else `sam` from PATH.
# python3.12 is looked up as: $PYTHON312, python3.12 on PATH, pyenv's 3.12.x.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
app_dir="${APP_DIR:-$repo}"

find_python312() {
    if [ -n "${PYTHON312:-}" ] && [ -x "$PYTHON312" ]; then
        echo "$PYTHON312"; return 0
    fi
    local candidate
    if candidate="$(command -v python3.12 2>/dev/null)" && "$candidate" --version >/dev/null 2>&1; then
        echo "$candidate"; return 0
    fi
    local root="${PYENV_ROOT:-$HOME/.pyenv}"
    for candidate in "$root"/versions/3.12*/bin/python3.12; do
        if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
    done
    return 1
}

if ! py312="$(find_python312)"; then
    echo "sam_build: python3.12 not found (set PYTHON312=/path/to/python3.12)" >&2
    exit 1
fi
# Put python3.12's directory first so lambda-builders' runtime check finds it; the layer's
# Makefile also uses it (PYTHON) for its cross-platform pip install.
export PATH="$(dirname "$py312"):$PATH"
export PYTHON="$py312"
export LAMBDA_ARCHITECTURE="${LAMBDA_ARCHITECTURE:-arm64}"
export SAM_CLI_TELEMETRY=0

sam_bin="$repo/.venv-tools/bin/sam"
[ -x "$sam_bin" ] || sam_bin="$(command -v sam)" || {
    echo "sam_build: AWS SAM CLI not found; run: bash scripts/install_tools.sh" >&2
    exit 1
}

cd "$app_dir"
echo "sam_build: $("$sam_bin" --version) with $("$py312" --version) in $app_dir"
"$sam_bin" build --template-file template.yaml \
    --parameter-overrides "LambdaArchitecture=$LAMBDA_ARCHITECTURE" "$@"
# Where sam put the build: its default, or what --build-dir/-b said.
build_dir="$app_dir/.aws-sam/build"
previous=""
for arg in "$@"; do
    case "$previous" in --build-dir|-b) build_dir="$(cd "$app_dir" && realpath -m "$arg")" ;; esac
    case "$arg" in --build-dir=*) build_dir="$(cd "$app_dir" && realpath -m "${arg#--build-dir=}")" ;; esac
    previous="$arg"
done

# The DMS table mappings of the pipeline spec, written into the built template that `sam
# deploy` uploads: every table of the spec, nothing else (tools/dms_table_mappings.py).
# PIPELINE_SPEC names the spec the stack runs with (its PipelineSpecPath inside the layer is
# /opt/python/shared/specs/<file>); the default is the packaged spec.
tools_python="$repo/.venv-tools/bin/python"
[ -x "$tools_python" ] || tools_python="$(command -v python3)"
PYTHONPATH="$repo" "$tools_python" -m tools.dms_table_mappings \
    --spec "${PIPELINE_SPEC:-$app_dir/shared/specs/sports_ticketing.toml}" \
    --template "$build_dir/template.yaml"
