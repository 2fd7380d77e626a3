#!/usr/bin/env bash
# The container engine and the Lambda base image that `sam local invoke` needs, from local parts.
#
#   bash scripts/lambda_docker.sh install # the Debian packages docker.io and debootstrap, if missing
#   bash scripts/lambda_docker.sh start   # install + start the project's dockerd
#   bash scripts/lambda_docker.sh image   # start + build the python3.12 x86_64 base image if missing
#   bash scripts/lambda_docker.sh env     # print `export DOCKER_HOST=...` for this dockerd
#   bash scripts/lambda_docker.sh stop    # stop the project's dockerd (images stay cached)
#
# Engine: Debian's docker.io, started as root with its own socket, data and exec roots (beside
# any other Docker on the machine), without a bridge and without touching the host's iptables
# (--bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false). Its
# default runtime (scripts/lambda_docker/host_network_runtime.py, around runc) puts every
# container on the host's network, so the function reaches the local stack on 127.0.0.1 and SAM
# reaches the runtime interface emulator on the port it picked.
#
# Image: SAM CLI builds its invoke image FROM public.ecr.aws/lambda/python:3.12-<arch> (its
# samcli/local/docker/lambda_image.py: `public.ecr.aws/lambda/` + Runtime.get_image_name_tag)
# and adds its own runtime interface emulator (samcli/local/rapid/aws-lambda-rie-<arch>) and the
# layers on top. Pulls are impossible here, so this script builds that base image under that
# name from: a Debian bookworm root file system (debootstrap), the machine's CPython 3.12 in
# /var/lang (as on Lambda: $PYTHON312, python3.12 on PATH, or pyenv's 3.12, like
# scripts/sam_build.sh), boto3 in /var/lang's site-packages (what the runtime provides,
# scripts/lambda_docker/runtime-requirements.txt) and awslambdaric from PyPI in /var/runtime,
# started by /var/runtime/bootstrap. x86_64 only: the architecture of these machines.
#
# Cached: the root file system and the image are rebuilt only when this recipe changes (a hash
# of this script, the requirements and the Python version is the image's label).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

STATE="${LAMBDA_DOCKER_STATE:-/var/lib/cdc-lambda-docker}"
RUN_DIR="${LAMBDA_DOCKER_RUN:-/run/cdc-lambda-docker}"
SOCKET="$RUN_DIR/docker.sock"
export DOCKER_HOST="unix://$SOCKET"
IMAGE="public.ecr.aws/lambda/python:3.12-x86_64"
ROOTFS_PACKAGES="ca-certificates,libssl3,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,zlib1g,libexpat1,libncursesw6,libreadline8,libuuid1,libcrypt1,libnsl2,libtirpc3"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

