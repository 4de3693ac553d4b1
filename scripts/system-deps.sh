#!/usr/bin/env bash
# Debian packages the tests use: smtp-sink (postfix), spamassassin, chromium, wrk, dovecot-imapd
# and docker-compose (to validate docker-compose.yml without an engine). Installed only when
# missing, and only as root; otherwise the missing ones are named.
set -euo pipefail
need=()
command -v smtp-sink >/dev/null 2>&1 || [ -x /usr/sbin/smtp-sink ] || need+=(postfix)
command -v spamassassin >/dev/null 2>&1 || need+=(spamassassin)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# A real IMAP server for `nurture inbox check` tests; the tests start it with a config of their own.
[ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/imap ] || need+=(dovecot-imapd)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${need[*]} (sudo apt-get install ${need[*]})" >&2
  [ "${CI:-}" = "true" ] && exit 1
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# postfix asks questions at install time; we only want its smtp-sink binary.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
# The machine may be shared: every apt call waits for the same lock.
flock /tmp/apt.lock apt-get update -q
flock /tmp/apt.lock apt-get install -y -q --no-install-recommends "${need[@]}"
