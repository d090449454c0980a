#!/usr/bin/env bash
# Creates (or refreshes) a virtual environment.
#
#   tools/setup_env.sh                 the whole stack in <repo>/.venv (every paper + common)
#   tools/setup_env.sh --paper NAME    only NAME's pins + common in <repo>/NAME/.venv
#
# Idempotent: a stamp file records a hash of everything that decides the
# environment's contents; when it matches, the script returns at once.
# mmcv (papers using MMDetection / MMSegmentation) is taken from ../shared/wheels
# when that folder exists, else from the user cache, else built from source once
# (20-30 min on 2 cores) with the two workarounds its 2.1.0 release needs on
# torch 2.14, and cached for the next time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PAPERS="magneto beit2 maskdistill beit3 g2sd imted lda conformer kosmos2 kosmos_g"
PAPER=""
if [ "${1:-}" = "--paper" ]; then
  PAPER=${2:?--paper needs a name}
  case " $PAPERS " in *" $PAPER "*) ;; *) echo "setup: unknown paper '$PAPER' (known: $PAPERS)" >&2; exit 2 ;; esac
  [ -f "$ROOT/$PAPER/pyproject.toml" ] || { echo "setup: $PAPER/pyproject.toml not found" >&2; exit 2; }
  VENV=$ROOT/$PAPER/.venv
  MEMBERS="common"
  # A paper built on another (maskdistill on beit2) lists it as a dependency: install that one too.
  for q in $PAPERS; do
    [ "$q" != "$PAPER" ] && grep -q "^ *\"$q\"" "$ROOT/$PAPER/pyproject.toml" && MEMBERS="$MEMBERS $q"
  done
  MEMBERS="$MEMBERS $PAPER"
else
  VENV=$ROOT/.venv
  MEMBERS="common $PAPERS"
fi
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
SHARED_WHEELS=${SHARED_WHEELS:-$ROOT/../shared/wheels}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/vlrepro/wheels

STAMP=$( {
  cat "$ROOT/tools/setup_env.sh" "$ROOT/env/base.txt" "$ROOT/env/constraints.txt"
  for p in $MEMBERS; do [ -f "$ROOT/$p/pyproject.toml" ] && cat "$ROOT/$p/pyproject.toml"; done
  "$PY" -c 'import sys; print(sys.version)'
} | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.stamp" 2>/dev/null)" = "$STAMP" ]; then
  echo "setup: $VENV is up to date"
  exit 0
fi

t0=$(date +%s)
say() { echo "setup [$(( $(date +%s) - t0 ))s] $*"; }
[ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PY" -m venv "$VENV"; }
rm -f "$VENV/.stamp"
VPY=$VENV/bin/python
PIP=("$VPY" -m pip install --disable-pip-version-check -q -c "$ROOT/env/constraints.txt")
# setuptools<81 keeps pkg_resources, which mmcv's setup.py imports.
"$VPY" -m pip install --disable-pip-version-check -q "pip>=24" "setuptools<81" wheel

needs() {  # does any member pin this distribution?
  for p in $MEMBERS; do grep -q "\"$1==" "$ROOT/$p/pyproject.toml" 2>/dev/null && return 0; done
  [ -z "$PAPER" ] && grep -q "^$1==" "$ROOT/env/base.txt" && return 0
  return 1
}

say "torch + torchvision"
"${PIP[@]}" torch==2.14.1 torchvision==0.29.1

if needs mmcv && ! "$VPY" -c "import mmcv.ops" 2>/dev/null; then
  "${PIP[@]}" mmengine==0.10.7 ninja psutil
  mkdir -p "$CACHE"
  whl=""
  for d in "$SHARED_WHEELS" "$CACHE"; do
    cand=$(ls "$d"/mmcv-2.1.0-cp311-*.whl 2>/dev/null | head -n1 || true)
    [ -n "$cand" ] && { whl=$cand; break; }
  done
  if [ -z "$whl" ]; then
    say "building mmcv 2.1.0 with CPU ops from source (once per machine)"
    wrap=$(mktemp -d)
    # mmcv appends -std=c++17 after any CXXFLAGS; torch 2.14 headers need C++20.
    cat > "$wrap/cxx" <<'WRAP'
#!/usr/bin/env bash
args=()
for a in "$@"; do
  case "$a" in -std=c++14|-std=c++17) a=-std=c++20 ;; esac
  args+=("$a")
done
exec g++ "${args[@]}"
WRAP
    chmod +x "$wrap/cxx"
    CXX="$wrap/cxx" CC=gcc CFLAGS="-g0 -O2" CXXFLAGS="-g0 -O2" MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} \
      "$VPY" -m pip wheel --no-build-isolation --no-deps -w "$CACHE" mmcv==2.1.0
    whl=$(ls "$CACHE"/mmcv-2.1.0-*.whl | head -n1)
  fi
  say "mmcv from $whl"
  "${PIP[@]}" --no-deps "$whl"
  "${PIP[@]}" addict yapf opencv-python
fi

pkgs=()
for p in $MEMBERS; do
  [ -f "$ROOT/$p/pyproject.toml" ] || continue
  if [ "$p" = "$PAPER" ]; then pkgs+=(-e "$ROOT/$p[test]"); else pkgs+=(-e "$ROOT/$p"); fi
done
if [ -z "$PAPER" ]; then
  say "the rest of the stack"
  "${PIP[@]}" -r "$ROOT/env/base.txt"
  say "project packages (editable)"
  "${PIP[@]}" --no-deps --no-build-isolation "${pkgs[@]}"
else
  say "$PAPER's pins + common (editable)"
  "${PIP[@]}" --no-build-isolation "${pkgs[@]}" pytest==9.2.0
fi
# Reference implementations for tests go in without their stale pins.
refs=$(for p in $MEMBERS; do [ -f "$ROOT/$p/pyproject.toml" ] && sed -n 's/^reference = \[\(.*\)\]/\1/p' "$ROOT/$p/pyproject.toml"; done | tr -d '",' | tr ' ' '\n' | sed '/^$/d' | sort -u || true)
if [ -n "$refs" ]; then
  say "test references: $(echo $refs)"
  "${PIP[@]}" --no-deps $refs
fi
if [ -n "$PAPER" ] && [ -d "$ROOT/.venv/lib" ]; then
  # Share identical files with the root environment instead of holding a second
  # copy of torch and the CUDA libraries (several GB per environment).
  "$VPY" "$ROOT/tools/dedupe_venv.py" "$VENV" "$ROOT/.venv"
fi
echo "$STAMP" > "$VENV/.stamp"
say "done: $VENV"
