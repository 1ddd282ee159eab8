"""What the product imports is what `requirements.txt` installs.

`./run_local.sh` installs `requirements.txt` (and, without their declared
dependencies, `requirements-nodeps.txt`) only; the tests run in a venv that also
holds `requirements-test.txt`. So a module the product imports that only the test
requirements bring (OpenCV was one) passes every test and breaks the README's first
command on a fresh clone. This test reads the imports of `transforms/`,
`beam_pipeline/` and `video_index/` and checks each third-party one against the
distributions that `requirements.txt` installs, its pins' own dependencies included.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys

from tests.helpers import REPO

OURS = {"transforms", "beam_pipeline", "video_index"}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pins(file: str) -> list[str]:
    return [
        _name(line)
        for line in (REPO / file).read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _installed_by_requirements() -> set[str]:
    """The distributions `pip install -r requirements.txt` brings, transitively, and
    those `pip install --no-deps -r requirements-nodeps.txt` brings (themselves only)."""
    wanted = _pins("requirements.txt")
    seen: set[str] = set(_pins("requirements-nodeps.txt"))
    while wanted:
        name = wanted.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        # Markers that select an extra are not installed by a plain requirement.
        wanted += [_name(r) for r in requires if "extra ==" not in r]
    return seen


def _imported_top_level_modules() -> dict[str, str]:
    """Top-level modules imported anywhere in the product code -> a file importing it."""
    found: dict[str, str] = {}
    for package in OURS:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(REPO)))
    return found


def test_every_third_party_import_of_the_product_is_in_requirements_txt() -> None:
    installed = _installed_by_requirements()
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for module, where in sorted(_imported_top_level_modules().items()):
        if module in OURS or module in sys.stdlib_module_names:
            continue
        owners = {_name(d) for d in distributions.get(module, [])}
        if not owners & installed:
            missing.append(f"{module} (imported by {where}; from {sorted(owners) or '?'})")
    assert not missing, "not installed by requirements.txt: " + "; ".join(missing)
