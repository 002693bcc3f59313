"""The environment this process started with, before its imports: the warm server (see `local_jobs`) imports this
module first, so that a trial forked from it can tell what the server's imports set (a new process's imports set
the same)."""

import os

BEFORE_IMPORTS = dict(os.environ)
