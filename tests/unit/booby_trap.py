"""A class whose loading runs code: what a malicious model artifact would carry."""

import os
from pathlib import Path


class Trap:
    def __init__(self):
        self.armed = True

    def __setstate__(self, state):
        Path(os.environ["BOOBY_TRAP_MARKER"]).write_text("code ran while the model was loaded")
        self.__dict__.update(state)

    def __call__(self, values):
        return values
