"""``gunicorn wsgi:app`` (or ``waitress-serve wsgi:app``) serves the flagship agent.

The shipped ``gunicorn.conf.py`` beside this file is read automatically by
gunicorn and makes the defaults right for long invocations.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "examples"))

from simple_agent import app

__all__ = ["app"]
