# The interpreter of tools/dist_train.sh, dist_test.sh and slurm_launch.sh,
# which source this file: $PYTHON if set; else `python` when a virtualenv is
# active ($VIRTUAL_ENV: its python is first on PATH); else the checkout's
# .venv/bin/python (what tools/install.sh creates) if it exists; else `python`.
if [ -z "${PYTHON:-}" ]; then
  _checkout_python="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.venv/bin/python"
  if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$_checkout_python" ]; then
    PYTHON="$_checkout_python"
  else
    PYTHON=python
  fi
  unset _checkout_python
fi
