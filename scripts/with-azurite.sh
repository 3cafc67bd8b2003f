#!/usr/bin/env bash
# Runs a command with Azurite (Table + Queue + Blob) available, starting a private one if none is running,
# and stopping what it started. Exports AZURITE_CONNECTION_STRING for the tests.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
azurite="$here/node_modules/.bin/azurite"
default_cs="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
started=""
if (exec 3<>/dev/tcp/127.0.0.1/10002) 2>/dev/null; then
  echo "using the Azurite already listening on 127.0.0.1:10002"
else
  [ -x "$azurite" ] || { echo "Azurite is not installed: run npm ci" >&2; exit 2; }
  data="$(mktemp -d)"
  "$azurite" --silent --location "$data" --skipApiVersionCheck --loose \
    --blobHost 127.0.0.1 --queueHost 127.0.0.1 --tableHost 127.0.0.1 >"$data/azurite.log" 2>&1 &
  started=$!
  trap 'kill $started 2>/dev/null || true; wait $started 2>/dev/null || true; rm -rf "$data"' EXIT
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/10002) 2>/dev/null && break
    sleep 0.1
  done
  (exec 3<>/dev/tcp/127.0.0.1/10002) 2>/dev/null || { echo "Azurite did not start:" >&2; cat "$data/azurite.log" >&2; exit 2; }
  echo "started Azurite (pid $started)"
fi
export AZURITE_CONNECTION_STRING="${AZURITE_CONNECTION_STRING:-$default_cs}"
"$@"
