#!/usr/bin/env bash
# Proves `npm run build:gyp` gives a working addon: builds the committed sources with node-gyp
# in a scratch copy (so the cmake-js build in build/ is untouched) and runs the tensor and
# native tests against that addon.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scratch=$(mktemp -d /tmp/segtool-gyp-XXXXXX)
trap 'rm -rf "$scratch"' EXIT
git ls-files -z --cached --others --exclude-standard | grep -zv '^test/fixtures/' | xargs -0 cp --parents -t "$scratch"
ln -s "$root/node_modules" "$scratch/node_modules"
echo "[gyp] building with node-gyp in $scratch"
(cd "$scratch" && npx --no-install node-gyp rebuild --jobs="${SEGTOOL_BUILD_JOBS:-max}" >"$scratch/gyp.log" 2>&1) || {
  tail -40 "$scratch/gyp.log" >&2
  exit 1
}
echo "[gyp] testing the node-gyp addon"
SEGTOOL_ADDON="$scratch/build/Release/segtool.node" node --test --test-reporter=tap test/tensor.test.mjs test/native.test.mjs
