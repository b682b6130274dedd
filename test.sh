#!/usr/bin/env bash
# Runs every test of hazardwatch on a fresh Debian machine with Go:
# formatting, vet, the whole suite under the race detector, then each fuzz
# target for a few seconds. It installs what the tests need when it is
# missing and caches downloads under ${XDG_CACHE_HOME:-$HOME/.cache}/hazardwatch.
#
#   FUZZTIME=30s ./test.sh     fuzz longer
#   ./test.sh ./internal/...   test some packages only (no fuzzing)
set -euo pipefail
cd "$(dirname "$0")"

export HAZARDWATCH_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/hazardwatch"
mkdir -p "$HAZARDWATCH_CACHE"
start=$(date +%s)

# What the tests need beyond Go, installed when missing (InfluxDB is built
# below): Mosquitto (the external-broker test of ingest; the compose
# deployment's Mosquitto configuration, with mosquitto_sub for its health
# check), docker-compose (`docker-compose config` validates
# docker-compose.yml without a Docker engine) and Chromium (the browser
# test of the control-room page; CJK fonts so its screenshots are legible)
# from Debian, playwright-core to drive Chromium from npm (into the cache).
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || need+=(fonts-noto-cjk)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ]; then
		echo "== installing ${need[*]}"
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
	else
		echo "missing ${need[*]}: install them (sudo apt-get install -y ${need[*]}) or the tests that need them skip"
	fi
fi
if command -v npm >/dev/null 2>&1 && [ ! -d "$HAZARDWATCH_CACHE/node/node_modules/playwright-core" ]; then
	echo "== installing playwright-core into $HAZARDWATCH_CACHE/node"
	mkdir -p "$HAZARDWATCH_CACHE/node"
	(cd "$HAZARDWATCH_CACHE/node" && npm install --no-audit --no-fund --silent playwright-core@1.64.1)
fi

# InfluxDB 1.8.10 for the tests against a real InfluxDB (internal/influx,
# internal/centre): built from source once into the cache (pure Go: about
# a minute on 2 cores with the modules cached, 3-4 minutes without) and reused; HAZARDWATCH_INFLUXD names it to the
# tests, which skip without it when run outside this script.
if [ -z "${HAZARDWATCH_INFLUXD:-}" ]; then
	influxd_dir="$HAZARDWATCH_CACHE/influxd-1.8.10"
	if [ ! -x "$influxd_dir/influxd" ]; then
		echo "== building InfluxDB 1.8.10 into $influxd_dir (once)"
		t0=$(date +%s)
		mkdir -p "$influxd_dir"
		(cd "$influxd_dir" && GOBIN="$influxd_dir" GOFLAGS= go install github.com/influxdata/influxdb/cmd/influxd@v1.8.10)
		echo "   influxd built in $(( $(date +%s) - t0 )) s"
	fi
	export HAZARDWATCH_INFLUXD="$influxd_dir/influxd"
fi

pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(./...)

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet "${pkgs[@]}"

echo "== hw-gateway builds for the gateway boxes (linux arm64, arm/v7)"
GOOS=linux GOARCH=arm64 go build -o /dev/null ./cmd/hw-gateway
GOOS=linux GOARCH=arm GOARM=7 go build -o /dev/null ./cmd/hw-gateway

echo "== go test -race"
go test -race -count=1 "${pkgs[@]}"

if [ $# -eq 0 ]; then
	echo "== fuzz (${FUZZTIME:-5s} each)"
	# Each Fuzz function of each package, one at a time (go test fuzzes one target per run).
	# Go 1.26's fuzz coordinator can report a bare "context deadline
	# exceeded" when -fuzztime ends while a worker is mid-call (go.dev/issue/75804,
	# fixed in Go 1.27). A real finding always writes its input to
	# testdata/fuzz; such a run fails at once, a bare deadline is run again once.
	fuzz() {
		local dir=$1 name=$2 log
		log=$(mktemp)
		for try in 1 2; do
			if go test -run='^$' -fuzz="^${name}\$" -fuzztime="${FUZZTIME:-5s}" "./$dir" >"$log" 2>&1; then
				tail -1 "$log"; rm -f "$log"; return 0
			fi
			if grep -q 'Failing input written\|panic:' "$log" || ! grep -q 'context deadline exceeded' "$log"; then
				cat "$log"; rm -f "$log"; return 1
			fi
			echo "$name: the fuzz engine's deadline race (go.dev/issue/75804), no finding; running it again"
		done
		cat "$log"; rm -f "$log"; return 1
	}
	while read -r file name; do
		fuzz "$(dirname "$file")" "$name"
	done < <(grep -rHoE --include='*_test.go' '^func (Fuzz[A-Za-z0-9_]+)' . | sed -E 's/:func / /' | sort)
fi

echo "== all tests passed in $(( $(date +%s) - start )) s"
