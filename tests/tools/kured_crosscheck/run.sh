#!/bin/sh
# Cross-check tests/kuredwindow.py against kured's own Go pkg/timewindow on random cases
# (DST transitions in seven zones, sub-second instants, valid and invalid inputs).
# Needs Go (Debian: apt-get install golang-go) and the kured mirror; not part of the test suite.
# Usage: tests/tools/kured_crosscheck/run.sh [seed] [cases] [valid]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
kured=${KURED_REPO:-/work/.mirror/kubereboot+kured/repo}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/timewindow"
for f in timewindow.go days.go; do git -C "$kured" show "HEAD:pkg/timewindow/$f" >"$work/timewindow/$f"; done
printf 'module kuredcheck\n\ngo 1.19\n' >"$work/go.mod"
cp "$here/main.go" "$work/"
(cd "$work" && go build -o kc .)
echo "kured $(git -C "$kured" rev-parse HEAD)"
PYTHONPATH="$repo" python3 "$here/compare.py" "$work/kc" "${1:-1}" "${2:-20000}" ${3:-}
