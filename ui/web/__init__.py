"""The web UI (the notebook's v2): a Flask gateway that is a chat client of the server.

``wirechat web`` runs it (see ui/web/cli.py); gateway.py holds one chat client per signed-in
browser session, app.py serves the pages and their live event stream.
"""