log() { echo "lambda_docker: $*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
    local need=()
    command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
    command -v docker >/dev/null 2>&1 || need+=(docker.io)
    command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
    [ ${#need[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${need[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        $(printf '%s\n' "${need[@]}" | sort -u) >&2
}

engine_up() {
    docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

start_engine() {
    install_packages
    engine_up && return 0
    as_root mkdir -p "$STATE" "$RUN_DIR"
    # The runtime is copied out of the checkout, so a dockerd outlives a moved or deleted clone.
    local python3_bin
    python3_bin="$(command -v python3)"
    as_root install -m 0644 "$repo/scripts/lambda_docker/host_network_runtime.py" "$STATE/host_network_runtime.py"
    printf '#!/bin/sh\nexec %s %s "$@"\n' "$python3_bin" "$STATE/host_network_runtime.py" \
        | as_root tee "$STATE/host-network-runtime" >/dev/null
    as_root chmod 0755 "$STATE/host-network-runtime"
    cat <<EOF | as_root tee "$STATE/daemon.json" >/dev/null
{
  "runtimes": {
    "host-network": {"path": "$STATE/host-network-runtime", "runtimeArgs": ["--docker-root", "$STATE/docker"]}
  },
  "default-runtime": "host-network"
}
EOF
    log "starting dockerd (socket $SOCKET, data $STATE/docker)"
    as_root sh -c "nohup dockerd --config-file '$STATE/daemon.json' --data-root '$STATE/docker' \
        --exec-root '$RUN_DIR/exec' --pidfile '$RUN_DIR/dockerd.pid' --host '$DOCKER_HOST' \
        --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
        --userland-proxy=false > '$STATE/dockerd.log' 2>&1 &"
    for _ in $(seq 1 120); do
        engine_up && { log "dockerd is up"; return 0; }
        sleep 0.5
    done
    log "dockerd did not come up; its log:"
    tail -n 30 "$STATE/dockerd.log" >&2
    return 1
}

stop_engine() {
    if [ -f "$RUN_DIR/dockerd.pid" ]; then
        local pid
        pid="$(cat "$RUN_DIR/dockerd.pid")"
        as_root kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
    fi
}

find_python312() {
    if [ -n "${PYTHON312:-}" ] && [ -x "$PYTHON312" ]; then echo "$PYTHON312"; return 0; fi
    local candidate
    if candidate="$(command -v python3.12 2>/dev/null)" && "$candidate" --version >/dev/null 2>&1; then
        echo "$candidate"; return 0
    fi
    for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
        if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
    done
    return 1
}

build_image() {
    start_engine
    local py312 recipe rootfs work
    py312="$(find_python312)" || { log "python3.12 not found (set PYTHON312=/path/to/python3.12)"; return 1; }
    recipe="$( { cat "$0" "$repo/scripts/lambda_docker/runtime-requirements.txt"; "$py312" -VV; } \
        | sha256sum | cut -c1-16)"
    if [ "$(docker image inspect --format '{{index .Config.Labels "cdc.recipe"}}' "$IMAGE" 2>/dev/null)" = "$recipe" ]; then
        log "$IMAGE is current (recipe $recipe)"
        return 0
    fi
    local started=$SECONDS
    rootfs="$STATE/rootfs-bookworm-$(echo "$ROOTFS_PACKAGES" | sha256sum | cut -c1-12)"
    if ! docker image inspect "cdc-lambda-rootfs:$(basename "$rootfs")" >/dev/null 2>&1; then
        if [ ! -f "$rootfs/.complete" ]; then
            log "debootstrap bookworm into $rootfs (a few minutes, once)"
            as_root rm -rf "$rootfs"
            as_root debootstrap --variant=minbase --include="$ROOTFS_PACKAGES" bookworm "$rootfs" \
                "$DEBIAN_MIRROR" > "$STATE/debootstrap.log" 2>&1 \
                || { tail -n 20 "$STATE/debootstrap.log" >&2; return 1; }
            as_root rm -rf "$rootfs/var/cache/apt/archives"/*.deb "$rootfs/var/lib/apt/lists"/*
            as_root touch "$rootfs/.complete"
        fi
        log "importing the root file system"
        as_root tar -C "$rootfs" --exclude=./.complete -c . \
            | docker import - "cdc-lambda-rootfs:$(basename "$rootfs")" >/dev/null
    fi
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' RETURN
    local prefix
    prefix="$("$py312" -c 'import sys; print(sys.base_prefix)')"
    log "CPython $("$py312" -c 'import platform; print(platform.python_version())') from $prefix -> /var/lang"
    mkdir -p "$work/lang/bin" "$work/lang/lib" "$work/runtime"
    cp -a "$prefix/bin/python3.12" "$work/lang/bin/"
    ln -s python3.12 "$work/lang/bin/python3"
    cp -a "$prefix"/lib/libpython3* "$work/lang/lib/" 2>/dev/null || true
    tar -C "$prefix/lib" -c \
        --exclude='python3.12/site-packages' --exclude='python3.12/test' \
        --exclude='python3.12/idlelib' --exclude='python3.12/tkinter' \
        --exclude='python3.12/turtledemo' --exclude='python3.12/ensurepip' \
        --exclude='python3.12/config-3.12-*' --exclude='__pycache__' python3.12 \
        | tar -C "$work/lang/lib" -x
    mkdir -p "$work/lang/lib/python3.12/site-packages"
    local pip_target=(-m pip install --quiet --disable-pip-version-check --no-compile
        --only-binary=:all: --platform manylinux2014_x86_64 --implementation cp --python-version 3.12)
    "$py312" "${pip_target[@]}" --target "$work/lang/lib/python3.12/site-packages" \
        -r "$repo/scripts/lambda_docker/runtime-requirements.txt"
    "$py312" "${pip_target[@]}" --target "$work/runtime" awslambdaric
    rm -rf "$work/runtime/bin" "$work/lang/lib/python3.12/site-packages/bin"
    # Lambda's python runtime: the function's code, then the layers, then the runtime's own
    # site-packages (boto3); the runtime client last, so function code cannot import it by luck.
    cat > "$work/runtime/bootstrap" <<'EOF'
#!/bin/sh
export PYTHONPATH="/var/task:/opt/python/lib/python3.12/site-packages:/opt/python"
exec /var/lang/bin/python3.12 -c 'import sys; sys.path.append("/var/runtime"); from awslambdaric.__main__ import main; main(sys.argv)' "${_HANDLER:-$AWS_LAMBDA_FUNCTION_HANDLER}"
EOF
    chmod 0755 "$work/runtime/bootstrap"
    cat > "$work/Dockerfile" <<EOF
FROM cdc-lambda-rootfs:$(basename "$rootfs")
COPY lang /var/lang
COPY runtime /var/runtime
ENV LANG=en_US.UTF-8 TZ=:/etc/localtime PATH=/var/lang/bin:/usr/local/bin:/usr/bin:/bin \\
    LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib \\
    LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime
WORKDIR /var/task
ENTRYPOINT ["/var/runtime/bootstrap"]
LABEL cdc.recipe="$recipe"
EOF
    log "building $IMAGE"
    DOCKER_BUILDKIT=0 docker build --quiet --platform linux/amd64 -t "$IMAGE" "$work" >/dev/null
    log "built $IMAGE in $((SECONDS - started)) s"
}

case "${1:-}" in
    install) install_packages ;;
    start) start_engine ;;
    image) build_image ;;
    env) echo "export DOCKER_HOST=$DOCKER_HOST" ;;
    stop) stop_engine ;;
    *) echo "usage: $0 install|start|image|env|stop" >&2; exit 2 ;;
esac
