"""The link to the RSE crypto service: RSE comms embed messages and their framing, TF-M crypto
calls, and a client over a Unix socket or a serial port."""
