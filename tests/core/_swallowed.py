"""Run ``astro`` (the arguments after the first) with a hazard: once an output exists in the
folder given first, a SIGTERM arrives while the main thread runs a ``__del__``, where Python
prints "Exception ignored" and swallows the signal's exception, as when the signal lands in
a library's finaliser."""

import os
import signal
import sys
import time

OUT = sys.argv[1] if __name__ == "__main__" else ""


class Finaliser:
    def __del__(self):
        open(OUT + ".hazard", "w").close()  # the test's evidence that the hazard happened
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the signal handler runs here, inside __del__


def _hook(frame, event, arg):
    """Profile hook of the main thread: the first call once an output exists drops a Finaliser."""
    if event == "call" and os.path.isdir(OUT) and os.listdir(OUT):
        sys.setprofile(None)
        Finaliser()  # finalised at once


if __name__ == "__main__":  # not in the spawned workers
    from astrotool.cli import main

    sys.setprofile(_hook)
    sys.exit(main(sys.argv[2:]))
