#!/bin/sh
# Installs what npm cannot install but the tests use: Debian's chromium (browser
# tests), mosquitto and mosquitto-clients, python3-socketio (interop with
# third-party clients and brokers), redis-server and postgresql (the cluster and
# its history, each test starting its own on a free port). As root it uses apt-get; otherwise it names
# what to install.
set -e
missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
[ -x /usr/sbin/mosquitto ] || missing="$missing mosquitto"
command -v mosquitto_pub >/dev/null 2>&1 || missing="$missing mosquitto-clients"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
/usr/bin/python3 -c 'import socketio, requests, websocket' 2>/dev/null ||
  missing="$missing python3 python3-socketio python3-requests python3-websocket"
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian packages for the tests:$missing"
  # the tests start their own brokers on free ports; keep the packages' services from starting on the default ones
  own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  if [ -n "$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
else
  echo "The tests need Debian packages that are not installed:$missing" >&2
  echo "Install them with: sudo apt-get install -y$missing" >&2
  exit 1
fi
