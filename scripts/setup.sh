#!/usr/bin/env bash
# Brings a clone to a working state: system packages (LibTorch, Gloo, CMake, a compiler),
# npm packages, the native addon, the TypeScript build. Idempotent: each step runs only when
# its output is missing or older than its inputs, so a second run takes seconds.
#   --test   also install what the tests and benchmarks compare against (Debian's python3-torch,
#            to prove that files segtool writes load in PyTorch, and python3-pil) and Debian's
#            chromium, which the browser example's test drives headless (never a downloaded browser)
# Environment: SEGTOOL_SKIP_APT=1 never calls apt (LibTorch found through Torch_DIR,
# CMAKE_PREFIX_PATH or a pip-installed torch); SEGTOOL_BUILD_JOBS (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    *) echo "setup.sh: unknown option $arg (expected --test)" >&2; exit 2 ;;
  esac
done

say() { echo "[setup] $*"; }

# 1. System packages (Debian 12 names). libopenblas0-pthread: LibTorch's GEMMs outside oneDNN
# (1 x 1 convolutions at one thread, linear layers) go through libblas.so.3, and Debian's default
# is netlib's reference BLAS: with it one-thread inference and training steps took 1.5-6x as
# long (bench/results/blas-2026-12-02.md). Installing it makes it the automatic choice of the
# libblas.so.3 alternative; a choice set by hand (update-alternatives --set) is left alone.
packages=(libtorch-dev libgloo-dev libopenblas0-pthread zlib1g-dev cmake g++ ninja-build)
[ "$want_test" = 1 ] && packages+=(python3-torch python3-pil chromium)
if [ "${SEGTOOL_SKIP_APT:-0}" != 1 ] && command -v dpkg-query >/dev/null; then
  missing=()
  for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      say "installing Debian packages: ${missing[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      echo "segtool needs these Debian packages: ${missing[*]}" >&2
      echo "Install them with:  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
      echo "(or set SEGTOOL_SKIP_APT=1 and Torch_DIR to a LibTorch of your own)" >&2
      exit 1
    fi
  fi
fi

# 2. npm packages, when the lock file changed since the last install. onnxruntime-node (a
# devDependency: the ONNX export's tests and bench) ships its CPU binary in the npm package; its
# postinstall would fetch CUDA provider files from outside the registry: skipped.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"
  ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error
fi

# 3. The native addon, when any native source is newer than it.
addon=build/Release/segtool.node
if [ ! -f "$addon" ] || [ -n "$(find native CMakeLists.txt -newer "$addon" -print -quit)" ]; then
  say "building the native addon (LibTorch; a first build takes a few minutes)"
  bash scripts/build-native.sh
fi

# 4. TypeScript, when any source is newer than the last build.
stamp=dist/.build-stamp
if [ ! -f "$stamp" ] || [ -n "$(find lib tsconfig.json -newer "$stamp" -print -quit)" ]; then
  say "compiling TypeScript"
  npx --no-install tsc -p tsconfig.json
  touch "$stamp"
fi
say "ready"
