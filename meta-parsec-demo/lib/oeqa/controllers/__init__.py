#
# SPDX-License-Identifier: MIT
#
# oeqa.controllers is a namespace shared by every layer's lib/oeqa/controllers (testimage imports
# each module of them to find TEST_TARGET): extend the package over all of them.
import pkgutil

__path__ = pkgutil.extend_path(__path__, __name__)
