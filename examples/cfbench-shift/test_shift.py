"""cfbench's conformance checks on shift, one test per check and variant
(e.g. ``test_shift[shift:linear-check_bounds]``)."""

from cfbench.api import registry
from cfbench.testing import parametrize_with_checks


@parametrize_with_checks([registry().generator("shift")])
def test_shift(check):
    check()
