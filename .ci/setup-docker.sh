#!/usr/bin/env bash
# Idempotent Docker setup for tests and CI on machines without an image registry:
#   1. install docker.io + debootstrap when missing (Debian packages),
#   2. start dockerd in the background when no daemon answers, and wait for it,
#   3. build the offline base image genaiops/base:bookworm (debootstrap + docker import) when missing,
#      from the Debian mirror the machine's apt sources name (.ci/apt-mirror.sh).
# Every step is skipped when already done, so calling it again costs about a second.
set -euo pipefail

BASE_IMAGE="${GENAIOPS_BASE_IMAGE:-genaiops/base:bookworm}"
ROOTFS="${GENAIOPS_ROOTFS_DIR:-/tmp/genaiops-rootfs}"
LOG="${GENAIOPS_DOCKERD_LOG:-/tmp/genaiops-dockerd.log}"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

need_apt=()
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "setup-docker: installing ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  echo "setup-docker: starting dockerd (log: $LOG)"
  # setsid: the daemon must outlive this script and not get the caller's signals.
  $SUDO setsid dockerd >"$LOG" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { echo "setup-docker: dockerd did not start; see $LOG" >&2; exit 1; }
fi

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  echo "setup-docker: building $BASE_IMAGE with debootstrap (about 1-2 minutes)"
  start=$(date +%s)
  MIRROR="$(bash "$(dirname "$0")/apt-mirror.sh" bookworm)"
  echo "setup-docker: debootstrap from $MIRROR"
  $SUDO rm -rf "$ROOTFS"
  $SUDO debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$ROOTFS" "$MIRROR" >/tmp/genaiops-debootstrap.log 2>&1 \
    || { echo "setup-docker: debootstrap failed; see /tmp/genaiops-debootstrap.log" >&2; exit 1; }
  $SUDO rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
  $SUDO tar -C "$ROOTFS" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  $SUDO rm -rf "$ROOTFS"
  echo "setup-docker: $BASE_IMAGE built in $(( $(date +%s) - start ))s"
fi
echo "setup-docker: ready (daemon up, base image $BASE_IMAGE present)"
