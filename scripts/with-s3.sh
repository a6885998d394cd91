#!/usr/bin/env bash
# Runs a command with a local S3-compatible server (moto) on 127.0.0.1.
#
#   scripts/with-s3.sh cargo nextest run
#
# Installs tests/requirements-s3.txt (moto, and pyarrow for the interop check) into
# .venv-s3 when missing or changed, starts the
# server on a free port, exports KILN_TEST_S3_ENDPOINT and KILN_TEST_PYTHON for the
# tests, runs the command, and stops the server when the command ends, failed or not.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${KILN_S3_VENV:-.venv-s3}
REQS=tests/requirements-s3.txt

if ! cmp -s "$REQS" "$VENV/requirements.installed"; then
    echo "== installing $REQS into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS"
    cp "$REQS" "$VENV/requirements.installed"
fi

PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
LOG=$(mktemp -t kiln-moto.XXXXXX.log)
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$LOG" 2>&1 &
SERVER=$!
stop() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -f "$LOG"; }
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
"$@"
