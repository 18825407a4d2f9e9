#!/usr/bin/env bash
# Caffe 1.0 for bnbench: Debian 11 (bullseye) chroot with python3-caffe (Python 3.9, numpy 1.19),
# and bnbench's source mounted into it, reached through `.envs/caffe/bin/python` (a wrapper that
# runs the chroot's python3). Idempotent: each step is skipped when its result exists.
#   usage: scripts/setup-caffe-chroot.sh [ENVS_DIR]      (default .envs; needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
ENVS=${1:-.envs}
ROOT_DIR="$(pwd)/$ENVS/caffe-root"
WRAPPER_DIR="$(pwd)/$ENVS/caffe/bin"
step() { echo "[caffe] $*"; }
fail() { echo "[caffe] error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "creating and entering a chroot needs root (run as root, or use sudo)"
mkdir -p "$ENVS"       # the first environment made may be this one
# the Debian mirror the machine's own apt sources name (deb822 "URIs:" or one-line "deb" entries)
MIRROR=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
         | grep -oE 'https?://[^ ]+' | grep debian | grep -v security | head -n 1 || true)
[ -n "$MIRROR" ] || fail "no Debian mirror in the apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/*): add the Debian mirror this machine may reach, then run again"
MIRROR=${MIRROR%/}

if ! command -v debootstrap > /dev/null; then
    step "installing debootstrap (apt)"
    apt-get install -y -q debootstrap > /dev/null 2>&1 || { apt-get update -q > /dev/null 2>&1 && apt-get install -y -q debootstrap > /dev/null 2>&1; } \
        || fail "cannot install debootstrap from the package mirror ($MIRROR): no network to it?"
fi
if [ ! -x "$ROOT_DIR/usr/bin/apt-get" ]; then
    step "debootstrap bullseye (minbase) into $ROOT_DIR from $MIRROR (about 2-3 minutes)"
    rm -rf "$ROOT_DIR"
    debootstrap --variant=minbase bullseye "$ROOT_DIR" "$MIRROR" > "$ENVS/caffe-debootstrap.log" 2>&1 \
        || fail "debootstrap failed (log: $ENVS/caffe-debootstrap.log); is $MIRROR reachable?"
else
    step "chroot exists: $ROOT_DIR"
fi
if ! chroot "$ROOT_DIR" python3 -c "import caffe" > /dev/null 2>&1; then
    step "apt-get install python3-caffe inside the chroot (about 1 GB)"
    chroot "$ROOT_DIR" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-caffe \
        > "$ENVS/caffe-apt.log" 2>&1 || fail "installing python3-caffe failed (log: $ENVS/caffe-apt.log)"
else
    step "python3-caffe already installed"
fi
# Caffe's matmuls go to whatever provides libblas.so.3: Debian's reference BLAS (4 GFLOP/s at
# the CPU peak's product on 2 cores) unless OpenBLAS is installed, which Debian's alternatives then choose.
if [ ! -e "$ROOT_DIR/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3" ]; then
    step "apt-get install libopenblas0-pthread inside the chroot (Caffe's BLAS)"
    chroot "$ROOT_DIR" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libopenblas0-pthread \
        > "$ENVS/caffe-openblas.log" 2>&1 || fail "installing libopenblas0-pthread failed (log: $ENVS/caffe-openblas.log)"
fi
# threadpoolctl: the worker names the BLAS and kernel it really loaded (bnbench.timing.kernels)
if ! chroot "$ROOT_DIR" python3 -c "import threadpoolctl" > /dev/null 2>&1; then
    step "apt-get install python3-threadpoolctl inside the chroot (which BLAS its worker loaded)"
    chroot "$ROOT_DIR" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-threadpoolctl \
        > "$ENVS/caffe-threadpoolctl.log" 2>&1 || fail "installing python3-threadpoolctl failed (log: $ENVS/caffe-threadpoolctl.log)"
fi
step "wrapper $WRAPPER_DIR/python (runs the chroot's python3 with a copy of bnbench's source)"
mkdir -p "$ROOT_DIR/opt"
mkdir -p "$WRAPPER_DIR"
cat > "$WRAPPER_DIR/python" <<WRAP
#!/usr/bin/env bash
# bnbench's worker interpreter for Caffe: python3 of the Debian 11 chroot. This checkout's
# packages are copied in as the installed 'bnbench' would lay them out (pyproject's package-dir
# mapping) on every start: a private copy, renamed into place, never a mount into the checkout.
set -euo pipefail
ROOT_DIR="$ROOT_DIR"
SRC="$(pwd)"
STAGE=\$(mktemp -d "\$ROOT_DIR/opt/.bnbench-XXXXXX")
cp -r "\$SRC/bnbench" "\$STAGE/bnbench"
cp -r "\$SRC/reference" "\$STAGE/bnbench/reference"
cp -r "\$SRC/adapters" "\$STAGE/bnbench/adapters"
RUN="/opt/\$(basename "\$STAGE")"
trap 'rm -rf "\$STAGE"' EXIT
COMMAND=(/usr/bin/env PYTHONPATH="\$RUN" PYTHONDONTWRITEBYTECODE=1 GLOG_minloglevel=2 BNBENCH_WORKER="\${BNBENCH_WORKER:-}" python3 "\$@")
# /proc inside the chroot, mounted in a mount namespace of this process's own (gone with it, never
# seen outside): the worker reads the memory its step holds and pins its threads through it.
# Where a namespace cannot be made, the chroot runs without /proc and its rows say so.
if unshare --mount --propagation private true 2> /dev/null; then
    unshare --mount --propagation private -- /bin/sh -c 'mount -t proc proc "\$0/proc" 2> /dev/null; exec chroot "\$0" "\$@"' \
        "\$ROOT_DIR" "\${COMMAND[@]}"
else
    chroot "\$ROOT_DIR" "\${COMMAND[@]}"
fi
WRAP
chmod +x "$WRAPPER_DIR/python"
"$WRAPPER_DIR/python" -c "import caffe, numpy, sys; print('[caffe] ready: python', sys.version.split()[0], 'numpy', numpy.__version__, 'caffe', getattr(caffe, '__version__', '1.0'))"
touch "$ENVS/caffe/.bnbench-installed"
