#!/usr/bin/env bash
# issue-build.sh: get this build's client certificate from mcc server.
#
# A CI job calls it after the app is built and before it is packaged. The
# CA key stays on the server; the job holds only an API token (scope
# "issue" and "read") in a file. It writes, into $MCC_OUT_DIR:
#   client.p12                 the PKCS#12 bundle to embed in the app   (0600)
#   client.p12.password        its password                             (0600)
#   client.p12.certified.json  the signed certified-secure record (keep it with the build)
# and then has the server verify the record and the bundle.
#
# Retrying the job is safe: the same fusion set, app and build id send the
# same Idempotency-Key, and the server returns the build it already issued
# instead of a second certificate.
#
# Required: MCC_SERVER_URL, MCC_TOKEN_FILE, MCC_FUSION_SET, MCC_APP_ID, MCC_BUILD_ID
# Optional: MCC_SERVER_CA (PEM of a private CA that signs the server's TLS
#           certificate), MCC_OUT_DIR (default build/mcc), MCC_LEGACY=1 (also a
#           3DES bundle for old iOS/Android importers), MCC (the mcc binary,
#           default: mcc on PATH).
set -euo pipefail

: "${MCC_SERVER_URL:?set MCC_SERVER_URL, e.g. https://mcc.example.com}"
: "${MCC_TOKEN_FILE:?set MCC_TOKEN_FILE to a file holding the API token}"
: "${MCC_FUSION_SET:?set MCC_FUSION_SET}"
: "${MCC_APP_ID:?set MCC_APP_ID}"
: "${MCC_BUILD_ID:?set MCC_BUILD_ID (your CI run id, for example)}"
mcc="${MCC:-mcc}"
out="${MCC_OUT_DIR:-build/mcc}"

# The bundle and its password are secrets: nobody else on the runner reads them.
umask 077
mkdir -p "$out"

server=(--server "$MCC_SERVER_URL" --token-file "$MCC_TOKEN_FILE")
if [ -n "${MCC_SERVER_CA:-}" ]; then
  server+=(--server-ca "$MCC_SERVER_CA")
fi

issue=(--fusion-set "$MCC_FUSION_SET" --app-id "$MCC_APP_ID" --build "$MCC_BUILD_ID" --out "$out/client.p12")
if [ "${MCC_LEGACY:-0}" = 1 ]; then
  issue+=(--legacy-out "$out/client-legacy.p12")
fi

"$mcc" issue "${server[@]}" "${issue[@]}"
"$mcc" certify verify "$out/client.p12.certified.json" "${server[@]}" --bundle "$out/client.p12"
