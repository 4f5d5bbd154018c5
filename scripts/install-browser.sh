#!/bin/sh
# Installs what the browser tests (pytest -m browser) need: Debian's chromium and the
# Playwright Python driver. Playwright never downloads its own browsers here: the tests launch
# /usr/bin/chromium through executable_path.
set -e
PY="${1:-.venv/bin/python}"
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    else
        echo "install-browser: /usr/bin/chromium is missing; run as root or: sudo apt-get install chromium" >&2
        exit 1
    fi
fi
"$PY" -c "import playwright" 2>/dev/null || "$PY" -m pip install --quiet "playwright>=1.45"
echo "install-browser: chromium $(/usr/bin/chromium --version 2>/dev/null | head -1) and playwright ready"
