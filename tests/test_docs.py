"""The repository stands alone: what the code cites exists in it."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = [p for d in ("src", "workflow", "configs", "benchmarks") for p in (ROOT / d).rglob("*")
        if p.is_file() and p.suffix in (".py", ".smk", ".yaml", ".rst")]


def test_no_file_cites_a_document_users_do_not_have():
    citing = [str(p.relative_to(ROOT)) for p in CODE if "SPEC section" in p.read_text(errors="replace")]
    assert citing == [], f"cite docs/method.md instead: {citing}"


def test_method_sections_cited_by_the_code_exist():
    method = (ROOT / "docs" / "method.md").read_text()
    cited = {line.split("docs/method.md, section ")[1][0] for p in CODE
             for line in p.read_text(errors="replace").splitlines() if "docs/method.md, section " in line}
    assert cited and all(f"\n## {n}. " in method for n in cited), cited
