#!/usr/bin/env python3
"""A stand-in for an Arm FVP at its interface, for the runner's tests.

It records its command line, working directory and environment (to ``standin-record.json`` in
its working directory), announces one telnet console per ``--parameter <t>.start_telnet=0`` as
a real FVP does, by the terminal's own name, the last part of its path
(``terminal_ns_uart0: Listening for serial connection on port N`` for
``css.ap_periph.terminal_ns_uart0``), prints a boot log and a
login prompt on the first terminal, and answers with an SSH banner on the host port that
``...userNetPorts`` forwards to guest port 22. SIGTERM ends it.
"""

import json
import os
import signal
import socket
import sys
import threading
import time


def main() -> int:
    args = sys.argv[1:]
    parameters = [args[i + 1] for i, a in enumerate(args) if a == "--parameter"]
    terminals = [
        p.split(".start_telnet=")[0].rsplit(".", 1)[-1] for p in parameters if ".start_telnet=" in p
    ]
    ssh_port = None
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.endswith("virtio_net.hostbridge.userNetPorts"):
            for forward in value.split(","):
                host, _, guest = forward.partition("=")
                if guest == "22":
                    ssh_port = int(host)
    with open("standin-record.json", "w") as record:
        json.dump({"argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ)}, record)
    if os.environ.get("STANDIN_FAIL"):
        print("Error: license checkout failed", flush=True)
        return 3

    servers = []
    for terminal in terminals:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        servers.append((terminal, server))
        print(
            f"{terminal}: Listening for serial connection on port {server.getsockname()[1]}",
            flush=True,
        )

    def console(terminal: str, server: socket.socket, first: bool) -> None:
        conn, _ = server.accept()
        conn.sendall(bytes([255, 251, 1]))  # telnet IAC WILL ECHO, as FVP terminals send
        conn.sendall(f"{terminal} up\r\n".encode())
        if first and not os.environ.get("STANDIN_NO_LOGIN"):
            conn.sendall(b"Booting Linux...\r\n\r\nparsec-demo login: ")
        while conn.recv(1024):
            pass

    for index, (terminal, server) in enumerate(servers):
        threading.Thread(target=console, args=(terminal, server, index == 0), daemon=True).start()

    if ssh_port is not None:
        ssh = socket.socket()
        ssh.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ssh.bind(("127.0.0.1", ssh_port))
        ssh.listen(4)

        def banner() -> None:
            while True:
                conn, _ = ssh.accept()
                conn.sendall(b"SSH-2.0-FVP-standin\r\n")
                conn.close()

        threading.Thread(target=banner, daemon=True).start()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
