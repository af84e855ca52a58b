"""Plays init for test_containment: `reaper.py CMD...` runs CMD as a child subreaper, reaps.

It prints `CHILD <pid>` first, then CMD's output; every orphan re-parented to it is reaped (as
init would), until its stdin closes. So a killed engine's leader whose parent died is really
gone, not a zombie left for a reaper that never comes.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
import time

PR_SET_CHILD_SUBREAPER = 36


def main(argv: list[str]) -> None:
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    print("CHILD", child.pid, flush=True)
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    while not done.is_set():
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
        time.sleep(0.02)  # sleep-ok: a polling reaper, like init


if __name__ == "__main__":
    main(sys.argv[1:])
