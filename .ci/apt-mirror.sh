#!/usr/bin/env bash
# Print the Debian mirror this machine's apt is configured with for RELEASE (default bookworm), so
# debootstrap uses the same mirror (or proxy) as apt-get instead of a hard-coded host.
#   1. $GENAIOPS_DEBIAN_MIRROR when set;
#   2. the first URI of a `Types: deb` paragraph in /etc/apt/sources.list.d/*.sources (deb822)
#      whose `Suites:` include RELEASE itself (not only RELEASE-security / -updates);
#   3. the first `deb [options] URI RELEASE ...` line of /etc/apt/sources.list(.d/*.list).
# Exits 1 with a message when none is found. GENAIOPS_APT_ETC replaces /etc/apt (tests).
set -euo pipefail

RELEASE="${1:-bookworm}"
ETC="${GENAIOPS_APT_ETC:-/etc/apt}"

if [ -n "${GENAIOPS_DEBIAN_MIRROR:-}" ]; then
  echo "$GENAIOPS_DEBIAN_MIRROR"
  exit 0
fi

from_deb822() {
  awk -v rel="$RELEASE" '
    function flush() {
      if (types ~ /(^|[ \t])deb([ \t]|$)/ && (" " suites " ") ~ (" " rel " ") && uris != "") {
        split(uris, list, /[ \t]+/); print list[1]; found = 1; exit
      }
      types = ""; suites = ""; uris = ""
    }
    /^[ \t]*#/ { next }
    /^[ \t]*$/ { flush(); next }
    /^Types:/  { sub(/^Types:[ \t]*/, "");  types = $0 }
    /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
    /^URIs:/   { sub(/^URIs:[ \t]*/, "");   uris = $0 }
    END { if (!found) flush() }
  ' "$@"
}

from_one_line() {
  awk -v rel="$RELEASE" '
    /^[ \t]*deb[ \t]/ {
      sub(/^[ \t]*deb[ \t]+/, ""); sub(/^\[[^]]*\][ \t]*/, "")
      if ($2 == rel) { print $1; exit }
    }
  ' "$@"
}

mirror=""
shopt -s nullglob
sources=("$ETC"/sources.list.d/*.sources)
if [ "${#sources[@]}" -gt 0 ]; then
  mirror="$(from_deb822 "${sources[@]}")"
fi
if [ -z "$mirror" ]; then
  lists=()
  [ -f "$ETC/sources.list" ] && lists+=("$ETC/sources.list")
  lists+=("$ETC"/sources.list.d/*.list)
  if [ "${#lists[@]}" -gt 0 ]; then
    mirror="$(from_one_line "${lists[@]}")"
  fi
fi
if [ -z "$mirror" ]; then
  echo "apt-mirror: no apt source for $RELEASE in $ETC/sources.list(.d); set GENAIOPS_DEBIAN_MIRROR" >&2
  exit 1
fi
echo "$mirror"
