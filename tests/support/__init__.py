"""What the tests share: test PKIs and keys, stand-ins (an FVP, LAVA's API), harnesses and load
generators, the checks of a good handshake, kas configurations resolved offline."""
