#!/usr/bin/env bash
# Builds the addon with cmake-js into build/Release/segtool.node. Node headers come from the
# local Node installation (no download); LibTorch is found by CMakeLists.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${SEGTOOL_BUILD_JOBS:-$(nproc)}
nodedir=${npm_config_nodedir:-$(node -p "require('path').resolve(process.execPath, '../..')")}
args=(compile --directory . --out "${SEGTOOL_BUILD_DIR:-build}" --parallel "$jobs")
[ -f "$nodedir/include/node/node_api.h" ] && args+=(--CDCMAKE_JS_INC="$nodedir/include/node")
exec npx --no-install cmake-js "${args[@]}" "$@"
