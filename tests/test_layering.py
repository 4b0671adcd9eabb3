"""hardware/ and energy/ work from NIR graphs and recorded activity: no training code, no torch."""

import subprocess
import sys


def test_hardware_and_energy_do_not_import_training_code():
    code = ("import sys, hardware.reference, hardware.lava_runner, energy.counting, energy.report, "
            "converters.nir_to_lava; bad = [m for m in sys.modules if m == 'torch' or m.startswith("
            "('spikebert.model', 'spikebert.distill', 'spikebert.teacher', 'snntorch', 'transformers'))]; "
            "print(bad); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
