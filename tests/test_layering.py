"""Layers import one way: every import of every module, including those inside functions, is held to
the table below (README, "Layout"). No two layers may reach each other."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder -> installed package (pyproject.toml, [tool.setuptools.package-dir])
FOLDERS = {"spikebert": "spikebert", "converters": "spikebert.converters", "hardware": "spikebert.hardware",
           "energy": "spikebert.energy"}

# layer -> the modules in it (a module belongs to the longest matching prefix)
LAYERS: dict[str, tuple[str, ...]] = {
    "contract": ("spikebert", "spikebert.contract"),
    "hardware": ("spikebert.hardware",),
    "energy": ("spikebert.energy",),
    "models": ("spikebert.config", "spikebert.io", "spikebert.data", "spikebert.tokenize", "spikebert.neurons",
               "spikebert.model", "spikebert.spikingbert", "spikebert.teacher", "spikebert.outputs"),
    "converters": ("spikebert.converters",),
    "training": ("spikebert.engine", "spikebert.targets", "spikebert.augment", "spikebert.distill",
                 "spikebert.spiking_distill", "spikebert.finetune", "spikebert.evaluation", "spikebert.recording",
                 "spikebert.figures"),
    "students": ("spikebert.students",),
    "testing": ("spikebert.testing",),
    "workflows": ("spikebert.workflows",),
    "cli": ("spikebert.cli",),
}
# layer -> the layers it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "contract": set(),
    "hardware": {"contract"},
    "energy": {"contract"},
    "models": {"contract"},
    "converters": {"contract", "hardware", "models"},
    "training": {"contract", "hardware", "energy", "models", "converters"},
    "students": {"contract", "hardware", "energy", "models", "converters", "training"},
    "testing": {"contract", "models"},  # firing students for tests and benchmarks; nothing imports it
    "workflows": {"contract", "hardware", "energy", "models", "converters", "training", "students"},
    "cli": {"contract", "hardware", "energy", "models", "converters", "training", "students", "workflows"},
}
# third-party packages a layer must never import: the NIR contract, hardware and energy run without torch
FORBIDDEN_THIRD_PARTY = {
    layer: {"torch", "transformers", "snntorch", "nirtorch", "accelerate"} for layer in ("contract", "hardware",
                                                                                         "energy")
}
FORBIDDEN_THIRD_PARTY["contract"] |= {"lava"}
FORBIDDEN_THIRD_PARTY["energy"] |= {"lava"}


def modules() -> dict[str, Path]:
    """Installed module name -> source file, for every module of the four folders."""
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


def layer_of(module: str) -> str:
    best, layer = -1, None
    for name, prefixes in LAYERS.items():
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, layer = len(prefix), name
    if layer is None:
        raise AssertionError(f"module {module} is in no layer: add it to LAYERS in tests/test_layering.py")
    return layer


def imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported module) for every import statement anywhere in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            found.append((node.lineno, target))
            # `from spikebert import figures` imports the module spikebert.figures
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names
                      if f"{target}.{alias.name}" in MODULES]
    return found


MODULES = modules()


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_module_imports_a_top_level_project_folder():
    """Only ``spikebert`` is installed: ``import hardware`` would reach whatever folder a user has."""
    bad = [f"{MODULES[m].relative_to(ROOT)}:{line} imports {target}" for m in MODULES
           for line, target in imports(MODULES[m], m) if target.split(".")[0] in {"converters", "hardware", "energy"}]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layer_table(module):
    layer = layer_of(module)
    bad = []
    for line, target in imports(MODULES[module], module):
        top = target.split(".")[0]
        if top == "spikebert":
            other = layer_of(target) if target in MODULES or target == "spikebert" else layer_of(target)
            if other != layer and other not in ALLOWED[layer]:
                bad.append(f"line {line}: {target} ({other}) from the {layer} layer")
        elif top in FORBIDDEN_THIRD_PARTY.get(layer, set()):
            bad.append(f"line {line}: {target} from the {layer} layer (torch-free, Lava-free where stated)")
    assert not bad, f"{MODULES[module].relative_to(ROOT)}:\n" + "\n".join(bad)


def test_the_table_has_no_cycle():
    """Allowed imports form a partial order: no two layers may reach each other, even indirectly."""
    def reach(layer, seen):
        for other in ALLOWED[layer]:
            assert other != layer and other not in seen, f"cycle through {seen + [layer, other]}"
            reach(other, seen + [layer])

    for layer in ALLOWED:
        reach(layer, [])


def test_contract_hardware_and_energy_import_without_torch():
    """Checked by running, too: importing them pulls in no torch or training code."""
    import subprocess

    code = ("import sys, spikebert.contract.graph, spikebert.hardware.reference, spikebert.hardware.quantize, "
            "spikebert.energy.counting, spikebert.energy.report, spikebert.energy.profiles; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'snntorch', 'transformers') "
            "or m in ('spikebert.model', 'spikebert.distill', 'spikebert.teacher')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_importing_spikebert_registers_the_extension_with_nir_read(tmp_path):
    """Plain ``nir.read`` reads the project's own files once ``spikebert`` is imported."""
    import subprocess

    code = ("import numpy as np, nir, spikebert\n"
            "from spikebert.contract.extension import SBTokenMean\n"
            "g = nir.NIRGraph(nodes={'input': nir.Input(input_type=np.array([4, 3])), 'pool': SBTokenMean(dim=4, "
            "tokens=3, mask_padding=False), 'output': nir.Output(output_type=np.array([4]))}, "
            "edges=[('input', 'pool'), ('pool', 'output')])\n"
            f"nir.write({str(tmp_path / 'g.nir')!r}, g)\n"
            f"g2 = nir.read({str(tmp_path / 'g.nir')!r})\n"
            "assert type(g2.nodes['pool']).__name__ == 'SBTokenMean', g2.nodes")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_modules_import_each_other():
    """Within a layer too, imports form no cycle (a lazy import inside a function counts): a module that needs
    another's names while that one needs its own only works by the order in which they happen to load."""
    graph = {m: {t for _, t in imports(MODULES[m], m) if t in MODULES and t != m} for m in MODULES}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(module):  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in sorted(graph[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert not cycles, f"modules that reach each other: {cycles}"
