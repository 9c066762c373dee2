#!/usr/bin/env python3
"""Result handling for scripts/bench-proxy.sh.

  report.py extract OHA_JSON            -> "ok_rps p99_ms ok errors" on one line
  report.py tables RESULTS_TSV [MEM_TSV [RESUMPTION_TSV]] -> the tables printed at the end

RESULTS_TSV has one line per oha run: mode, round, peer, ok_rps, p99_ms,
ok, errors, and the share of all CPU time that other work on the machine
took during the run (percent). MEM_TSV has one line per peer: peer, rss_before_kib,
rss_after_kib, pss_before_kib, pss_after_kib, processes, open, failed,
established. RESUMPTION_TSV has one line per peer: peer, "resumed" or
"full" (what a client offering its previous TLS session got).
"""
import json
import statistics
import sys

MODES = {
    "http1": "keep-alive HTTP/1.1",
    "h2": "h2 (ALPN, keep-alive)",
    "newconn": "new mTLS connections (HTTP/1.1, no keep-alive: one handshake per request)",
    "tls-upstream": "keep-alive HTTP/1.1, re-encrypted to a TLS upstream (verified, upstream.bench.local)",
    "grpc-unary": "gRPC unary calls (h2 with a client certificate; h2c to a tonic backend; req/s = calls/s)",
}
PEER_ORDER = ["tlsward", "nginx", "haproxy", "envoy"]
# oha counts the requests still in flight when -z runs out as errors of
# this kind; they are not failures of the server.
DEADLINE_ERRORS = ("aborted due to deadline",)
# A run during which other work on the machine took more than this share of
# the CPUs is marked with "*".
NOISY_PERCENT = 10


