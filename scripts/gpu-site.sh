# Sourced by scripts/gpu-run.sh and scripts/gpu-scale.sh (run from the checkout's root):
#   gpu_site PYTHON NAME
# makes $site, a temporary folder (removed on exit) with the carried wheels (.whl/, made by
# scripts/gpu-wheelhouse.sh) installed for PYTHON and bnbench copied under its import name, and puts
# it first on PYTHONPATH: nothing is installed into the lent machine's Python. NAME prefixes messages.
gpu_site() {
    local python=$1 name=$2
    site=$(mktemp -d)
    trap 'rm -rf "$site"' EXIT
    if ls .whl/*.whl > /dev/null 2>&1; then
        "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
            || { echo "$name: the carried wheels (.whl/) do not install" >&2; return 2; }
        echo "$name: carried wheels: $(ls .whl/*.whl | xargs -n1 basename | paste -sd' ')"
    fi
    cp -r bnbench "$site/bnbench"
    cp -r reference "$site/bnbench/reference"
    cp -r adapters "$site/bnbench/adapters"
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
}
