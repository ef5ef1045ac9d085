#!/bin/sh
# Installs azcopy (npm package @azure-tools/azcopy-linux, which ships the azcopy binary; pinned)
# under target/azcopy, for the comparison in benches/upload.rs only (the tests do not need it).
# Idempotent.
set -eu
VERSION=10.32.2
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$root/target/azcopy}
bin=$dir/node_modules/@azure-tools/azcopy-linux/dist/bin/azcopy_linux_amd64
if [ -x "$bin" ] && [ "$(cat "$dir/.version" 2>/dev/null)" = "$VERSION" ]; then
  echo "azcopy $VERSION already in $dir"
  exit 0
fi
mkdir -p "$dir"
npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "@azure-tools/azcopy-linux@$VERSION"
chmod +x "$bin"
echo "$VERSION" > "$dir/.version"
echo "azcopy $VERSION installed in $dir"
