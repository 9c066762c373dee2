#!/usr/bin/env bash
# Writes the seed corpora the fuzz targets start from (tests/fuzz/seeds/),
# from what the project already trusts as real input: objects made by
# kubectl (`kubectl create ... --dry-run=client`, no cluster needed), the
# manifests the repository ships, and the test PKI, made with rcgen by an
# ignored test (certificates and CRLs only: no private key is written).
# Re-run it when those change; the seeds are committed, so a fresh clone
# fuzzes from the same start.
set -euo pipefail
cd "$(dirname "$0")/../.."
SEEDS=tests/fuzz/seeds
export PATH="$PWD/.tools/bin:$PATH"
# Inputs that once crashed a target (regression-*) are kept.
find "$SEEDS/review_reader" "$SEEDS/manifests" "$SEEDS/request_host" -type f \
  ! -name 'regression-*' -delete 2>/dev/null || true
mkdir -p "$SEEDS"/{review_reader,manifests,bundle,request_host}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# kubectl-made Ingresses: the commands recorded in policies/ingresses/,
# in JSON this time, and a few more shapes.
n=0
while IFS= read -r cmd; do
  n=$((n + 1))
  eval "${cmd% -o yaml} -o json" >"$tmp/ingress-$n.json"
done < <(grep -h '^# made with: kubectl create ingress' policies/ingresses/*/*.yaml | sed 's/^# made with: //')
kubectl create ingress catch-all --default-backend=web:80 --dry-run=client -o json >"$tmp/ingress-a.json"
kubectl create ingress many -n shop --class=tlsward \
  --annotation=tlsward.io/client-auth-policy=inventory-clients \
  --rule="A.Example.COM/api*=api:8443,tls=a-tls" --rule="*.example.com/=web:80,tls=wild-tls" \
  --rule="/metrics=metrics:9090" --dry-run=client -o json >"$tmp/ingress-b.json"

# Each Ingress as the API server would send it for review: compact (as the
# API server sends) and pretty, CREATE, UPDATE with an old object, DELETE.
python3 - "$tmp" "$SEEDS/review_reader" <<'PY'
import glob, json, os, sys
src, out = sys.argv[1], sys.argv[2]
ingresses = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(src, "ingress-*.json")))]
def review(obj, op, old=None, uid="705ab4f5-6393-11e8-b7cc-42010a800002"):
    gvk = {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"}
    meta = (obj or old)["metadata"]
    return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
            "request": {"uid": uid, "kind": gvk, "requestKind": gvk,
                        "resource": {"group": "networking.k8s.io", "version": "v1", "resource": "ingresses"},
                        "name": meta["name"], "namespace": meta.get("namespace", "default"),
                        "operation": op,
                        "userInfo": {"username": "kubernetes-admin", "groups": ["kubeadm:cluster-admins", "system:authenticated"]},
                        "object": obj, "oldObject": old, "dryRun": False,
                        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-create"}}}
for i, ing in enumerate(ingresses):
    with open(os.path.join(out, f"kubectl-{i:02}-create.json"), "w") as f:
        json.dump(review(ing, "CREATE"), f, separators=(",", ":"))
    prev = ingresses[(i + 1) % len(ingresses)]
    with open(os.path.join(out, f"kubectl-{i:02}-update-pretty.json"), "w") as f:
        json.dump(review(ing, "UPDATE", prev), f, indent=2)
    if i % 4 == 0:
        with open(os.path.join(out, f"kubectl-{i:02}-delete.json"), "w") as f:
            json.dump(review(None, "DELETE", ing), f, separators=(",", ":"))
# Plans (first byte not JSON): the plain review around each sample Ingress.
for i in range(18):
    with open(os.path.join(out, f"plan-{i:02}"), "wb") as f:
        f.write(bytes([1, i]))
PY

# Manifests: everything the repository ships as YAML, and kubectl's JSON.
for f in policies/*.yaml policies/*/*.yaml policies/*/*/*.yaml webhooks/*.yaml examples/*.yaml crds/*.yaml; do
  cp "$f" "$SEEDS/manifests/$(echo "$f" | tr / -)"
done
cp "$tmp/ingress-1.json" "$SEEDS/manifests/kubectl-ingress.json"
kubectl create namespace shop --dry-run=client -o yaml >"$SEEDS/manifests/kubectl-namespace.yaml"
kubectl create configmap ca --from-literal=ca.crt=not-a-pem --dry-run=client -o json >"$SEEDS/manifests/kubectl-configmap.json"
python3 - "$tmp" "$SEEDS/manifests/kubectl-list.json" <<'PY'
import glob, json, os, sys
items = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(sys.argv[1], "ingress-*.json")))[:3]]
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, open(sys.argv[2], "w"), indent=2)
PY

# Hosts and authorities: the first byte picks the form (see the target).
i=0
for h in example.com A.Example.COM. shop.example.com:8443 '[::1]:8443' '[::1]' 127.0.0.1:443 \
  'example.com:' 'user@example.com' 'xn--bcher-kva.example' '*.example.com' 'a..' 'EXAMPLE.COM.:'; do
  i=$((i + 1))
  printf '\000%s' "$h" >"$SEEDS/request_host/host-$i"
done

# The test PKI: certificates and CRLs made with rcgen by an ignored test.
TLSWARD_FUZZ_SEEDS="$PWD/$SEEDS/bundle" cargo test --locked --lib \
  clientauth::bundle::tests::write_fuzz_seeds -- --ignored --exact
echo "seeds: $(find "$SEEDS" -type f | wc -l) files, $(du -sh "$SEEDS" | cut -f1)"
