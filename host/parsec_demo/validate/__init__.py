"""Running the layer's oeqa runtime cases without a Yocto build: against the dev VM."""
