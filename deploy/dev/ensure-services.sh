#!/usr/bin/env bash
# Makes sure the services the tests and the demo need answer on loopback:
# PostgreSQL on 127.0.0.1:5432 (trust auth) and Mosquitto on 127.0.0.1:1883;
# that the browser tests have their tools: Debian's chromium and the pinned
# axe-core (deploy/dev/axe/package-lock.json) under ./var/axe; and that the
# alert rules' tests have promtool (Debian's prometheus package).
# Installs them with apt when they are missing and we are root; starts them
# when they are installed but stopped. Idempotent; prints what it does.
# Usage: ensure-services.sh [postgres] [mosquitto] [browser] [promtool]   (default: all)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
var="$top/var"

log() { echo "ensure-services: $*" >&2; }

# apt_install [--no-install-recommends] package...
apt_install() {
	local opts=()
	while [ "${1:-}" != "${1#-}" ]; do opts+=("$1"); shift; done
	if [ "$(id -u)" != 0 ]; then
		log "missing $*; install it (apt-get install $*) or set the URLs, then run again"
		exit 1
	fi
	log "installing $*"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null || true
	apt-get install -y -qq "${opts[@]}" "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
	for _ in $(seq 1 100); do
		port_open "$1" && return 0
		sleep 0.1
	done
	return 1
}

ensure_postgres() {
	if [ -n "${KLUIS_TEST_DATABASE_URL:-}" ] || port_open 5432; then return 0; fi
	if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
		apt_install postgresql
	fi
	if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql/*/main >/dev/null 2>&1; then
		ver=$(ls /etc/postgresql | sort -V | tail -1)
		log "starting the system PostgreSQL cluster $ver/main"
		pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
		if wait_port 5432 && psql -w -h 127.0.0.1 -U postgres -c 'select 1' postgres >/dev/null 2>&1; then return 0; fi
		# A fresh Debian cluster asks for passwords on TCP: leave it alone
		# and use a private trust-auth cluster on the same port instead.
		log "the system cluster does not trust local TCP connections; stopping it for a private cluster"
		pg_ctlcluster --skip-systemctl-redirect "$ver" main stop || true
		for _ in $(seq 1 50); do port_open 5432 || break; sleep 0.1; done
	fi
	# A private throw-away cluster under ./var with trust auth.
	bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
	data="$var/pgdata"
	mkdir -p "$var"
	run() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
	if [ ! -f "$data/PG_VERSION" ]; then
		log "creating a private PostgreSQL cluster in $data"
		mkdir -p "$data"
		[ "$(id -u)" = 0 ] && chown -R postgres "$var"
		run "$bin/initdb -D '$data' -U postgres -A trust >/dev/null"
	fi
	log "starting the private PostgreSQL cluster on 127.0.0.1:5432"
	run "$bin/pg_ctl -D '$data' -l '$data/log' -o \"-c listen_addresses=127.0.0.1 -p 5432 -k /tmp\" -w start >/dev/null"
	wait_port 5432
}

ensure_mosquitto() {
	if port_open 1883; then return 0; fi
	command -v mosquitto >/dev/null || apt_install mosquitto mosquitto-clients
	log "starting mosquitto on 127.0.0.1:1883"
	mkdir -p "$var"
	cat >"$var/mosquitto-dev.conf" <<CONF
listener 1883 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
CONF
	mosquitto -d -c "$var/mosquitto-dev.conf"
	wait_port 1883
}

ensure_clients() {
	command -v mosquitto_pub >/dev/null || apt_install mosquitto-clients
}

# Debian's chromium for the page tests (deploy/dev/browsertest).
ensure_chromium() {
	command -v chromium >/dev/null && return 0
	apt_install chromium
}

# axe-core at the version pinned in deploy/dev/axe/package-lock.json, installed
# into ./var/axe (npm ci checks the lock file's integrity hash).
ensure_axe() {
	local want dest="$var/axe"
	want=$(sed -n 's/^ *"axe-core": "\(.*\)"$/\1/p' "$here/axe/package.json")
	if [ -f "$dest/node_modules/axe-core/axe.min.js" ] &&
		grep -q "\"version\": \"$want\"" "$dest/node_modules/axe-core/package.json"; then
		return 0
	fi
	command -v npm >/dev/null || apt_install npm
	log "installing axe-core $want into $dest"
	mkdir -p "$dest"
	cp "$here/axe/package.json" "$here/axe/package-lock.json" "$dest/"
	(cd "$dest" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
}

# promtool checks and unit-tests the alert rules (deploy/prometheus). Only the
# tool is wanted: no node exporter (a recommendation), and the package's own
# Prometheus server is stopped again when its installation started it.
ensure_promtool() {
	command -v promtool >/dev/null && return 0
	apt_install --no-install-recommends prometheus
	if command -v service >/dev/null && service prometheus status >/dev/null 2>&1; then
		log "stopping the prometheus server the package started (only promtool is needed)"
		service prometheus stop >/dev/null 2>&1 || true
	fi
	command -v promtool >/dev/null || { log "promtool still missing after installing prometheus"; exit 1; }
	log "$(promtool --version 2>&1 | head -1)"
}

what=${*:-postgres mosquitto browser promtool}
for w in $what; do
	case $w in
	postgres) ensure_postgres ;;
	mosquitto) ensure_mosquitto; ensure_clients ;;
	browser) ensure_chromium; ensure_axe ;;
	promtool) ensure_promtool ;;
	*) log "unknown service $w"; exit 2 ;;
	esac
done
