#!/usr/bin/env bash
# Proves that the package a user installs builds and works, and that `npm run build:gyp` gives a
# working addon: `npm pack`, install the tarball into an empty project (offline, from npm's
# cache; if the cache lacks something, this checkout's node_modules are linked in instead),
# `node-gyp rebuild` inside node_modules/segtool, then the tensor and native tests against that
# addon, and from the empty project `import('segtool')` (ESM and CommonJS), a tiny Segmenter run
# on the package's own addon, and the CLI. The cmake-js build in build/ is untouched.
# SEGTOOL_PACK_PREBUILT=/path/segtool.node copies that addon instead of compiling (checks this
# script in seconds; CI never sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scratch=$(mktemp -d /tmp/segtool-pack-XXXXXX)
trap 'rm -rf "$scratch"' EXIT

echo "[pack] npm pack"
tarball=$(npm pack --ignore-scripts --silent --pack-destination "$scratch" | tail -1)
app="$scratch/app"
mkdir "$app"
(cd "$app" && npm init -y >/dev/null)
echo "[pack] installing $tarball into the empty project $app"
if ! (cd "$app" && npm install --offline --no-audit --no-fund "$scratch/$tarball" >"$scratch/install.log" 2>&1); then
  echo "[pack] offline install failed (npm cache incomplete?); linking this checkout's node_modules instead:" >&2
  tail -5 "$scratch/install.log" >&2
  rm -rf "$app/node_modules"
  mkdir -p "$app/node_modules/segtool"
  tar -xzf "$scratch/$tarball" -C "$app/node_modules/segtool" --strip-components=1
  for dep in "$root"/node_modules/*; do
    ln -s "$dep" "$app/node_modules/$(basename "$dep")"
  done
  mkdir "$app/node_modules/.bin"
  for bin in "$root"/node_modules/.bin/*; do
    ln -s "$(readlink -f "$bin")" "$app/node_modules/.bin/$(basename "$bin")"
  done
  ln -s ../segtool/bin/segtool "$app/node_modules/.bin/segtool"
fi
pkg="$app/node_modules/segtool"
addon="$pkg/build/Release/segtool.node"

if [ -n "${SEGTOOL_PACK_PREBUILT:-}" ]; then
  echo "[pack] SEGTOOL_PACK_PREBUILT: copying $SEGTOOL_PACK_PREBUILT instead of building"
  mkdir -p "$(dirname "$addon")"
  cp "$SEGTOOL_PACK_PREBUILT" "$addon"
else
  echo "[pack] building with node-gyp in $pkg"
  # What the README tells users (`npm explore segtool -- npx node-gyp rebuild`), from the package folder.
  (cd "$pkg" && npx --no-install node-gyp rebuild --jobs="${SEGTOOL_BUILD_JOBS:-max}" >"$scratch/gyp.log" 2>&1) || {
    tail -40 "$scratch/gyp.log" >&2
    exit 1
  }
fi

echo "[pack] testing the addon built from the tarball"
SEGTOOL_ADDON="$addon" node --test --test-reporter=tap test/tensor.test.mjs test/native.test.mjs

echo "[pack] using the installed package from the empty project"
cat >"$app/smoke.mjs" <<'EOF'
import assert from 'node:assert/strict';
import { readFileSync, realpathSync } from 'node:fs';
import { Segmenter, liveTensorCount } from 'segtool';

const own = realpathSync(new URL('./node_modules/segtool/build/Release/segtool.node', import.meta.url));
const segmenter = await Segmenter.load({
  config: { MODEL: { arch_encoder: 'mobilenetv2dilated', arch_decoder: 'c1', fc_dim: 320 }, DATASET: { imgSizes: [32] } },
  weights: [],
  threads: 1,
});
const result = await segmenter.segment({ data: new Uint8Array(32 * 24 * 3).fill(90), width: 32, height: 24 }, { outputs: ['labels', 'png'] });
assert.equal(result.labels.length, 32 * 24);
assert.ok(result.png.length > 50);
await segmenter.close();
assert.equal(liveTensorCount(), 0);
// The addon mapped into this process is the package's own build (not one from the repository).
const mapped = [...new Set(readFileSync('/proc/self/maps', 'utf8').split('\n').map((l) => l.split(/\s+/)[5]).filter((p) => p?.endsWith('segtool.node')))];
assert.deepEqual(mapped.map((p) => realpathSync(p)), [own], 'the package loads its own addon');
console.log('[pack] ESM: Segmenter from the installed package ok');
EOF
cat >"$app/smoke.cjs" <<'EOF'
import('segtool').then((segtool) => {
  if (typeof segtool.Segmenter.load !== 'function') throw new Error('no Segmenter');
  console.log('[pack] CommonJS: import(\'segtool\') ok');
});
EOF
(cd "$app" && env -u SEGTOOL_ADDON OMP_NUM_THREADS=1 node smoke.mjs && env -u SEGTOOL_ADDON node smoke.cjs)
(cd "$app" && env -u SEGTOOL_ADDON node_modules/.bin/segtool models >"$scratch/models.txt") || {
  cat "$scratch/models.txt" >&2
  exit 1
}
grep -q mobilenetv2dilated "$scratch/models.txt"
echo "[pack] CLI: segtool models ok"
