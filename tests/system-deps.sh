#!/bin/sh
# Installs what npm cannot install but the tests use: Debian's chromium (browser
# tests), mosquitto-clients and python3-socketio (interop with third-party
# clients). As root it uses apt-get; otherwise it names what to install.
set -e
missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v mosquitto_pub >/dev/null 2>&1 || missing="$missing mosquitto-clients"
/usr/bin/python3 -c 'import socketio, requests, websocket' 2>/dev/null ||
  missing="$missing python3 python3-socketio python3-requests python3-websocket"
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian packages for the tests:$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
else
  echo "The tests need Debian packages that are not installed:$missing" >&2
  echo "Install them with: sudo apt-get install -y$missing" >&2
  exit 1
fi
