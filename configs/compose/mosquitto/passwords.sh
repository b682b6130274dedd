#!/usr/bin/env bash
# Gives every gateway named in acl-gateways a new random MQTT password:
# writes it in plain to ../gateways/ID.password (mounted into that
# gateway's container as its --password-file) and its hash to passwd
# (Mosquitto's password_file). The files in the repository hold demo
# passwords, made by this script: run it before the compose project
# serves anything but a demo.
#
# Needs mosquitto_passwd (Debian: apt-get install mosquitto).
set -euo pipefail
cd "$(dirname "$0")"
command -v mosquitto_passwd >/dev/null || { echo "mosquitto_passwd is missing: apt-get install mosquitto" >&2; exit 1; }

ids=$(awk '$1 == "user" { print $2 }' acl-gateways)
[ -n "$ids" ] || { echo "no user lines in acl-gateways" >&2; exit 1; }
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
for id in $ids; do
	pw=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
	printf '%s\n' "$pw" > "../gateways/$id.password"
	mosquitto_passwd -b "$tmp" "$id" "$pw"
	echo "$id: ../gateways/$id.password"
done
mv "$tmp" passwd
chmod 0644 passwd ../gateways/*.password
trap - EXIT
