#!/usr/bin/env bash
# Install Debian's chromium for the page test (tests/serve/test_page.py), when it is missing and
# this shell can: apt-get present and running as root. Never fails the run: without chromium
# the page test skips and says why.
set -uo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup_browser: no apt-get here; the page test will skip (install chromium to run it)" >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup_browser: not root; the page test will skip (sudo apt-get install chromium)" >&2
  exit 0
fi
echo "setup_browser: installing chromium with apt-get" >&2
if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
  >/tmp/setup_browser.log 2>&1; then
  echo "setup_browser: apt-get could not install chromium (see /tmp/setup_browser.log);" \
    "the page test will skip" >&2
fi
exit 0
