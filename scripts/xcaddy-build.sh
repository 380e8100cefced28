#!/bin/sh
# xcaddy-build.sh builds Caddy with mcc's modules exactly as the README shows,
#
#	xcaddy build v2.11.9 --with github.com/mccgate/mcc=.
#
# into a temporary directory, then checks that `caddy list-modules` lists the
# mcc app, the fusion_set handler and the fusion_set verifier.
#
# Some module proxies answer an unknown module path with an error (400/403)
# instead of not-found, and Go treats that as fatal even for a module replaced
# by a local directory. When the exact line fails for that reason, the build is
# retried with the workaround the README documents:
#
#	GOPROXY="$(go env GOPROXY | sed 's/,direct$//')|off"
#
# Set KEEP=1 to keep the built binary (its path is printed).
set -eu

XCADDY_VERSION=v0.4.5
CADDY_VERSION=v2.11.9
MODULES="mcc http.handlers.fusion_set tls.client_auth.verifier.fusion_set"

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
start=$(date +%s)

go install "github.com/caddyserver/xcaddy/cmd/xcaddy@$XCADDY_VERSION"
gobin=$(go env GOBIN)
[ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
xcaddy="$gobin/xcaddy"

out=$(mktemp -d "${TMPDIR:-/tmp}/mcc-xcaddy.XXXXXX")
if [ "${KEEP:-0}" != 1 ]; then
	trap 'rm -rf "$out"' EXIT
fi
log="$out/xcaddy.log"

echo "+ xcaddy build $CADDY_VERSION --with github.com/mccgate/mcc=. --output $out/caddy"
if ! "$xcaddy" build "$CADDY_VERSION" --with github.com/mccgate/mcc=. --output "$out/caddy" >"$log" 2>&1; then
	proxy=$(go env GOPROXY)
	fallback="$(printf '%s' "$proxy" | sed 's/,direct$//')|off"
	echo "the exact line failed (last lines of its output below); retrying with GOPROXY=\"$fallback\"" >&2
	tail -n 5 "$log" >&2
	if ! GOPROXY="$fallback" "$xcaddy" build "$CADDY_VERSION" --with github.com/mccgate/mcc=. --output "$out/caddy" >"$log" 2>&1; then
		cat "$log" >&2
		echo "xcaddy build failed" >&2
		exit 1
	fi
fi

"$out/caddy" version
"$out/caddy" list-modules >"$out/modules.txt"
missing=""
for m in $MODULES; do
	if ! grep -Fxq "$m" "$out/modules.txt"; then
		missing="$missing $m"
	fi
done
if [ -n "$missing" ]; then
	echo "caddy list-modules does not list:$missing" >&2
	exit 1
fi
echo "ok: caddy list-modules lists $MODULES"
[ "${KEEP:-0}" != 1 ] || echo "binary: $out/caddy"
echo "took $(( $(date +%s) - start ))s"
