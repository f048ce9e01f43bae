#!/usr/bin/env bash
# System packages the full test suite uses beyond Python: Chromium (the HTML report is rendered in a
# real browser) and Docker with an offline base image (deploy tests build and run real containers).
# Idempotent; without root it only reports what is missing, and the tests that need it skip with a reason.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != "0" ] && ! command -v sudo >/dev/null 2>&1; then
  echo "setup-system: not root: skipping system packages (browser/docker tests will skip)"
  exit 0
fi
SUDO=""; [ "$(id -u)" != "0" ] && SUDO="sudo"

if ! command -v chromium >/dev/null 2>&1; then
  echo "setup-system: installing chromium"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null \
    || echo "setup-system: chromium could not be installed; the browser test will skip" >&2
fi

bash .ci/setup-docker.sh || echo "setup-system: docker is not available; container tests will skip" >&2
exit 0
