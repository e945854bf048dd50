#!/usr/bin/env bash
# Packs what scripts/gpu-run.sh needs on a GPU machine that has PyTorch, nvcc, cmake and ninja
# but no Node and no network, into .device/ (git-ignored; name it in the device tool's `carry`):
#   .device/node.xz          this machine's node binary
#   .device/runtime.tar.xz   dist/ (the built TypeScript), the node_modules the library and the
#                            CMake build need at run time, and Node's N-API headers
# The tree that travels (tracked files + .device/) must stay under the device tool's 64 MiB; this
# script measures it and fails above that. Run after `npm run setup` (dist/ must be current).
set -euo pipefail
cd "$(dirname "$0")/.."
limit_mib=${SEGTOOL_TRAVEL_LIMIT_MIB:-64}

[ -f dist/.build-stamp ] || { echo "gpu-pack: dist/ is not built; run npm run setup first" >&2; exit 1; }
grep -qx '/.device/' .git/info/exclude 2>/dev/null || grep -qx '/.device/' .gitignore || echo '/.device/' >> .git/info/exclude
mkdir -p .device

node_bin=$(command -v node)
if [ ! -f .device/node.xz ] || [ "$node_bin" -nt .device/node.xz ]; then
  echo "[gpu-pack] node $(node --version) -> .device/node.xz"
  xz -T2 -c "$node_bin" > .device/node.xz.tmp && mv .device/node.xz.tmp .device/node.xz
fi

# Run-time packages: what dist/ imports (commander, yaml, sharp and its libvips) and the build's
# node-addon-api, with their dependencies, read from the lock file; not the compiler (typescript),
# type packages, node-gyp or the optional jimp decoder (imported only when asked for).
mapfile -t packages < <(node -e '
  const lock = require("./package-lock.json").packages;
  const roots = ["commander", "yaml", "sharp", "node-addon-api"];
  const seen = new Set();
  const visit = (name) => {
    const key = "node_modules/" + name;
    if (seen.has(key) || !lock[key]) return;
    seen.add(key);
    for (const dep of Object.keys({ ...lock[key].dependencies, ...lock[key].optionalDependencies })) visit(dep);
  };
  roots.forEach(visit);
  for (const key of seen) if (require("fs").existsSync(key)) console.log(key);
')
napi_dir=$(dirname "$(node -p "require.resolve('node-addon-api/package.json')")")
node_include=$(node -p "require('path').resolve(process.execPath, '../../include/node')")
[ -f "$node_include/node_api.h" ] || { echo "gpu-pack: Node's headers are missing ($node_include/node_api.h)" >&2; exit 1; }
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging/napi-include"
cp "$node_include"/node_api.h "$node_include"/node_api_types.h "$node_include"/js_native_api.h \
   "$node_include"/js_native_api_types.h "$staging/napi-include/"
echo "[gpu-pack] runtime: dist/, ${#packages[@]} packages (node-addon-api at ${napi_dir#"$PWD"/}), N-API headers"
tar -cf - dist "${packages[@]}" -C "$staging" napi-include | xz -T2 -6 > .device/runtime.tar.xz.tmp
mv .device/runtime.tar.xz.tmp .device/runtime.tar.xz

tracked=$(git ls-files -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
untracked=$(git ls-files -z --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
carried=$(du -cb .device | tail -1 | cut -f1)
total=$(( tracked + ${untracked:-0} + carried ))
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
echo "[gpu-pack] travels: tracked $(mib "$tracked") MiB + untracked $(mib "${untracked:-0}") MiB + .device $(mib "$carried") MiB = $(mib "$total") MiB (limit $limit_mib MiB)"
if [ "$total" -gt $(( limit_mib * 1048576 )) ]; then
  echo "gpu-pack: the tree that would travel is over ${limit_mib} MiB" >&2
  exit 1
fi
echo "[gpu-pack] ready: run with carry [\".device\"] and the command: bash scripts/gpu-run.sh"
