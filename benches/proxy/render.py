#!/usr/bin/env python3
"""Fills a config template for scripts/bench-proxy.sh.

usage: render.py TEMPLATE OUTPUT NAME=value ... NAME@=path ...

Every @NAME@ in the template is replaced. NAME=value takes the value as
given; NAME@=path takes the contents of a file. When a placeholder stands
alone on its line, a multi-line value is indented to the placeholder's
column on every line (for YAML block scalars). An unknown or unfilled
placeholder is an error, so a typo cannot produce a half-written config.
"""
import re
import sys


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    template, output = sys.argv[1], sys.argv[2]
    values = {}
    for arg in sys.argv[3:]:
        name, eq, value = arg.partition("=")
        if not eq or not re.fullmatch(r"[A-Z][A-Z0-9_]*@?", name):
            print(f"render.py: bad argument {arg!r}: want NAME=value or NAME@=path", file=sys.stderr)
            return 2
        if name.endswith("@"):
            with open(value, encoding="utf-8") as f:
                values[name[:-1]] = f.read().rstrip("\n")
        else:
            values[name] = value
    with open(template, encoding="utf-8") as f:
        text = f.read()

    placeholder = re.compile(r"@([A-Z][A-Z0-9_]*)@")
    missing = sorted({m for m in placeholder.findall(text) if m not in values})
    if missing:
        print(f"render.py: {template}: no value for {', '.join(missing)}", file=sys.stderr)
        return 1

    out_lines = []
    for line in text.splitlines(keepends=True):
        alone = re.fullmatch(r"([ \t]*)@([A-Z][A-Z0-9_]*)@[ \t]*(\r?\n)?", line)
        if alone:
            indent, name, newline = alone.group(1), alone.group(2), alone.group(3) or ""
            value_lines = values[name].split("\n")
            out_lines.append("\n".join(indent + v if v else v for v in value_lines) + newline)
        else:
            out_lines.append(placeholder.sub(lambda m: values[m.group(1)], line))
    with open(output, "w", encoding="utf-8") as f:
        f.write("".join(out_lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