def extract(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    total_seconds = data["summary"]["total"] or 1e-9
    codes = data.get("statusCodeDistribution", {})
    ok = sum(n for code, n in codes.items() if code.startswith("2"))
    not_ok = sum(n for code, n in codes.items() if not code.startswith("2"))
    errors = not_ok + sum(
        n
        for what, n in data.get("errorDistribution", {}).items()
        if not any(d in what for d in DEADLINE_ERRORS)
    )
    p99_ms = data["latencyPercentiles"].get("p99")
    p99_ms = float("nan") if p99_ms is None else p99_ms * 1000.0
    print(f"{ok / total_seconds:.1f} {p99_ms:.3f} {ok} {errors}")
    return 0


def fmt_rate(v: float) -> str:
    return f"{v:,.0f}"


def fmt_ratio(values) -> str:
    if not values:
        return "-"
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def peers_in(rows):
    seen = {r["peer"] for r in rows}
    return [p for p in PEER_ORDER if p in seen] + sorted(seen - set(PEER_ORDER))


def tables(results_path: str, mem_path: str | None, resumption_path: str | None) -> int:
    resumed = {}
    if resumption_path:
        with open(resumption_path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    peer, how = line.split()
                    resumed[peer] = how
    rows = []
    with open(results_path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            mode, rnd, peer, rps, p99, ok, errors, *rest = line.split()
            rows.append(
                dict(mode=mode, round=int(rnd), peer=peer, rps=float(rps),
                     p99=float(p99), ok=int(ok), errors=int(errors),
                     foreign=int(rest[0]) if rest else 0)
            )
    for mode in [m for m in MODES if any(r["mode"] == m for r in rows)]:
        mrows = [r for r in rows if r["mode"] == mode]
        rounds = sorted({r["round"] for r in mrows})
        peers = peers_in(mrows)
        by = {(r["peer"], r["round"]): r for r in mrows}
        noisy = sum(1 for r in mrows if r["foreign"] > NOISY_PERCENT)
        print(f"\n== {MODES[mode]} ==")
        if noisy:
            print(f"(* {noisy} of {len(mrows)} runs had other work take over {NOISY_PERCENT}% of the CPUs:"
                  f" up to {max(r['foreign'] for r in mrows)}%)")
        head = f"{'peer':<9}" + "".join(f"  {'round ' + str(n) + ' req/s':>15} {'p99 ms':>7}" for n in rounds)
        head += f"  {'median req/s':>12} {'median p99':>10} {'errors':>6}"
        print(head)
        for peer in peers:
            line = f"{peer:<9}"
            rates, p99s, errs = [], [], 0
            for n in rounds:
                r = by.get((peer, n))
                if r is None:
                    line += f"  {'-':>15} {'-':>7}"
                    continue
                rates.append(r["rps"])
                p99s.append(r["p99"])
                errs += r["errors"]
                mark = "*" if r["foreign"] > NOISY_PERCENT else " "
                line += f"  {fmt_rate(r['rps']) + mark:>15} {r['p99']:>7.2f}"
            if rates:
                line += f"  {fmt_rate(statistics.median(rates)):>12} {statistics.median(p99s):>10.2f} {errs:>6}"
            print(line)
        if "tlsward" in peers and len(peers) > 1:
            print("tlsward ÷ peer, paired by round, min / median / max:")
            for peer in peers:
                if peer == "tlsward":
                    continue
                rate_ratios, p99_ratios = [], []
                for n in rounds:
                    t, o = by.get(("tlsward", n)), by.get((peer, n))
                    if t and o and o["rps"] > 0:
                        rate_ratios.append(t["rps"] / o["rps"])
                    if t and o and o["p99"] > 0:
                        p99_ratios.append(t["p99"] / o["p99"])
                note = ""
                if mode == "newconn" and resumed.get("tlsward") != resumed.get(peer):
                    note = (f"   NOT COMPARABLE: tlsward's new connections were {resumed.get('tlsward', '?')}"
                            f" handshakes, {peer}'s {resumed.get(peer, '?')}")
                print(f"  vs {peer:<8} req/s {fmt_ratio(rate_ratios):<20}  p99 {fmt_ratio(p99_ratios):<20}{note}")
            print("  (req/s: higher is better for tlsward; p99: lower is better)")
        elif "tlsward" not in peers:
            print("tlsward ÷ peer: tlsward was not measured in this run")

    if mem_path:
        mem = []
        with open(mem_path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    mem.append(line.split())
        if mem:
            print("\n== resident memory with idle mTLS keep-alive connections ==")
            print(f"{'peer':<9} {'procs':>5} {'open':>6} {'estab':>6} {'RSS before':>11} {'RSS after':>11}"
                  f" {'RSS growth':>11} {'per conn':>9} {'PSS after':>11}")
            rss_after = {}
            closed = []
            for peer, rb, ra, pb, pa, procs, opened, failed, estab in mem:
                rb, ra, pb, pa, opened, estab = int(rb), int(ra), int(pb), int(pa), int(opened), int(estab)
                rss_after[peer] = ra
                # Per connection the server still held when RSS was read.
                per = (ra - rb) / estab if estab else float("nan")
                print(f"{peer:<9} {procs:>5} {opened:>6} {estab:>6} {rb / 1024:>8.1f} MiB {ra / 1024:>8.1f} MiB"
                      f" {(ra - rb) / 1024:>8.1f} MiB {per:>6.1f} KiB {pa / 1024:>8.1f} MiB"
                      + (f"  ({failed} failed)" if failed != "0" else ""))
                if estab < 0.98 * opened:
                    closed.append(f"{peer} held only {estab} of the {opened} connections when RSS was read")
            print("(open: connections the client opened; estab: established sockets on the server's port"
                  " when RSS was read; per conn: RSS growth ÷ estab)")
            for c in closed:
                print(f"NOT COMPARABLE: {c}")
            if "tlsward" in rss_after and "nginx" in rss_after and rss_after["nginx"]:
                print(f"tlsward ÷ nginx, RSS with the connections open: {rss_after['tlsward'] / rss_after['nginx']:.2f}"
                      " (lower is better)")
    return 0


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "extract":
        return extract(sys.argv[2])
    if len(sys.argv) >= 3 and sys.argv[1] == "tables":
        rest = sys.argv[3:] + [None, None]
        return tables(sys.argv[2], rest[0], rest[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
