#!/usr/bin/env bash
# schemathesis against the OpenAPI schema of a live `invdn serve` on 127.0.0.1 (a random free port), with the
# shipped weights. Passes when no answer is a 5xx other than 503 with Retry-After and every answer matches the
# schema (status codes, content types, headers, bodies). Bounded: MAX_EXAMPLES per operation, MAX_TIME seconds.
#   bash benchmarks/schemathesis_run.sh            # MAX_EXAMPLES=100 MAX_TIME=600 by default
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
MAX_EXAMPLES=${MAX_EXAMPLES:-100}
MAX_TIME=${MAX_TIME:-600}
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"

"$PY" -m invdn serve --host 127.0.0.1 --port "$PORT" --log-level warning &
SERVER=$!
WORK=$(mktemp -d)  # schemathesis keeps a cache in its working folder: keep it out of the repository
trap 'kill -INT "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$PY" - "$URL" <<'PYEOF'
import sys, time, httpx
url = sys.argv[1]
deadline = time.monotonic() + 600
while time.monotonic() < deadline:
    try:
        if httpx.get(f"{url}/health/ready", timeout=5).status_code == 200:
            sys.exit(0)
    except httpx.HTTPError:
        pass
    time.sleep(0.5)
sys.exit("server not ready after 600 s")
PYEOF

# not_a_server_error is replaced by the hook's check (503 with Retry-After is allowed); positive_data_acceptance
# is excluded because a schema-valid upload (any bytes) is rightly refused when it is not an image.
cd "$WORK"
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=benchmarks.schemathesis_hooks timeout "$MAX_TIME" "$PY" -m schemathesis.cli run "$URL/openapi.json" \
  --exclude-checks not_a_server_error,positive_data_acceptance \
  --max-examples "$MAX_EXAMPLES" --request-timeout 300 --workers 1 \
  --generation-database none --no-color
