#!/usr/bin/env bash
# Runs a command with local object-store servers on 127.0.0.1: moto (S3) and, where
# npm is available, Azurite (Azure Blob Storage).
#
#   scripts/with-stores.sh cargo nextest run
#
# Installs tests/requirements.txt (moto; pyarrow for the interop check; the Azure SDK;
# datatrove + spaCy, the text.quality reference) into .venv-test and tests/package-lock.json (Azurite) into
# .azurite when missing or changed, and tests/requirements-train.txt (megatron-core,
# torch: the trainers' readers) into .venv-train; starts the servers on free ports,
# exports KILN_TEST_S3_ENDPOINT, KILN_TEST_PYTHON, KILN_TEST_TRAIN_PYTHON and, with
# Azurite, KILN_TEST_AZURE and
# AZURITE_BLOB_STORAGE_URL, runs the command, and stops the servers when it ends,
# failed or not.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${KILN_TEST_VENV:-.venv-test}
REQS=tests/requirements.txt

install_venv() {
    if ! cmp -s "$REQS" "$VENV/requirements.installed"; then
        echo "== installing $REQS into $VENV"
        python3 -m venv "$VENV"
        # --no-compile: no bytecode for every module of every package now (37 of pip's
        # 85 CPU-s, taken from the compile `make test` runs beside it); Python writes it
        # for the modules the tests import, when they first do.
        "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-compile -r "$REQS"
        cp "$REQS" "$VENV/requirements.installed"
    fi
    # The wheel test (tests/wheel.rs) installs kiln's wheel into a fresh virtualenv
    # without the network: pyarrow comes from this folder.
    if ! cmp -s "$REQS" .wheelhouse/requirements.installed; then
        echo "== downloading pyarrow into .wheelhouse (for the wheel test)"
        mkdir -p .wheelhouse
        "$VENV/bin/pip" download --quiet --disable-pip-version-check --only-binary=:all: \
            -d .wheelhouse "$(grep -E '^pyarrow==' "$REQS")"
        cp "$REQS" .wheelhouse/requirements.installed
    fi
}
# The trainers' readers (megatron-core, torch) in a venv of their own: gigabytes, so
# apart from .venv-test, and installed only when tests/requirements-train.txt changes.
TRAIN_VENV=${KILN_TRAIN_VENV:-.venv-train}
TRAIN_REQS=tests/requirements-train.txt
install_train_venv() {
    if ! cmp -s "$TRAIN_REQS" "$TRAIN_VENV/requirements.installed"; then
        echo "== installing $TRAIN_REQS into $TRAIN_VENV (torch: ~6 GB)"
        python3 -m venv "$TRAIN_VENV"
        "$TRAIN_VENV/bin/pip" install --quiet --disable-pip-version-check --no-compile -r "$TRAIN_REQS"
        cp "$TRAIN_REQS" "$TRAIN_VENV/requirements.installed"
    fi
}
install_azurite() {
    if command -v npm >/dev/null 2>&1 && ! cmp -s tests/package-lock.json .azurite/package-lock.json.installed; then
        echo "== installing Azurite (tests/package-lock.json) into .azurite"
        mkdir -p .azurite
        cp tests/package.json tests/package-lock.json .azurite/
        (cd .azurite && npm ci --no-audit --no-fund --silent)
        cp tests/package-lock.json .azurite/package-lock.json.installed
    fi
}

# `--install`: only install the servers and Python packages (make test runs this while
# cargo compiles), then exit.
if [[ "${1:-}" == "--install" ]]; then
    install_venv
    install_train_venv
    install_azurite
    # Slurm for the job-array test (tests/s3/slurm.rs), which needs root to run; pigz and
    # wget, whose output tests/split.rs and tests/warc.rs read (skipped without them).
    if [[ $(id -u) -eq 0 ]]; then
        scripts/slurm.sh install
        missing=()
        for tool in pigz wget; do command -v $tool >/dev/null 2>&1 || missing+=($tool); done
        if [[ ${#missing[@]} -gt 0 ]]; then
            echo "== installing ${missing[*]} from Debian's packages"
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null \
                || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y \
                    --no-install-recommends "${missing[@]}" >/dev/null; } \
                || echo "!!!! could not install ${missing[*]}: their tests are skipped !!!!"
        fi
    fi
    exit 0
fi
install_venv
install_train_venv

free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
TMP=$(mktemp -d -t kiln-stores.XXXXXX)
LOG=$TMP/moto.log
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$LOG" 2>&1 &
SERVER=$!
AZURITE=
stop() {
    kill $SERVER $AZURITE 2>/dev/null || true
    wait $SERVER $AZURITE 2>/dev/null || true
    rm -rf "$TMP"
}
trap stop EXIT INT TERM

for _ in $(seq 1 100); do
    if "$VENV/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/moto-api/')" >/dev/null 2>&1; then
        break
    fi
    if ! kill -0 "$SERVER" 2>/dev/null; then
        echo "moto_server failed to start:" >&2; cat "$LOG" >&2; exit 1
    fi
    sleep 0.1
done
echo "== S3 server (moto) on http://127.0.0.1:$PORT"

export KILN_TEST_S3_ENDPOINT="http://127.0.0.1:$PORT"
export KILN_TEST_PYTHON="$PWD/$VENV/bin/python"
export KILN_TEST_TRAIN_PYTHON="$PWD/$TRAIN_VENV/bin/python"

# Azurite, from the npm registry, when npm is there.
if command -v npm >/dev/null 2>&1; then
    install_azurite
    APORT=$(free_port)
    .azurite/node_modules/.bin/azurite-blob --blobHost 127.0.0.1 --blobPort "$APORT" \
        --location "$TMP/azurite" --silent --skipApiVersionCheck >"$TMP/azurite.log" 2>&1 &
    AZURITE=$!
    export AZURITE_BLOB_STORAGE_URL="http://127.0.0.1:$APORT"
    for _ in $(seq 1 100); do
        if "$VENV/bin/python" tests/interop/azure_container.py "$AZURITE_BLOB_STORAGE_URL" kiln 2>/dev/null; then
            export KILN_TEST_AZURE=kiln
            echo "== Azure Blob Storage (Azurite) on $AZURITE_BLOB_STORAGE_URL, container kiln"
            break
        fi
        sleep 0.2
    done
    if [[ -z "${KILN_TEST_AZURE:-}" ]]; then
        echo "Azurite failed to start:" >&2; cat "$TMP/azurite.log" >&2; exit 1
    fi
else
    echo "!!!! npm not found: the Azure tests will be skipped (install nodejs and npm to run them) !!!!"
fi
# The venvs are installed without bytecode (pip --no-compile: most modules are never
# imported), so the first test process to import a module writes its .pyc and the
# others read it. Where the environment sets PYTHONDONTWRITEBYTECODE (this machine
# class does), no .pyc is ever written and every one of the tests' Python processes
# compiles what it imports from source again: measured here, the datatrove reference
# on 10 documents 2.87 s against 1.15 s, `import torch` 4.1 s against 1.6 s.
unset PYTHONDONTWRITEBYTECODE
"$@"
