"""The Parsec-enabled TLS demo, in layers that import only downwards:

``results``
    a client program's run with the RSE calls it caused (``parsec_demo_evidence.RseCall``),
    the summary of those calls and the demo's one-line verdict;
``local_server``
    the one way a TLS server is started on this host and awaited (on a machine, the layer's
    ``parsec_demo_machine`` steps start it);
``mutual_tls``
    mutual TLS with a client key made in the RSE, wherever the client runs;
``host`` and ``vm``
    ``./tools/demo --host`` (the demo's processes on this host) and ``./tools/demo`` (inside
    the dev VM, the RSE model beside it).

The programs' command lines and the checks of their output come from the layer's
``parsec_demo_machine``, the RSE's records from ``parsec_demo_evidence``: the oeqa cases and the
LAVA test definition use the same.
"""
