#!/bin/sh
# Installs the Azure Storage emulator Azurite (npm package `azurite`, pinned) for tests/upload.rs
# and benches/upload.rs, under target/azurite of this repository (or the directory given as $1).
# Needs node (>= 18) and npm. Idempotent: does nothing when the pinned version is there.
set -eu
VERSION=3.35.0
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$root/target/azurite}
bin=$dir/node_modules/.bin/azurite-blob
if [ -x "$bin" ] && [ "$(cat "$dir/.version" 2>/dev/null)" = "$VERSION" ]; then
  echo "azurite $VERSION already in $dir"
  exit 0
fi
mkdir -p "$dir"
npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "azurite@$VERSION"
echo "$VERSION" > "$dir/.version"
"$bin" --version >/dev/null
echo "azurite $VERSION installed in $dir"
