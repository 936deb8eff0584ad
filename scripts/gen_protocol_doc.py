#!/usr/bin/env python3
"""Write docs/protocol.md, docs/protocol.schema.json and web/js/protocol.js from liaison.protocol.

    python scripts/gen_protocol_doc.py          # regenerate both files
    python scripts/gen_protocol_doc.py --check  # exit 1 if they are out of date (CI)

The models are the source of truth; these files are generated so they never
drift from the code. Edit docstrings, Field descriptions, the commands' ``result_doc`` and
``example_args``, or the prose in liaison/protocol/protocol.template.md, then re-run.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

from liaison.protocol.jsconst import js_constants  # noqa: E402
from liaison.protocol.markdown import markdown_doc  # noqa: E402
from liaison.protocol.schema import plan_schema_text, schema_text  # noqa: E402

DOCS = PROJECT / "docs"
WEB_JS = PROJECT / "web" / "js"


def outputs(docs: Path = DOCS, web_js: Path | None = None) -> dict[Path, str]:
    """Each generated file and the text it should hold."""
    web_js = web_js or (WEB_JS if docs == DOCS else docs)
    return {docs / "protocol.md": markdown_doc(), docs / "protocol.schema.json": schema_text(),
            docs / "plan.schema.json": plan_schema_text(), web_js / "protocol.js": js_constants()}


def main(argv: list[str] | None = None, docs: Path = DOCS) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a file differs")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs(docs).items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path)
            diff = difflib.unified_diff((current or "").splitlines(), text.splitlines(),
                                        f"{path.name} (checked in)", f"{path.name} (generated)",
                                        lineterm="", n=1)
            lines = list(diff)
            print("\n".join(lines[:40]) + ("\n..." if len(lines) > 40 else ""), file=sys.stderr)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="\n")
            print(f"wrote {path.relative_to(PROJECT) if path.is_relative_to(PROJECT) else path}")
    if stale:
        names = ", ".join(p.name for p in stale)
        print(f"{names} out of date: run `python scripts/gen_protocol_doc.py` and commit the result.",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
