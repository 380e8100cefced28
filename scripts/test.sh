#!/usr/bin/env bash
# Runs every test mcc has: vet, the full test suite (with -v, never -short or
# -trimpath, because caddytest skips silently under both), a short run of each
# fuzz target, and the xcaddy build line from the README. A skipped test fails
# the run: every test here must be able to run on a machine set up by
# .ci/run (openssl, curl, redis-server, postgresql, chromium, node, a JDK,
# kotlin and OkHttp, Debian's python3 with python3-cryptography).
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests drive real openssl, curl, redis-server and PostgreSQL binaries
# (internal/pgtest starts its own cluster, as the postgres user when run as
# root, since PostgreSQL refuses to run as root). Install them
# from Debian's packages when they are missing and we may (root with apt-get);
# otherwise say what to install.
need=()
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v redis-server >/dev/null || need+=(redis-server)
command -v chromium >/dev/null || need+=(chromium)
# The example clients (examples/clients) run with their own toolchains.
command -v node >/dev/null || need+=(nodejs)
command -v javac >/dev/null || need+=(default-jdk-headless)
command -v kotlinc >/dev/null || need+=(kotlin)
[ -f /usr/share/java/okhttp.jar ] || need+=(libokhttp-java)
[ -f /usr/share/java/com.android.json.jar ] || need+=(libandroid-json-java)
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import cryptography' 2>/dev/null || need+=(python3 python3-cryptography)
# Debian puts the server binaries in /usr/lib/postgresql/<version>/bin, off PATH.
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || command -v postgres >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "== installing ${need[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
		# The package may start a system redis on 6379; the tests start
		# their own instances on free ports and do not need it.
		service redis-server stop >/dev/null 2>&1 || true
		# Likewise the cluster the postgresql package creates and starts.
		service postgresql stop >/dev/null 2>&1 || true
	else
		echo "missing: ${need[*]} (install with: sudo apt-get install -y ${need[*]})" >&2
		exit 1
	fi
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "== go vet"
go vet ./...

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi

echo "== go test"
# -p 2: two package binaries at a time (each caddytest package has its own
# admin port). GOFLAGS is cleared of -trimpath on purpose.
GOFLAGS="$(go env GOFLAGS | sed 's/-trimpath//g')" go test -v -count=1 -p 2 -timeout 20m ./... 2>&1 | tee "$log"
if grep -E -- '^\s*--- SKIP' "$log"; then
	echo "FAIL: tests were skipped (see above); CI treats a skip as a failure" >&2
	exit 1
fi

echo "== fuzz (short)"
# fuzz PACKAGE TARGET runs one target for 15 s. On a loaded 2-core machine
# Go's fuzz workers sometimes stall (0 execs/s) until the coordinator gives
# up with "context deadline exceeded": that run is tried once more. Any
# other failure (a crasher) fails at once.
fuzz() {
	local out
	if out=$(go test -run='^$' -fuzz="^$2\$" -fuzztime=15s "$1" 2>&1); then
		echo "$out" | tail -1
		return 0
	fi
	echo "$out"
	if echo "$out" | grep -q 'context deadline exceeded' && ! echo "$out" | grep -q 'Failing input written'; then
		echo "== $2: the fuzz workers stalled; once more"
		go test -run='^$' -fuzz="^$2\$" -fuzztime=15s "$1"
		return
	fi
	return 1
}
for target in FuzzLoad FuzzEvaluate FuzzFastDecodeMatchesStrict; do
	fuzz ./fusion "$target"
done
# The same forwarded-certificate header through both gateways' paths: the
# same chain or the same refusal (issue 11's differential fuzz).
fuzz ./parity FuzzKitCertHeader
# mcc server: every request body decoder, and the event scanners checked
# against encoding/json.
for target in FuzzRequestDecode FuzzJSONScan; do
	fuzz ./server/api "$target"
done
# Android key attestation: the KeyDescription parser takes what an app sends.
fuzz ./pki/attestation FuzzAndroidKeyDescription
# The CSR an app sends to enroll.
fuzz ./pki FuzzIssueInstallCSR

if [ "${MCC_SKIP_XCADDY:-}" != 1 ]; then
	echo "== xcaddy build (the README's line)"
	./scripts/xcaddy-build.sh
fi
echo "== all tests passed"
