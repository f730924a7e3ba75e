"""The validation on a LAVA test farm: job definitions made from a build's ``.fvpconf`` or
``qemuboot.conf`` (``jobs``), checked with LAVA's own schema (``check``)."""
