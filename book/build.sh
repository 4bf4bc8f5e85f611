#!/usr/bin/env bash
# Build the deqir-edu book as a static HTML site, with MathJax 3 served by the site (no CDN).
#
#   book/build.sh student     [--out DIR] [--execute] [jupyter-book options, e.g. -W --keep-going]
#   book/build.sh instructor  [--out DIR] [--execute] [...]
#   book/build.sh mathjax      # only install + stage MathJax (then `jupyter-book build .` works too)
#
#   student     solutions hidden (sphinx-exercise `hide_solutions: true`); Colab buttons and the
#               .ipynb download serve the student notebooks (colab/student/, book/tools/editions.py)
#   instructor  solutions shown as dropdowns; Colab and download serve colab/instructor/
#   --out DIR   output folder (default _build/<variant>); the site lands in DIR/_build/html
#   --execute   re-execute every chapter while building (default: use the committed outputs)
#
# Needs: python with the `book` extra (pip install -e .[book]) and node/npm (for mathjax@3 only).
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

variant="${1:-}"
[ $# -gt 0 ] && shift
case "$variant" in
  student) hide=true ;;
  instructor) hide=false ;;
  mathjax) hide="" ;;
  -h|--help) usage; exit 0 ;;
  *) usage >&2; echo "error: first argument must be 'student', 'instructor' or 'mathjax'" >&2; exit 2 ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/_build/$variant"
execute=off
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$(mkdir -p "$2" && cd "$2" && pwd)"; shift ;;
    --execute) execute=force ;;
    *) extra+=("$1") ;;
  esac
  shift
done

# 1. MathJax 3 from npm into node_modules/ (gitignored, never committed), then stage the one
#    combined component we load plus the CHTML fonts it fetches next to itself.
mj="$root/node_modules/mathjax/es5"
if [ ! -f "$mj/tex-chtml-full.js" ]; then
  echo "build.sh: installing mathjax@3 from npm into $root/node_modules"
  npm install --prefix "$root" --no-save --no-package-lock --no-audit --no-fund "mathjax@3" >/dev/null
fi
stage="$root/_build/_mathjax/mathjax"   # html_static_path entry _build/_mathjax in _config.yml
mkdir -p "$stage/output/chtml/fonts"
cp "$mj/tex-chtml-full.js" "$stage/"
cp -R "$mj/output/chtml/fonts/woff-v2" "$stage/output/chtml/fonts/"
[ "$variant" = mathjax ] && { echo "build.sh: MathJax staged in $stage"; exit 0; }

# 2. The variant's configuration: _config.yml with hide_solutions / execution switched and the Colab
#    buttons pointed at the variant's generated notebooks (repository path colab/<variant>/book/...),
#    written into the output folder (the repository's _config.yml stays the single source).
mkdir -p "$out"
python - "$root/_config.yml" "$out/_config.yml" "$hide" "$execute" "$root" "$variant" <<'PY'
import sys, yaml
src, dst, hide, execute, root, variant = sys.argv[1:]
cfg = yaml.safe_load(open(src, encoding="utf8"))
cfg.setdefault("repository", {})["path_to_book"] = f"colab/{variant}"
sphinx_cfg = cfg.setdefault("sphinx", {}).setdefault("config", {})
sphinx_cfg["hide_solutions"] = hide == "true"
sphinx_cfg["html_static_path"] = [f"{root}/{p}" for p in sphinx_cfg.get("html_static_path", [])]
if cfg["sphinx"].get("local_extensions"):  # their paths are relative to the config file: make them absolute
    cfg["sphinx"]["local_extensions"] = {k: f"{root}/{v}" for k, v in cfg["sphinx"]["local_extensions"].items()}
cfg.setdefault("execute", {})["execute_notebooks"] = execute
yaml.safe_dump(cfg, open(dst, "w", encoding="utf8"), sort_keys=False)
PY

# 3. Build.
export TQDM_DISABLE=1
start=$(date +%s)
jupyter-book build "$root" --config "$out/_config.yml" --path-output "$out" "${extra[@]}"

# 4. The download button serves _sources/book/<chapter>.ipynb: replace the MyST sources (solutions
#    included) by the variant's edition, generated from the very chapters just built.
html="$out/_build/html"
if [ -d "$html/_sources/book" ]; then
  editions="$root/colab"  # committed, and what the Colab buttons open
  if ! python "$root/book/tools/editions.py" --check >/dev/null 2>&1; then
    echo "build.sh: warning: colab/ (what the Colab buttons open) is stale; run python book/tools/editions.py" >&2
    editions="$out/_editions"  # the download button still gets the chapters just built
    python "$root/book/tools/editions.py" --out "$editions" >/dev/null
  fi
  cp "$editions/$variant/book/"*.ipynb "$html/_sources/book/"
fi
echo "build.sh: $variant site in $html ($(( $(date +%s) - start )) s)"
