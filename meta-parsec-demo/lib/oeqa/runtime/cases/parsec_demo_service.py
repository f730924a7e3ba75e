#
# SPDX-License-Identifier: MIT
#
"""The Parsec service on the machine: its unit is active, it answers, it has its provider."""

import parsec_demo_machine as machine
from oeqa.core.decorator.depends import OETestDepends
from oeqa.runtime.parsec_demo_case import ParsecDemoCase


class ParsecServiceTest(ParsecDemoCase):
    def test_service_active(self):
        unit = self.service_unit()
        state = self.unit_state_after_start(unit)
        self.assertEqual(state, "active", "%s is %s" % (unit, state or "in no state"))
        self.run_ok("test -S %s" % machine.PARSEC_SOCKET)

    @OETestDepends(["parsec_demo_service.ParsecServiceTest.test_service_active"])
    def test_ping(self):
        output = self.run_ok("parsec-tool ping")
        self.assertIn("1.0", output.splitlines())

    @OETestDepends(["parsec_demo_service.ParsecServiceTest.test_service_active"])
    def test_list_providers(self):
        output = self.run_ok("parsec-tool list-providers")
        self.assertIn("ID: 0x04 (Trusted Service provider)", output)
