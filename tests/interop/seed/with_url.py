"""Runs one of the seed's scripts unchanged, pointed at another server.

usage: python3 -u with_url.py URL sender.py|receiver.py

The seed hard-codes http://localhost:5000; tests run Pulseboard on a free port,
so connect() gets the test server's URL and everything else runs as written.
"""
import runpy
import sys

import socketio

url, script = sys.argv[1], sys.argv[2]
connect = socketio.Client.connect
socketio.Client.connect = lambda self, _url, *args, **kwargs: connect(self, url, *args, **kwargs)
sys.argv = [script]
runpy.run_path(script, run_name="__main__")
