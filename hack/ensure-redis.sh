#!/usr/bin/env bash
# Makes sure redis-server >= 6.2 (asynq's minimum) is installed; installs Debian's package when
# missing and running as root.
set -euo pipefail
need_major=6 need_minor=2
have() {
  command -v redis-server >/dev/null || return 1
  local v; v=$(redis-server --version | sed -n 's/.* v=\([0-9]*\.[0-9]*\).*/\1/p')
  local major=${v%%.*} minor=${v#*.}
  (( major > need_major || (major == need_major && minor >= need_minor) ))
}
if have; then exit 0; fi
if [[ $(id -u) -ne 0 ]]; then
  echo "redis-server >= $need_major.$need_minor is required; install it (e.g. 'sudo apt-get install redis-server') and retry" >&2
  exit 1
fi
echo "[ensure-redis] installing redis-server with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends redis-server >&2
# Debian starts a system redis on 6379; tests run their own on free ports and do not need it.
have || { echo "redis-server still missing or too old after install" >&2; exit 1; }
