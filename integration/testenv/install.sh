#!/usr/bin/env bash
# install.sh installs what the integration tests start: redis-server from the
# distribution's packages and a Vault server built from source into
# .tools/bin/vault. It is idempotent and quick when both are present.
# Run it as `make testenv`.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VAULT="$REPO/.tools/bin/vault"
VAULTSRC="$REPO/integration/vaultserver"

log() { printf 'testenv: %s\n' "$*"; }

# as_root runs a command as root: directly when we are root, through sudo
# when it exists, otherwise it fails with the reason.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		log "need root to run: $*" >&2
		return 1
	fi
}

if command -v redis-server >/dev/null 2>&1; then
	log "redis-server present: $(command -v redis-server)"
else
	log "installing redis-server with apt-get"
	as_root apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server
	# The tests start their own servers on free ports; a system service the
	# package may have started is not wanted (and may not exist at all).
	as_root service redis-server stop >/dev/null 2>&1 || true
	log "redis-server installed: $(command -v redis-server)"
fi

stale=""
if [ ! -x "$VAULT" ]; then
	stale="missing"
else
	for f in go.mod go.sum main.go; do
		if [ "$VAULTSRC/$f" -nt "$VAULT" ]; then
			stale="older than integration/vaultserver/$f"
			break
		fi
	done
fi
if [ -n "$stale" ]; then
	log "building $VAULT ($stale); the first build takes several minutes"
	mkdir -p "$(dirname "$VAULT")"
	(cd "$VAULTSRC" && go build -o "$VAULT" .)
	# go build leaves an up-to-date binary untouched; the new mtime records
	# that it was checked against the sources, so the next run is quick.
	touch "$VAULT"
	log "built $VAULT"
else
	log "vault present and up to date: $VAULT"
fi
