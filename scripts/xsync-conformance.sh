#!/usr/bin/env bash
# Runs golang.org/x/sync/singleflight's own test file, unmodified, against
# compat/singleflight: the file is taken from the module cache (downloaded
# through the Go module proxy), put beside a temporary copy of the package's
# non-test sources in a directory inside the module (so that its imports
# resolve), and run with -race. The directory is removed on exit.
#
# Usage: scripts/xsync-conformance.sh [go test flags...]   (default: -count=1)
set -euo pipefail
cd "$(dirname "$0")/.."

version=v0.19.0
dir=$(go mod download -json "golang.org/x/sync@$version" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
peer="$dir/singleflight/singleflight_test.go"
if [ ! -f "$peer" ]; then
	echo "xsync-conformance: $peer not found" >&2
	exit 1
fi

# A leading underscore keeps the copy out of ./... patterns run meanwhile.
tmp=$(mktemp -d compat/_xsync_conformance_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM # exit through the EXIT trap
for f in compat/singleflight/*.go; do
	case "$f" in *_test.go) continue ;; esac
	cp "$f" "$tmp/"
done
cp "$peer" "$tmp/singleflight_test.go"
chmod u+w "$tmp/singleflight_test.go"

echo "xsync-conformance: golang.org/x/sync@$version singleflight_test.go ($(sha256sum "$peer" | cut -c1-16)) against compat/singleflight"
if [ $# -eq 0 ]; then set -- -count=1; fi
go test -race "$@" "./$tmp"
