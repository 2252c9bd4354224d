"""``vlx serve``: a local demo page over the task contract (the authors' CloudCV demo, offline).

``session`` holds what the page shows and keeps for the next click; ``app`` is the web routes
(FastAPI, the ``serve`` extra); ``static/`` the page itself, one HTML file and one script.
"""
