# Sourced by scripts/*: create .venv if needed and install the project with the given extras.
# Usage: ensure_venv [extras]   e.g. ensure_venv test
ensure_venv() {
  local extras="${1:-}" python="${PYTHON:-python3}" spec="."
  [ -n "$extras" ] && spec=".[$extras]"
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv with $($python --version)"
    "$python" -m venv .venv
  fi
  local stamp=".venv/.installed-${extras:-base}"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "==> installing rantai${extras:+[$extras]} into .venv"
    .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
    .venv/bin/python -m pip install --quiet -e "$spec"
    touch "$stamp"
  fi
}
