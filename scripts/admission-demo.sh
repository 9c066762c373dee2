#!/usr/bin/env bash
# Runs tlsward locally with no cluster:
#  1. `tlsward check` over the sample Ingresses in policies/ (PASS/FAIL lines);
#  2. the real admission webhook on https://localhost:8443 with a throwaway
#     certificate, fed the AdmissionReviews the API server would send, printing
#     what kubectl would show. Exits 0 when every answer is the expected one.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${TLSWARD_QUICKSTART_PORT:-8443}"
ADMIN_PORT="${TLSWARD_QUICKSTART_ADMIN_PORT:-9090}"

missing=()
for t in openssl curl; do command -v "$t" >/dev/null || missing+=("$t"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} with apt-get"
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --quiet --bin tlsward
bin="$PWD/target/debug/tlsward"
work=$(mktemp -d)
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

echo "== tlsward check -f policies/ingresses/ (the denied samples fail on purpose)"
set +e
"$bin" check -f policies/ingresses/ -f policies/clientauthpolicies/
status=$?
set -e
[ "$status" -eq 1 ] || { echo "expected exit 1 (some samples are denied), got $status" >&2; exit 1; }

echo
echo "== tlsward webhook on https://localhost:$PORT (throwaway certificate in $work)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
# The shipped default policy, plus a cert-manager issuer to show mutation.
sed 's/^certManager: {}$/certManager: {issuer: {name: letsencrypt-prod}}/' policies/ingress-tls.yaml > "$work/policy.yaml"
grep -q 'name: letsencrypt-prod' "$work/policy.yaml" || { echo "could not add an issuer to the demo policy" >&2; exit 1; }
"$bin" webhook --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" --policy "$work/policy.yaml" \
  --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" 2>"$work/webhook.log" &
pid=$!
ready=""
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null && { ready=1; break; }
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$ready" ] || { echo "the webhook did not start:" >&2; cat "$work/webhook.log" >&2; exit 1; }

post() { # post PATH FILE -> AdmissionReview response JSON
  "$bin" review -f "$2" | head -1 |
    curl -sS --cacert "$work/tls.crt" -H 'content-type: application/json' --data-binary @- "https://localhost:$PORT$1"
}
show() { # what kubectl would print
  python3 -c '
import base64, json, sys
r = json.load(sys.stdin)["response"]
for w in r.get("warnings", []): print("Warning:", w)
if not r["allowed"]:
    print("Error from server (Forbidden): admission webhook \"ingress-tls.tlsward.io\" denied the request:", r["status"]["message"]); sys.exit(3)
if "patch" in r: print("mutated:", base64.b64decode(r["patch"]).decode())
print("allowed")'
}

for f in policies/ingresses/denied/no-tls.yaml policies/ingresses/denied/host-not-covered.yaml; do
  echo "-- kubectl apply -f $f"
  set +e; post /validate "$f" | show; rc=$?; set -e
  [ "$rc" -eq 3 ] || { echo "expected a denial" >&2; exit 1; }
done
f=policies/ingresses/allowed/exact-host.yaml
echo "-- kubectl apply -f $f   (mutating webhook, then validating webhook)"
post /mutate "$f" | show
post /validate "$f" | show

echo
echo "Try it yourself while it runs (Ctrl-C to stop):"
echo "  $bin review -f $f | curl -s --cacert $work/tls.crt --data-binary @- https://localhost:$PORT/mutate"
echo "  curl -s http://127.0.0.1:$ADMIN_PORT/metrics"
if [ -t 0 ]; then wait "$pid"; fi
