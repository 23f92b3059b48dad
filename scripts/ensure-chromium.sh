#!/usr/bin/env bash
# Make sure headless Chromium and its WebDriver are installed, for the browser test
# (tests/browser/). Uses the Debian packages `chromium` and `chromium-driver`; installs them
# with apt-get when missing (as root, or through passwordless sudo). Prints the two paths.
# Exit codes: 0 ready, 1 missing and cannot be installed here.
set -euo pipefail

have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }

if ! have; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "ensure-chromium: chromium/chromedriver missing and no apt-get here;" \
             "install Chromium and a matching chromedriver by hand" >&2
        exit 1
    fi
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "ensure-chromium: chromium/chromedriver missing; run as root:" \
             "apt-get install chromium chromium-driver" >&2
        exit 1
    fi
    echo "ensure-chromium: installing chromium chromium-driver with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Another apt run (a second checkout's tests, apt-daily) holds its locks for a while:
    # wait for it instead of failing. DPkg::Lock::Timeout covers only the dpkg lock, so
    # `update` (the package lists' lock) is retried. Waits stay inside the browser fixture's
    # 600 s: update up to 12 x 10 s, install up to 240 s.
    for try in $(seq 12); do
        "${SUDO[@]}" apt-get update -qq && break
        [ "$try" -eq 12 ] && { echo "ensure-chromium: apt-get update kept failing" >&2; exit 1; }
        sleep 10
    done
    "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=240 install -y -qq --no-install-recommends \
        chromium chromium-driver >&2
    have || { echo "ensure-chromium: install finished but chromium is still missing" >&2; exit 1; }
fi

command -v chromium
command -v chromedriver
