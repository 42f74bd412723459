"""What may import what (docs/architecture.md): read from every module's import statements, lazy ones included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "motif_video"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved, `from a import b` as a.b too)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


MODULES = {module_name(p): imported_modules(p) for p in sorted(PACKAGE.rglob("*.py"))}


def importers(prefix: str, within: str = "motif_video") -> list[str]:
    def hits(name: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    return sorted(
        module
        for module, names in MODULES.items()
        if (module == within or module.startswith(within + "."))
        and not hits(module)
        and any(map(hits, names))
    )


def test_the_scan_sees_relative_and_lazy_imports():
    assert "motif_video.training.setup" in MODULES["motif_video.training.trainer"]  # from .setup import ...
    assert "motif_video.training.components" in MODULES["motif_video.distill.objective"]  # inside a method
    assert importers("motif_video.training.components")  # somebody loads the components


def test_nothing_in_the_library_imports_the_recipes():
    assert importers("recipes") == []


def test_nothing_in_the_library_imports_the_test_helpers():
    assert importers("motif_video.testing") == []
    assert importers("tests") == []


@pytest.mark.parametrize("layer", ["motif_video.pipelines", "motif_video.models"])
def test_inference_does_not_import_training(layer):
    assert importers("motif_video.training", within=layer) == []
    assert importers("motif_video.distill", within=layer) == []


@pytest.mark.parametrize("upper", ["motif_video.pipelines", "motif_video.parallel", "motif_video.generation"])
def test_the_model_does_not_import_the_layers_that_run_it(upper):
    assert importers(upper, within="motif_video.models") == []


@pytest.mark.parametrize(
    "light", ["motif_video.options", "motif_video.defaults", "motif_video.choices", "motif_video.bounds"]
)
def test_the_option_declarations_import_no_library_layer(light):
    heavy = ("models", "pipelines", "parallel", "perf", "training", "distill", "evaluation", "generation")
    imported = {name for name in MODULES[light] if name.startswith("motif_video.")}
    assert not {name for name in imported if name.split(".")[1] in heavy}
    assert not {name for name in MODULES[light] if name.split(".")[0] in ("torch", "diffusers", "numpy")}
