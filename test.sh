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

pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(./...)

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet "${pkgs[@]}"

echo "== go test -race"
go test -race -count=1 "${pkgs[@]}"

if [ $# -eq 0 ]; then
	echo "== fuzz (${FUZZTIME:-5s} each)"
	# Each Fuzz function of each package, one at a time (go test fuzzes one target per run).
	while read -r file name; do
		dir=$(dirname "$file")
		go test -run='^$' -fuzz="^${name}\$" -fuzztime="${FUZZTIME:-5s}" "./$dir"
	done < <(grep -rHoE --include='*_test.go' '^func (Fuzz[A-Za-z0-9_]+)' . | sed -E 's/:func / /' | sort)
fi

echo "== all tests passed in $(( $(date +%s) - start )) s"
