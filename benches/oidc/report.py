#!/usr/bin/env python3
"""The tables printed at the end of scripts/bench-oidc.sh.

  report.py RESULTS_TSV

RESULTS_TSV has one line per oha run: mode, round, peer, token (es256,
rs256 or none), ok_rps, p99_ms, ok, errors, and the share of all CPU time
that other work on the machine took during the run (percent). The oha JSON
is turned into ok_rps .. errors by benches/proxy/report.py extract.
"""
import statistics
import sys

MODES = {"http1": "keep-alive HTTP/1.1", "h2": "h2 (ALPN, keep-alive)"}
PEER_ORDER = ["tlsward", "envoy"]
TOKENS = {"es256": "ES256 token", "rs256": "RS256 token", "none": "no token"}
NOISY_PERCENT = 10


def fmt_ratio(values) -> str:
    if not values:
        return "-"
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def paired(by, rounds, a, b, field):
    """a ÷ b for each round where both ran (and b is not zero)."""
    out = []
    for n in rounds:
        x, y = by.get(a + (n,)), by.get(b + (n,))
        if x and y and y[field] > 0 and x[field] == x[field] and y[field] == y[field]:
            out.append(x[field] / y[field])
    return out


def verdict(values, target, higher_is_better) -> str:
    if not values:
        return "not measured"
    m = statistics.median(values)
    met = m >= target if higher_is_better else m <= target
    return f"{'met' if met else 'MISSED'} on the median ({'≥' if higher_is_better else '≤'} {target:.2f})"


def tables(results_path: str) -> int:
    rows = []
    with open(results_path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            mode, rnd, peer, token, rps, p99, ok, errors, *rest = line.split()
            rows.append(dict(mode=mode, round=int(rnd), peer=peer, token=token, rps=float(rps),
                             p99=float(p99), ok=int(ok), errors=int(errors),
                             foreign=int(rest[0]) if rest else 0))
    for mode in [m for m in MODES if any(r["mode"] == m for r in rows)]:
        mrows = [r for r in rows if r["mode"] == mode]
        rounds = sorted({r["round"] for r in mrows})
        seen = {(r["peer"], r["token"]) for r in mrows}
        legs = [(p, t) for p in PEER_ORDER for t in TOKENS if (p, t) in seen]
        by = {(r["peer"], r["token"], r["round"]): r for r in mrows}
        noisy = sum(1 for r in mrows if r["foreign"] > NOISY_PERCENT)
        print(f"\n== {MODES[mode]}, mTLS + bearer token ==")
        if noisy:
            print(f"(* {noisy} of {len(mrows)} runs had other work take over {NOISY_PERCENT}% of the CPUs:"
                  f" up to {max(r['foreign'] for r in mrows)}%)")
        head = f"{'peer, token':<20}" + "".join(f"  {'round ' + str(n) + ' req/s':>15} {'p99 ms':>7}" for n in rounds)
        head += f"  {'median req/s':>12} {'median p99':>10} {'errors':>6}"
        print(head)
        for peer, token in legs:
            line = f"{peer + ', ' + TOKENS[token]:<20}"
            rates, p99s, errs = [], [], 0
            for n in rounds:
                r = by.get((peer, token, n))
                if r is None:
                    line += f"  {'-':>15} {'-':>7}"
                    continue
                rates.append(r["rps"])
                p99s.append(r["p99"])
                errs += r["errors"]
                mark = "*" if r["foreign"] > NOISY_PERCENT else " "
                rate = f"{r['rps']:,.0f}" + mark
                line += f"  {rate:>15} {r['p99']:>7.2f}"
            if rates:
                line += f"  {statistics.median(rates):>12,.0f} {statistics.median(p99s):>10.2f} {errs:>6}"
            print(line)
        print("(errors: non-2xx answers and failed requests; a run with errors measured something else)")

        print("ratios, paired by round, min / median / max:")
        checks = []
        for token in ("es256", "rs256"):
            rps = paired(by, rounds, ("tlsward", token), ("envoy", token), "rps")
            checks.append((f"req/s with an {TOKENS[token]}, tlsward ÷ Envoy", rps, verdict(rps, 1.0, True)))
        for token in ("es256", "rs256"):
            own = paired(by, rounds, ("tlsward", token), ("tlsward", "none"), "rps")
            checks.append((f"req/s tlsward, {TOKENS[token]} ÷ no token", own, verdict(own, 0.85, True)))
        for token in ("es256", "rs256"):
            p99 = paired(by, rounds, ("tlsward", token), ("envoy", token), "p99")
            checks.append((f"p99 with an {TOKENS[token]}, tlsward ÷ Envoy", p99, verdict(p99, 1.0, False)))
        for label, values, v in checks:
            print(f"  {label:<42} {fmt_ratio(values):<20} {v}")
        print("for reference (no target):")
        for token in ("es256", "rs256"):
            env = paired(by, rounds, ("envoy", token), ("envoy", "none"), "rps")
            print(f"  {'req/s Envoy, ' + TOKENS[token] + ' ÷ no token':<42} {fmt_ratio(env)}")
        none = paired(by, rounds, ("tlsward", "none"), ("envoy", "none"), "rps")
        print(f"  {'req/s without a token, tlsward ÷ Envoy':<42} {fmt_ratio(none)}")
    return 0


def main() -> int:
    if len(sys.argv) == 2:
        return tables(sys.argv[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
