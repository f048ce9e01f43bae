#!/usr/bin/env bash
# Idempotent Docker setup for tests and CI on machines without an image registry:
#   1. install docker.io + debootstrap when missing (Debian packages),
#   2. start dockerd in the background when no daemon answers, and wait for it,
#   3. build the offline base image genaiops/base:bookworm (debootstrap + docker import) when missing,
#      from the Debian mirror the machine's apt sources name (.ci/apt-mirror.sh).
# Every step is skipped when already done, so calling it again costs about a second.
# Two runs at once (two CI jobs, two checkouts) wait for each other on a lock; the root filesystem is
# built in a private temporary folder, and whatever debootstrap mounted inside it (/proc, /sys) is
# unmounted and the folder removed on every exit path, so no test ever walks into a mounted /proc.
set -euo pipefail

BASE_IMAGE="${GENAIOPS_BASE_IMAGE:-genaiops/base:bookworm}"
LOCK="${GENAIOPS_SETUP_LOCK:-/tmp/genaiops-setup-docker.lock}"
LOG="${GENAIOPS_DOCKERD_LOG:-/tmp/genaiops-dockerd.log}"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

exec 9>"$LOCK"
# held until this script exits: one setup at a time on this machine. Every long-lived process started
# below gets `9>&-`: a daemon that inherited the descriptor would hold the lock for its whole life,
# and the next setup on this machine would wait for it forever.
if ! flock -w "${GENAIOPS_SETUP_LOCK_WAIT:-900}" 9; then
  echo "setup-docker: another setup has held $LOCK for ${GENAIOPS_SETUP_LOCK_WAIT:-900}s; holders:" >&2
  fuser -v "$LOCK" >&2 2>&1 || true
  exit 1
fi

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
  $SUDO setsid dockerd >"$LOG" 2>&1 < /dev/null 9>&- &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { echo "setup-docker: dockerd did not start; see $LOG" >&2; exit 1; }
fi

ROOTFS=""
BUILDER=""
cleanup_rootfs() {
  if [ -n "$BUILDER" ] && kill -0 "$BUILDER" 2>/dev/null; then
    $SUDO kill -TERM -- "-$BUILDER" 2>/dev/null || true   # debootstrap and everything it started
    wait "$BUILDER" 2>/dev/null || true
  fi
  [ -n "$ROOTFS" ] && [ -d "$ROOTFS" ] || return 0
  # debootstrap mounts /proc and /sys inside the target; a failed or killed run leaves them mounted
  for mnt in $(awk -v root="$ROOTFS" 'index($2, root) == 1 {print $2}' /proc/mounts | sort -r); do
    $SUDO umount -l "$mnt" 2>/dev/null || true
  done
  $SUDO rm -rf --one-file-system "$ROOTFS"
}
trap cleanup_rootfs EXIT
trap 'exit 130' INT TERM

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  echo "setup-docker: building $BASE_IMAGE with debootstrap (about 1-2 minutes)"
  start=$(date +%s)
  MIRROR="$(bash "$(dirname "$0")/apt-mirror.sh" bookworm)"
  echo "setup-docker: debootstrap from $MIRROR"
  ROOTFS="$(mktemp -d "${TMPDIR:-/tmp}/genaiops-ci-rootfs.XXXXXX")"
  DEBOOTSTRAP_LOG="$ROOTFS/debootstrap.log"
  # in the background, in a session of its own: a signal to this script runs the cleanup at once
  # (bash runs traps only between foreground commands) and stops debootstrap's whole group
  $SUDO setsid debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$ROOTFS/root" "$MIRROR" >"$DEBOOTSTRAP_LOG" 2>&1 </dev/null 9>&- &
  BUILDER=$!
  wait "$BUILDER" || { BUILDER=""; echo "setup-docker: debootstrap failed; its log ends:" >&2
                       tail -n 20 "$DEBOOTSTRAP_LOG" >&2; exit 1; }
  BUILDER=""
  $SUDO rm -rf "$ROOTFS"/root/var/cache/apt/archives/*.deb "$ROOTFS"/root/var/lib/apt/lists/*
  $SUDO tar -C "$ROOTFS/root" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  echo "setup-docker: $BASE_IMAGE built in $(( $(date +%s) - start ))s"
fi
echo "setup-docker: ready (daemon up, base image $BASE_IMAGE present)"
