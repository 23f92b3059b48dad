#!/usr/bin/env bash
# Make sure headless Chromium and its WebDriver are installed, for the browser test
# (tests/browser/). Uses the Debian packages `chromium` and `chromium-driver`; installs them
# with apt-get when missing (as root, or through passwordless sudo). Prints the two paths.
# Exit codes: 0 ready, 1 missing and cannot be installed here.
set -euo pipefail

have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }

# Two callers at once (parallel test workers) take turns: the second waits for the first's
# install and then finds Chromium there. flock is util-linux's (Debian's base system).
if ! have && command -v flock >/dev/null 2>&1; then
    exec 9>"${TMPDIR:-/tmp}/kneeload-ensure-chromium.lock"
    flock -w 900 9 || { echo "ensure-chromium: another install held the lock for 15 min" >&2; exit 1; }
fi

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
    # wait for an apt run of anything else (up to 10 min) instead of failing on its lock
    APT_WAIT=(-o DPkg::Lock::Timeout=600)
    "${SUDO[@]}" apt-get "${APT_WAIT[@]}" update -qq
    "${SUDO[@]}" apt-get "${APT_WAIT[@]}" install -y -qq --no-install-recommends chromium \
        chromium-driver >&2
    have || { echo "ensure-chromium: install finished but chromium is still missing" >&2; exit 1; }
fi

command -v chromium
command -v chromedriver
