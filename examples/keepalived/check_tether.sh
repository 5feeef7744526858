#!/bin/bash
# check_tether.sh — keepalived's track_script for tether: exit 0 when the
# tether on this node takes connections, 1 when it does not.
#
#   check_tether.sh                    GET /ready from the admin API on 127.0.0.1:9901
#   check_tether.sh ready HOST:PORT    GET /ready from the admin API at HOST:PORT
#   check_tether.sh connect HOST:PORT  a TCP connect only, for a tether run
#                                      without the admin API
#
# /ready answers 200 once every listener is bound and 503 from SIGTERM on
# (tether drains), so a node whose tether stops, dies or hangs fails the
# check. A connect check sees only a dead or stopped process, and must
# target an address this node owns (127.0.0.1 for a wildcard listener), not
# the virtual IP: on the backup the VIP is not local and the connect would
# reach the master.
#
# Bash alone (its /dev/tcp): no curl needed on the node. keepalived's
# `timeout` ends a check that hangs (a connect to an address that drops).
set -u
mode=${1:-ready}
addr=${2:-127.0.0.1:9901}
host=${addr%:*}
port=${addr##*:}
case $mode in
ready | connect) ;;
*)
	echo "usage: $0 [ready|connect] [HOST:PORT]" >&2
	exit 2
	;;
esac
exec 3<>"/dev/tcp/$host/$port" || exit 1
[ "$mode" = connect ] && exit 0
printf 'GET /ready HTTP/1.0\r\nHost: %s\r\n\r\n' "$addr" >&3 || exit 1
# The status line within 1 s: a process that accepts but never answers
# (stopped, wedged) fails.
IFS= read -r -t 1 status <&3 || exit 1
case $status in
"HTTP/1."?" 200 "*) exit 0 ;;
esac
exit 1
