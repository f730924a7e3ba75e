"""A model of the RSE crypto service (TF-M on the RSE security processor) over RSE comms.

On the real hardware the RSE is a security processor beside the application cores; elsewhere
this model plays that part on the host, beside the emulated machine, with its own console log:

``server``
    the process: a Unix stream listener answering RSE comms embed messages, one thread a link;
``crypto_service``
    the TF-M crypto calls (import, verify, generate, sign, export, destroy, random);
``keystore`` and ``keys``
    the PSA key store (volatile slots, persistent keys sealed on disk) and key material;
``console``
    the RSE's console log and the JSON events of its calls;
``command``
    the ``parsec-demo-rse-model`` program.

It shares the RSE comms framing, the TF-M crypto packing and the PSA numbers with the service it
answers (``parsec_service.rse_link``), so that both sides read one definition of the contract.
"""

__version__ = "0.1.0"
