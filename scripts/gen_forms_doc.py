"""Rewrite the generated field tables of docs/forms.md from the specs of exchange/forms.

Run as `python scripts/gen_forms_doc.py` after changing a field spec; with `--check` it
only reports whether the document is current (tests/exchange/test_form_specs.py fails
when it is not). Each block between `<!-- generated: NAME -->` and
`<!-- end generated -->` is replaced; the prose around the blocks is left as written.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exchange.forms.schema import render_doc  # noqa: E402

DOC = ROOT / "docs" / "forms.md"


def main(argv: list[str]) -> int:
    text = DOC.read_text(encoding="utf-8")
    rendered = render_doc(text)
    if "--check" in argv:
        if rendered != text:
            print(f"{DOC} is stale: run python scripts/gen_forms_doc.py")
            return 1
        return 0
    if rendered != text:
        DOC.write_text(rendered, encoding="utf-8")
        print(f"rewrote the generated tables of {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
