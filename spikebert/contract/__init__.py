"""The NIR contract: what training, hardware and energy exchange, with no torch.

- :mod:`~spikebert.contract.extension`: the SB extension nodes; importing it registers them with ``nir.read``;
- :mod:`~spikebert.contract.nirfile`: ``read_graph`` (checks everything a file holds) and ``write_graph``;
- :mod:`~spikebert.contract.graph`: topological order, predecessors, port shapes;
- :mod:`~spikebert.contract.activity`: recorded activity, the energy module's input;
- :mod:`~spikebert.contract.fileio`: atomic writes;
- :mod:`~spikebert.contract.errors`: :class:`SpikebertError`, the one user-error class.
"""

from spikebert.contract import extension as extension  # registers the SB nodes with nir.read
from spikebert.contract.errors import SpikebertError as SpikebertError
