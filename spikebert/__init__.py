"""spikebert: spiking BERT students, trained, exported to NIR, run in Lava, priced in energy.

Importing the package registers the NIR extension nodes with ``nir.read`` (no torch is imported).
Layers, bottom up: ``spikebert.contract`` (NIR contract) < ``spikebert.hardware``, ``spikebert.energy``
< models < ``spikebert.converters`` < training < ``spikebert.students`` < ``spikebert.workflows`` /
``spikebert.cli`` (README, "Layout").
"""

from spikebert.contract import SpikebertError as SpikebertError

__version__ = "0.2.0"
