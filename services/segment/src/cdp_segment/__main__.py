from cdp_core.service import main

from .service import SPEC

main(SPEC)
