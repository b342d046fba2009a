#!/usr/bin/env bash
# Make sure a Docker engine answers. There is no systemd on the CI machine, so
# when no engine runs we install Debian's docker.io and start dockerd ourselves.
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "installing Debian's docker.io"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
echo "starting dockerd (log: /var/log/dockerd.log)"
nohup dockerd >/var/log/dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "dockerd did not come up; last log lines:" >&2
tail -n 30 /var/log/dockerd.log >&2
exit 1
